"""Frozen modality encoders: audio or face frames in, one ``(frames, output_dim)`` float32 tensor out.

The front half of the adapter route (modality encoder -> learnable projector -> K pseudo-tokens in the
LLM's ``inputs_embeds``). Encoders are never trained: their parameters do not require gradients and they
stay in eval mode, so their outputs can be computed once and cached on disk with :func:`encode_cached`.

- ``prosody_frames`` (:class:`ProsodyFrameEncoder`): Praat pitch and intensity plus librosa spectral
  features, 22 columns at 25 frames per second; no weights, fast on a CPU.
- ``prosody_functionals`` (:class:`ProsodyFunctionalsEncoder`): one ``(1, 52)`` vector per utterance, the
  utterance and vowel measures of the prosody pipeline (given the transcript, vowel by vowel).
- ``hf_audio`` (:class:`HFAudioEncoder`): the frame outputs of a local wav2vec 2.0, HuBERT, WavLM or
  Whisper (encoder only) checkpoint.
- ``vision_frames`` (:class:`VisionFrameEncoder`): one pooled embedding per face frame from a local CLIP
  vision tower, ViT or other image model.

Every encoder has ``name`` (its key in :data:`ENCODERS`), ``output_dim``, ``settings()`` (JSON-ready
keyword arguments: ``build_encoder(enc.name, **enc.settings())`` rebuilds it) and ``encode(inputs)``.
Nothing is fetched from the network: model folders are read with ``local_files_only=True``.

One module per encoder (``prosody_frames.py``, ``prosody_functionals.py``, ``hf_audio.py``, ``vision.py``),
the on-disk cache in ``cache.py`` and what they share in ``common.py``; this module holds the registry and
:func:`pad_frames`, and every public name is importable from here.

>>> import numpy as np
>>> encoder = build_encoder("prosody_frames")
>>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
>>> features = encoder.encode([tone])
>>> tuple(features[0].shape)  # 1 s at 25 frames per second, 22 columns
(25, 22)
>>> batch, mask = pad_frames(features + [features[0][:10]])
>>> tuple(batch.shape), mask.sum(dim=1).tolist()
((2, 25, 22), [25, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emollm.errors import ConfigError
from emollm.modeling.encoders.cache import FRAMES_VERSION, encode_cached, frames_cache_key
from emollm.modeling.encoders.hf_audio import HFAudioEncoder
from emollm.modeling.encoders.prosody_frames import (
    FEATURE_CLIP,
    FEATURE_NAMES,
    FEATURE_SCALING,
    ProsodyFrameEncoder,
)
from emollm.modeling.encoders.prosody_functionals import ProsodyFunctionalsEncoder, functional_names
from emollm.modeling.encoders.vision import VisionFrameEncoder, read_video_frames, sample_indices

__all__ = [
    "ENCODERS",
    "FRAMES_VERSION",
    "FEATURE_CLIP",
    "FEATURE_NAMES",
    "FEATURE_SCALING",
    "HFAudioEncoder",
    "ProsodyFrameEncoder",
    "ProsodyFunctionalsEncoder",
    "VisionFrameEncoder",
    "build_encoder",
    "frames_cache_key",
    "encode_cached",
    "functional_names",
    "pad_frames",
    "read_video_frames",
    "sample_indices",
]

ENCODERS = {
    "prosody_frames": ProsodyFrameEncoder,
    "prosody_functionals": ProsodyFunctionalsEncoder,
    "hf_audio": HFAudioEncoder,
    "vision_frames": VisionFrameEncoder,
}
"""Encoder name -> class; :func:`build_encoder` looks names up here."""


def build_encoder(name: str, **kwargs) -> torch.nn.Module:
    """The frozen encoder registered as ``name``, built with ``kwargs``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or bad settings.

    >>> build_encoder("prosody_frames", frame_rate=50).settings()["frame_rate"]
    50.0
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODERS)}")
    try:
        return ENCODERS[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad settings for encoder {name!r}: {exc}") from exc


def pad_frames(frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, D)`` frame tensors into a zero-padded ``(B, T_max, D)`` batch and its mask.

    A zero-length input (``(0, D)``) gets no real frame: its row is all zeros with an all-False mask, and
    ``T_max`` is at least 1 so the batch is never empty along time (the projectors treat such a row as one
    zero frame).

    Returns:
        ``(batch, mask)``: ``batch`` in the inputs' dtype, ``mask`` a ``(B, T_max)`` bool tensor, True on
        real frames.

    Raises:
        ConfigError: no frames, a tensor that is not 2-D, or differing frame sizes.

    >>> batch, mask = pad_frames([torch.ones(3, 2), torch.ones(0, 2)])
    >>> tuple(batch.shape), mask.tolist()
    ((2, 3, 2), [[True, True, True], [False, False, False]])
    """
    tensors = [torch.as_tensor(f) for f in frames]
    if not tensors:
        raise ConfigError("pad_frames needs at least one frame tensor, got none")
    bad = [tuple(t.shape) for t in tensors if t.ndim != 2]
    sizes = {int(t.shape[1]) for t in tensors if t.ndim == 2}
    if bad or len(sizes) != 1:
        raise ConfigError(
            f"pad_frames needs 2-D (frames, dim) tensors of one frame size, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    lengths = [int(t.shape[0]) for t in tensors]
    batch = torch.zeros(len(tensors), max(1, *lengths), sizes.pop(), dtype=tensors[0].dtype)
    mask = torch.zeros(batch.shape[:2], dtype=torch.bool)
    for row, (tensor, length) in enumerate(zip(tensors, lengths)):
        batch[row, :length] = tensor
        mask[row, :length] = True
    return batch, mask
