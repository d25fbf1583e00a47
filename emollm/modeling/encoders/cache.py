"""Encoder outputs cached on disk, one safetensors file per input, keyed by content and settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from emollm.audio import Audio
from emollm.errors import ConfigError, DataError
from emollm.modeling.encoders.common import _as_list

FRAMES_VERSION = 1
"""Part of every cache key of :func:`encode_cached`; bump it when an encoder's output changes."""


def _hash_path(path: Path, digest) -> None:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            _hash_path(file, digest)
        return
    if not path.is_file():
        raise DataError(f"input {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _hash_content(item, digest) -> None:
    from PIL import Image

    if isinstance(item, (str, Path)):
        _hash_path(Path(item).expanduser(), digest)
    elif isinstance(item, Audio):
        digest.update(f"audio:{item.sample_rate}".encode())
        digest.update(np.ascontiguousarray(item.samples).tobytes())
    elif isinstance(item, Image.Image):
        digest.update(f"image:{item.mode}:{item.size}".encode())
        digest.update(item.tobytes())
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        array = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
        digest.update(f"array:{array.dtype}:{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    elif isinstance(item, Mapping):  # e.g. {"audio": path, "transcript": text}
        for name in sorted(item):
            value = item[name]
            digest.update(f"field:{name}".encode())
            if value is None or (isinstance(value, str) and name != "audio"):
                digest.update(f"text:{value}".encode())
            else:
                _hash_content(value, digest)
    elif isinstance(item, Sequence):
        digest.update(f"list:{len(item)}".encode())
        for part in item:
            _hash_content(part, digest)
    else:
        raise ConfigError(f"cannot hash an input of type {type(item).__name__} for the cache; pass keys=")


def frames_cache_key(encoder, item=None, key: str | None = None) -> str:
    """SHA-256 of an input's content (or of ``key``), the encoder's name and settings, and the version.

    >>> from emollm.modeling.encoders import build_encoder
    >>> len(frames_cache_key(build_encoder("prosody_frames"), key="utt-001"))
    64
    """
    digest = hashlib.sha256()
    if key is not None:
        digest.update(f"key:{key}".encode())
    else:
        _hash_content(item, digest)
    setup = {"encoder": encoder.name, "settings": encoder.settings(), "version": FRAMES_VERSION}
    digest.update(json.dumps(setup, sort_keys=True).encode())
    return digest.hexdigest()


def _load_cached(path: Path, encoder) -> torch.Tensor | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensor = load_file(str(path))["features"]
    except (SafetensorError, OSError, KeyError):  # unreadable: encode again and overwrite
        return None
    return tensor if tensor.ndim == 2 and tensor.shape[1] == encoder.output_dim else None


def encode_cached(
    encoder,
    inputs: Sequence,
    cache_dir: str | Path | None = None,
    keys: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> list[torch.Tensor]:
    """``encoder.encode(inputs)``, with one safetensors file per input under ``cache_dir`` reused on reruns.

    An input's file is ``cache_dir/<encoder name>/<key>.safetensors``, ``key`` being
    :func:`frames_cache_key`: a hash of the input's content (file, folder, array or image bytes, not its
    path), the encoder's name and ``settings()``, and :data:`FRAMES_VERSION`. Changing any of them misses
    the cache. Inputs are encoded one at a time and each file is written atomically (temporary file, then
    ``os.replace``), so an interrupted run keeps what it finished and never leaves half a file. A model folder
    is identified by its path: after replacing the weights at the same path, clear the cache.

    Args:
        encoder: An encoder from :func:`build_encoder`.
        inputs: What ``encoder.encode`` accepts.
        cache_dir: Cache folder; None encodes without caching.
        keys: One string per input used instead of hashing its content (e.g. utterance ids, when hashing
            large videos is slow); they must be unique per content.
        progress: Show a tqdm progress bar.

    Returns:
        One float32 ``(frames, output_dim)`` tensor per input.

    Raises:
        ConfigError: ``keys`` does not match ``inputs`` in length.

    >>> import numpy as np, tempfile
    >>> from emollm.modeling.encoders import build_encoder
    >>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
    >>> encoder, cache = build_encoder("prosody_frames"), tempfile.mkdtemp()
    >>> first = encode_cached(encoder, [tone], cache)
    >>> bool(torch.equal(first[0], encode_cached(encoder, [tone], cache)[0]))
    True
    """
    from tqdm.auto import tqdm

    from emollm.io import atomic_path

    items = _as_list(inputs)
    if keys is not None and len(keys) != len(items):
        raise ConfigError(f"got {len(keys)} keys for {len(items)} inputs; give one key per input")
    if cache_dir is None:
        return encoder.encode(items)
    from safetensors.torch import save_file

    folder = Path(cache_dir).expanduser() / encoder.name
    metadata = {
        "encoder": encoder.name,
        "settings": json.dumps(encoder.settings()),
        "version": str(FRAMES_VERSION),
    }
    out = []
    for i, item in enumerate(
        tqdm(items, disable=not progress, desc=f"encoding ({encoder.name})", unit="input")
    ):
        key = frames_cache_key(encoder, item, None if keys is None else str(keys[i]))
        path = folder / f"{key}.safetensors"
        frames = _load_cached(path, encoder)
        if frames is None:
            frames = encoder.encode([item])[0]
            with atomic_path(path) as tmp:  # the tensor's key stays "features": the files cached so far
                save_file({"features": frames.contiguous()}, str(tmp), metadata=metadata)
        out.append(frames)
    return out
