"""Evidence rationales for SFT, and the measured prosody a GRPO row carries for the cue reward.

``target: evidence`` (:mod:`emollm.recipes.sft`) trains ``<think>evidence</think><answer>label</answer>``,
where the evidence names the few measured cues that most support the gold label *for this speaker* and says
what they mean::

    Very high pitch; fast speech; a long 'door' /AO/. These cues point to high arousal, which fits angry,
    a negative emotion.

1. **Features** (:data:`FEATURES`): the utterance's speaker-normalised z-scores (the
   :class:`~emollm.prosody.normalize.NormalizedProsody` the prompt's description is made from) of ten
   utterance measures, and the largest and smallest vowel z-score of duration, pitch and loudness (with the
   vowel they come from): 16 numbers; an undefined one reads as 0, the speaker's mean.
2. **Model** (:class:`EvidenceModel`): class-balanced multinomial logistic regression (scikit-learn, lbfgs,
   ``C=1``) fit on the training split only. Its weights are centred over the classes, so
   ``contribution = weight x z`` is what a cue adds to the log-odds of a class against the average class.
3. **Cues** (:meth:`EvidenceModel.cues`): the features with a positive contribution to the gold label,
   ``|z| > 0.5`` (outside the ``typical`` band of :func:`~emollm.prosody.describe.measure_level`) and an
   arousal direction (:data:`CUE_AROUSAL`) that does not contradict the label's (:data:`LABEL_AFFECT`),
   ranked by contribution (ties: :data:`FEATURES` order); at most :data:`MAX_CUES`; past :data:`MIN_CUES`,
   none below :data:`MIN_SHARE` of the first one's contribution. **Only cues the model is shown**: when the
   prompt carries a description (the text route), a cue qualifies only if the description makes the same
   claim (quantity, direction, and for a vowel the same word and vowel), and its clause takes the
   description's degree, so the model can name it from what it reads. An evidence model trained on every
   measured cue taught the text route to name cues its prompt does not show (vowels it was never told of,
   degrees it could not see): on RAVDESS dev its generated rationales were 50 % true, every false claim one
   the description does not make (docs/results.md). Without a description (the tokens route) only utterance
   cues qualify: the encoders give the model the voice as measures or frames, never which word a vowel
   belongs to, so naming ``'door' /AO/`` would be a guess.
4. **Words**: one clause per cue in the description vocabulary (:data:`~emollm.prosody.describe.VOCABULARY`
   with the degree word of ``measure_level``: ``very high pitch``, ``a slightly quiet voice``, ``a long
   'door' /AO/``), clauses joined by ``;`` so each is read alone. Each clause is checked with
   :func:`~emollm.reasoning.verify_rationale` and kept only if its claim is true, so every claim of an
   evidence rationale verifies by construction. Then the reading: the arousal the cues point to (the label's)
   and the label, with its valence.

Deterministic (the same training data gives the same model, bytes included, and the same rationales) and
bounded (at most 4 cue clauses; vowel words are at most 20 characters). The model and the prosody normaliser
it reads z-scores from are saved with the checkpoint as :data:`EVIDENCE_NAME`
(:meth:`EvidenceModel.save`), so ``EvidenceModel.load(path).rationale(features, label, speaker)``
reproduces the rationale of any utterance.

For GRPO, :func:`prosody_record` packs one utterance's measures, z-scores and shown description into the
JSON string each row carries under ``prosody``; :func:`read_prosody_record` rebuilds the objects
``verify_rationale`` takes (:func:`emollm.training.rewards.cue_reward`).

>>> affect("angry"), affect("calm"), affect("banana")
(('high', 'negative'), ('low', 'positive'), (None, None))
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from emollm.errors import DataError
from emollm.io import write_text_atomic
from emollm.prosody.alignment import NUCLEUS
from emollm.prosody.describe import LEVEL_CUTS, MAX_WORD_CHARS, VOCABULARY, measure_level
from emollm.prosody.normalize import NormalizedProsody, ProsodyNormalizer, normalize_features
from emollm.reasoning import ARPABET_VOWELS, TRUE, extract_claims, verify_rationale

EVIDENCE_NAME = "emollm_evidence.json"  # saved beside emollm_config.json
FORMAT, VERSION = "emollm.evidence", 1
MAX_CUES, MIN_CUES, MIN_SHARE = 4, 2, 0.25
C = 1.0  # inverse L2 strength of the logistic regression

# fmt: off
# label -> (arousal, valence). Arousal is what prosody speaks to; None where studies disagree (disgust).
LABEL_AFFECT = {
    "neutral": ("low", "neutral"), "calm": ("low", "positive"),
    "happy": ("high", "positive"), "joy": ("high", "positive"), "excited": ("high", "positive"),
    "surprised": ("high", "positive"), "surprise": ("high", "positive"),
    "sad": ("low", "negative"), "sadness": ("low", "negative"),
    "angry": ("high", "negative"), "anger": ("high", "negative"), "frustrated": ("high", "negative"),
    "fearful": ("high", "negative"), "fear": ("high", "negative"),
    "disgust": (None, "negative"),
}
# quantity -> +1 when its "high" level goes with high arousal, -1 when with low arousal. Quantities not listed
# (jitter, shimmer, harmonicity, vowel duration, loudness within the utterance, contours) have no direction.
CUE_AROUSAL = {
    "f0_mean_st": 1, "f0_std_st": 1, "f0_range_st": 1, "intensity_mean_db": 1, "intensity_range_db": 1,
    "articulation_rate": 1, "speech_rate": 1, "pause_ratio": -1,
}
UTTERANCE_FEATURES = ("f0_mean_st", "f0_std_st", "f0_range_st", "intensity_mean_db", "intensity_range_db",
                      "articulation_rate", "pause_ratio", "jitter_local", "shimmer_local", "hnr_db")
VOWEL_FEATURES = ("log_duration", "f0_mean_st", "intensity_rel_db")
FEATURES = UTTERANCE_FEATURES + tuple(f"vowel_{q}_{end}" for q in VOWEL_FEATURES for end in ("max", "min"))
_PLAIN = {"low": "low", "high": "high"}
# Utterance cue -> (noun phrase, level words); "{}" takes the degree and the level word: "very high pitch".
UTTERANCE_PHRASES = {
    "f0_mean_st": ("{} pitch", VOCABULARY["pitch"]),
    "f0_std_st": ("{} pitch variation", VOCABULARY["variation"]),
    "f0_range_st": ("a {} pitch range", VOCABULARY["variation"]),
    "intensity_mean_db": ("a {} voice", VOCABULARY["loudness"]),
    "intensity_range_db": ("{} loudness dynamics", VOCABULARY["variation"]),
    "articulation_rate": ("{} speech", VOCABULARY["rate"]),
    "pause_ratio": ("{} pauses", {"low": "few", "high": "many"}),
    "jitter_local": ("{} jitter", _PLAIN), "shimmer_local": ("{} shimmer", _PLAIN),
    "hnr_db": ("{} harmonicity", _PLAIN),
}
# Vowel cue -> level words: "a very long 'door' /AO/", "a high-pitched Vowel 3".
VOWEL_PHRASES = {"log_duration": VOCABULARY["duration"], "f0_mean_st": VOCABULARY["vowel_pitch"],
                 "intensity_rel_db": VOCABULARY["loudness"]}
# fmt: on
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?", re.IGNORECASE)  # a transcript word safe to quote


def affect(label: str | None) -> tuple[str | None, str | None]:
    """``(arousal, valence)`` of a label (:data:`LABEL_AFFECT`), ``(None, None)`` when not listed."""
    return LABEL_AFFECT.get(str(label).lower(), (None, None)) if label else (None, None)


def arousal_direction(quantity: str, level: str, negated: bool = False) -> str | None:
    """The arousal a cue points to: ``"high"``, ``"low"`` or None (no direction, or a ``mid`` level).

    >>> arousal_direction("articulation_rate", "high"), arousal_direction("pause_ratio", "high")
    ('high', 'low')
    >>> arousal_direction("intensity_mean_db", "high", negated=True), arousal_direction("hnr_db", "low")
    ('low', None)
    """
    sign = CUE_AROUSAL.get(quantity)
    if sign is None or level not in ("low", "high"):
        return None
    sign *= (1 if level == "high" else -1) * (-1 if negated else 1)
    return "high" if sign > 0 else "low"


@dataclass(frozen=True)
class Cue:
    """One cue of an evidence rationale.

    Attributes:
        feature: Its :data:`FEATURES` name.
        quantity: The measure (``"f0_mean_st"``, ``"log_duration"`` ...).
        z: Its z-score.
        contribution: ``weight x z`` toward the gold label (log-odds).
        vowel: The vowel's index for a vowel cue, else None.
        text: Its clause (``"very high pitch"``).
    """

    feature: str
    quantity: str
    z: float
    contribution: float
    vowel: int | None
    text: str


def feature_values(normalized: NormalizedProsody) -> list[tuple[float, int | None]]:
    """``(z, vowel index)`` per :data:`FEATURES` (NaN when undefined; the vowel for vowel features).

    >>> values = feature_values(NormalizedProsody("speaker", {"f0_mean_st": 1.2},
    ...     vowels=[{"log_duration": -0.3}, {"log_duration": 1.4}]))
    >>> values[0], values[FEATURES.index("vowel_log_duration_max")]
    ((1.2, None), (1.4, 1))
    """
    out = [(_number(normalized.utterance.get(q)), None) for q in UTTERANCE_FEATURES]
    for q in VOWEL_FEATURES:
        found = [(_number(z.get(q)), i) for i, z in enumerate(normalized.vowels)]
        found = [(z, i) for z, i in found if math.isfinite(z)]
        highest = max(found, key=lambda f: (f[0], -f[1]), default=(math.nan, None))  # first of equals
        lowest = min(found, key=lambda f: (f[0], f[1]), default=(math.nan, None))
        out += [highest, lowest]
    return out


class EvidenceModel:
    """The transparent model behind evidence rationales (see the module docstring).

    Args:
        classes: The labels it was fit on, in order.
        coef: One row of centred weights per class, one weight per :data:`FEATURES` name.
        intercept: One bias per class.
        normalizer: The fitted prosody normaliser the z-scores come from (None: utterance-relative).
        record: What it was fit on, for the record (utterances, label counts, training accuracy).
    """

    def __init__(self, classes, coef, intercept, normalizer=None, record=None):
        self.classes = tuple(classes)
        self.coef = [[float(w) for w in row] for row in coef]
        self.intercept = [float(b) for b in intercept]
        self.normalizer = normalizer
        self.record = dict(record or {})

    @classmethod
    def fit(cls, features: Sequence, labels: Sequence[str], normalizer=None, speakers=None) -> EvidenceModel:
        """Fit on the training utterances (those with features; the others are skipped).

        Args:
            features: ``ProsodyFeatures`` (or None) per training utterance.
            labels: Their gold labels.
            normalizer: The fitted :class:`~emollm.prosody.normalize.ProsodyNormalizer` of the training split
                (the one the prompt's descriptions use); None: utterance-relative z-scores.
            speakers: Whose statistics each utterance takes (default: ``features[i].speaker``).

        Raises:
            DataError: fewer than two labels among the utterances with features.
        """
        from sklearn.linear_model import LogisticRegression

        speakers = list(speakers) if speakers is not None else [getattr(f, "speaker", None) for f in features]
        rows, ys = [], []
        for feats, label, speaker in zip(features, labels, speakers, strict=True):
            if feats is not None:
                values = feature_values(normalize_features(feats, normalizer, speaker))
                rows.append([z if math.isfinite(z) else 0.0 for z, _ in values])
                ys.append(label)
        classes = sorted(set(ys))
        if len(classes) < 2:
            raise DataError(
                f"evidence rationales need measured utterances of at least two labels; got {len(ys)} of "
                f"{classes or 'none'} (do the training utterances have audio?)"
            )
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(rows, ys)
        coef = model.coef_.tolist()
        if len(classes) == 2:  # scikit-learn keeps one row, the log-odds of classes[1]: split it in two
            coef = [[-w / 2 for w in coef[0]], [w / 2 for w in coef[0]]]
            intercept = [-model.intercept_[0] / 2, model.intercept_[0] / 2]
        else:
            intercept = model.intercept_.tolist()
        means = [sum(col) / len(col) for col in zip(*coef)]  # centred: a contribution is against the average
        coef = [[w - m for w, m in zip(row, means)] for row in coef]
        record = {
            "utterances": len(ys),
            "label_counts": {c: ys.count(c) for c in classes},
            "train_accuracy": float(model.score(rows, ys)),
        }
        return cls([str(c) for c in model.classes_], coef, intercept, normalizer, record)

    def contributions(self, normalized: NormalizedProsody, label: str) -> list[tuple]:
        """``(feature, z, weight x z, vowel index)`` per feature toward ``label`` (none if label unknown)."""
        if label not in self.classes:
            return []
        weights = self.coef[self.classes.index(label)]
        values = feature_values(normalized)
        return [
            (name, z, w * z if math.isfinite(z) else 0.0, vowel)
            for name, w, (z, vowel) in zip(FEATURES, weights, values)
        ]

    def cues(
        self, features, normalized: NormalizedProsody, label: str, shown: str | None = None
    ) -> list[Cue]:
        """The cues of ``label``'s rationale, strongest first (rules: the module docstring).

        Args:
            features, normalized: The utterance's measures and z-scores.
            label: The gold label.
            shown: The prosody description its prompt shows; None when the prompt shows none (then only
                utterance cues, no vowel: the model is not told which word a vowel is; ``""`` is a prompt
                that shows a description saying nothing: no cue).
        """
        arousal = affect(label)[0]
        stated = _stated(shown) if shown is not None else None
        ranked = sorted(
            (c for c in self.contributions(normalized, label) if c[2] > 0 and abs(c[1]) > LEVEL_CUTS[0]),
            key=lambda c: -c[2],  # stable: ties keep FEATURES order
        )
        chosen: list[Cue] = []
        for name, z, contribution, vowel in ranked:
            if len(chosen) == MAX_CUES:
                break
            if len(chosen) >= MIN_CUES and contribution < MIN_SHARE * chosen[0].contribution:
                break
            quantity = name if name in UTTERANCE_FEATURES else name[len("vowel_") :].rsplit("_", 1)[0]
            level = "high" if z > 0 else "low"
            direction = arousal_direction(quantity, level)
            if arousal and direction and direction != arousal:
                continue  # true, but it speaks against the label's arousal
            degree = None  # the measured degree
            if stated is None and vowel is not None:
                continue  # true, but without a description the model cannot tell which word it is in
            if stated is not None:
                degree = stated.get(_claim_key(features, quantity, level, vowel))
                if degree is None:
                    continue  # true, but the prompt does not show it
            text = _phrase(features, quantity, z, vowel, degree)
            if any(c.text == text for c in chosen) or not _verifies(text, features, normalized):
                continue  # a repeat, or (never seen) a clause that would not verify
            chosen.append(Cue(name, quantity, z, contribution, vowel, text))
        return chosen

    def rationale(self, features, label: str, speaker: str | None = None, shown: str | None = None) -> str:
        """The evidence rationale of one utterance (``features`` None: no cue can be named).

        Args:
            features: Its ``ProsodyFeatures``, or None when it has none (no audio, failed extraction).
            label: The gold label.
            speaker: Whose statistics to use; None: ``features.speaker``.
            shown: The prosody description the prompt shows (the text route), None when it shows none; see
                :meth:`cues`.
        """
        if features is None:
            return f"No measured cue is available. The best fit is {label}."
        normalized = normalize_features(features, self.normalizer, speaker)
        return compose(self.cues(features, normalized, label, shown), label)

    # -- saving ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": "class-balanced logistic regression on speaker z-scores; weights centred over classes",
            "settings": {
                "C": C,
                "max_cues": MAX_CUES,
                "min_cues": MIN_CUES,
                "min_share": MIN_SHARE,
                "min_abs_z": LEVEL_CUTS[0],
            },
            "features": list(FEATURES),
            "classes": list(self.classes),
            "coef": self.coef,
            "intercept": self.intercept,
            "record": self.record,
            "normalizer": self.normalizer.to_dict() if self.normalizer is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EvidenceModel:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            DataError: not an evidence model of this version, or its features are not :data:`FEATURES`.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise DataError(f"not an evidence model of format {FORMAT!r} version {VERSION}")
        if tuple(data.get("features", ())) != FEATURES:
            raise DataError(f"the evidence model's features {data.get('features')} are not {list(FEATURES)}")
        normalizer = data.get("normalizer")
        normalizer = ProsodyNormalizer.from_dict(normalizer) if normalizer is not None else None
        try:
            return cls(data["classes"], data["coef"], data["intercept"], normalizer, data.get("record"))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"malformed evidence model: {err!r}") from err

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (sorted keys: the same model gives the same bytes)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        write_text_atomic(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvidenceModel:
        """Read a model written by :meth:`save` (a checkpoint folder: its :data:`EVIDENCE_NAME`).

        Raises:
            DataError: no such file, not JSON, or not an evidence model.
        """
        path = Path(path)
        path = path / EVIDENCE_NAME if path.is_dir() else path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the evidence model {str(path)!r}: {err}") from err
        return cls.from_dict(data)


def compose(cues: Sequence[Cue], label: str) -> str:
    """The rationale's text: the cue clauses, then the reading (the arousal they point to) and the label.

    >>> compose([Cue("f0_mean_st", "f0_mean_st", 2.3, 1.0, None, "very high pitch"),
    ...          Cue("articulation_rate", "articulation_rate", 1.2, 0.5, None, "fast speech")], "angry")
    'Very high pitch; fast speech. These cues point to high arousal, which fits angry, a negative emotion.'
    >>> compose([], "neutral")
    'No measured cue stands out for this speaker. The best fit is neutral.'
    """
    if not cues:
        return f"No measured cue stands out for this speaker. The best fit is {label}."
    arousal, valence = affect(label)
    directions = {arousal_direction(c.quantity, "high" if c.z > 0 else "low") for c in cues} - {None}
    if arousal is None and len(directions) == 1:  # a label without an arousal: say the cues' own
        arousal = directions.pop()
    elif not directions:
        arousal = None
    listed = "; ".join(c.text for c in cues)
    these = "This cue points" if len(cues) == 1 else "These cues point"
    reading = f"{these} to {arousal} arousal, which fits {label}" if arousal else f"{these} to {label}"
    kind = f", a {valence} emotion" if valence in ("positive", "negative") else ""
    return f"{listed[0].upper()}{listed[1:]}. {reading}{kind}."


def build_evidence(
    utterances: Sequence,
    normalizer,
    *,
    shown: Mapping[str, str] | None = None,
    workers: int = 1,
    progress: bool = True,
):
    """Fit the evidence model on the training utterances and write each one's rationale.

    Args:
        utterances: The labelled training utterances (with audio and transcripts).
        normalizer: The prosody normaliser the prompts' descriptions use (``describe_utterances``' third
            value), fitted on these utterances.
        shown: Utterance id -> the description its prompt shows (the text route): each rationale names only
            cues it states (an utterance missing from it is shown none); None: the prompts show no
            description, and only utterance cues are named (no vowel).
        workers, progress: For :func:`measure_utterances`.

    Returns:
        ``(model, rationales)``: the :class:`EvidenceModel` and utterance id -> rationale.

    Raises:
        DataError: no utterance has measured prosody, or fewer than two labels do.
    """
    measured = measure_utterances(utterances, workers=workers, progress=progress)
    chosen = [measured.get(u.id) for u in utterances]
    labels, speakers = [u.label for u in utterances], [u.speaker for u in utterances]
    model = EvidenceModel.fit(chosen, labels, normalizer, speakers)
    model.record["cues"] = "stated by the shown description" if shown is not None else "utterance measures"
    said = (lambda u: shown.get(u.id, "")) if shown is not None else (lambda u: None)
    rationales = {u.id: model.rationale(f, u.label, u.speaker, said(u)) for u, f in zip(utterances, chosen)}
    return model, rationales


def measure_utterances(utterances: Sequence, *, workers: int = 1, progress: bool = True) -> dict:
    """The ``ProsodyFeatures`` of each utterance with audio whose extraction worked, by id.

    The same :func:`~emollm.prosody.pipeline.extract_many` call with the same cache as
    :func:`emollm.inputs.describe_utterances`, so after it every result is read from the cache.
    """
    from emollm.modeling.base import cache_dir
    from emollm.prosody.pipeline import extract_many

    with_audio = [u for u in utterances if u.has_audio]
    if not with_audio:
        return {}
    batch = extract_many(with_audio, cache_dir=cache_dir() / "prosody", workers=workers, progress=progress)
    return {u.id: f for u, f in zip(with_audio, batch.features) if f is not None}


# -- what a GRPO row carries for the cue reward ------------------------------------------------------------


def prosody_record(features, normalized: NormalizedProsody, description: str | None = None) -> str:
    """One utterance's measures, z-scores and shown description, as the JSON string a GRPO row carries.

    The features keep every utterance and vowel measure but not the alignment (``verify_rationale`` reads
    none of it), about 7 kB for a RAVDESS sentence. A string, not a nested dict: Arrow would store dicts as
    structs with the union of every row's keys, and a vowel's missing bin would come back holding None.
    """
    measures = json.loads(features.to_json())
    data = {
        "features": {k: measures[k] for k in ("utterance", "vowels", "speaker")},
        "normalized": normalized.to_dict(),
        "description": description,
    }
    return json.dumps(data, allow_nan=False, separators=(",", ":"))


def read_prosody_record(record) -> tuple:
    """``(features, normalized, description)`` from :func:`prosody_record` (its string or parsed dict).

    ``features`` is a ``ProsodyFeatures`` rebuilt from the measures, with ``alignment`` None; null measures
    become NaN again.

    >>> read_prosody_record(None)
    (None, None, None)
    """
    from emollm.prosody.features import ProsodyFeatures, UtteranceMeasures, VowelMeasures

    if record is None:
        return None, None, None
    data = json.loads(record) if isinstance(record, str) else record
    norm = data["normalized"]
    normalized = NormalizedProsody(
        reference=norm["reference"],
        utterance=_floats(norm.get("utterance", {})),
        utterance_bins=dict(norm.get("utterance_bins", {})),
        vowels=[_floats(row) for row in norm.get("vowels", [])],
        vowel_bins=[dict(row) for row in norm.get("vowel_bins", [])],
        utterance_raw=_floats(norm.get("utterance_raw", {})),
        speaker=norm.get("speaker"),
    )
    measures = data["features"]
    features = ProsodyFeatures(
        utterance=_measures(UtteranceMeasures, measures["utterance"]),
        vowels=[_measures(VowelMeasures, v) for v in measures["vowels"]],
        alignment=None,
        speaker=measures.get("speaker"),
    )
    return features, normalized, data.get("description")


def prosody_records(
    utterances: Sequence,
    normalizer,
    descriptions: Mapping | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, str | None]:
    """The :func:`prosody_record` of each utterance by id (None where it has no measured prosody).

    Args:
        utterances: The GRPO training utterances.
        normalizer: The normaliser the descriptions were made with (``describe_utterances``' third value), so
            a sentence copied from the prompt verifies as true.
        descriptions: id -> the description shown in the prompt (none for the tokens route).
        workers, progress: For :func:`measure_utterances`.
    """
    measured = measure_utterances(utterances, workers=workers, progress=progress)
    descriptions = descriptions or {}
    records = {}
    for utt in utterances:
        feats = measured.get(utt.id)
        records[utt.id] = None
        if feats is not None:
            normalized = normalize_features(feats, normalizer, utt.speaker)
            records[utt.id] = prosody_record(feats, normalized, descriptions.get(utt.id))
    return records


# -- helpers -----------------------------------------------------------------------------------------------


def _phrase(features, quantity: str, z: float, vowel: int | None, degree: str | None = None) -> str:
    """The clause of a cue in the description vocabulary; its degree ``degree``, or from ``measure_level``."""
    level = "high" if z > 0 else "low"
    if degree is None:
        degree = measure_level(z).rsplit(" ", 1)[0] if " " in measure_level(z) else ""
    if vowel is None:
        template, words = UTTERANCE_PHRASES[quantity]
        degree = "" if quantity == "pause_ratio" else degree  # "very many pauses" reads badly; plain is true
        return template.format(f"{degree} {words[level]}".strip())
    name = _vowel_name(features.vowels[vowel], vowel)
    return f"a {degree} {VOWEL_PHRASES[quantity][level]} {name}".replace("  ", " ")


def _stated(description: str) -> dict[tuple, str]:
    """The cues a description states: ``(quantity, level, word, vowel)`` -> degree; plain claims only.

    The degree is ``""``, ``"slightly"`` or ``"very"``; negated, hedged and ``mid`` claims are left out.
    """
    stated = {}
    for claim in extract_claims(description):
        if not (claim.negated or claim.hedged) and claim.level in ("low", "high"):
            stated.setdefault((claim.quantity, claim.level, claim.word, claim.vowel), claim.degree)
    return stated


def _claim_key(features, quantity: str, level: str, vowel: int | None) -> tuple:
    """The ``(quantity, level, word, vowel)`` a cue's clause claims, as :func:`_stated` keys them."""
    if vowel is None:
        return (quantity, level, None, None)
    claim = extract_claims(f"a {VOWEL_PHRASES[quantity][level]} {_vowel_name(features.vowels[vowel], vowel)}")
    return (quantity, level, claim[0].word, claim[0].vowel) if claim else (quantity, level, "?", "?")


def _vowel_name(vowel, index: int) -> str:
    """``'door' /AO/`` as the descriptions name it; ``Vowel 3 /AO/`` when the word cannot be quoted safely."""
    phone = f" /{vowel.phone}/" if vowel.phone in ARPABET_VOWELS else ""  # not a nucleus's "NUC"
    word = (vowel.word or "").strip()
    if word and _WORD.fullmatch(word) and len(word) <= MAX_WORD_CHARS and vowel.phone != NUCLEUS:
        return f"'{word.lower()}'{phone}"
    return f"Vowel {index + 1}{phone}"


def _verifies(text: str, features, normalized) -> bool:
    """Whether the clause makes exactly the claims it means, all true."""
    check = verify_rationale(text, features, normalized)
    return bool(check.verdicts) and all(v.verdict == TRUE for v in check.verdicts)


def _measures(cls, data: Mapping):
    """A measures dataclass from its JSON dict: null floats back to NaN."""
    floats = {f.name for f in fields(cls) if f.type in ("float", float)}
    return cls(**{k: math.nan if v is None and k in floats else v for k, v in data.items()})


def _floats(values: Mapping) -> dict[str, float]:
    return {k: _number(v) for k, v in values.items()}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
