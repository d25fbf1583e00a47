"""What the encoders share: turning inputs into validated audio, and loading local Hugging Face models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emollm.audio import TARGET_SR, Audio, load_audio
from emollm.errors import ConfigError, ModelError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _as_audio(item) -> Audio:
    """A path, a 16 kHz array or tensor, or an :class:`Audio` -> validated 16 kHz :class:`Audio`."""
    if isinstance(item, Audio):
        if item.sample_rate == TARGET_SR:
            return item
        return load_audio(item.samples, sample_rate=item.sample_rate)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        return load_audio(item, sample_rate=TARGET_SR)
    if isinstance(item, (str, Path)):
        return load_audio(item)
    raise ConfigError(
        f"audio encoders take a file path, a 1-D array of 16 kHz samples or an emollm.audio.Audio, "
        f"got {type(item).__name__}"
    )


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, Path, np.ndarray, torch.Tensor, Audio)) or not isinstance(inputs, Sequence):
        raise ConfigError(
            f"encode() takes a sequence of inputs (a list, one per utterance), got {type(inputs).__name__}"
        )
    return list(inputs)


def _model_folder(path, kind: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"{kind} needs a local folder with config.json (a model saved with save_pretrained), got "
            f"{str(path)!r}; nothing is downloaded, so fetch hub models beforehand (huggingface-cli download)"
        )
    return folder.resolve()


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _load_pretrained(loader, folder: Path, **kwargs):
    try:
        return loader.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"could not load {loader.__name__} from {str(folder)!r}: {exc}") from exc


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
