"""Prosody in plain English for a prompt: rate, pitch and loudness, then the few most salient vowels.

The text is deterministic (the same input gives the same bytes), bounded (``max_vowels``, ``max_words``) and
built from a closed vocabulary (:data:`VOCABULARY`) in fixed templates, always in the same order:

1. ``Speech rate is fast (5.8 syllables/s) with 1 pause.``
2. ``Pitch is high for this speaker (+1.2 SD) with wide variation.``
3. ``The voice is loud (+0.9 SD).`` (only with a fitted normaliser: loudness needs a corpus reference)
4. ``Salient vowels, relative to this speaker:`` followed by one sentence per vowel, in time order:
   ``'door' /AO/ is long (0.41 s), loud and falling in pitch.`` Syllable nuclei found without a transcript
   are named by position and time: ``Vowel 3 (at 1.20 s) is short (0.05 s).``

Levels come from the bins of :mod:`emollm.prosody.normalize`. Without a normaliser (``normalized=None``,
:func:`~emollm.prosody.normalize.utterance_relative`) nothing is claimed relative to the speaker: vowels are
described "relative to this utterance", pitch by its mean in Hz, and rate and pitch variation get levels
from the fixed :data:`ABSOLUTE_CUTS`.

Styles (:data:`STYLES`): ``"vowel"`` (VowelPrompt: all of the above), ``"utterance"`` (SpeechCueLLM-style:
sentences 1-3 only) and ``"none"`` (the empty string).

>>> from emollm.prosody.measure import measure
>>> from emollm.prosody.synth import synthesize
>>> features = measure(*synthesize("Kids are talking by the door"))
>>> describe(features, style="utterance", max_words=10)  # the synthesiser varies a little per call
'Speech rate is moderate (4... syllables/s) with no pauses.'
>>> describe(features, max_vowels=1).split(": ")[-1]
"'kids' /IH/ is loud...high-pitched..."
"""

from __future__ import annotations

import math

from emollm.errors import ConfigError
from emollm.prosody.alignment import NUCLEUS
from emollm.prosody.normalize import NormalizedProsody, utterance_relative

STYLES = ("vowel", "utterance", "none")

# Every adjective the descriptions use: level words by quantity, indexed by normaliser bin.
VOCABULARY: dict[str, dict[str, str]] = {
    "rate": {"low": "slow", "mid": "moderate", "high": "fast"},
    "pitch": {"low": "low", "mid": "medium", "high": "high"},
    "variation": {"low": "narrow", "mid": "moderate", "high": "wide"},
    "loudness": {"low": "quiet", "mid": "moderately loud", "high": "loud"},
    "duration": {"low": "short", "mid": "medium-length", "high": "long"},
    "vowel_pitch": {"low": "low-pitched", "mid": "mid-pitched", "high": "high-pitched"},
    "contour": {"low": "falling", "mid": "level", "high": "rising"},
}

# Levels used when there is no speaker or corpus reference: (low below, high above), raw units.
# - articulation_rate (vowels ~ syllables per second of speech, pauses excluded): conversational and read
#   English mostly runs at about 4-5.5 syllables/s (e.g. de Jong & Wempe, 2009; Jacewicz et al., 2009);
#   below 3.5 sounds slow, above 5.5 fast.
# - f0_std_st (standard deviation of F0 in semitones): neutral speech typically varies by 2-4 semitones;
#   below 2 sounds flat (monotone), above 4 lively.
ABSOLUTE_CUTS = {"articulation_rate": (3.5, 5.5), "f0_std_st": (2.0, 4.0)}
# Pitch change inside a vowel (slope x duration, semitones) needed to call it rising or falling: about the
# glissando threshold ('t Hart, 1976) for vowels of 0.1-0.2 s, so shorter wiggles are not reported.
CONTOUR_MIN_ST = 1.5
# A vowel attribute is mentioned only when its bin is "low" or "high" *and* |z| reaches this (the outer ~16 %
# of a normal distribution): tertile bins call a third of all vowels "high", too many to be worth a word.
SALIENT_Z = 1.0
# Vowel attributes ranked for salience (max |z|), in the order they are written.
SALIENCE_QUANTITIES = ("log_duration", "intensity_rel_db", "f0_mean_st")
REFERENCE_PHRASES = {"speaker": "for this speaker", "corpus": "compared with other speakers"}


def describe(
    features,
    normalized: NormalizedProsody | None = None,
    *,
    style: str = "vowel",
    max_vowels: int = 3,
    max_words: int = 80,
) -> str:
    """Describe the prosody of one utterance in a few English sentences.

    Args:
        features: ``ProsodyFeatures`` of the utterance (:func:`emollm.prosody.measure.measure`).
        normalized: Its z-scores and bins (``ProsodyNormalizer.transform(features)``); None: relative to the
            utterance itself (:func:`~emollm.prosody.normalize.utterance_relative`).
        style: One of :data:`STYLES`.
        max_vowels: Most vowels described (the most salient, listed in time order); 0 for none.
        max_words: Most words (whitespace-separated) in the result, at least 10. Vowel sentences are dropped
            first (least salient first), then trailing sentences: the text always ends at a sentence.

    Returns:
        The description; ``""`` for ``style="none"``.

    Raises:
        ConfigError: unknown style, a bound out of range, or ``normalized`` not made from these features.

    >>> describe(None, style="none")
    ''
    """
    if style not in STYLES:
        raise ConfigError(f"unknown prosody description style {style!r}; choose one of {', '.join(STYLES)}")
    if not isinstance(max_vowels, int) or max_vowels < 0:
        raise ConfigError(f"max_vowels must be an integer >= 0, got {max_vowels!r}")
    if not isinstance(max_words, int) or max_words < 10:
        raise ConfigError(f"max_words must be an integer >= 10, got {max_words!r}")
    if style == "none":
        return ""
    normalized = normalized if normalized is not None else utterance_relative(features)
    if len(normalized.vowels) != len(features.vowels) or len(normalized.vowel_bins) != len(features.vowels):
        raise ConfigError(
            f"normalized describes {len(normalized.vowels)} vowels but features has {len(features.vowels)}: "
            "pass normalizer.transform(features) of these same features"
        )
    head = _utterance_sentences(features, normalized)
    vowels = _vowel_sentences(features, normalized, max_vowels) if style == "vowel" else []
    lead = f"Salient vowels, relative to this {normalized.vowel_reference}:"
    while vowels and _words(head + [lead] + [text for _, _, text in vowels]) > max_words:
        vowels.remove(max(vowels, key=lambda v: (v[1], v[0])))  # the least salient goes first
    sentences = head + ([lead] + [text for _, _, text in vowels] if vowels else [])
    while sentences and _words(sentences) > max_words:
        sentences.pop()
    return " ".join(sentences)


def describe_features(
    features,
    *,
    normalizer=None,
    speaker: str | None = None,
    style: str = "vowel",
    max_vowels: int = 3,
    max_words: int = 80,
) -> str:
    """Normalise then describe: the one path from measured features to the words a prompt shows.

    Used alike by :func:`emollm.describe_prosody`, :class:`emollm.EmotionReasoner`, the evaluation harness
    and the training recipes; ``emollm prosody`` takes the same two steps apart
    (:func:`~emollm.prosody.normalize.normalize_features`, then :func:`describe`) to print the reference too.

    Args:
        features: ``ProsodyFeatures`` of one utterance.
        normalizer: A fitted :class:`~emollm.prosody.normalize.ProsodyNormalizer` (or its JSON path): levels
            relative to the speaker it knows; None: relative to the utterance itself.
        speaker: Whose statistics to use; None: ``features.speaker``.
        style, max_vowels, max_words: As for :func:`describe`.

    >>> from emollm.prosody.measure import measure
    >>> from emollm.prosody.synth import synthesize
    >>> text = describe_features(measure(*synthesize("Kids are talking by the door")), style="utterance")
    >>> text.startswith("Speech rate is")
    True
    """
    from emollm.prosody.normalize import normalize_features

    normalized = normalize_features(features, normalizer, speaker)
    return describe(features, normalized, style=style, max_vowels=max_vowels, max_words=max_words)


def _utterance_sentences(features, normalized: NormalizedProsody) -> list[str]:
    utt = features.utterance
    z, bins = normalized.utterance, normalized.utterance_bins
    out = []
    rate = _number(utt.articulation_rate)
    if math.isfinite(rate) and features.vowels:  # no vowels found: a rate of 0 would be a false claim
        pauses = int(utt.pause_count) if math.isfinite(_number(utt.pause_count)) else 0
        pause_text = "no pauses" if pauses == 0 else "1 pause" if pauses == 1 else f"{pauses} pauses"
        level = _level(normalized, "articulation_rate", rate)
        rate_text = (
            f"{VOCABULARY['rate'][level]} ({rate:.1f} syllables/s)" if level else f"{rate:.1f} syllables/s"
        )
        out.append(f"Speech rate is {rate_text} with {pause_text}.")
    f0_std = _number(utt.f0_std_st)
    variation = _level(normalized, "f0_std_st", f0_std)
    variation_text = f" with {VOCABULARY['variation'][variation]} variation" if variation else ""
    if variation and "f0_std_st" not in normalized.utterance_bins:  # an absolute level: give the number
        variation_text += f" ({f0_std:.1f} semitones SD)"
    pitch_z = _number(z.get("f0_mean_st"))
    f0_hz = _number(utt.f0_mean_hz)
    if "f0_mean_st" in bins and math.isfinite(pitch_z):
        phrase = REFERENCE_PHRASES[normalized.reference]
        pitch = VOCABULARY["pitch"][bins["f0_mean_st"]]
        out.append(f"Pitch is {pitch} {phrase} ({pitch_z:+.1f} SD){variation_text}.")
    elif math.isfinite(f0_hz):
        out.append(f"Pitch averages {f0_hz:.0f} Hz{variation_text}.")
    loudness_z = _number(z.get("intensity_mean_db"))
    if "intensity_mean_db" in bins and math.isfinite(loudness_z):
        out.append(
            f"The voice is {VOCABULARY['loudness'][bins['intensity_mean_db']]} ({loudness_z:+.1f} SD)."
        )
    return out


def _vowel_sentences(
    features, normalized: NormalizedProsody, max_vowels: int
) -> list[tuple[int, float, str]]:
    """``(index, -salience, sentence)`` of the ``max_vowels`` most salient describable vowels, time order."""
    by_position = getattr(features.alignment, "method", None) == "nuclei"  # no words: name vowels by time
    candidates = []
    for index, (vowel, z, bins) in enumerate(zip(features.vowels, normalized.vowels, normalized.vowel_bins)):
        salient = {q: bins[q] for q in SALIENCE_QUANTITIES if _salient(bins.get(q), z.get(q))}
        parts = []
        duration = _number(vowel.duration)
        if "log_duration" in salient:
            parts.append(f"{VOCABULARY['duration'][salient['log_duration']]} ({duration:.2f} s)")
        if "intensity_rel_db" in salient:
            parts.append(VOCABULARY["loudness"][salient["intensity_rel_db"]])
        if "f0_mean_st" in salient:
            parts.append(VOCABULARY["vowel_pitch"][salient["f0_mean_st"]])
        change = _number(vowel.f0_slope_st) * duration
        if math.isfinite(change) and abs(change) >= CONTOUR_MIN_ST:
            parts.append(f"{VOCABULARY['contour']['high' if change > 0 else 'low']} in pitch")
        if not parts:
            continue
        scores = [abs(_number(z.get(q))) for q in SALIENCE_QUANTITIES]
        salience = max((s for s in scores if math.isfinite(s)), default=0.0)
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        candidates.append((index, -salience, f"{_vowel_name(index, vowel, by_position)} is {listed}."))
    chosen = sorted(candidates, key=lambda c: (c[1], c[0]))[:max_vowels]
    return sorted(chosen)


def _salient(level: str | None, z) -> bool:
    return level in ("low", "high") and abs(_number(z)) >= SALIENT_Z


def _vowel_name(index: int, vowel, by_position: bool) -> str:
    phone = "" if vowel.phone == NUCLEUS else f" /{vowel.phone}/"
    if vowel.word and not by_position and vowel.phone != NUCLEUS:
        return f"'{vowel.word}'{phone}"
    return f"Vowel {index + 1}{phone} (at {_number(vowel.start):.2f} s)"


def _level(normalized: NormalizedProsody, quantity: str, raw: float) -> str | None:
    """The bin of ``quantity``; without one (no reference), the level from :data:`ABSOLUTE_CUTS`."""
    if quantity in normalized.utterance_bins:
        return normalized.utterance_bins[quantity]
    if quantity not in ABSOLUTE_CUTS or not math.isfinite(raw):
        return None
    low, high = ABSOLUTE_CUTS[quantity]
    return "low" if raw < low else "high" if raw > high else "mid"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _words(sentences: list[str]) -> int:
    return sum(len(s.split()) for s in sentences)
