"""Models: base-model loading, ``EmotionLM``, label scoring, generation, adapters and checkpoints.

Adapters are encoders -> projectors -> pseudo-tokens (:mod:`emollm.modeling.adapters`,
:mod:`emollm.modeling.injection`); checkpoint files are :mod:`emollm.modeling.checkpoint`.
``encoders`` and ``projectors`` are imported on first use (``emollm.modeling.encoders``), so loading a
text-only model does not import librosa.
"""

from emollm.modeling.adapters import AdapterSpec, build_adapters
from emollm.modeling.base import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    cache_dir,
    convert_builtin,
    list_models,
    load_base_model,
    resolve_model,
)
from emollm.modeling.checkpoint import is_checkpoint, save_checkpoint
from emollm.modeling.emotion_lm import EmotionLM, load_checkpoint
from emollm.modeling.lm import generate, score_labels

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "AdapterSpec",
    "EmotionLM",
    "build_adapters",
    "is_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "cache_dir",
    "convert_builtin",
    "generate",
    "list_models",
    "load_base_model",
    "resolve_model",
    "score_labels",
]
