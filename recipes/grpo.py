# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
"""GRPO with verifiable emotion rewards, the stage after SFT: prosody as text or audio pseudo-tokens.

Reads top to bottom: rewards -> data -> the SFT checkpoint (or a base model + a fresh LoRA) -> what the
model is shown -> evaluate before -> GRPO -> save -> evaluate after, in-domain and cross-domain -> summary.

Start from an SFT checkpoint that writes ``<think>...</think><answer>...</answer>`` (a cold start): a
checkpoint trained on bare labels gives four identical completions per prompt, hence zero advantages and no
learning. For example, on RAVDESS:

    python recipes/sft.py --config recipes/configs/ravdess/sft_text.yaml --strategy acoustic \\
        --target reasoning --output_dir runs/sft/ravdess-text-reasoning
    python recipes/grpo.py --config recipes/configs/ravdess/grpo_text.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/grpo.py --config ...

Interrupted? Run the same command again: training resumes from the last checkpoint in ``output_dir`` and the
evaluations resume their predictions. Results: ``output_dir/eval-{before,after}-<data>-<split>/`` (the
harness's folders) and ``output_dir/grpo_summary.json`` (WA, UA, macro F1 and parse failures, before and
after, in-domain and cross-domain, and each change with its paired-bootstrap interval).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, ModelConfig, TrlParser, get_peft_config, get_quantization_config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the SFT recipe's arguments and helpers
from sft import (  # noqa: E402
    ROUTES,
    AdapterArguments,
    check_resumable,
    finished,
    parse_args,
    training_utterances,
)

from emollm.api import EmotionReasoner  # noqa: E402
from emollm.data import load_corpus  # noqa: E402
from emollm.errors import ConfigError  # noqa: E402
from emollm.evaluation.bootstrap import compare_runs  # noqa: E402
from emollm.evaluation.harness import (  # noqa: E402
    CORPUS_LABELS,
    EvalConfig,
    describe_utterances,
    encode_utterances,
    evaluate,
)
from emollm.io import write_text_atomic  # noqa: E402
from emollm.modeling.base import load_base_model  # noqa: E402
from emollm.modeling.checkpoint import is_checkpoint, load_checkpoint  # noqa: E402
from emollm.modeling.emotion_lm import AdapterSpec, EmotionLM, build_adapters  # noqa: E402
from emollm.prompting import answer_prefix  # noqa: E402
from emollm.training import count_parameters, make_completion, prepare_for_training  # noqa: E402
from emollm.training.grpo import EmotionGRPOTrainer, build_grpo_examples  # noqa: E402
from emollm.training.rewards import REWARDS, get_reward_funcs  # noqa: E402

logger = logging.getLogger("emollm.recipes.grpo")


@dataclass
class ScriptArguments:
    """What to train on, the rewards, and where to evaluate."""

    dataset: str = field(default="ravdess", metadata={"help": "ravdess, meld, iemocap or manifest:PATH"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: str | None = field(
        default="dev", metadata={"help": "in-domain split evaluated before and after (None: skip)"}
    )
    cross_dataset: str | None = field(
        default=None,
        metadata={"help": "cross-domain corpus evaluated before and after, on its label-compatible subset"},
    )
    cross_split: str = field(default="dev", metadata={"help": "split of cross_dataset"})
    labels: str | None = field(default=None, metadata={"help": "label set (default: the corpus's own)"})
    route: str = field(default="text", metadata={"help": "text, tokens, both or none", "choices": ROUTES})
    strategy: str = field(
        default="acoustic", metadata={"help": "prompt template; it must ask for <think>/<answer>"}
    )
    context_turns: int = field(default=0, metadata={"help": "earlier conversation turns in the prompt"})
    prosody_style: str = field(default="vowel", metadata={"help": "vowel or utterance description"})
    rewards: list[str] = field(
        default_factory=lambda: ["format", "label"],
        metadata={"help": f"reward names, weighted by reward_weights: {', '.join(REWARDS)}"},
    )
    train_limit: int | None = field(default=None, metadata={"help": "train on N utterances (seeded draw)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate N utterances (seeded draw)"})
    eval_before: bool = field(default=True, metadata={"help": "evaluate the starting model too"})
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})


def main(script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig, adapter_args):
    # 1. Rewards, by name (checked before anything is loaded)
    if script_args.route not in ROUTES:
        raise ConfigError(f"route must be one of {ROUTES}, got {script_args.route!r}")
    reward_funcs = get_reward_funcs(script_args.rewards)
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(reward_funcs):
        raise ConfigError(f"reward_weights has {len(weights)} values for {len(reward_funcs)} rewards")
    training_args.remove_unused_columns = False  # the rewards read label/label_set, the trainer the frames

    set_seed(training_args.seed)  # before any projector is initialised

    # 2. Data
    labels, train = training_utterances(script_args, training_args.seed)

    # 3. Model: an SFT checkpoint (LoRA and projectors stay trainable) or a base model with a fresh LoRA
    start = model_args.model_name_or_path
    tokens_route = script_args.route in ("tokens", "both")
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else None
    quantization = get_quantization_config(model_args)
    if is_checkpoint(start):
        lm = load_checkpoint(start, dtype=dtype, trainable=True, quantization_config=quantization)
        base_model, adapters, model = lm.checkpoint_config["base_model"], list(lm.adapters), lm.model
        if not lm.checkpoint_config.get("lora"):
            model = None  # a projector-only checkpoint: LoRA (if use_peft) is added and the LLM frozen below
        if bool(adapters) != tokens_route:
            raise ConfigError(
                f"route {script_args.route!r} does not match the checkpoint {start}, which has "
                f"{'an audio adapter' if adapters else 'no adapters'}; use route "
                f"{'tokens or both' if adapters else 'text or none'}"
            )
    else:
        adapters = []
        if tokens_route:
            settings = {"path": adapter_args.encoder_path} if adapter_args.encoder_path else {}
            adapters = [
                AdapterSpec(
                    "audio",
                    adapter_args.encoder,
                    adapter_args.projector,
                    adapter_args.num_tokens,
                    settings,
                    normalize=adapter_args.normalize,
                )
            ]
        base, tokenizer = load_base_model(start, dtype=dtype, quantization_config=quantization)
        encoders, projectors = build_adapters(adapters, base.get_input_embeddings().embedding_dim)
        lm = EmotionLM(
            base, tokenizer, name=start, encoders=encoders, projectors=projectors if adapters else None,
            adapters=adapters,
        )  # fmt: skip
        base_model = start
        model = None  # LoRA is added after the "before" evaluation
    out = Path(training_args.output_dir)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last:  # before any work: a rerun with other adapters is refused at once
        check_resumable(last, adapters)
    reasoner = EmotionReasoner(
        lm,
        labels=labels,
        strategy=script_args.strategy,
        mode="generate",
        context_turns=script_args.context_turns,
        prosody=script_args.route in ("text", "both"),
        prosody_style=script_args.prosody_style,
        max_new_tokens=training_args.max_completion_length,
    )
    if "format" in script_args.rewards and not answer_prefix(reasoner._message(transcript="x")):
        raise ConfigError(
            f"strategy {script_args.strategy!r} does not ask for <think>/<answer>, so the format reward can "
            f"never be earned; use acoustic or cot"
        )

    # 4. What the model is shown: prosody descriptions and/or encoder frames (cached on disk)
    descriptions = {}
    if reasoner.prosody:
        descriptions, _ = describe_utterances(reasoner, train, workers=script_args.workers)
    # frame statistics: a checkpoint's are kept (its projector learnt with them), a fresh adapter's are fitted
    keep = bool(lm.frame_normalizers)
    frames = encode_utterances(lm, train, refit=not keep) if adapters else {}
    frame_normalizers = dict(lm.frame_normalizers)  # saved with every checkpoint
    features = {m: {uid: item[m] for uid, item in frames.items()} for m in lm.modalities}
    rows = build_grpo_examples(train, reasoner, prosody=descriptions, features=features)
    logger.warning("example prompt:\n%s", rows[0]["prompt"])
    # the SFT cold start writes the template rationale: one cut before <answer> earns no reward at all
    lengths = sorted(
        len(lm.tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1
        for completion in (
            make_completion(u.label, reasons=True, target="reasoning", transcript=u.transcript,
                            prosody=descriptions.get(u.id))
            for u in train
        )
    )  # fmt: skip
    too_long = sum(n > training_args.max_completion_length for n in lengths)
    if too_long:
        logger.warning(
            "%d of %d template rationales (what a reasoning-SFT start writes; median %d, longest %d tokens) "
            "do not fit max_completion_length=%d: those completions end before <answer> and earn no reward. "
            "Raise --max_completion_length to at least %d",
            too_long, len(lengths), lengths[len(lengths) // 2], lengths[-1],
            training_args.max_completion_length, lengths[-1] + 16,
        )  # fmt: skip

    # 5. Evaluate the starting model, in-domain and cross-domain (resumes; skipped when already complete)
    evaluations = plan_evaluations(script_args, tokens_route)
    summary = {"start": start, "route": script_args.route, "rewards": script_args.rewards, "evaluations": {}}
    state = PartialState()  # under accelerate launch, one process evaluates while the others wait
    if script_args.eval_before and state.is_main_process:
        if quantization is None:
            lm.model.to(state.device)
        lm.model.eval()
        for name, (data, split, note) in evaluations.items():
            summary["evaluations"][f"before/{name}"] = run_evaluation(
                lm, script_args, training_args, data, split, out / f"eval-before-{name}", start, note
            )
    state.wait_for_everyone()

    # 6. GRPO: the LoRA weights and projectors move; the frames of each row travel with it
    if model is None:
        model = prepare_for_training(lm.model, get_peft_config(model_args))
    logger.warning("parameters: %s", json.dumps(count_parameters(model)))
    trainer = EmotionGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=lm.tokenizer,
        base_model=base_model,
        adapters=adapters,
        frame_normalizers=frame_normalizers,
        projector_learning_rate=adapter_args.projector_learning_rate,
        reasoner_settings={
            "labels": list(labels.labels),
            "strategy": script_args.strategy,
            "context_turns": script_args.context_turns,
            "prosody": reasoner.prosody,
            "prosody_style": script_args.prosody_style,
            "mode": "generate",
            "max_new_tokens": training_args.max_completion_length,
        },
    )
    if last and finished(last, training_args.max_steps):
        logger.warning("%s already holds the last step: not training again", last)
        trainer._load_from_checkpoint(last)
    else:
        if last:
            logger.warning("resuming from %s", last)
        trainer.train(resume_from_checkpoint=last)

    # 7. Save: LoRA adapter + projector weights + emollm_config.json in output_dir
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return

    # 8. Evaluate the trained model the same way, and write the before/after summary
    lm.model = trainer.model.eval()
    for name, (data, split, note) in evaluations.items():
        summary["evaluations"][f"after/{name}"] = run_evaluation(
            lm, script_args, training_args, data, split, out / f"eval-after-{name}", str(out), note
        )
    # after - before on the same utterances, with paired-bootstrap intervals (is the change noise?)
    summary["after_minus_before"] = {
        name: compare_runs(out / f"eval-before-{name}", out / f"eval-after-{name}")["metrics"]
        for name in evaluations
        if f"before/{name}" in summary["evaluations"]  # none with --eval_before false
    }
    write_text_atomic(out / "grpo_summary.json", json.dumps(summary, indent=2) + "\n")
    print(summary_table(summary))


def plan_evaluations(script_args: ScriptArguments, tokens_route: bool) -> dict[str, tuple[str, str, str]]:
    """name -> (corpus, split, note) of the in-domain and cross-domain evaluations."""
    plan = {}
    if script_args.eval_split:
        plan[f"{script_args.dataset}-{script_args.eval_split}"] = (
            script_args.dataset, script_args.eval_split, "in-domain",
        )  # fmt: skip
    if script_args.cross_dataset:
        other = load_corpus(
            script_args.cross_dataset, script_args.cross_split, data_root=script_args.data_root
        )
        has_audio = any(u.audio_path or u.audio is not None for u in other)
        if tokens_route and not has_audio:
            logger.warning(
                "cross-domain evaluation on %s skipped: it has no audio for the pseudo-tokens",
                script_args.cross_dataset,
            )
        else:
            note = "cross-domain" + ("" if has_audio else ", words only (no audio)")
            plan[f"{script_args.cross_dataset}-{script_args.cross_split}"] = (
                script_args.cross_dataset, script_args.cross_split, note,
            )  # fmt: skip
    return plan


def run_evaluation(lm, script_args, training_args, data, split, output, model_name, note) -> dict:
    """One harness run (generate mode, the training label set); returns its headline numbers."""
    config = EvalConfig(
        data=data,
        split=split,
        strategy=script_args.strategy,
        mode="generate",
        context=script_args.context_turns,
        model=model_name,
        output=str(output),
        labels=label_name(script_args),
        limit=script_args.eval_limit,
        data_root=script_args.data_root,
        prosody=script_args.route in ("text", "both"),
        prosody_style=script_args.prosody_style,
        max_new_tokens=training_args.max_completion_length,
        workers=script_args.workers,
    )
    result = evaluate(config, lm=lm)
    m = result.summary["metrics"]
    return {
        "data": data,
        "split": split,
        "note": note,
        "n": m["n"],
        "wa": m["wa"],
        "ua": m["ua"],
        "macro_f1": m["macro_f1"],
        "weighted_f1": m["weighted_f1"],
        "parse_failure_rate": m["parse_failures"] / max(m["n"], 1),
        "format_ok_rate": result.summary.get("format_ok_rate"),
        "folder": str(output),
    }


def label_name(script_args) -> str:
    """The training label set (cross-domain golds are mapped into it; unmappable ones are dropped)."""
    return script_args.labels or CORPUS_LABELS.get(script_args.dataset.split(":", 1)[0], "ravdess8")


def summary_table(summary: dict) -> str:
    """The before/after table printed at the end."""
    lines = [
        f"GRPO from {summary['start']} (route {summary['route']}, rewards {', '.join(summary['rewards'])})",
        "",
        "| evaluation | when | n | WA % | UA % | macro F1 % | parse failures % | format ok % |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in summary["evaluations"].items():
        when, name = key.split("/", 1)
        fmt = "-" if row["format_ok_rate"] is None else f"{100 * row['format_ok_rate']:.1f}"
        failures = 100 * row["parse_failure_rate"]
        lines.append(
            f"| {name} ({row['note']}) | {when} | {row['n']} | {100 * row['wa']:.1f} | "
            f"{100 * row['ua']:.1f} | {100 * row['macro_f1']:.1f} | {failures:.1f} | {fmt} |"
        )
    for name, metrics in summary.get("after_minus_before", {}).items():
        changes = [
            f"{metric} {100 * r['diff']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}] p {r['p']:.3f}"
            for metric, r in metrics.items()
            if metric in ("wa", "ua", "macro_f1")
        ]
        lines.append(f"\nafter - before, {name} (paired bootstrap, 95%): " + "; ".join(changes))
    return "\n".join(lines)


def make_parser(subparsers=None):
    """The TRL argument parser of this recipe (YAML via ``--config``, any field overridable on the CLI)."""
    dataclass_types = (ScriptArguments, GRPOConfig, ModelConfig, AdapterArguments)
    if subparsers is not None:
        return subparsers.add_parser("grpo", help="Run the GRPO recipe", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types)


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args, adapter_args = parse_args(parser)
    main(script_args, training_args, model_args, adapter_args)
    PartialState().destroy_process_group()  # a clean exit under accelerate launch (see recipes/sft.py)
