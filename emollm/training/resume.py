"""Saving and resuming a training run: emollm checkpoints from inside a TRL trainer, and the resume step.

- :class:`EmollmCheckpointMixin` (SFT and GRPO trainers): every save (``checkpoint-N`` folders and the
  final ``save_model``) writes an emollm checkpoint: the PEFT adapter (Trainer's own save),
  ``projectors.safetensors`` and ``emollm_config.json`` (base model, adapters, reasoner settings,
  per-speaker frame statistics), so any checkpoint loads with ``EmotionReasoner.from_pretrained``,
  and a resumed run restores the projectors as well as the LoRA weights.
- :func:`last_checkpoint`, :func:`check_resumable`, :func:`finished` and :func:`train_or_resume`: what a
  recipe does with an ``output_dir`` that already holds checkpoints (resume, refuse other adapters, or load
  the last step's weights without training again).
- :func:`checkpoint_problems`: what a ``checkpoint-N`` folder lacks to be resumed from. ``Trainer`` writes
  a checkpoint file by file (weights, emollm's files, optimizer, scheduler, RNG state, ``trainer_state.json``
  last), so a run killed while saving leaves an incomplete folder; the rerun resumes from the newest
  complete one, and never with a fresh optimizer (it would end with other weights than an uncut run).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emollm.errors import ConfigError, ModelError
from emollm.modeling.adapters import AdapterSpec, get_projectors
from emollm.modeling.checkpoint import (
    CONFIG_NAME,
    PROJECTORS_NAME,
    load_projector_weights,
    read_checkpoint_config,
    save_checkpoint,
)

logger = logging.getLogger(__name__)


class EmollmCheckpointMixin:
    """Put before the TRL trainer in the bases: ``class T(EmollmCheckpointMixin, SFTTrainer)``.

    Args:
        base_model: Name or path of the base LLM, recorded in the checkpoint.
        adapters: The :class:`~emollm.modeling.adapters.AdapterSpec` list, recorded in the checkpoint.
        reasoner_settings: EmotionReasoner settings recorded in the checkpoint (labels, strategy, prosody...).
        frame_normalizers: modality -> per-speaker frame statistics fitted on the training clips (see
            :func:`emollm.inputs.encode_utterances`), recorded in the checkpoint.
        training_record: How the run trained (class weights, augmentation...), recorded in the checkpoint's
            ``training`` section.
    """

    def __init__(
        self,
        *args,
        base_model: str,
        adapters: Sequence = (),
        reasoner_settings: Mapping | None = None,
        frame_normalizers: Mapping | None = None,
        training_record: Mapping | None = None,
        **kwargs,
    ):
        self.base_model_name = base_model
        self.adapter_specs = list(adapters)
        self.reasoner_settings = dict(reasoner_settings or {})
        self.frame_normalizers = dict(frame_normalizers or {})  # a snapshot: later refits do not leak in
        self.training_record = dict(training_record or {})
        super().__init__(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super()._save(output_dir, state_dict=state_dict)  # the PEFT adapter, tokenizer and training args
        save_checkpoint(
            self.model,
            output_dir,
            base_model=self.base_model_name,
            adapters=self.adapter_specs,
            reasoner=self.reasoner_settings,
            save_lora=False,
            frame_normalizers=self.frame_normalizers,
            training=self.training_record,
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        projectors = get_projectors(model if model is not None else self.model)
        if projectors is not None:
            load_projector_weights(projectors, resume_from_checkpoint)


CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # transformers' checkpoint folders
LORA_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
NEEDS = (
    "a checkpoint is resumed from when it holds trainer_state.json, the weights, emollm_config.json and the "
    "optimizer and scheduler state (without them a resumed run would go on with a fresh optimizer and end "
    "with other weights than an uncut run)"
)


def checkpoint_problems(checkpoint) -> list[str]:
    """What the ``checkpoint-N`` folder lacks to be resumed from; an empty list when it is complete.

    Complete means: a readable ``trainer_state.json`` (``Trainer`` writes it last), a readable
    ``emollm_config.json``, the weights (the LoRA adapter, or the model when no LoRA was trained, and
    ``projectors.safetensors`` for the tokens routes), and the optimizer and scheduler state (DeepSpeed's
    own layout counts as both).

    >>> checkpoint_problems("no/such/checkpoint-3")[:2]
    ['no trainer_state.json', 'no emollm_config.json']
    """
    folder = Path(checkpoint)
    problems = []
    state = folder / "trainer_state.json"
    if not state.is_file():
        problems.append("no trainer_state.json")
    else:
        try:
            int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"trainer_state.json is unreadable ({type(err).__name__}: {err})")
    config = None
    if not (folder / CONFIG_NAME).is_file():
        problems.append(f"no {CONFIG_NAME}")
    else:
        try:
            config = read_checkpoint_config(folder)
        except ModelError as err:
            problems.append(str(err))
    lora = config.get("lora", True) if config is not None else None
    if lora and not _has_any(folder, LORA_WEIGHTS):
        problems.append(f"no LoRA weights ({LORA_WEIGHTS[0]})")
    elif lora is False and not (_has_any(folder, MODEL_WEIGHTS) or any(folder.glob("pytorch_model_fsdp*"))):
        problems.append(f"no model weights ({MODEL_WEIGHTS[0]})")
    if config is not None and config["adapters"] and not (folder / PROJECTORS_NAME).is_file():
        problems.append(f"no projector weights ({PROJECTORS_NAME})")
    deepspeed = (folder / "latest").is_file() and any(folder.glob("global_step*"))
    if not (deepspeed or _has_optimizer_state(folder)):
        problems.append("no optimizer state (optimizer.pt)")
    if not (deepspeed or (folder / "scheduler.pt").is_file()):
        problems.append("no scheduler state (scheduler.pt)")
    return problems


def _has_any(folder: Path, names) -> bool:
    return any((folder / name).is_file() for name in names)


def _has_optimizer_state(folder: Path) -> bool:
    """The files transformers' ``Trainer`` loads optimizer state from (plain, SageMaker, FSDP, XLA)."""
    if _has_any(folder, ("optimizer.pt", "optimizer.bin")):
        return True
    if any(folder.glob("optimizer.pt_*")) or any(folder.glob("rank*-of-*-optimizer.pt")):
        return True
    return folder.is_dir() and any(p.is_dir() and "optimizer" in p.name for p in folder.iterdir())


def last_checkpoint(output_dir) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir``, or None when there is none.

    Newer folders that :func:`checkpoint_problems` finds incomplete (a run killed while saving them) are
    skipped with a warning naming them and what they lack; they are left in place.

    Raises:
        ModelError: ``output_dir`` holds ``checkpoint-N`` folders but none is complete; the message names
            each with what it lacks, and the fix (delete them, or the whole output_dir, to start over).
    """
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = sorted(
        (int(match.group(1)), path)
        for path in out.iterdir()
        if (match := CHECKPOINT_RE.match(path.name)) and path.is_dir()
    )
    skipped = []
    for _, folder in reversed(found):
        problems = checkpoint_problems(folder)
        if not problems:
            if skipped:
                logger.warning(
                    "skipping incomplete checkpoint(s), cut while saving? %s; the newest complete checkpoint "
                    "is %s; you may delete the skipped folder(s)",
                    _describe(skipped),
                    folder,
                )
            return str(folder)
        skipped.append((folder, problems))
    if skipped:
        raise ModelError(
            f"{out} holds no complete checkpoint to resume from: {_describe(skipped)}; they were cut while "
            f"saving, or saved with --save_only_model; {NEEDS}. To start over, delete these folders (or the "
            "whole --output_dir), or use another --output_dir"
        )
    return None


def _describe(skipped) -> str:
    return "; ".join(f"{folder} ({', '.join(problems)})" for folder, problems in skipped)


def finished(checkpoint: str, max_steps: int) -> bool:
    """Whether ``checkpoint`` (a ``checkpoint-N`` folder) holds the run's last step.

    The last step is ``max_steps`` when set (> 0), else the step count the run planned.
    """
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    target = max_steps if max_steps > 0 else state.get("max_steps", 0)
    return target > 0 and state.get("global_step", 0) >= target


def check_resumable(checkpoint: str, adapters: Sequence[AdapterSpec]) -> None:
    """Refuse to resume ``checkpoint`` with other adapters than it was trained with (its weights won't fit).

    Raises:
        ConfigError: adapters added or removed (text/none vs tokens/both), or another encoder, projector,
            K or frame normalisation than the checkpoint's.
    """
    saved = [AdapterSpec(**a).to_dict() for a in read_checkpoint_config(checkpoint)["adapters"]]
    asked = [a.to_dict() for a in adapters]
    if saved != asked:
        raise ConfigError(
            f"{checkpoint} was trained with adapters {saved or 'none'}, but this run asks for "
            f"{asked or 'none'}; use another --output_dir, or the settings it was trained with"
        )


def load_trained_weights(model, checkpoint: str) -> None:
    """Load what training moves, the LoRA weights and the projectors, from ``checkpoint`` into ``model``.

    The base weights and encoders are frozen in every emollm run, so these are all a checkpoint adds. Only
    public PEFT calls (``load_peft_weights``, ``set_peft_model_state_dict``), into the active adapter.

    Raises:
        ModelError: the checkpoint's LoRA weights do not fit the model (another rank, or target modules the
            checkpoint lacks or the model lacks).
    """
    from peft import PeftModel, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    if isinstance(model, PeftModel):
        try:
            result = set_peft_model_state_dict(
                model, load_peft_weights(checkpoint), adapter_name=model.active_adapter
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"the LoRA weights in {checkpoint} do not fit this model: {exc}") from exc
        unexpected = list(getattr(result, "unexpected_keys", None) or [])
        missing = [k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k]
        if unexpected or missing:
            raise ModelError(
                f"the LoRA weights in {checkpoint} do not fit this model (other target modules?): "
                f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:2]})"
            )
    projectors = get_projectors(model)
    if projectors is not None:
        load_projector_weights(projectors, checkpoint)


def train_or_resume(trainer, checkpoint: str | None, max_steps: int) -> None:
    """Train, resume from ``checkpoint``, or load its weights when it already holds the last step.

    transformers' ``Trainer`` would take one more step from a checkpoint at ``max_steps``; a finished run is
    therefore not handed to ``train`` again, and a rerun of a finished recipe only saves and evaluates.

    Raises:
        ModelError: ``checkpoint`` is incomplete (see :func:`checkpoint_problems`), e.g. it has no optimizer
            state: training on from it would start a fresh optimizer.
    """
    problems = checkpoint_problems(checkpoint) if checkpoint else []
    if problems:
        raise ModelError(f"cannot resume from {checkpoint}: {', '.join(problems)}; {NEEDS}")
    if checkpoint and finished(checkpoint, max_steps):
        logger.warning("%s already holds the last step: not training again", checkpoint)
        load_trained_weights(trainer.model, checkpoint)
        return
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
