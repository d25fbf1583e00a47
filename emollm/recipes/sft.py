# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
"""Supervised fine-tuning of an emotion model: LoRA on the LLM, plus projectors for audio pseudo-tokens.

Reads top to bottom: load data -> describe/encode the audio -> build the model -> train -> save -> evaluate.

Routes (``--route``), how the voice reaches the LLM:
    text    the prosody description in the prompt (VowelPrompt-style), no adapters
    tokens  K pseudo-tokens from an encoder + projector at <|audio|>, no description
    both    the description and the pseudo-tokens
    none    words only (MELD-style text + conversation context)

Targets (``--target``): ``label``; ``reasoning`` (a template rationale restating what was shown, then the
label); ``evidence`` (the measured cues that most support the label for this speaker, each verified, then
their reading and the label; the transparent model that picks them is saved as ``emollm_evidence.json``).

Usage:
    emollm sft --config recipes/configs/ravdess/sft_both.yaml
    emollm sft --config recipes/configs/meld/sft.yaml --max_steps 200     # any field overrides
    python recipes/sft.py --config ...                                      # the same, as a script
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/sft.py --config ...

Interrupted? Run the same command again: training resumes from the last checkpoint in ``output_dir``, and
the evaluation at the end resumes its predictions. The final checkpoint (``output_dir``) loads with
``EmotionReasoner.from_pretrained(output_dir)``; its metrics are in ``output_dir/eval-<split>/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import set_seed
from trl import ModelConfig, SFTConfig, TrlParser, get_peft_config, get_quantization_config

from emollm.augment import augment_utterances, parse_augmentations
from emollm.errors import ConfigError, check_config
from emollm.evaluation.harness import EvalConfig, evaluate
from emollm.inputs import PromptBuilder, describe_utterances, encode_utterances, label_spec, select_utterances
from emollm.labels import parse_label_option
from emollm.modeling import is_checkpoint
from emollm.training import EmotionSFTTrainer, MultimodalCollator, build_examples, count_parameters
from emollm.training.arguments import (
    ROUTES,
    AdapterArguments,
    asks_for_tags,
    check_recipe_config,
    route_has_adapters,
    route_has_prosody,
)
from emollm.training.evidence import EVIDENCE_NAME, build_evidence
from emollm.training.models import checkpoint_adapters, load_policy, model_dtype
from emollm.training.resume import check_resumable, last_checkpoint, train_or_resume
from emollm.training.sft import (
    CLASS_WEIGHTS,
    TARGETS,
    class_weights,
    generation_budget,
    prepare_for_training,
)

logger = logging.getLogger("emollm.recipes.sft")


@dataclass
class ScriptArguments:
    """What to train on and how the prompt looks."""

    dataset: str = field(default="ravdess", metadata={"help": "ravdess, meld, iemocap or manifest:PATH"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: str | None = field(
        default="dev", metadata={"help": "split to evaluate at the end (None: skip)"}
    )
    labels: str | None = field(
        default=None,
        metadata={
            "help": "label set: a name (ravdess8, meld7...) or comma-separated labels (default: the corpus's)"
        },
    )
    route: str = field(default="both", metadata={"help": "text, tokens, both or none", "choices": ROUTES})
    strategy: str = field(
        default="acoustic", metadata={"help": "prompt template: minimal, acoustic, cot, path"}
    )
    target: str = field(
        default="label",
        metadata={
            "help": "label; reasoning (<think>template-made rationale</think><answer>label</answer>); or "
            "evidence (<think>the 2-4 measured cues that most support the label for this speaker, each "
            "verified, and their reading</think><answer>label</answer>; needs audio, route text/tokens/both)",
            "choices": TARGETS,
        },
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
    train_limit: int | None = field(default=None, metadata={"help": "train on N utterances (seeded draw)"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate N utterances (seeded draw)"})
    eval_mode: str = field(
        default="score",
        metadata={
            "help": "score or generate for the final evaluation (generate for a reasoning target)",
            "choices": ["score", "generate"],
        },
    )
    augment: str = field(
        default="none",
        metadata={
            "help": "training-audio augmentation, comma-separated (train split only, never evaluation): "
            "speed0.9, speed1.1 (Kaldi speed perturbation), pitch+2 / pitch-2 (semitones, Praat), noise20 "
            "(white noise at 20 dB SNR); each adds one copy of every training clip, as a new voice; none: off"
        },
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "loss weight per class from the training labels: none, balanced (n / (classes x n_c)) "
            "or sqrt (its square root: a gentler push toward the small classes)",
            "choices": CLASS_WEIGHTS,
        },
    )
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})

    def __post_init__(self):
        for name in (
            "eval_split",
            "labels",
        ):  # "--eval_split none" on the command line means None, as in YAML
            if str(getattr(self, name)).lower() in ("none", "null", ""):
                setattr(self, name, None)
        problems = check_recipe_config(self)
        try:
            augmentations = parse_augmentations(self.augment)
        except ConfigError as error:
            problems.append(str(error))
        else:
            if augmentations and self.route == "none":
                problems.append(
                    f"augment {self.augment!r} changes the audio, but route none shows no audio; use route "
                    f"text, tokens or both, or augment none"
                )
        if self.target in ("reasoning", "evidence") and asks_for_tags(self.strategy) is False:
            problems.append(
                f"target {self.target} needs a template that asks for <think>/<answer> (acoustic or cot); "
                f"{self.strategy!r} asks for the label only"
            )
        if self.target == "evidence" and self.route == "none":
            problems.append(
                "target evidence names measured voice cues, but route none shows the model no voice; use "
                "route text, tokens or both (with audio and transcripts, e.g. RAVDESS)"
            )
        check_config(self, problems)


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, adapter_args):
    """Run the recipe: the four dataclasses as :func:`make_parser` parses them."""
    training_args.remove_unused_columns = False  # the collator needs the prompt, completion and frames
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}  # ... and tokenises them itself
    set_seed(training_args.seed)  # before any projector is initialised

    # 1. Data: the labelled training utterances (a seeded draw of train_limit of them)
    labels, train = select_utterances(
        script_args.dataset, script_args.train_split, labels=parse_label_option(script_args.labels),
        limit=script_args.train_limit, seed=training_args.seed, data_root=script_args.data_root,
    )  # fmt: skip
    logger.warning(
        "training on %d utterances of %s/%s", len(train), script_args.dataset, script_args.train_split
    )
    #    ... plus augmented copies of their audio (each copy a new voice: its own per-speaker statistics);
    #    the evaluation in step 6 reads its own split, never these
    augmentations = parse_augmentations(script_args.augment)
    if augmentations:
        copies = augment_utterances(train, augmentations, seed=training_args.seed)
        logger.warning("augmentation %s: %d copies", ", ".join(a.name for a in augmentations), len(copies))
        train = train + copies

    # 2. Model: the base LLM (4-bit for QLoRA if asked) with, for the tokens routes, a fresh audio adapter;
    #    or an emollm checkpoint to continue, e.g. the projector-alignment stage (--use_peft false) whose
    #    projectors go on training here beside a new LoRA (two-stage training, as LLaVA's)
    start = model_args.model_name_or_path
    fresh = adapter_args.to_specs() if route_has_adapters(script_args.route) else []
    adapters = checkpoint_adapters(start) if is_checkpoint(start) else fresh
    last = last_checkpoint(training_args.output_dir)
    if last:  # before any work: a rerun with other adapters is refused at once
        check_resumable(last, adapters)
    lm, base_model, trained = load_policy(
        start, fresh, dtype=model_dtype(model_args), quantization_config=get_quantization_config(model_args)
    )
    prompts = PromptBuilder(
        lm.tokenizer, script_args.strategy, labels,
        context_turns=script_args.context_turns, placeholders=lm.placeholders,
    )  # fmt: skip

    # 3. What the model is shown: prosody descriptions (per-speaker normaliser fitted on the training
    #    speakers) and/or encoder frames (per-speaker statistics, if asked), both cached on disk
    descriptions, normalizer = {}, None
    if route_has_prosody(script_args.route) or script_args.target == "evidence":
        shown, _, normalizer = describe_utterances(
            train, style=script_args.prosody_style, workers=script_args.workers
        )
        descriptions = shown if route_has_prosody(script_args.route) else {}
    frames, frame_normalizers = ({}, {})
    if adapters:  # a checkpoint's statistics are kept (its projector learnt with them); fresh ones fitted
        frames, frame_normalizers = encode_utterances(lm, train, refit=not lm.frame_normalizers)
    #    ... and for target evidence, the rationales: a transparent model fitted on these utterances picks
    #    the cues that support each gold label for its speaker (saved with every checkpoint); a prompt that
    #    shows a description gets only cues it states
    evidence, rationales = None, None
    if script_args.target == "evidence":
        said = descriptions if route_has_prosody(script_args.route) else None
        evidence, rationales = build_evidence(train, normalizer, shown=said, workers=script_args.workers)
        logger.warning("evidence model: %s", json.dumps(evidence.record))
    examples = build_examples(
        train, prompts, target=script_args.target, prosody=descriptions, frames=frames, rationales=rationales
    )
    logger.warning("example prompt:\n%s%s", examples[0]["prompt"], examples[0]["completion"])

    # 4. Train: LoRA weights and projectors move, the base model and encoders do not
    model = trained  # a checkpoint's LoRA trains on; otherwise LoRA is added here
    if model is None:
        model = prepare_for_training(
            lm.model,
            get_peft_config(model_args),
            gradient_checkpointing=training_args.activation_checkpointing,
        )
    logger.warning("parameters: %s", json.dumps(count_parameters(model)))
    weights = None  # class weights for the loss (UA): fitted on the training labels only
    if script_args.class_weights != "none":
        weights = class_weights([u.label for u in train], script_args.class_weights)
        logger.warning("class weights (%s): %s", script_args.class_weights, json.dumps(weights))
    collator = MultimodalCollator(
        lm.tokenizer,
        lm.num_tokens,
        max_length=training_args.max_length,
        loss_weights=weights,
        frame_keys=lm.adapter_keys,
    )
    cut = collator.check(examples)  # a prompt that cannot fit fails here, not mid-epoch
    if cut:
        logger.warning(
            "%d of %d completions do not fit max_length=%d and will be cut at the end, the answer with "
            "them (first: %s); raise --max_length",
            len(cut), len(examples), training_args.max_length, ", ".join(map(str, cut[:5])),
        )  # fmt: skip
    reasoner_settings = {
        "labels": list(labels.labels),
        "strategy": script_args.strategy,
        "context_turns": script_args.context_turns,
        "prosody": route_has_prosody(script_args.route),
        "prosody_style": script_args.prosody_style,
        "mode": script_args.eval_mode,  # `emollm evaluate --model <checkpoint>` decodes as this run did
    }
    if script_args.target in ("reasoning", "evidence"):  # room to finish the longest rationale it learns
        longest = collator.longest_completion(examples)
        reasoner_settings["max_new_tokens"] = generation_budget(longest)
        logger.warning(
            "longest completion: %d tokens; the checkpoint generates up to %d (max_new_tokens)",
            longest, reasoner_settings["max_new_tokens"],
        )  # fmt: skip
    trainer = EmotionSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        processing_class=lm.tokenizer,
        base_model=base_model,
        adapters=adapters,
        reasoner_settings=reasoner_settings,
        frame_normalizers=frame_normalizers,  # the training speakers' (evaluation refits its own)
        projector_learning_rate=adapter_args.projector_learning_rate,
        training_record={
            "class_weights": script_args.class_weights,
            "loss_weights": weights,
            "augment": [a.name for a in augmentations],
            "augment_seed": training_args.seed,
            "train_utterances": len(train),
            "target": script_args.target,
            **({"evidence": {"file": EVIDENCE_NAME, **evidence.record}} if evidence else {}),
        },
        files={EVIDENCE_NAME: evidence.to_json()} if evidence else None,  # beside emollm_config.json
    )
    train_or_resume(trainer, last, training_args.max_steps)

    # 5. Save: LoRA adapter + projector weights + emollm_config.json (+ emollm_evidence.json) in output_dir
    trainer.save_model(training_args.output_dir)
    if not trainer.is_world_process_zero() or script_args.eval_split is None:
        return

    # 6. Evaluate the trained model with the harness; metrics land next to the checkpoint
    lm.model = trainer.model.eval()
    if script_args.target in ("reasoning", "evidence") and script_args.eval_mode == "score":
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
        labels=label_spec(labels),  # the training label set
        limit=script_args.eval_limit,
        data_root=script_args.data_root,
        prosody=route_has_prosody(script_args.route),
        prosody_style=script_args.prosody_style,
        workers=script_args.workers,
    )
    result = evaluate(config, lm=lm)
    logger.warning("evaluation: %s", json.dumps(result.summary.get("metrics", {}), default=str)[:500])
    print((Path(config.output) / "report.md").read_text(encoding="utf-8"))


def make_parser(prog: str | None = None):
    """The TRL argument parser of this recipe (YAML via ``--config``, any field overridable on the CLI).

    As TRL's scripts do (``trl/scripts/sft.py``): ``emollm sft`` registers the command and hands the rest
    of the command line to this parser.
    """
    dataclass_types = (ScriptArguments, SFTConfig, ModelConfig, AdapterArguments)
    return TrlParser(dataclass_types, prog=prog, description=__doc__.split("\n\n")[0])


def cli(args: list[str] | None = None) -> None:
    """``python recipes/sft.py`` (and ``accelerate launch`` of it): exactly ``emollm sft``, exit codes too.

    :func:`emollm.cli.main` parses with :func:`make_parser`, checks the output folder, runs :func:`main`,
    and prints an error as one line (exit 2) or an interrupt as how to resume (130). After success it
    destroys the process group: under accelerate launch, gloo's worker threads can abort the interpreter's
    exit (SIGABRT) unless that happens while Python is still alive (a no-op in a single process).
    """
    import sys

    from emollm.cli import main as emollm_main

    raise SystemExit(emollm_main(["sft", *(sys.argv[1:] if args is None else args)]))


if __name__ == "__main__":
    cli()
