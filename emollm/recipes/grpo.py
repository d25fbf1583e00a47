# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
r"""GRPO with verifiable emotion rewards, the stage after SFT: prosody as text or audio pseudo-tokens.

Reads top to bottom: rewards -> data -> the SFT checkpoint (or a base model + a fresh LoRA) -> what the
model is shown -> evaluate before -> GRPO -> save -> evaluate after, in-domain and cross-domain -> summary.

Start from an SFT checkpoint that writes ``<think>...</think><answer>...</answer>`` (a cold start): a
checkpoint trained on bare labels gives four identical completions per prompt, hence zero advantages and no
learning. For example, on RAVDESS:

    emollm sft --config recipes/configs/ravdess/sft_text.yaml --strategy acoustic \\
        --target reasoning --output_dir runs/sft/ravdess-text-reasoning
    emollm grpo --config recipes/configs/ravdess/grpo_text.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/grpo.py --config ...

Interrupted? Run the same command again: training resumes from the last checkpoint in ``output_dir`` and the
evaluations resume their predictions. Results: ``output_dir/eval-{before,after}-<data>-<split>/`` (the
harness's folders) and ``output_dir/grpo_summary.json`` (WA, UA, macro F1 and parse failures, before and
after, in-domain and cross-domain, and each change with its paired-bootstrap interval).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset
from transformers import set_seed
from trl import GRPOConfig, ModelConfig, TrlParser, get_peft_config, get_quantization_config

from emollm.data import corpus_problem
from emollm.errors import ConfigError, check_config
from emollm.evaluation.bootstrap import compare_runs
from emollm.evaluation.harness import EvalConfig, evaluate
from emollm.inputs import PromptBuilder, describe_utterances, encode_utterances, label_spec, select_utterances
from emollm.io import write_text_atomic
from emollm.labels import parse_label_option
from emollm.training import count_parameters, prepare_for_training
from emollm.training.arguments import (
    ROUTES,
    AdapterArguments,
    asks_for_tags,
    check_recipe_config,
    route_has_adapters,
    route_has_prosody,
)
from emollm.training.evidence import prosody_records
from emollm.training.grpo import EmotionGRPOTrainer, build_grpo_examples, rationale_length_warning
from emollm.training.models import load_policy, model_dtype
from emollm.training.resume import check_resumable, last_checkpoint, train_or_resume
from emollm.training.rewards import CUE_MIN_CLAIMS, REWARDS, get_reward_funcs

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
    labels: str | None = field(
        default=None,
        metadata={
            "help": "label set: a name (ravdess8, meld7...) or comma-separated labels (default: the corpus's)"
        },
    )
    route: str = field(default="text", metadata={"help": "text, tokens, both or none", "choices": ROUTES})
    strategy: str = field(
        default="acoustic", metadata={"help": "prompt template; it must ask for <think>/<answer>"}
    )
    context_turns: int = field(default=0, metadata={"help": "earlier conversation turns in the prompt"})
    prosody_style: str = field(
        default="vowel",
        metadata={
            "help": "vowel (summary + 3 salient vowels), utterance (summary only) or measures (every "
            "utterance measure relative to the speaker, then every vowel; carries the most signal)",
            "choices": ["vowel", "utterance", "measures"],
        },
    )
    rewards: list[str] = field(
        default_factory=lambda: ["format", "label"],
        metadata={"help": f"reward names, weighted by reward_weights: {', '.join(REWARDS)}"},
    )
    cue_min_claims: int = field(
        default=CUE_MIN_CLAIMS,
        metadata={"help": "cue reward: 0 unless the rationale makes at least this many counted voice claims"},
    )
    cue_false_penalty: float = field(
        default=0.0, metadata={"help": "cue reward: subtracted per false claim about the voice"}
    )
    train_limit: int | None = field(default=None, metadata={"help": "train on N utterances (seeded draw)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate N utterances (seeded draw)"})
    eval_before: bool = field(default=True, metadata={"help": "evaluate the starting model too"})
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})

    def __post_init__(self):
        for name in (
            "eval_split",
            "cross_dataset",
            "labels",
        ):  # "--eval_split none" on the command line means None, as in YAML
            if str(getattr(self, name)).lower() in ("none", "null", ""):
                setattr(self, name, None)
        problems = check_recipe_config(self)
        try:
            get_reward_funcs(self.rewards)  # none, unknown or repeated names
        except ConfigError as exc:
            problems.append(str(exc))
        if self.cue_min_claims < 1:
            problems.append(f"cue_min_claims is {self.cue_min_claims}; it must be >= 1")
        if self.cue_false_penalty < 0:
            problems.append(f"cue_false_penalty is {self.cue_false_penalty}; it must be >= 0")
        if "cue" in self.rewards and self.route == "none":
            problems.append(
                "the cue reward checks claims about the voice, but route none shows the model no voice; use "
                "route text, tokens or both (with audio), or drop cue from rewards"
            )
        if "cue" in self.rewards and asks_for_tags(self.strategy) is False:
            problems.append(
                f"strategy {self.strategy!r} asks for no <think> rationale, so the cue reward has nothing to "
                "check; use acoustic or cot"
            )
        if "format" in self.rewards and asks_for_tags(self.strategy) is False:
            problems.append(
                f"strategy {self.strategy!r} does not ask for <think>/<answer>, so the format reward can "
                "never be earned; use acoustic or cot"
            )
        if self.cross_dataset is not None and corpus_problem("cross_dataset", self.cross_dataset):
            problems.append(corpus_problem("cross_dataset", self.cross_dataset))
        check_config(self, problems)


def main(script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig, adapter_args):
    """Run the recipe: the four dataclasses as :func:`make_parser` parses them."""
    # 1. Rewards, by name (the cue reward with its settings)
    cue = {"min_claims": script_args.cue_min_claims, "false_penalty": script_args.cue_false_penalty}
    reward_funcs = get_reward_funcs(script_args.rewards, {"cue": cue})
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(reward_funcs):
        raise ConfigError(f"reward_weights has {len(weights)} values for {len(reward_funcs)} rewards")
    training_args.remove_unused_columns = False  # the rewards read label/label_set, the trainer the frames
    set_seed(training_args.seed)  # before any projector is initialised

    # 2. Data
    labels, train = select_utterances(
        script_args.dataset, script_args.train_split, labels=parse_label_option(script_args.labels),
        limit=script_args.train_limit, seed=training_args.seed, data_root=script_args.data_root,
    )  # fmt: skip

    # 3. Model: an SFT checkpoint (LoRA and projectors stay trainable) or a base model with a fresh LoRA
    fresh = adapter_args.to_specs() if route_has_adapters(script_args.route) else []
    quantization = get_quantization_config(model_args)
    start = model_args.model_name_or_path
    lm, base_model, model = load_policy(
        start, fresh, dtype=model_dtype(model_args), quantization_config=quantization
    )
    out = Path(training_args.output_dir)
    last = last_checkpoint(out)
    if last:  # before any work: a rerun with other adapters is refused at once
        check_resumable(last, lm.adapters)
    prompts = PromptBuilder(
        lm.tokenizer, script_args.strategy, labels,
        context_turns=script_args.context_turns, placeholders=lm.placeholders,
    )  # fmt: skip

    # 4. What the model is shown: prosody descriptions and/or encoder frames (cached on disk); a
    #    checkpoint's frame statistics are kept (its projector learnt with them), a fresh adapter's fitted
    descriptions, normalizer = {}, None
    if route_has_prosody(script_args.route) or "cue" in script_args.rewards:
        shown, _, normalizer = describe_utterances(
            train, style=script_args.prosody_style, workers=script_args.workers
        )
        descriptions = shown if route_has_prosody(script_args.route) else {}
    frames, frame_normalizers = ({}, {})
    if lm.adapters:
        frames, frame_normalizers = encode_utterances(lm, train, refit=not lm.frame_normalizers)
    #    ... and for the cue reward, each row's measures (and shown description), judged with the same
    #    normaliser as the description, so a sentence of the description verifies as true
    measured = None
    if "cue" in script_args.rewards:
        measured = prosody_records(train, normalizer, descriptions, workers=script_args.workers)
    rows = build_grpo_examples(train, prompts, prosody=descriptions, frames=frames, measured=measured)
    logger.warning("example prompt:\n%s", rows[0]["prompt"])
    warning = rationale_length_warning(lm.tokenizer, train, descriptions, training_args.max_completion_length)
    if warning:
        logger.warning(warning)

    # 5. Evaluate the starting model, in-domain and cross-domain (resumes; skipped when already complete)
    evaluations = plan_evaluations(script_args, bool(lm.adapters))
    summary = {"start": start, "route": script_args.route, "rewards": script_args.rewards, "evaluations": {}}
    if "cue" in script_args.rewards:
        summary["cue"] = cue  # the cue reward's settings, for the record
    state = PartialState()  # under accelerate launch, one process evaluates while the others wait
    if script_args.eval_before and state.is_main_process:
        if quantization is None:
            lm.model.to(state.device)
        lm.model.eval()
        for name, (data, split, note) in evaluations.items():
            summary["evaluations"][f"before/{name}"] = run_evaluation(
                lm, script_args, training_args, labels, data, split, out / f"eval-before-{name}", start, note
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
        adapters=lm.adapters,
        frame_normalizers=frame_normalizers,
        projector_learning_rate=adapter_args.projector_learning_rate,
        reasoner_settings={
            "labels": list(labels.labels),
            "strategy": script_args.strategy,
            "context_turns": script_args.context_turns,
            "prosody": route_has_prosody(script_args.route),
            "prosody_style": script_args.prosody_style,
            "mode": "generate",
            "max_new_tokens": training_args.max_completion_length,
        },
    )
    train_or_resume(trainer, last, training_args.max_steps)

    # 7. Save: LoRA adapter + projector weights + emollm_config.json in output_dir
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return

    # 8. Evaluate the trained model the same way, and write the before/after summary
    lm.model = trainer.model.eval()
    for name, (data, split, note) in evaluations.items():
        summary["evaluations"][f"after/{name}"] = run_evaluation(
            lm, script_args, training_args, labels, data, split, out / f"eval-after-{name}", str(out), note
        )
    # after - before on the same utterances, with paired-bootstrap intervals (is the change noise?)
    summary["after_minus_before"] = {
        name: compare_runs(out / f"eval-before-{name}", out / f"eval-after-{name}")["metrics"]
        for name in evaluations
        if f"before/{name}" in summary["evaluations"]  # none with --eval_before false
    }
    write_text_atomic(out / "grpo_summary.json", json.dumps(summary, indent=2) + "\n")
    print(summary_table(summary))


def plan_evaluations(script_args: ScriptArguments, has_adapters: bool) -> dict[str, tuple[str, str, str]]:
    """The in-domain and cross-domain evaluations: name -> (corpus, split, note)."""
    from emollm.data import load_corpus

    plan = {}
    if script_args.eval_split:
        plan[f"{script_args.dataset}-{script_args.eval_split}"] = (
            script_args.dataset, script_args.eval_split, "in-domain",
        )  # fmt: skip
    if script_args.cross_dataset:
        other = load_corpus(
            script_args.cross_dataset, script_args.cross_split, data_root=script_args.data_root
        )
        has_audio = any(u.has_audio for u in other)
        if has_adapters and not has_audio:
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


def run_evaluation(lm, script_args, training_args, labels, data, split, output, model_name, note) -> dict:
    """One harness run in generate mode; returns its headline numbers.

    It scores on the training label set: cross-domain golds are mapped into it, unmappable ones dropped.
    """
    config = EvalConfig(
        data=data,
        split=split,
        strategy=script_args.strategy,
        mode="generate",
        context=script_args.context_turns,
        model=model_name,
        output=str(output),
        labels=label_spec(labels),
        limit=script_args.eval_limit,
        data_root=script_args.data_root,
        prosody=route_has_prosody(script_args.route),
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


def make_parser(prog: str | None = None):
    """The TRL argument parser of this recipe (YAML via ``--config``, any field overridable on the CLI).

    As TRL's scripts do (``trl/scripts/grpo.py``): ``emollm grpo`` registers the command and hands the rest
    of the command line to this parser.
    """
    dataclass_types = (ScriptArguments, GRPOConfig, ModelConfig, AdapterArguments)
    return TrlParser(dataclass_types, prog=prog, description=__doc__.split("\n\n")[0])


def cli(args: list[str] | None = None) -> None:
    """``python recipes/grpo.py`` (and ``accelerate launch`` of it): exactly ``emollm grpo``.

    See :func:`emollm.recipes.sft.cli`.
    """
    import sys

    from emollm.cli import main as emollm_main

    raise SystemExit(emollm_main(["grpo", *(sys.argv[1:] if args is None else args)]))


if __name__ == "__main__":
    cli()
