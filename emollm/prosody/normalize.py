"""Speaker and corpus normalisation of prosodic measures, fit on a training split only.

Raw measures say little on their own: 200 Hz is high for one speaker and low for another, and recording gain
shifts every decibel. :class:`ProsodyNormalizer` learns means and standard deviations per speaker and over
the whole training corpus from ``fit()``'s inputs, turns measures into z-scores, and bins each z-score
``"low"`` / ``"mid"`` / ``"high"`` at the 1/3 and 2/3 quantiles of the *training* z-scores. ``transform``
never updates anything, so fitting on one split and applying it to another cannot leak.

``NormalizedProsody.reference`` says what the z-scores are relative to:

* ``"speaker"``: a speaker seen in training with enough data. Utterance and vowel z-scores are relative to
  that speaker (``intensity_mean_db`` always to the corpus: it mostly measures recording gain).
* ``"corpus"``: an unknown speaker, or one with too little training data. Utterance z-scores are relative to
  the training corpus; vowel z-scores to the utterance's own vowels (corpus vowel statistics mix speakers).
* ``"utterance"``: no normaliser at all (:func:`utterance_relative`). Vowels are relative to the utterance's
  own vowels; utterance-level quantities keep their raw values (``utterance_raw``) and get no z (NaN).

Vowel quantities (:data:`VOWEL_QUANTITIES`):

* ``log_duration``: log of the duration (durations are skewed; their log is close to normal). Vowel identity
  and stress change duration as much as emphasis does (/AA1/ is long, /IH0/ short), so within a speaker it
  is normalised per *vowel class* (phone plus stressed/unstressed, e.g. ``"AA1"``) when the speaker has at
  least ``min_vowels_per_class`` vowels of that class in training, else over all of the speaker's vowels.
* ``f0_mean_st``, ``f0_movement_st`` (max - min, semitones), ``f0_slope_st`` (semitones per second).
* ``intensity_rel_db``: the vowel's mean intensity minus the mean over the utterance's vowels, *before* any
  statistic: recording gain differs between files and would otherwise swamp real loudness differences.

Statistics are NaN-aware everywhere: an unvoiced vowel keeps NaN pitch z-scores and never poisons a mean.
A speaker's utterance statistic without spread (fewer than two finite values, or all equal) falls back to
the corpus. Vowel z-scores divide by at least :data:`STD_FLOORS` (about a just-noticeable difference), so
inaudible differences never become large z-scores. Standard deviations are population ones (``ddof=0``).

>>> from emollm.prosody.measure import measure
>>> from emollm.prosody.synth import synthesize
>>> def speech(pitch):
...     return measure(*synthesize("Kids are talking by the door", pitch=pitch), speaker="m1")
>>> norm = ProsodyNormalizer(min_vowels_per_speaker=10, min_utterances_per_speaker=3)
>>> norm = norm.fit([speech(0.8), speech(1.0), speech(1.2)])
>>> out = norm.transform(speech(1.4))
>>> out.reference, out.utterance_bins["f0_mean_st"]
('speaker', 'high')
>>> norm.transform(speech(1.4), speaker="a stranger").reference
'corpus'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emollm.errors import ConfigError, DataError
from emollm.io import write_text_atomic

VOWEL_QUANTITIES = ("log_duration", "f0_mean_st", "f0_movement_st", "f0_slope_st", "intensity_rel_db")
UTTERANCE_QUANTITIES = (
    "f0_mean_st",
    "f0_std_st",
    "f0_range_st",
    "intensity_range_db",
    "speech_rate",
    "articulation_rate",
    "pause_ratio",
    "jitter_local",
    "shimmer_local",
    "hnr_db",
    "intensity_mean_db",
)
CORPUS_ONLY = ("intensity_mean_db",)  # gain-dependent: never normalised per speaker
REFERENCES = ("speaker", "corpus", "utterance")
# (reference, level) pairs with their own bin cut points: each bins z-scores against training z-scores that
# were computed the same way (speaker-relative, corpus-relative, utterance-relative).
CUT_KEYS = (("speaker", "utterance"), ("speaker", "vowel"), ("corpus", "utterance"), ("utterance", "vowel"))
DEFAULT_CUTS = (-0.4307, 0.4307)  # tertiles of a standard normal; used when training gave too few z-scores
MIN_CUT_SAMPLES = 10  # fewer finite training z-scores than this: DEFAULT_CUTS
# Smallest standard deviation a vowel z-score divides by, about a just-noticeable difference: 10 % in
# duration, 1 semitone in pitch, 5 st/s in slope, 1 dB in loudness. Without it, an utterance (or a speaker)
# with almost no variation would turn inaudible differences into large z-scores.
STD_FLOORS = {
    "log_duration": 0.1,
    "f0_mean_st": 1.0,
    "f0_movement_st": 1.0,
    "f0_slope_st": 5.0,
    "intensity_rel_db": 1.0,
}
MIN_UTTERANCE_VOWELS = 3  # utterance-relative z needs at least this many finite values, else NaN
THRESHOLDS = ("min_vowels_per_speaker", "min_utterances_per_speaker", "min_vowels_per_class")
PARTS = ("utterance", "vowel", "duration_by_class")  # the statistics kept per speaker
FORMAT = "emollm.prosody.normalizer"
VERSION = 1
NAN = float("nan")

Stats = dict[str, float]  # {"mean": ..., "std": ..., "n": ...}


@dataclass
class NormalizedProsody:
    """Z-scores and bins of one utterance (see the module docstring for the references).

    Attributes:
        reference: ``"speaker"``, ``"corpus"`` or ``"utterance"``: what the z-scores are relative to.
        utterance: Z-score per :data:`UTTERANCE_QUANTITIES` (NaN when undefined or not normalised).
        utterance_bins: ``"low"`` / ``"mid"`` / ``"high"`` per quantity with a finite z-score.
        vowels: One dict of z-scores per :data:`VOWEL_QUANTITIES`, aligned with ``features.vowels``.
        vowel_bins: One dict of bins per vowel (quantities with a finite z-score only).
        utterance_raw: Raw utterance-level values (``speech_rate`` in vowels/s, ``f0_std_st`` ...).
        speaker: The speaker looked up, if any.
    """

    reference: str
    utterance: dict[str, float] = field(default_factory=dict)
    utterance_bins: dict[str, str] = field(default_factory=dict)
    vowels: list[dict[str, float]] = field(default_factory=list)
    vowel_bins: list[dict[str, str]] = field(default_factory=list)
    utterance_raw: dict[str, float] = field(default_factory=dict)
    speaker: str | None = None

    @property
    def vowel_reference(self) -> str:
        """``"speaker"`` when vowel z-scores are relative to the speaker, else ``"utterance"``."""
        return "speaker" if self.reference == "speaker" else "utterance"

    def flat(self) -> dict[str, float]:
        """Fixed-length features for probes: utterance z-scores and the mean/max/min of each vowel z-score.

        >>> NormalizedProsody("utterance", vowels=[{"log_duration": 1.0}, {"log_duration": -1.0}]).flat()[
        ...     "z_vowel_log_duration_max"]
        1.0
        """
        out = {f"z_utt_{q}": float(self.utterance.get(q, NAN)) for q in UTTERANCE_QUANTITIES}
        for q in VOWEL_QUANTITIES:
            values = _finite([v.get(q, NAN) for v in self.vowels])
            for name, fn in (("mean", np.mean), ("max", np.max), ("min", np.min)):
                out[f"z_vowel_{q}_{name}"] = float(fn(values)) if values.size else NAN
        return out

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN written as None)."""
        return _nan_to_none(asdict(self))


class ProsodyNormalizer:
    """Per-speaker and corpus statistics of prosodic measures, fit on training data, saved as JSON.

    Args:
        min_vowels_per_speaker: A speaker needs this many training vowels to get its own statistics.
        min_utterances_per_speaker: ... and this many training utterances (utterance-level standard
            deviations need several utterances).
        min_vowels_per_class: Vowels of one class (e.g. ``"AA1"``) a speaker needs for class-specific
            duration statistics; below it, the speaker's statistics over all vowels are used.

    Raises:
        ConfigError: a threshold below 1.

    >>> ProsodyNormalizer().speakers
    []
    """

    def __init__(
        self,
        *,
        min_vowels_per_speaker: int = 50,
        min_utterances_per_speaker: int = 5,
        min_vowels_per_class: int = 10,
    ):
        for name, value in (
            ("min_vowels_per_speaker", min_vowels_per_speaker),
            ("min_utterances_per_speaker", min_utterances_per_speaker),
            ("min_vowels_per_class", min_vowels_per_class),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        self.min_vowels_per_speaker = min_vowels_per_speaker
        self.min_utterances_per_speaker = min_utterances_per_speaker
        self.min_vowels_per_class = min_vowels_per_class
        self.corpus: dict[str, Stats] | None = None  # utterance-level statistics over the whole training set
        self.speaker_stats: dict[str, dict] = {}  # speaker -> {"n_vowels", "n_utterances", *PARTS}
        self.cuts: dict[str, dict[str, dict[str, list[float]]]] = {}  # reference -> level -> quantity -> cuts

    @property
    def speakers(self) -> list[str]:
        """Speakers with their own statistics, sorted."""
        return sorted(self.speaker_stats)

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self.corpus is not None

    def fit(self, features: Sequence, speakers: Sequence[str | None] | None = None) -> ProsodyNormalizer:
        """Learn corpus and per-speaker statistics and bin cut points from ``features`` (the training split).

        Args:
            features: ``ProsodyFeatures`` of the training utterances.
            speakers: One speaker id (or None) per item; defaults to each item's ``speaker``.

        Returns:
            ``self``, fitted; earlier statistics are discarded.

        Raises:
            DataError: no training items.
            ConfigError: ``speakers`` is not as long as ``features``.
        """
        items = list(features)
        if not items:
            raise DataError("ProsodyNormalizer.fit() needs at least one ProsodyFeatures, got none")
        ids = [getattr(f, "speaker", None) for f in items] if speakers is None else list(speakers)
        if len(ids) != len(items):
            raise ConfigError(f"fit() got {len(items)} features but {len(ids)} speakers; pass one per item")
        ids = [None if s is None else str(s) for s in ids]
        self.corpus = {q: _stats([_utterance_value(f, q) for f in items]) for q in UTTERANCE_QUANTITIES}
        self.speaker_stats = {}
        for speaker in sorted({s for s in ids if s is not None}):
            mine = [f for f, s in zip(items, ids) if s == speaker]
            vowels = [_vowel_values(f) for f in mine]
            n_vowels = sum(len(f.vowels) for f in mine)
            if n_vowels < self.min_vowels_per_speaker or len(mine) < self.min_utterances_per_speaker:
                continue
            classes = np.concatenate([_vowel_classes(f) for f in mine])
            log_durations = np.concatenate([v["log_duration"] for v in vowels])
            by_class = {c: _stats(log_durations[classes == c]) for c in sorted(set(classes.tolist()))}
            self.speaker_stats[speaker] = {
                "n_utterances": len(mine),
                "n_vowels": n_vowels,
                "utterance": {
                    q: _stats([_utterance_value(f, q) for f in mine])
                    for q in UTTERANCE_QUANTITIES
                    if q not in CORPUS_ONLY
                },
                "vowel": {q: _stats(np.concatenate([v[q] for v in vowels])) for q in VOWEL_QUANTITIES},
                "duration_by_class": {
                    c: s for c, s in by_class.items() if s["n"] >= self.min_vowels_per_class
                },
            }
        pooled: dict[tuple[str, str], dict[str, list[float]]] = {key: {} for key in CUT_KEYS}

        def pool(key: tuple[str, str], rows: list[dict[str, float]]) -> None:
            for row in rows:
                for q, z in row.items():
                    pooled[key].setdefault(q, []).append(z)

        for item, speaker in zip(items, ids):
            out = self._zscores(item, speaker)
            if out.reference == "speaker":
                pool(("speaker", "utterance"), [out.utterance])
                pool(("speaker", "vowel"), out.vowels)
            pool(
                ("corpus", "utterance"),
                [{q: _z(_utterance_value(item, q), self.corpus[q]) for q in self.corpus}],
            )
            pool(("utterance", "vowel"), _utterance_relative_z(item))
        self.cuts = {}
        for (reference, level), bucket in pooled.items():
            self.cuts.setdefault(reference, {})[level] = {q: _cuts(v) for q, v in sorted(bucket.items())}
        return self

    def transform(self, features, speaker: str | None = None) -> NormalizedProsody:
        """Z-scores and bins of one utterance; statistics are read, never updated.

        Args:
            features: ``ProsodyFeatures`` of the utterance.
            speaker: Speaker id; defaults to ``features.speaker``. Unknown speakers: ``reference="corpus"``.

        Raises:
            ConfigError: the normaliser is not fitted.
        """
        if not self.is_fitted:
            raise ConfigError("ProsodyNormalizer is not fitted: call fit(train_features) or load(path) first")
        speaker = speaker if speaker is not None else getattr(features, "speaker", None)
        out = self._zscores(features, None if speaker is None else str(speaker))
        utt_cuts = self.cuts.get(out.reference, {}).get("utterance", {})
        vowel_cuts = self.cuts.get(out.vowel_reference, {}).get("vowel", {})
        out.utterance_bins = _bins(out.utterance, utt_cuts)
        out.vowel_bins = [_bins(row, vowel_cuts) for row in out.vowels]
        return out

    def _zscores(self, features, speaker: str | None) -> NormalizedProsody:
        """Unbinned z-scores of ``features`` under the reference its speaker gets."""
        assert self.corpus is not None
        own = self.speaker_stats.get(speaker) if speaker is not None else None
        utterance = {}
        for q in UTTERANCE_QUANTITIES:
            stats = own["utterance"].get(q) if own is not None else None
            if stats is None or not _usable(stats):
                stats = self.corpus[q]
            utterance[q] = _z(_utterance_value(features, q), stats)
        if own is None:
            vowels = _utterance_relative_z(features)
        else:
            values, classes = _vowel_values(features), _vowel_classes(features)
            vowels = []
            for i, vowel_class in enumerate(classes):
                row = {q: _z(float(values[q][i]), own["vowel"][q], STD_FLOORS[q]) for q in VOWEL_QUANTITIES}
                class_stats = own["duration_by_class"].get(vowel_class)
                if class_stats is not None and _usable(class_stats):
                    row["log_duration"] = _z(
                        float(values["log_duration"][i]), class_stats, STD_FLOORS["log_duration"]
                    )
                vowels.append(row)
        return NormalizedProsody(
            reference="speaker" if own is not None else "corpus",
            utterance=utterance,
            vowels=vowels,
            utterance_raw={q: _utterance_value(features, q) for q in UTTERANCE_QUANTITIES},
            speaker=speaker,
        )

    def to_dict(self) -> dict:
        """The fitted state as a JSON-ready dict (see :meth:`from_dict`)."""
        return _nan_to_none(
            {
                "format": FORMAT,
                "version": VERSION,
                **{name: getattr(self, name) for name in THRESHOLDS},
                "corpus": self.corpus,
                "speakers": self.speaker_stats,
                "cuts": self.cuts,
            }
        )

    @classmethod
    def from_dict(cls, data: dict) -> ProsodyNormalizer:
        """Rebuild a fitted normaliser from :meth:`to_dict` output.

        Raises:
            DataError: not a normaliser dict, or one written by an unsupported version.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"not a prosody normaliser: expected format {FORMAT!r}")
        if data.get("version") != VERSION:
            raise DataError(
                f"prosody normaliser version {data.get('version')!r} is not supported (need {VERSION})"
            )
        try:
            norm = cls(**{name: data[name] for name in THRESHOLDS})
            norm.corpus = {q: _stats_from_json(data["corpus"][q]) for q in UTTERANCE_QUANTITIES}
            norm.speaker_stats = {
                str(name): {
                    **stats,
                    **{part: {k: _stats_from_json(v) for k, v in stats[part].items()} for part in PARTS},
                }
                for name, stats in data["speakers"].items()
            }
            norm.cuts = {}
            for ref, level in CUT_KEYS:
                cuts = data["cuts"][ref][level].items()
                norm.cuts.setdefault(ref, {})[level] = {q: [float(lo), float(hi)] for q, (lo, hi) in cuts}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"malformed prosody normaliser: missing or invalid field ({err!r})") from err
        return norm

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted state as JSON, atomically (temporary file in the same folder, then rename).

        Raises:
            ConfigError: the normaliser is not fitted.
        """
        if not self.is_fitted:
            raise ConfigError("cannot save an unfitted ProsodyNormalizer: call fit() first")
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProsodyNormalizer:
        """Read a normaliser written by :meth:`save`.

        Raises:
            DataError: the file is missing, not JSON, or not a normaliser of this version.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"prosody normaliser file not found: {str(path)!r}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"prosody normaliser file {str(path)!r} is not valid JSON: {err}") from err
        return cls.from_dict(data)


def utterance_relative(features) -> NormalizedProsody:
    """Normalise without any training statistics: vowels relative to the utterance's own vowels.

    Utterance-level quantities get no z-score (NaN) and no bin; their raw values are in ``utterance_raw``.
    Vowel bins use :data:`DEFAULT_CUTS` (the tertiles of a standard normal).

    >>> from emollm.prosody.measure import measure
    >>> from emollm.prosody.synth import synthesize
    >>> out = utterance_relative(measure(*synthesize("Kids are talking by the door")))
    >>> out.reference, out.vowel_bins[-1]["log_duration"]  # the last vowel, in 'door', is the longest
    ('utterance', 'high')
    """
    vowels = _utterance_relative_z(features)
    return NormalizedProsody(
        reference="utterance",
        utterance={q: NAN for q in UTTERANCE_QUANTITIES},
        utterance_bins={},
        vowels=vowels,
        vowel_bins=[_bins(row, {}) for row in vowels],
        utterance_raw={q: _utterance_value(features, q) for q in UTTERANCE_QUANTITIES},
        speaker=getattr(features, "speaker", None),
    )


def normalize_features(features, normalizer=None, speaker: str | None = None) -> NormalizedProsody:
    """The one normalisation choice: a fitted normaliser's statistics when given, else the utterance itself.

    Args:
        features: ``ProsodyFeatures`` of one utterance.
        normalizer: A fitted :class:`ProsodyNormalizer`, the path of its JSON, or None.
        speaker: Whose statistics to use; None: ``features.speaker``.

    >>> from emollm.prosody.measure import measure
    >>> from emollm.prosody.synth import synthesize
    >>> normalize_features(measure(*synthesize("Kids are talking by the door"))).reference
    'utterance'
    """
    if normalizer is None:
        return utterance_relative(features)
    if isinstance(normalizer, (str, os.PathLike)):
        normalizer = ProsodyNormalizer.load(normalizer)
    return normalizer.transform(features, speaker if speaker is not None else features.speaker)


# -- helpers -------------------------------------------------------------------------------------------------


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return NAN
    return out if math.isfinite(out) else NAN


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _stats(values) -> Stats:
    array = _finite(values)
    if not array.size:
        return {"mean": NAN, "std": NAN, "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "n": int(array.size)}


def _usable(stats: Stats) -> bool:
    return stats["n"] >= 2 and math.isfinite(stats["std"]) and stats["std"] > 1e-9


def _z(value: float, stats: Stats, floor: float = 0.0) -> float:
    std = max(stats["std"], floor) if math.isfinite(stats["std"]) else NAN
    if stats["n"] < 2 or not std > 1e-9 or not math.isfinite(value):
        return NAN
    return (value - stats["mean"]) / std


def _utterance_value(features, quantity: str) -> float:
    return _float(getattr(features.utterance, quantity, NAN))


def _vowel_values(features) -> dict[str, np.ndarray]:
    """Raw vowel-level quantities of one utterance, one array per quantity, NaN where undefined."""
    vowels = features.vowels

    def column(name: str) -> np.ndarray:
        return np.array([_float(getattr(v, name, NAN)) for v in vowels], dtype=float)

    duration = column("duration")
    intensity = column("intensity_mean_db")
    finite = _finite(intensity)
    return {
        "log_duration": np.log(np.where(duration > 0, duration, np.nan)),
        "f0_mean_st": column("f0_mean_st"),
        "f0_movement_st": column("f0_max_st") - column("f0_min_st"),
        "f0_slope_st": column("f0_slope_st"),
        "intensity_rel_db": intensity - (finite.mean() if finite.size else NAN),
    }


def _vowel_classes(features) -> np.ndarray:
    """``"AA1"`` for a stressed (primary or secondary) AA, ``"AA0"`` unstressed, ``"AA"`` stress unknown."""
    out = []
    for v in features.vowels:
        stress = "" if v.stress is None else ("1" if v.stress > 0 else "0")
        out.append(f"{v.phone}{stress}")
    return np.array(out, dtype=object)


def _utterance_relative_z(features) -> list[dict[str, float]]:
    values = _vowel_values(features)
    columns = {}
    for q in VOWEL_QUANTITIES:
        stats = _stats(values[q])
        enough = stats["n"] >= MIN_UTTERANCE_VOWELS
        columns[q] = [_z(float(x), stats, STD_FLOORS[q]) if enough else NAN for x in values[q]]
    return [{q: columns[q][i] for q in VOWEL_QUANTITIES} for i in range(len(features.vowels))]


def _cuts(values) -> list[float]:
    array = _finite(values)
    if array.size < MIN_CUT_SAMPLES:
        return list(DEFAULT_CUTS)
    low, high = np.quantile(array, [1 / 3, 2 / 3])
    return [float(low), float(high)] if high > low else list(DEFAULT_CUTS)


def _bins(zscores: dict[str, float], cuts: dict[str, list[float]]) -> dict[str, str]:
    out = {}
    for q, z in zscores.items():
        if not math.isfinite(z):
            continue
        low, high = cuts.get(q, DEFAULT_CUTS)
        out[q] = "low" if z < low else "high" if z > high else "mid"
    return out


def _stats_from_json(data: dict) -> Stats:
    if not isinstance(data, dict):
        raise TypeError(f"expected {{'mean', 'std', 'n'}}, got {data!r}")
    return {"mean": _float(data["mean"]), "std": _float(data["std"]), "n": int(data["n"])}


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
