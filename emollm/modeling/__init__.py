"""Models: base-model loading (the offline default), label scoring and generation."""

from emollm.modeling.base import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    cache_dir,
    convert_builtin,
    list_models,
    load_base_model,
    resolve_model,
)
from emollm.modeling.lm import generate, score_labels

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "cache_dir",
    "convert_builtin",
    "generate",
    "list_models",
    "load_base_model",
    "resolve_model",
    "score_labels",
]
