"""The safetensors cache of converted models: ``$EMOLLM_CACHE/models/<entry>``, atomic and checksummed.

A conversion (the built-in model, see :mod:`emollm.modeling.base`, or any ``.gguf`` file, see
:mod:`emollm.modeling.gguf`) writes tokenizer + safetensors with :func:`save_to_cache`. The write is atomic:
everything goes into a temporary folder beside the cache entry, which is renamed into place only once
complete, so an interrupted conversion never leaves a half-written cache. The marker file, written last,
records every file's size and sha256: each load checks the sizes (a few ``stat`` calls), ``emollm models``
also the hashes (~0.2 s for the 270 MB of the default model), and a damaged entry raises
:class:`~emollm.errors.ModelError` naming the folder and the command that rebuilds it
(``emollm models --convert NAME --force``) instead of a traceback from deep inside safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import uuid
from pathlib import Path

from emollm.errors import ConfigError, ModelError

CACHE_ENV = "EMOLLM_CACHE"
CACHE_MARKER = "emollm_cache.json"
# What an entry written before the marker listed its files must hold to be used at all.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


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


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
