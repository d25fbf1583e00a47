"""emollm: LLM-based emotion recognition and emotion reasoning.

Light names import at once; the ones that need torch or transformers load on first use, so
``import emollm`` stays fast.

>>> import emollm
>>> emollm.normalize_label("Joyful", "meld7")
'joy'
"""

from __future__ import annotations

import importlib

from emollm.errors import AlignmentError, AudioError, ConfigError, DataError, EmollmError, ModelError
from emollm.labels import LABEL_SETS, get_label_set, normalize_label

__version__ = "0.2.0"

# name -> module that defines it, imported on first attribute access
_LAZY = {
    "load_base_model": "emollm.modeling.base",
    "DEFAULT_MODEL": "emollm.modeling.base",
    "score_labels": "emollm.modeling.lm",
    "generate": "emollm.modeling.lm",
    "render_prompt": "emollm.prompting",
    "parse_completion": "emollm.parsing",
    "compute_metrics": "emollm.evaluation.metrics",
    "Utterance": "emollm.data",
    "load_corpus": "emollm.data",
    "load_audio": "emollm.audio",
    "transcribe": "emollm.asr",
    "Transcript": "emollm.asr",
    "extract_prosody": "emollm.prosody.pipeline",
    "describe_prosody": "emollm.prosody.pipeline",
    "extract_many": "emollm.prosody.pipeline",
    "ProsodyNormalizer": "emollm.prosody.normalize",
    "EmotionLM": "emollm.modeling.emotion_lm",
    "AdapterSpec": "emollm.modeling.adapters",
    "PromptBuilder": "emollm.inputs",
    "select_utterances": "emollm.inputs",
    "EmotionReasoner": "emollm.api",
    "EmotionPrediction": "emollm.api",
    "EvalConfig": "emollm.evaluation.harness",
    "evaluate": "emollm.evaluation.harness",
    "extract_claims": "emollm.reasoning",
    "verify_rationale": "emollm.reasoning",
    "neutralize": "emollm.prompting",
    "augment_utterances": "emollm.augment",
}

__all__ = [
    "LABEL_SETS",
    "AlignmentError",
    "AudioError",
    "ConfigError",
    "DataError",
    "EmollmError",
    "ModelError",
    "get_label_set",
    "normalize_label",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emollm' has no attribute {name!r}")
