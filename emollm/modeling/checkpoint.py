"""Checkpoint files: one folder holds everything a trained emotion model needs.

::

    checkpoint/
      emollm_config.json        base model, adapters (encoder + projector + K), label set, prompt strategy,
                                prosody settings: everything EmotionReasoner.from_pretrained needs
      adapter_config.json       the LoRA adapter (PEFT's own files), when LoRA was trained
      adapter_model.safetensors
      projectors.safetensors    the projectors' weights, keys "<modality>.<parameter>"

The base model is not copied: ``base_model`` names it (a built-in name, a local folder or a hub id), and
loading resolves it like any model name. Files are written to temporaries and renamed into place.

This module reads and writes the files; of emollm.modeling it imports only :mod:`emollm.modeling.adapters`.
:func:`emollm.modeling.emotion_lm.load_checkpoint` builds an ``EmotionLM`` from them (beside the class it
builds, so ``EmotionLM.from_pretrained`` can call it without an import cycle).

>>> is_checkpoint("no/such/folder"), CONFIG_NAME
(False, 'emollm_config.json')
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from emollm.errors import ModelError
from emollm.io import atomic_path, write_text_atomic
from emollm.modeling.adapters import get_projectors

CONFIG_NAME = "emollm_config.json"
PROJECTORS_NAME = "projectors.safetensors"
FORMAT_VERSION = 1


def is_checkpoint(path) -> bool:
    """Whether ``path`` is a folder holding an emollm checkpoint (an ``emollm_config.json``)."""
    try:
        return (Path(path).expanduser() / CONFIG_NAME).is_file()
    except (TypeError, OSError):
        return False


def read_checkpoint_config(path) -> dict:
    """The parsed ``emollm_config.json`` of checkpoint ``path``.

    Raises:
        ModelError: the file is missing, unreadable, or of a newer format than this emollm reads.
    """
    file = Path(path).expanduser() / CONFIG_NAME
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the checkpoint config {file}: {err}") from err
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{file} has format_version {version!r}; this emollm reads version {FORMAT_VERSION} "
            "(upgrade emollm?)"
        )
    for key in ("base_model", "adapters"):
        if key not in config:
            raise ModelError(f"{file} lacks the key {key!r}; is it an emollm checkpoint?")
    return config


def save_checkpoint(
    model,
    output_dir,
    *,
    base_model: str,
    adapters: Sequence = (),
    reasoner: Mapping | None = None,
    save_lora: bool = True,
    frame_normalizers: Mapping | None = None,
    training: Mapping | None = None,
) -> Path:
    """Write ``model``'s trainable parts and the config that rebuilds it into ``output_dir``.

    Args:
        model: The LLM (PEFT-wrapped when LoRA is trained; DDP wrappers are looked through) with its
            projectors attached (:func:`emollm.modeling.adapters.attach_projectors`).
        output_dir: The checkpoint folder (created if needed).
        base_model: Name or path the base model is loaded from.
        adapters: The :class:`~emollm.modeling.adapters.AdapterSpec` list (or their dicts).
        reasoner: EmotionReasoner settings to restore (labels, strategy, prosody...), JSON-serialisable.
        save_lora: Also save the PEFT adapter (set False when the caller, e.g. ``Trainer``, already did).
        frame_normalizers: modality -> :class:`~emollm.modeling.frame_norm.FrameNormalizer` (or its dict)
            fitted on the training clips, for adapters that normalise frames per speaker.
        training: How the weights were trained, for the record (class weights, augmentation...);
            JSON-serialisable, never read back to build the model.

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    has_lora = hasattr(model, "peft_config")
    if has_lora and save_lora:
        model.save_pretrained(str(out))
    projectors = get_projectors(model)
    if projectors is not None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in projectors.state_dict().items()}
        with atomic_path(out / PROJECTORS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = {
        "format_version": FORMAT_VERSION,
        "base_model": base_model,
        "lora": has_lora,
        "adapters": [a if isinstance(a, Mapping) else a.to_dict() for a in adapters],
        "reasoner": dict(reasoner or {}),
        "frame_normalizers": {
            m: n if isinstance(n, Mapping) else n.to_dict() for m, n in (frame_normalizers or {}).items()
        },
        "training": dict(training or {}),
    }
    write_text_atomic(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return out


def load_projector_weights(projectors: torch.nn.ModuleDict, checkpoint_dir) -> None:
    """Load ``projectors.safetensors`` from ``checkpoint_dir`` into ``projectors`` (strict).

    Raises:
        ModelError: the file is missing or its tensors do not fit the projectors (other settings).
    """
    from safetensors.torch import load_file

    file = Path(checkpoint_dir).expanduser() / PROJECTORS_NAME
    if not file.is_file():
        raise ModelError(f"{file} is missing: the checkpoint has adapters but no projector weights")
    state = load_file(str(file))
    try:
        projectors.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"projector weights in {file} do not fit the configured projectors: {err}") from err
