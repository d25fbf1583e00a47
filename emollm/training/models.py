"""The model a recipe trains: a base LLM with fresh adapters, or a checkpoint to train further.

:func:`load_policy` gives either: SFT's start (a base model, or the projector-alignment stage's checkpoint)
and GRPO's (an SFT checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

from emollm.errors import ConfigError


def model_dtype(model_args):
    """TRL ``ModelConfig.dtype`` as :func:`emollm.modeling.load_base_model` takes it (None: float32)."""
    return model_args.dtype if model_args.dtype not in (None, "auto") else None


def checkpoint_adapters(path: str) -> list:
    """The :class:`~emollm.modeling.adapters.AdapterSpec` list a checkpoint was trained with (no weights)."""
    from emollm.modeling.adapters import AdapterSpec
    from emollm.modeling.checkpoint import read_checkpoint_config

    return [AdapterSpec(**spec) for spec in read_checkpoint_config(path)["adapters"]]


def load_policy(start: str, adapters: Sequence, *, dtype=None, quantization_config=None):
    """The model a recipe starts from: a checkpoint (kept trainable) or a base LLM with fresh ``adapters``.

    Args:
        start: A checkpoint folder (``emollm_config.json``) or a base model's name, folder or hub id.
        adapters: For a base model, the adapters to add; a checkpoint must have the same *kind* (adapters or
            none): its own specs are kept.

    Returns:
        ``(lm, base_model, trained)``: the :class:`~emollm.modeling.EmotionLM`, the base model's name, and
        the model to train when the checkpoint already holds LoRA weights (else None: LoRA is added later).

    Raises:
        ConfigError: a checkpoint with adapters for a route without them, or the reverse.
    """
    from emollm.modeling.checkpoint import is_checkpoint
    from emollm.modeling.emotion_lm import EmotionLM, load_checkpoint

    if not is_checkpoint(start):
        lm = EmotionLM.from_pretrained(
            start, adapters=adapters, dtype=dtype, quantization_config=quantization_config
        )
        return lm, start, None
    lm = load_checkpoint(start, dtype=dtype, trainable=True, quantization_config=quantization_config)
    if bool(lm.adapters) != bool(adapters):
        raise ConfigError(
            f"the route does not match the checkpoint {start}, which has "
            f"{'an audio adapter' if lm.adapters else 'no adapters'}; use route "
            f"{'tokens or both' if lm.adapters else 'text or none'}"
        )
    trained = lm.model if lm.checkpoint_config.get("lora") else None  # projector-only: LoRA added later
    return lm, lm.checkpoint_config["base_model"], trained
