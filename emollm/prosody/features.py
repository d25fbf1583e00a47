"""What :func:`~emollm.prosody.measure.measure` returns: per-vowel and utterance measures, and their JSON.

:class:`ProsodyFeatures` holds one :class:`UtteranceMeasures`, one :class:`VowelMeasures` per vowel and the
:class:`~emollm.prosody.alignment.Alignment` they came from. Undefined measures are float NaN in memory and
null in JSON; :meth:`ProsodyFeatures.flat` gives a fixed set of named numbers for classifiers and tables.

>>> from emollm.prosody.measure import measure
>>> from emollm.prosody.synth import synthesize
>>> features = measure(*synthesize("Hello there"))
>>> ProsodyFeatures.from_dict(json.loads(features.to_json())).to_json() == features.to_json()
True
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from emollm.io import write_text_atomic
from emollm.prosody.alignment import Alignment

VOWEL_AGGREGATES = (
    "duration",
    "f0_mean_st",
    "f0_range",
    "f0_slope_st",
    "intensity_mean_db",
    "voiced_fraction",
)
NAN = float("nan")


@dataclass
class VowelMeasures:
    """Measures of one vowel; F0 fields are NaN when none of its pitch frames is voiced.

    Attributes:
        phone: ARPAbet vowel (``"AO"``), or :data:`emollm.prosody.alignment.NUCLEUS` for a syllable nucleus.
        stress: Lexical stress (0, 1, 2), None when unknown.
        word: The word it belongs to, if known.
        word_index: Index of that word in the alignment.
        start: Start time, seconds.
        end: End time, seconds.
        duration: ``end - start``, seconds.
        f0_mean_hz: Mean F0 of the voiced frames, Hz.
        f0_min_hz: Lowest F0, Hz.
        f0_max_hz: Highest F0, Hz.
        f0_slope_hz: Slope of the least-squares line through the voiced frames, Hz/s (NaN below 2 frames).
        f0_mean_st: Mean F0 in semitones re 100 Hz (the mean of the frames' semitones).
        f0_min_st: Lowest F0, semitones.
        f0_max_st: Highest F0, semitones.
        f0_slope_st: Least-squares slope, semitones per second.
        intensity_mean_db: Energy-averaged intensity, dB.
        intensity_max_db: Highest intensity frame, dB.
        voiced_fraction: Share of the pitch frames inside the vowel that are voiced (0-1).
    """

    phone: str
    stress: int | None
    word: str | None
    word_index: int | None
    start: float
    end: float
    duration: float
    f0_mean_hz: float
    f0_min_hz: float
    f0_max_hz: float
    f0_slope_hz: float
    f0_mean_st: float
    f0_min_st: float
    f0_max_st: float
    f0_slope_st: float
    intensity_mean_db: float
    intensity_max_db: float
    voiced_fraction: float


@dataclass
class UtteranceMeasures:
    """Measures of the whole utterance (F0, intensity and voice quality over the speech only).

    Attributes:
        duration: Length of the audio, seconds.
        speech_duration: ``duration`` minus pauses and leading and trailing silence, seconds.
        n_vowels: Number of vowels (or syllable nuclei) in the alignment.
        f0_mean_hz: Mean F0 of the voiced frames, Hz.
        f0_std_hz: Standard deviation of F0, Hz.
        f0_min_hz: Lowest F0, Hz.
        f0_max_hz: Highest F0, Hz.
        f0_mean_st: Mean F0, semitones re 100 Hz.
        f0_std_st: Standard deviation of F0, semitones.
        f0_range_st: Robust F0 range: 95th minus 5th percentile, semitones.
        intensity_mean_db: Energy-averaged intensity, dB.
        intensity_max_db: Highest intensity frame, dB.
        intensity_range_db: 95th minus 5th percentile of intensity, dB.
        speech_rate: Vowels per second of ``duration``.
        articulation_rate: Vowels per second of ``speech_duration``.
        pause_count: Silent gaps of at least ``min_pause`` strictly inside the speech.
        pause_ratio: Total pause time divided by ``duration``.
        jitter_local: Praat's local jitter (fraction).
        shimmer_local: Praat's local shimmer (fraction).
        hnr_db: Mean harmonics-to-noise ratio of Praat's Harmonicity (cc) over its defined frames, dB.
        pitch_floor: The pitch floor used, Hz.
        pitch_ceiling: The pitch ceiling used, Hz.
    """

    duration: float
    speech_duration: float
    n_vowels: int
    f0_mean_hz: float
    f0_std_hz: float
    f0_min_hz: float
    f0_max_hz: float
    f0_mean_st: float
    f0_std_st: float
    f0_range_st: float
    intensity_mean_db: float
    intensity_max_db: float
    intensity_range_db: float
    speech_rate: float
    articulation_rate: float
    pause_count: int
    pause_ratio: float
    jitter_local: float
    shimmer_local: float
    hnr_db: float
    pitch_floor: float
    pitch_ceiling: float


def _from_json_dict(cls, data: dict):
    floats = {f.name for f in fields(cls) if f.type in ("float", float)}
    return cls(**{k: NAN if v is None and k in floats else v for k, v in data.items()})


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


@dataclass
class ProsodyFeatures:
    """Everything :func:`measure` found in one utterance.

    Attributes:
        utterance: Utterance-level measures.
        vowels: One :class:`VowelMeasures` per vowel of the alignment, in time order.
        alignment: The alignment the vowels came from.
        speaker: Speaker id, for per-speaker normalisation.
        source: Where the audio came from.
        notes: Human-readable notes on degradations (no vowels, unvoiced vowels, fallbacks).
    """

    utterance: UtteranceMeasures
    vowels: list[VowelMeasures]
    alignment: Alignment
    speaker: str | None = None
    source: str = "<array>"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A plain dict; undefined measures stay float NaN (:meth:`to_json` writes them as null).

        >>> from emollm.prosody.measure import measure
        >>> from emollm.prosody.synth import synthesize
        >>> sorted(measure(*synthesize("Hello there")).to_dict())
        ['alignment', 'notes', 'source', 'speaker', 'utterance', 'vowels']
        """
        return {
            "utterance": asdict(self.utterance),
            "vowels": [asdict(v) for v in self.vowels],
            "alignment": self.alignment.to_dict(),
            "speaker": self.speaker,
            "source": self.source,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ProsodyFeatures:
        """Rebuild from :meth:`to_dict` output or parsed :meth:`to_json` (null measures become NaN).

        >>> from emollm.prosody.measure import measure
        >>> from emollm.prosody.synth import synthesize
        >>> features = measure(*synthesize("Hello there"))
        >>> ProsodyFeatures.from_dict(json.loads(features.to_json())).to_json() == features.to_json()
        True
        """
        return cls(
            utterance=_from_json_dict(UtteranceMeasures, data["utterance"]),
            vowels=[_from_json_dict(VowelMeasures, v) for v in data.get("vowels", [])],
            alignment=Alignment.from_dict(data["alignment"]),
            speaker=data.get("speaker"),
            source=data.get("source", "<array>"),
            notes=list(data.get("notes", [])),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON with NaN as null; given ``path``, also write it atomically (temp file + rename).

        >>> from emollm.prosody.measure import measure
        >>> from emollm.prosody.synth import synthesize
        >>> json.loads(measure(*synthesize("Hello there")).to_json())["utterance"]["n_vowels"]
        3
        """
        text = json.dumps(_nan_to_none(self.to_dict()), allow_nan=False)
        if path is not None:
            write_text_atomic(path, text)
        return text

    def flat(self) -> dict[str, float]:
        """A fixed set of named numbers for classifiers and tables (NaN where undefined).

        Keys: every utterance field as ``utt_<field>``; ``vowel_<m>_<mean|std|min|max>`` over all vowels and
        ``stressed_vowel_<m>_mean`` over primary-stressed vowels, for ``m`` in :data:`VOWEL_AGGREGATES`
        (``f0_range`` is ``f0_max_st - f0_min_st`` of each vowel). NaN vowel values are left out.

        >>> from emollm.prosody.measure import measure
        >>> from emollm.prosody.synth import synthesize
        >>> flat = measure(*synthesize("Hello there")).flat()
        >>> len(flat), flat["utt_n_vowels"]
        (52, 3.0)
        """
        out = {f"utt_{k}": float(v) for k, v in asdict(self.utterance).items()}
        stressed = [v for v in self.vowels if v.stress == 1]
        for prefix, vowels, stats in (
            ("vowel", self.vowels, "mean std min max"),
            ("stressed_vowel", stressed, "mean"),
        ):
            for name in VOWEL_AGGREGATES:
                values = np.array(
                    [v.f0_max_st - v.f0_min_st if name == "f0_range" else getattr(v, name) for v in vowels],
                    float,
                )
                values = values[np.isfinite(values)]
                for stat in stats.split():
                    out[f"{prefix}_{name}_{stat}"] = float(getattr(np, stat)(values)) if values.size else NAN
        return out
