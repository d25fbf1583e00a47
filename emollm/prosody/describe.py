"""Prosody in plain English for a prompt: rate, pitch and loudness, then the vowels.

The text is deterministic (the same input gives the same bytes), bounded (``max_vowels``, ``max_words``) and
built from a closed vocabulary (:data:`VOCABULARY`, :data:`MEASURE_NAMES`, :data:`MEASURE_LEVELS`) in fixed
templates, always in the same order. The ``"vowel"`` style:

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
sentences 1-3 only), ``"measures"`` (below) and ``"none"`` (the empty string).

``"measures"`` carries every measure the others summarise, in words a bag-of-words reader can bind (issue 18,
``benchmarks/description_probe.py``: on RAVDESS a TF-IDF probe reads 54.2 WA from it, 40.0 from ``"vowel"``,
against 59.2 from the numbers themselves):

1. Every utterance measure (:data:`MEASURE_NAMES`: one per
   :data:`~emollm.prosody.normalize.UTTERANCE_QUANTITIES`), once, in the order of :data:`MEASURE_NAMES`, as
   ``name: level``:
   ``Relative to this speaker, speech rate: high; ...; mean pitch: slightly low; ...; harmonicity: typical.``
   The level is the measure's z-score on the fixed 7-step scale :data:`MEASURE_LEVELS`: ``typical`` for
   ``|z| <= 0.5``, ``slightly`` low/high up to 1, low/high up to 2, ``very`` low/high beyond
   (:data:`LEVEL_CUTS`).
   Every name ends in a word no other name ends in, so the word pair ``dynamics high`` means one measure.
   ``loudness`` is always relative to the corpus (it mostly measures recording gain, see
   :mod:`~emollm.prosody.normalize`). A measure without a z-score (no reference, or a statistic without
   spread) gives its raw value instead (``mean pitch: 236 Hz``); an undefined one (no voiced frame, no vowel
   for the rates, a raw value too long to print) says ``unmeasured``. No z numbers are written: the level is
   the rounded z, and bare numbers are tokens a word-pair reader cannot tie to their measure (in
   cross-validation over the training actors they cost its probe ~4 UA points).
2. ``Vowels relative to this speaker:`` then every vowel in time order (up to ``max_vowels``, the most salient
   when there are more, and the header then says ``(12 most salient of 30)``), each as the tertile words of
   :data:`VOCABULARY` for duration (relative to its vowel class where the normaliser has enough of the class),
   pitch and loudness, then its contour: ``'door' /AO/ long, low-pitched, quiet, falling;``. A vowel without
   voiced frames is ``unvoiced`` and has no contour; attributes without a z-score are left out, and so is a
   vowel with none. Transcript words are cut to :data:`MAX_WORD_CHARS` characters.

Bounds: at most ``max_words`` words (default :data:`STYLE_BOUNDS`: 200 for ``"measures"``, whose part 1 takes
at most :data:`MEASURES_MIN_WORDS` = 50 and is never cut; vowels go first, least salient first), so at most
``(MAX_WORD_CHARS + 3) * max_words`` characters (no word written is longer than a quoted transcript word).

>>> from emollm.prosody.measure import measure
>>> from emollm.prosody.synth import synthesize
>>> features = measure(*synthesize("Kids are talking by the door"))
>>> describe(features, style="utterance", max_words=10)  # the synthesiser varies a little per call
'Speech rate is moderate (4... syllables/s) with no pauses.'
>>> describe(features, max_vowels=1).split(": ")[-1]
"'kids' /IH/ is loud...high-pitched..."
>>> describe(features, style="measures").split(", ")[0]  # no normaliser: raw values, no levels
'Without a reference'
"""

from __future__ import annotations

import math

from emollm.errors import ConfigError
from emollm.prosody.alignment import NUCLEUS
from emollm.prosody.normalize import NormalizedProsody, utterance_relative

STYLES = ("vowel", "utterance", "measures", "none")
# (max_vowels, max_words) a style uses when the caller passes None.
STYLE_BOUNDS = {"vowel": (3, 80), "utterance": (3, 80), "measures": (20, 200), "none": (3, 80)}

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

# -- the "measures" style --
# Name of each utterance measure, in the order written. Last words are unique (rate, speed, pausing, pitch,
# variability, range, loudness, dynamics, jitter, shimmer, harmonicity), so "<last word> <level word>" binds
# one measure to its level for a reader of word pairs.
MEASURE_NAMES = {
    "speech_rate": "speech rate",  # vowels per second of the whole recording, pauses included
    "articulation_rate": "articulation speed",  # vowels per second of speech, pauses excluded
    "pause_ratio": "pausing",
    "f0_mean_st": "mean pitch",
    "f0_std_st": "pitch variability",
    "f0_range_st": "pitch range",
    "intensity_mean_db": "loudness",
    "intensity_range_db": "loudness dynamics",
    "jitter_local": "jitter",
    "shimmer_local": "shimmer",
    "hnr_db": "harmonicity",
}
# Speaker-relative level of a z-score, from very low to very high.
MEASURE_LEVELS = ("very low", "low", "slightly low", "typical", "slightly high", "high", "very high")
# |z| above each cut moves one step away from "typical": (0.5, 1] slightly, (1, 2] plain, above 2 very.
LEVEL_CUTS = (0.5, 1.0, 2.0)
# Without a z-score: (field of UtteranceMeasures, multiplier, format) of the raw value written instead.
RAW_MEASURES = {
    "speech_rate": ("speech_rate", 1.0, "{:.1f} syllables/s"),
    "articulation_rate": ("articulation_rate", 1.0, "{:.1f} syllables/s"),
    "pause_ratio": ("pause_ratio", 100.0, "{:.0f}%"),
    "f0_mean_st": ("f0_mean_hz", 1.0, "{:.0f} Hz"),
    "f0_std_st": ("f0_std_st", 1.0, "{:.1f} semitones"),
    "f0_range_st": ("f0_range_st", 1.0, "{:.1f} semitones"),
    "intensity_mean_db": ("intensity_mean_db", 1.0, "{:.0f} dB"),
    "intensity_range_db": ("intensity_range_db", 1.0, "{:.0f} dB"),
    "jitter_local": ("jitter_local", 100.0, "{:.1f}%"),
    "shimmer_local": ("shimmer_local", 100.0, "{:.1f}%"),
    "hnr_db": ("hnr_db", 1.0, "{:.0f} dB"),
}
MEASURE_REFERENCES = {
    "speaker": "Relative to this speaker,",
    "corpus": "Compared with other speakers,",
    "utterance": "Without a reference,",
}
UNMEASURED = "unmeasured"  # a measure that is undefined for this utterance
UNVOICED = "unvoiced"  # a vowel without a voiced pitch frame
MEASURES_MIN_WORDS = 50  # part 1 takes at most 4 + 11 x 4 = 48 words; max_words may not be smaller
MAX_WORD_CHARS = 20  # transcript words are cut to this many characters


def describe(
    features,
    normalized: NormalizedProsody | None = None,
    *,
    style: str = "vowel",
    max_vowels: int | None = None,
    max_words: int | None = None,
) -> str:
    """Describe the prosody of one utterance in a few English sentences.

    Args:
        features: ``ProsodyFeatures`` of the utterance (:func:`emollm.prosody.measure.measure`).
        normalized: Its z-scores and bins (``ProsodyNormalizer.transform(features)``); None: relative to the
            utterance itself (:func:`~emollm.prosody.normalize.utterance_relative`).
        style: One of :data:`STYLES`.
        max_vowels: Most vowels described (the most salient, listed in time order); 0 for none; None: the
            style's default (:data:`STYLE_BOUNDS`).
        max_words: Most words (whitespace-separated) in the result, at least 10 (``"measures"``: at least
            :data:`MEASURES_MIN_WORDS`); None: the style's default. Vowels are dropped first (least salient
            first), then trailing sentences (never a measure of ``"measures"``): the text always ends at a
            sentence.

    Returns:
        The description; ``""`` for ``style="none"``.

    Raises:
        ConfigError: unknown style, a bound out of range, or ``normalized`` not made from these features.

    >>> describe(None, style="none")
    ''
    """
    if style not in STYLES:
        raise ConfigError(f"unknown prosody description style {style!r}; choose one of {', '.join(STYLES)}")
    max_vowels = STYLE_BOUNDS[style][0] if max_vowels is None else max_vowels
    max_words = STYLE_BOUNDS[style][1] if max_words is None else max_words
    if not isinstance(max_vowels, int) or max_vowels < 0:
        raise ConfigError(f"max_vowels must be an integer >= 0, got {max_vowels!r}")
    least = MEASURES_MIN_WORDS if style == "measures" else 10
    if not isinstance(max_words, int) or max_words < least:
        raise ConfigError(f"max_words must be an integer >= {least} for style {style!r}, got {max_words!r}")
    if style == "none":
        return ""
    normalized = normalized if normalized is not None else utterance_relative(features)
    if len(normalized.vowels) != len(features.vowels) or len(normalized.vowel_bins) != len(features.vowels):
        raise ConfigError(
            f"normalized describes {len(normalized.vowels)} vowels but features has {len(features.vowels)}: "
            "pass normalizer.transform(features) of these same features"
        )
    if style == "measures":
        return _measures(features, normalized, max_vowels, max_words)
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
    max_vowels: int | None = None,
    max_words: int | None = None,
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


def _measures(features, normalized: NormalizedProsody, max_vowels: int, max_words: int) -> str:
    """The ``"measures"`` style: every utterance measure, then the vowels (see the module docstring)."""
    parts = [f"{name}: {_measure_value(features, normalized, q)}" for q, name in MEASURE_NAMES.items()]
    head = f"{MEASURE_REFERENCES[normalized.reference]} {'; '.join(parts)}."
    by_position = getattr(features.alignment, "method", None) == "nuclei"
    vowels = []  # (index, -salience, text)
    for index, (vowel, z, bins) in enumerate(zip(features.vowels, normalized.vowels, normalized.vowel_bins)):
        words = []
        if "log_duration" in bins:
            words.append(VOCABULARY["duration"][bins["log_duration"]])
        if not math.isfinite(_number(vowel.f0_mean_st)):
            words.append(UNVOICED)
        elif "f0_mean_st" in bins:
            words.append(VOCABULARY["vowel_pitch"][bins["f0_mean_st"]])
        if "intensity_rel_db" in bins:
            words.append(VOCABULARY["loudness"][bins["intensity_rel_db"]])
        change = _number(vowel.f0_slope_st) * _number(vowel.duration)
        if math.isfinite(change) and words:
            level = "high" if change >= CONTOUR_MIN_ST else "low" if change <= -CONTOUR_MIN_ST else "mid"
            words.append(VOCABULARY["contour"][level])
        if not words or words == [UNVOICED]:
            continue
        scores = [abs(_number(z.get(q))) for q in SALIENCE_QUANTITIES]
        salience = max((s for s in scores if math.isfinite(s)), default=0.0)
        name = _vowel_name(index, vowel, by_position, max_chars=MAX_WORD_CHARS)
        vowels.append((index, -salience, f"{name} {', '.join(words)}"))
    describable = len(vowels)
    vowels = sorted(sorted(vowels, key=lambda v: (v[1], v[0]))[:max_vowels])

    def text(chosen: list) -> str:
        if not chosen:
            return head
        lead = f"Vowels relative to this {normalized.vowel_reference}"
        if len(chosen) < describable:
            lead += f" ({len(chosen)} most salient of {describable})"
        return f"{head} {lead}: {'; '.join(t for _, _, t in chosen)}."

    while vowels and len(text(vowels).split()) > max_words:
        vowels.remove(max(vowels, key=lambda v: (v[1], v[0])))  # the least salient goes first
    return text(vowels)


def _measure_value(features, normalized: NormalizedProsody, quantity: str) -> str:
    """The level of one utterance measure; its raw value without a z-score; ``unmeasured`` if undefined."""
    if quantity in ("speech_rate", "articulation_rate") and not features.vowels:
        return UNMEASURED  # no vowels found: a rate of 0 would be a false claim
    z = _number(normalized.utterance.get(quantity))
    if math.isfinite(z):
        return measure_level(z)
    field, scale, template = RAW_MEASURES[quantity]
    raw = _number(getattr(features.utterance, field, None)) * scale
    text = template.format(raw) if math.isfinite(raw) else UNMEASURED
    return text if len(text.split()[0]) <= MAX_WORD_CHARS else UNMEASURED  # keeps the character bound


def measure_level(z: float) -> str:
    """The :data:`MEASURE_LEVELS` word of a finite z-score (cut points :data:`LEVEL_CUTS`, symmetric).

    >>> [measure_level(z) for z in (-2.5, -1.5, -0.7, 0.5, 0.51, 1.0, 2.01)]
    ['very low', 'low', 'slightly low', 'typical', 'slightly high', 'slightly high', 'very high']
    """
    steps = sum(abs(z) > cut for cut in LEVEL_CUTS)
    middle = len(MEASURE_LEVELS) // 2
    return MEASURE_LEVELS[middle + steps if z > 0 else middle - steps]


def _salient(level: str | None, z) -> bool:
    return level in ("low", "high") and abs(_number(z)) >= SALIENT_Z


def _vowel_name(index: int, vowel, by_position: bool, max_chars: int | None = None) -> str:
    phone = "" if vowel.phone == NUCLEUS else f" /{vowel.phone}/"
    if vowel.word and not by_position and vowel.phone != NUCLEUS:
        word = vowel.word if max_chars is None else "".join(vowel.word.split())[:max_chars]
        return f"'{word}'{phone}"
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
