"""Models: base-model loading (the offline default), the ``EmotionLM`` wrapper, label scoring, generation."""

from emollm.modeling.base import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    cache_dir,
    convert_builtin,
    list_models,
    load_base_model,
    resolve_model,
)
from emollm.modeling.emotion_lm import EmotionLM
from emollm.modeling.lm import generate, score_labels

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "EmotionLM",
    "cache_dir",
    "convert_builtin",
    "generate",
    "list_models",
    "load_base_model",
    "resolve_model",
    "score_labels",
]
