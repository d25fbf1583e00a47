"""Vowel-level prosody: align, measure, normalise per speaker, describe in words, plot.

The pipeline (see ``docs/prosody.md``)::

    audio + transcript ─► align (pocketsphinx | TextGrid | syllable nuclei) ─► vowels with stress and words
                       ─► measure (Praat: per-vowel F0, intensity, duration; rate, pauses, voice quality)
                       ─► normalize (speaker / corpus statistics fit on a training split)
                       ─► describe (a few sentences for a prompt)

>>> from emollm.prosody import describe_prosody, synthesize
>>> audio, _ = synthesize("Kids are talking by the door")
>>> text = describe_prosody(audio, "Kids are talking by the door")
>>> text.split(" (")[0]
'Speech rate is moderate'
"""

from emollm.prosody.align import align
from emollm.prosody.alignment import Alignment, Phone, Word
from emollm.prosody.features import ProsodyFeatures
from emollm.prosody.measure import MeasureConfig, measure
from emollm.prosody.pipeline import BatchResult, describe_prosody, extract_many, extract_prosody
from emollm.prosody.synth import synthesize

__all__ = [
    "Alignment",
    "BatchResult",
    "MeasureConfig",
    "Phone",
    "ProsodyFeatures",
    "Word",
    "align",
    "describe_prosody",
    "extract_many",
    "extract_prosody",
    "measure",
    "synthesize",
]
