# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
"""Supervised fine-tuning of an emotion model: LoRA on the LLM, plus projectors for audio pseudo-tokens.

Reads top to bottom: load data -> describe/encode the audio -> build the model -> train -> save -> evaluate.

Routes (``--route``), how the voice reaches the LLM:
    text    the prosody description in the prompt (VowelPrompt-style), no adapters
    tokens  K pseudo-tokens from an encoder + projector at <|audio|>, no description
    both    the description and the pseudo-tokens
    none    words only (MELD-style text + conversation context)

Usage:
    python recipes/sft.py --config recipes/configs/ravdess/sft_both.yaml
    python recipes/sft.py --config recipes/configs/meld/sft.yaml --max_steps 200   # any field overrides
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/sft.py --config ...

Interrupted? Run the same command again: training resumes from the last checkpoint in ``output_dir``, and
the evaluation at the end resumes its predictions. The final checkpoint (``output_dir``) loads with
``EmotionReasoner.from_pretrained(output_dir)``; its metrics are in ``output_dir/eval-<split>/``.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from accelerate import PartialState
from datasets import Dataset
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, SFTConfig, TrlParser, get_peft_config, get_quantization_config

from emollm.api import EmotionReasoner
from emollm.data import load_corpus
from emollm.errors import ConfigError
from emollm.evaluation.harness import (
    CORPUS_LABELS,
    EvalConfig,
    describe_utterances,
    encode_utterances,
    evaluate,
)
from emollm.labels import get_label_set
from emollm.modeling.base import load_base_model
from emollm.modeling.emotion_lm import AdapterSpec, EmotionLM, build_adapters
from emollm.training import EmotionSFTTrainer, MultimodalCollator, build_examples, count_parameters
from emollm.training.sft import prepare_for_training

logger = logging.getLogger("emollm.recipes.sft")

ROUTES = ("text", "tokens", "both", "none")


@dataclass
class ScriptArguments:
    """What to train on and how the prompt looks."""

    dataset: str = field(default="ravdess", metadata={"help": "ravdess, meld, iemocap or manifest:PATH"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: str | None = field(
        default="dev", metadata={"help": "split to evaluate at the end (None: skip)"}
    )
    labels: str | None = field(default=None, metadata={"help": "label set (default: the corpus's own)"})
    route: str = field(default="both", metadata={"help": "text, tokens, both or none", "choices": ROUTES})
    strategy: str = field(
        default="acoustic", metadata={"help": "prompt template: minimal, acoustic, cot, path"}
    )
    target: str = field(
        default="label",
        metadata={
            "help": "label, or reasoning (<think>template-made rationale</think><answer>label</answer>)"
        },
    )
    context_turns: int = field(default=0, metadata={"help": "earlier conversation turns in the prompt"})
    prosody_style: str = field(default="vowel", metadata={"help": "vowel or utterance description"})
    train_limit: int | None = field(default=None, metadata={"help": "train on N utterances (seeded draw)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate N utterances (seeded draw)"})
    eval_mode: str = field(
        default="score",
        metadata={"help": "score or generate for the final evaluation (generate for a reasoning target)"},
    )
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})


@dataclass
class AdapterArguments:
    """The audio adapter (routes tokens and both)."""

    encoder: str = field(
        default="prosody_frames", metadata={"help": "prosody_frames, hf_audio or vision_frames"}
    )
    encoder_path: str | None = field(
        default=None, metadata={"help": "local model folder for hf_audio/vision"}
    )
    projector: str = field(default="mlp", metadata={"help": "linear, mlp, resampler or text_guided_mixer"})
    num_tokens: int = field(default=8, metadata={"help": "K pseudo-tokens that replace <|audio|>"})
    projector_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "peak learning rate of the projector (LLaVA's mm_projector_lr); default learning_rate"
        },
    )
    normalize: str = field(
        default="none",
        metadata={
            "help": "none, or speaker: z-score the encoder's frames per speaker (label-free statistics)"
        },
    )


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, adapter_args):
    if script_args.route not in ROUTES:
        raise ConfigError(f"route must be one of {ROUTES}, got {script_args.route!r}")
    training_args.remove_unused_columns = False  # the collator needs the prompt, completion and frames
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}  # ... and tokenises them itself

    set_seed(training_args.seed)  # before any projector is initialised

    # 1. Data
    labels, train = training_utterances(script_args, training_args.seed)

    # 2. Model: the base LLM (4-bit for QLoRA if asked) and, for the tokens routes, the audio adapter
    adapters = []
    if script_args.route in ("tokens", "both"):
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
    last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
    if last:  # before any work: a rerun with other adapters is refused at once
        check_resumable(last, adapters)
    model, tokenizer = load_base_model(
        model_args.model_name_or_path,
        dtype=model_args.dtype if model_args.dtype not in (None, "auto") else None,
        quantization_config=get_quantization_config(model_args),
    )
    encoders, projectors = build_adapters(adapters, model.get_input_embeddings().embedding_dim)
    lm = EmotionLM(
        model,
        tokenizer,
        name=model_args.model_name_or_path,
        encoders=encoders,
        projectors=projectors if adapters else None,
        adapters=adapters,
    )
    reasoner = EmotionReasoner(
        lm,
        labels=labels,
        strategy=script_args.strategy,
        mode=script_args.eval_mode,
        context_turns=script_args.context_turns,
        prosody=script_args.route in ("text", "both"),
        prosody_style=script_args.prosody_style,
    )

    # 3. What the model is shown: prosody descriptions (per-speaker normaliser fitted on the training
    #    speakers) and/or encoder frames, both cached on disk
    descriptions = {}
    if reasoner.prosody:
        descriptions, _ = describe_utterances(reasoner, train, workers=script_args.workers)
    frames = encode_utterances(lm, train) if adapters else {}  # fits per-speaker frame statistics, if asked
    features = {m: {uid: item[m] for uid, item in frames.items()} for m in lm.modalities}
    examples = build_examples(
        train, reasoner, target=script_args.target, prosody=descriptions, features=features
    )
    logger.warning("example prompt:\n%s%s", examples[0]["prompt"], examples[0]["completion"])

    # 4. Train: LoRA weights and projectors move, the base model and encoders do not
    model = prepare_for_training(
        lm.model, get_peft_config(model_args), gradient_checkpointing=training_args.activation_checkpointing
    )
    logger.warning("parameters: %s", json.dumps(count_parameters(model)))
    reasoner_settings = {
        "labels": list(labels.labels),
        "strategy": script_args.strategy,
        "context_turns": script_args.context_turns,
        "prosody": reasoner.prosody,
        "prosody_style": script_args.prosody_style,
    }
    collator = MultimodalCollator(tokenizer, lm.num_tokens, max_length=training_args.max_length)
    cut = collator.check(examples)  # a prompt that cannot fit fails here, not mid-epoch
    if cut:
        logger.warning(
            "%d of %d completions do not fit max_length=%d and will be cut at the end, the answer with "
            "them (first: %s); raise --max_length",
            len(cut),
            len(examples),
            training_args.max_length,
            ", ".join(map(str, cut[:5])),
        )
    trainer = EmotionSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        processing_class=tokenizer,
        base_model=model_args.model_name_or_path,
        adapters=adapters,
        reasoner_settings=reasoner_settings,
        frame_normalizers=dict(lm.frame_normalizers),  # the training speakers' (evaluation refits its own)
        projector_learning_rate=adapter_args.projector_learning_rate,
    )
    if last and finished(last, training_args.max_steps):
        # transformers' Trainer would take one more step from a checkpoint at max_steps
        logger.warning("%s already holds the last step: not training again", last)
        trainer._load_from_checkpoint(last)
    else:
        if last:
            logger.warning("resuming from %s", last)
        trainer.train(resume_from_checkpoint=last)

    # 5. Save: LoRA adapter + projector weights + emollm_config.json in output_dir
    trainer.save_model(training_args.output_dir)
    if not trainer.is_world_process_zero() or script_args.eval_split is None:
        return

    # 6. Evaluate the trained model with the harness; metrics land next to the checkpoint
    lm.model = trainer.model.eval()
    if script_args.target == "reasoning" and script_args.eval_mode == "score":
        logger.warning(
            "scoring a model trained to reason first: score mode puts the label right after <answer>, "
            "without the rationale it learned to write, and can understate it badly (on RAVDESS the "
            "text route's reasoning checkpoint scored one class only); --eval_mode generate measures "
            "what it was trained to do (the GRPO recipe evaluates in generate mode)"
        )
    config = EvalConfig(
        data=script_args.dataset,
        split=script_args.eval_split,
        strategy=script_args.strategy,
        mode=script_args.eval_mode,
        context=script_args.context_turns,
        model=training_args.output_dir,
        output=str(Path(training_args.output_dir) / f"eval-{script_args.eval_split}"),
        labels=script_args.labels,
        limit=script_args.eval_limit,
        data_root=script_args.data_root,
        prosody=reasoner.prosody,
        prosody_style=script_args.prosody_style,
        workers=script_args.workers,
    )
    result = evaluate(config, lm=lm)
    logger.warning("evaluation: %s", json.dumps(result.summary.get("metrics", {}), default=str)[:500])
    print((Path(config.output) / "report.md").read_text(encoding="utf-8"))


def training_utterances(script_args, seed: int):
    """The label set and the labelled training utterances (a seeded draw of ``train_limit`` of them)."""
    corpus = script_args.dataset.split(":", 1)[0]
    labels = get_label_set(script_args.labels or CORPUS_LABELS.get(corpus, "ravdess8"))
    train = load_corpus(
        script_args.dataset, script_args.train_split, data_root=script_args.data_root, labels=labels
    )
    train = [u for u in train if u.label is not None]
    if script_args.train_limit is not None and script_args.train_limit < len(train):
        chosen = sorted(random.Random(seed).sample(range(len(train)), script_args.train_limit))
        train = [train[i] for i in chosen]
    logger.warning(
        "training on %d utterances of %s/%s", len(train), script_args.dataset, script_args.train_split
    )
    return labels, train


def finished(checkpoint: str, max_steps: int) -> bool:
    """Whether ``checkpoint`` (a ``checkpoint-N`` folder) holds the run's last step.

    The last step is ``max_steps`` when set, else the step count the run planned.
    """
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    target = max_steps if max_steps > 0 else state.get("max_steps", 0)
    return target > 0 and state.get("global_step", 0) >= target


def check_resumable(checkpoint: str, adapters) -> None:
    """Refuse to resume ``checkpoint`` with other adapters than it was trained with (its weights won't fit).

    Raises:
        ConfigError: adapters added or removed (text/none vs tokens/both), or another encoder, projector,
            K or frame normalisation than the checkpoint's.
    """
    from emollm.modeling.checkpoint import read_checkpoint_config

    saved = [AdapterSpec(**a).to_dict() for a in read_checkpoint_config(checkpoint)["adapters"]]
    asked = [a.to_dict() for a in adapters]
    if saved != asked:
        raise ConfigError(
            f"{checkpoint} was trained with adapters {saved or 'none'}, but this run asks for "
            f"{asked or 'none'}; use another --output_dir, or the settings it was trained with"
        )


def make_parser(subparsers=None):
    """The TRL argument parser of this recipe (YAML via ``--config``, any field overridable on the CLI)."""
    dataclass_types = (ScriptArguments, SFTConfig, ModelConfig, AdapterArguments)
    if subparsers is not None:
        return subparsers.add_parser("sft", help="Run the SFT recipe", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types)


def parse_args(parser, args: list | None = None):
    """``parser.parse_args_and_config(args)``, refusing transformers' deprecated checkpointing names.

    ``gradient_checkpointing`` is an alias of ``activation_checkpointing`` that transformers reads only when
    the new name is unset; every config here sets it, so ``--gradient_checkpointing true`` (or the key in a
    YAML) would be silently ignored. Both spellings of the flag and the YAML keys are refused.
    """
    argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
    names = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    if "config" in names:
        at = next(i for i, a in enumerate(argv) if a.split("=")[0] == "--config")
        path = argv[at].split("=", 1)[1] if "=" in argv[at] else argv[at + 1] if at + 1 < len(argv) else None
        if path and Path(path).is_file():
            names |= set(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    old = sorted(n for n in names if n.startswith("gradient_checkpointing"))
    if old:
        new = [n.replace("gradient_", "activation_") for n in old]
        raise ConfigError(
            f"{', '.join(old)}: transformers' deprecated name (removed in v6), which it ignores when "
            f"activation_checkpointing is set, as every emollm config sets it; use {', '.join(new)} "
            f"(--{new[0]} on the command line)"
        )
    return parser.parse_args_and_config(args=argv)


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args, adapter_args = parse_args(parser)
    main(script_args, training_args, model_args, adapter_args)
    # Under accelerate launch, gloo's worker threads can abort the interpreter's exit (SIGABRT) unless the
    # process group is destroyed while Python is still alive; a no-op in a single process. Only after
    # success: after an error the traceback comes first, and tearing down NCCL then could hang on peers.
    PartialState().destroy_process_group()
