"""Any local GGUF file (llama.cpp, Ollama, LM Studio) as a model: header check, then dequantised once.

A ``.gguf`` file (what llama.cpp, Ollama and LM Studio users have on disk) is accepted wherever a model name
is. Its header's architecture is checked against those transformers loads (microseconds, before anything
slow), then it is dequantised once by transformers (``gguf_file=``) into the atomic cache of
:mod:`emollm.modeling.cache`, at ``$EMOLLM_CACHE/models/gguf-<sha256 prefix>``, keyed by the file's content.
:mod:`emollm.modeling.base` sends ``.gguf`` names here; the built-in model's conversion shares
:func:`_load_gguf`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import struct
import uuid
from pathlib import Path

from emollm.errors import ModelError
from emollm.modeling.cache import (
    CACHE_MARKER,
    _check_writable,
    _damaged,
    _folder_bytes,
    _sha256,
    cache_dir,
    check_cache,
    save_to_cache,
)

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GGUF_INDEX = "gguf-sources.json"  # path + size + mtime -> sha256, so an unchanged file is not hashed again
# llama.cpp's spelling of an architecture -> the one transformers lists (as load_gguf_checkpoint maps them)
_GGUF_ARCH_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "t5encoder": "t5",
}
# Byte sizes of GGUF's fixed-size value types (uint8 ... float64); 8 is a string, 9 an array.
_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def is_gguf_path(name_or_path: str) -> bool:
    """Whether ``name_or_path`` names a GGUF file (by its ``.gguf`` suffix, or by its first bytes).

    A path ending in ``.gguf`` (any case) that is not a folder counts, whether or not it exists (so a missing
    one gets a clear error), and so does an existing file that starts with the GGUF magic: Ollama keeps its
    models as ``~/.ollama/models/blobs/sha256-...``, without a suffix.

    >>> is_gguf_path("models/SmolLM2.Q4_K_M.GGUF"), is_gguf_path("org/model")
    (True, False)
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return False
    if str(name_or_path).lower().endswith(".gguf"):
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:  # missing, unreadable, or not a path at all (a hub id)
        return False


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` a GGUF file's header states, e.g. ``"llama"``.

    Only the metadata before that key is read (it is the first key in files llama.cpp writes), so this
    takes microseconds whatever the size of the file.

    Raises:
        ModelError: the file does not start with the GGUF magic, is a GGUF version other than 2 or 3, is
            cut short, or states no architecture.
    """
    try:
        with path.open("rb") as f:
            magic = f.read(4)
            if magic != GGUF_MAGIC:
                raise ModelError(
                    f"{path} is not a GGUF file: it starts with {magic!r}, a GGUF file with {GGUF_MAGIC!r}. "
                    "Pass a .gguf file as llama.cpp, Ollama or LM Studio write them, or a model folder."
                )
            (version,) = struct.unpack("<I", _read_exactly(f, 4))
            if version not in (2, 3):
                raise ModelError(
                    f"{path} is GGUF version {version}; versions 2 and 3 (little-endian) are supported. "
                    "Convert it again with a current llama.cpp."
                )
            _tensor_count, kv_count = struct.unpack("<QQ", _read_exactly(f, 16))
            for _ in range(kv_count):
                key = _read_gguf_string(f)
                (value_type,) = struct.unpack("<I", _read_exactly(f, 4))
                if key == "general.architecture" and value_type == 8:
                    return _read_gguf_string(f)
                _skip_gguf_value(f, value_type)
    except OSError as exc:
        raise ModelError(f"cannot read the GGUF file {path}: {exc}") from exc
    except (EOFError, UnicodeDecodeError, ValueError, struct.error) as exc:
        raise ModelError(f"{path} is a damaged GGUF file: its header cannot be read ({exc})") from exc
    raise ModelError(f"{path} states no general.architecture in its GGUF header, so it cannot be loaded")


def _read_exactly(f, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise EOFError(f"the file ends at byte {f.tell()}, inside its metadata")
    return data


def _read_gguf_string(f) -> str:
    (size,) = struct.unpack("<Q", _read_exactly(f, 8))
    if size > 1 << 30:
        raise ValueError(f"a string of {size} bytes at byte {f.tell() - 8}")
    return _read_exactly(f, size).decode("utf-8")


def _skip_gguf_value(f, value_type: int) -> None:
    if value_type in _GGUF_SCALAR_BYTES:
        f.seek(_GGUF_SCALAR_BYTES[value_type], os.SEEK_CUR)
    elif value_type == 8:
        (size,) = struct.unpack("<Q", _read_exactly(f, 8))
        f.seek(size, os.SEEK_CUR)
    elif value_type == 9:
        item_type, count = struct.unpack("<IQ", _read_exactly(f, 12))
        if item_type in _GGUF_SCALAR_BYTES:
            f.seek(_GGUF_SCALAR_BYTES[item_type] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_gguf_value(f, item_type)
    else:
        raise ValueError(f"unknown value type {value_type} at byte {f.tell() - 4}")


def gguf_supported_architectures() -> list[str] | None:
    """The GGUF architectures the installed transformers can load, or None if it does not say."""
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        return None
    return sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})  # sections, not models


def check_gguf_architecture(path: Path) -> str:
    """The architecture of GGUF file ``path``, checked against what transformers can load.

    Raises:
        ModelError: the file is not a readable GGUF, or its architecture is one transformers cannot load
            (the message names it and lists those it can).
    """
    architecture = gguf_architecture(path)
    supported = gguf_supported_architectures()
    if supported is None or architecture in supported or _GGUF_ARCH_ALIASES.get(architecture) in supported:
        return architecture
    import transformers

    raise ModelError(
        f"{path} is a GGUF model of architecture {architecture!r}, which transformers "
        f"{transformers.__version__} cannot load from GGUF. Supported architectures: {', '.join(supported)}. "
        "Use the model's Hugging Face folder or hub id instead, or a GGUF of a supported architecture."
    )


def gguf_cache_path(gguf: Path) -> Path:
    """Cache folder of GGUF file ``gguf``: ``$EMOLLM_CACHE/models/gguf-<first 16 hex of its sha256>``.

    The key is the file's content, so a renamed or copied file reuses its conversion and a changed one gets
    a new entry. Hashing reads the file in 1 MiB blocks (a 4 GB file takes seconds); the hash is then
    remembered in ``models/gguf-sources.json`` under the file's path, size, mtime and inode, and reused
    while those stay the same, as make and git do.
    """
    return _gguf_entry(_gguf_sha256(_existing_gguf(gguf)))


def _gguf_entry(sha256: str) -> Path:
    return cache_dir() / "models" / f"gguf-{sha256[:16]}"


def _existing_gguf(gguf: Path | str) -> Path:
    path = Path(gguf).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (resolved to {path.resolve()})"
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ModelError(
            f"GGUF file {str(gguf)!r}{where} {what}. Pass the path of a .gguf file, a model folder, a "
            "built-in name or a hub id."
        )
    return path


def _gguf_sha256(path: Path) -> str:
    import time

    path = path.expanduser().resolve()
    index_path = cache_dir() / "models" / GGUF_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    before = path.stat()
    stamp = {"bytes": before.st_size, "mtime_ns": before.st_mtime_ns, "inode": before.st_ino}
    known = index.get(str(path))
    if isinstance(known, dict) and isinstance(known.get("sha256"), str) and known.items() >= stamp.items():
        return known["sha256"]
    sha = _sha256(path)
    after = path.stat()
    # A file written within the last seconds might change again within the same mtime tick; only an
    # unchanged, settled file is remembered ("racy git").
    if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) and (
        time.time_ns() - after.st_mtime_ns > 2_000_000_000
    ):
        index[str(path)] = {**stamp, "sha256": sha}
        try:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_name(f".{GGUF_INDEX}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            tmp.write_text(json.dumps(index, indent=2), encoding="utf-8")
            os.replace(tmp, index_path)
        except OSError:  # only a shortcut: without it the file is hashed again next time
            pass
    return sha


def convert_gguf(gguf: Path | str, *, force: bool = False) -> Path:
    """Dequantise GGUF file ``gguf`` into the safetensors cache (once per content) and return the folder.

    The architecture is checked first, from the header; then the file is hashed (see
    :func:`gguf_cache_path`) and, if no entry has that key, loaded by transformers (``gguf_file=``) and
    written with :func:`save_to_cache`, whose marker records the source path, size and sha256.

    Args:
        gguf: Path of a ``.gguf`` file (any quantisation transformers dequantises: F32, F16, Q4_K, Q8_0 ...).
        force: Convert again even if a cache entry exists (the way to rebuild a damaged one).

    Raises:
        ModelError: the file is missing, not GGUF, of an architecture transformers cannot load, fails to
            convert (the message gives transformers' reason; nothing is left in the cache), or its cache
            entry is damaged (and ``force`` is false).

    >>> folder = convert_gguf("SmolLM2-360M-Instruct.Q8_0.gguf")  # doctest: +SKIP
    >>> folder.name  # doctest: +SKIP
    'gguf-3f1c0a9be2d47e61'
    """
    gguf = _existing_gguf(gguf)
    architecture = check_gguf_architecture(gguf)  # before the slow parts: hashing and converting
    sha256 = _gguf_sha256(gguf)
    target = _gguf_entry(sha256)
    if not force:
        state, problems = check_cache(target)
        if state == "damaged":
            raise _damaged(target, problems, str(gguf))
        if state in ("cached", "unverified"):
            return target
    _check_writable(target.parent)
    logger.warning("converting %s (%s) to a safetensors cache at %s (once)", gguf, architecture, target)
    try:
        model, tokenizer = _load_gguf(gguf)
    except ModelError:
        raise
    except Exception as exc:  # transformers' reasons come as ValueError, KeyError, NotImplementedError ...
        reason = " ".join(str(exc).split())[:500]
        raise ModelError(
            f"transformers could not convert the GGUF file {gguf} (architecture {architecture!r}): "
            f"{type(exc).__name__}: {reason}"
        ) from exc
    import transformers

    info = {
        "source": str(gguf.resolve()),
        "source_bytes": gguf.stat().st_size,
        "source_sha256": sha256,
        "architecture": architecture,
        "transformers": transformers.__version__,
    }
    try:
        return save_to_cache(model, tokenizer, target, info)
    except OSError as exc:
        raise ModelError(f"could not write the converted {gguf.name} to {target}: {exc}") from exc


def _load_gguf(gguf: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model as quantized; it is plain float32 after dequantisation, and
    # save_pretrained / Trainer refuse a model that still says it is quantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _gguf_row(folder: Path, *, hashes: bool) -> dict:
    state, problems = check_cache(folder, hashes=hashes)
    try:
        info = json.loads((folder / CACHE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    info = info if isinstance(info, dict) else {}
    source = str(info.get("source") or folder.name)
    present = Path(source).is_file()
    architecture = info.get("architecture", "unknown")
    size = f"{info['source_bytes'] / 2**20:.0f} MB, " if isinstance(info.get("source_bytes"), int) else ""
    gone = "" if present else "; the file is gone (the same content under another path reuses this entry)"
    return {
        "name": source,
        "default": False,
        "installed": present,
        "cached": state in ("cached", "unverified"),
        "state": state,
        "problems": problems,
        "repair": (
            f"emollm models --convert {shlex.quote(source)} --force"
            if state in ("damaged", "unverified") and present
            else None
        ),
        "cache_path": str(folder),
        "cache_mb": round(_folder_bytes(folder) / 2**20, 1),
        "install": None,
        "architecture": architecture,
        "description": f"{architecture} GGUF ({size}sha256 {folder.name.removeprefix('gguf-')}...), "
        f"dequantised to float32{gone}",
    }
