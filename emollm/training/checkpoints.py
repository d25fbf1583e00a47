"""emollm checkpoints from inside a TRL trainer: the mixin SFT and GRPO share.

Every save (``checkpoint-N`` folders and the final ``save_model``) writes an emollm checkpoint: the PEFT
adapter (Trainer's own save), ``projectors.safetensors`` and ``emollm_config.json`` (base model, adapters,
reasoner settings, per-speaker frame statistics), so any checkpoint loads with
``EmotionReasoner.from_pretrained`` and a resumed run restores the projectors as well as the LoRA weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emollm.modeling.checkpoint import load_projector_weights, save_checkpoint
from emollm.modeling.emotion_lm import get_projectors


class EmollmCheckpointMixin:
    """Put before the TRL trainer in the bases: ``class T(EmollmCheckpointMixin, SFTTrainer)``.

    Args:
        base_model: Name or path of the base LLM, recorded in the checkpoint.
        adapters: The :class:`~emollm.modeling.emotion_lm.AdapterSpec` list, recorded in the checkpoint.
        reasoner_settings: EmotionReasoner settings recorded in the checkpoint (labels, strategy, prosody...).
        frame_normalizers: modality -> per-speaker frame statistics fitted on the training clips (see
            :meth:`emollm.modeling.EmotionLM.fit_frame_normalizers`), recorded in the checkpoint.
    """

    def __init__(
        self,
        *args,
        base_model: str,
        adapters: Sequence = (),
        reasoner_settings: Mapping | None = None,
        frame_normalizers: Mapping | None = None,
        **kwargs,
    ):
        self.base_model_name = base_model
        self.adapter_specs = list(adapters)
        self.reasoner_settings = dict(reasoner_settings or {})
        self.frame_normalizers = dict(frame_normalizers or {})  # a snapshot: later refits do not leak in
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
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        projectors = get_projectors(model if model is not None else self.model)
        if projectors is not None:
            load_projector_weights(projectors, resume_from_checkpoint)
