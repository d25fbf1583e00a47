"""Saving and resuming a training run: emollm checkpoints from inside a TRL trainer, and the resume step.

- :class:`EmollmCheckpointMixin` (SFT and GRPO trainers): every save (``checkpoint-N`` folders and the
  final ``save_model``) writes an emollm checkpoint: the PEFT adapter (Trainer's own save),
  ``projectors.safetensors`` and ``emollm_config.json`` (base model, adapters, reasoner settings,
  per-speaker frame statistics), so any checkpoint loads with ``EmotionReasoner.from_pretrained``,
  and a resumed run restores the projectors as well as the LoRA weights.
- :func:`last_checkpoint`, :func:`check_resumable`, :func:`finished` and :func:`train_or_resume`: what a
  recipe does with an ``output_dir`` that already holds checkpoints (resume, refuse other adapters, or load
  the last step's weights without training again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from emollm.errors import ConfigError, ModelError
from emollm.modeling.adapters import AdapterSpec, get_projectors
from emollm.modeling.checkpoint import load_projector_weights, read_checkpoint_config, save_checkpoint

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


def last_checkpoint(output_dir) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir``, or None (also when the folder does not exist)."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


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
    """
    if checkpoint and finished(checkpoint, max_steps):
        logger.warning("%s already holds the last step: not training again", checkpoint)
        load_trained_weights(trainer.model, checkpoint)
        return
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
