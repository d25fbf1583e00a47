"""describe(): deterministic, bounded, closed-vocabulary English about prosody, in three styles."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from emollm.errors import ConfigError
from emollm.prosody.alignment import NUCLEUS
from emollm.prosody.describe import (
    LEVEL_CUTS,
    MAX_WORD_CHARS,
    MEASURE_LEVELS,
    MEASURE_NAMES,
    MEASURES_MIN_WORDS,
    STYLE_BOUNDS,
    STYLES,
    VOCABULARY,
    describe,
    describe_features,
    measure_level,
)
from emollm.prosody.normalize import (
    UTTERANCE_QUANTITIES,
    NormalizedProsody,
    ProsodyNormalizer,
    utterance_relative,
)

NAN = float("nan")
WORDS = ["kids", "are", "talking", "by", "the", "door", "now", "please"]
# Every word the templates write besides the vocabulary, numbers, quoted words and /ARPAbet/ symbols.
TEMPLATE_WORDS = {
    "speech",
    "rate",
    "is",
    "with",
    "no",
    "pause",
    "pauses",
    "pitch",
    "averages",
    "hz",
    "variation",
    "semitones",
    "sd",
    "for",
    "this",
    "speaker",
    "compared",
    "other",
    "speakers",
    "the",
    "voice",
    "salient",
    "vowels",
    "relative",
    "to",
    "utterance",
    "and",
    "in",
    "vowel",
    "at",
    "s",
    "syllables/s",
}


def make_vowel(phone="AA", *, word="word", start=0.0, duration=0.1, f0=10.0, slope=0.0, intensity=70.0):
    from emollm.prosody.features import VowelMeasures

    hz = 100 * 2 ** (f0 / 12)
    return VowelMeasures(
        phone=phone,
        stress=1,
        word=word,
        word_index=0 if word else None,
        start=start,
        end=start + duration,
        duration=duration,
        f0_mean_hz=hz,
        f0_min_hz=hz,
        f0_max_hz=hz,
        f0_slope_hz=NAN,
        f0_mean_st=f0,
        f0_min_st=f0 - 1,
        f0_max_st=f0 + 1,
        f0_slope_st=slope,
        intensity_mean_db=intensity,
        intensity_max_db=intensity + 3,
        voiced_fraction=0.0 if math.isnan(f0) else 1.0,
    )


def make_features(vowels, *, speaker=None, method="textgrid", **utterance):
    from emollm.prosody.alignment import Alignment
    from emollm.prosody.features import ProsodyFeatures, UtteranceMeasures

    values = dict(
        duration=2.0,
        speech_duration=1.6,
        n_vowels=len(vowels),
        f0_mean_hz=118.0,
        f0_std_hz=10.0,
        f0_min_hz=90.0,
        f0_max_hz=150.0,
        f0_mean_st=10.0,
        f0_std_st=3.0,
        f0_range_st=6.0,
        intensity_mean_db=70.0,
        intensity_max_db=80.0,
        intensity_range_db=20.0,
        speech_rate=4.0,
        articulation_rate=4.8,
        pause_count=1,
        pause_ratio=0.1,
        jitter_local=0.01,
        shimmer_local=0.05,
        hnr_db=15.0,
        pitch_floor=75.0,
        pitch_ceiling=300.0,
    )
    values.update(utterance)
    return ProsodyFeatures(
        utterance=UtteranceMeasures(**values),
        vowels=list(vowels),
        alignment=Alignment(method=method, duration=2.0),
        speaker=speaker,
    )


def scene(door=None, kids=None, method="textgrid"):
    """Eight plain vowels; 'door' (index 5) and 'kids' (index 0) can be changed."""
    vowels = []
    for i, word in enumerate(WORDS):
        fields = {
            "f0": 10.0 + 0.1 * (i % 3),
            "duration": 0.1 + 0.002 * (i % 2),
            "intensity": 70.0 + 0.2 * (i % 2),
        }
        fields.update({"door": door or {}, "kids": kids or {}}.get(word, {}))
        phone = {"door": "AO", "kids": "IH"}.get(word, "AH")
        if method == "nuclei":
            phone, word = NUCLEUS, None
        vowels.append(make_vowel(phone, word=word, start=0.2 * i, **fields))
    return make_features(vowels, method=method)


LOUD_LONG_FALLING = {"duration": 0.4, "intensity": 80.0, "slope": -10.0}


def test_same_input_gives_the_same_bytes():
    features = scene(door=LOUD_LONG_FALLING)
    first = describe(features)
    assert describe(features) == first == describe(scene(door=LOUD_LONG_FALLING))
    assert describe(features, utterance_relative(features)) == first


def test_style_switch():
    features = scene(door=LOUD_LONG_FALLING)
    assert describe(features, style="none") == ""
    utterance = describe(features, style="utterance")
    assert utterance.startswith("Speech rate is moderate (4.8 syllables/s) with 1 pause.")
    assert "'door'" not in utterance and "/AO/" not in utterance and "vowel" not in utterance.lower()
    vowel = describe(features, style="vowel")
    assert vowel.startswith(utterance) and "'door' /AO/" in vowel
    with pytest.raises(ConfigError, match="vowel, utterance, measures, none"):
        describe(features, style="verbose")
    assert STYLES == ("vowel", "utterance", "measures", "none")


def test_a_long_loud_falling_vowel_is_described_in_those_words():
    text = describe(scene(door=LOUD_LONG_FALLING))
    assert text.endswith(
        "Salient vowels, relative to this utterance: 'door' /AO/ is long (0.40 s), loud and falling in pitch."
    )


def test_most_salient_vowels_are_chosen_then_listed_in_time_order():
    features = scene(door=LOUD_LONG_FALLING, kids={"intensity": 77.0})
    one = describe(features, max_vowels=1)
    assert "'door'" in one and "'kids'" not in one  # door is the most salient ...
    two = describe(features, max_vowels=2)
    assert two.index("'kids' /IH/ is loud.") < two.index("'door' /AO/")  # ... but kids comes first in time
    assert describe(features, max_vowels=0) == describe(features, style="utterance")


def test_nan_pitch_vowel_gets_no_pitch_words():
    text = describe(scene(door={"duration": 0.4, "intensity": 80.0, "slope": NAN, "f0": NAN}))
    assert text.endswith("'door' /AO/ is long (0.40 s) and loud.")


def test_nuclei_are_named_by_position_and_time():
    text = describe(scene(door=LOUD_LONG_FALLING, method="nuclei"))
    assert text.endswith("Vowel 6 (at 1.00 s) is long (0.40 s), loud and falling in pitch.")
    assert "'" not in text and "/" not in text.replace("syllables/s", "")


def long_utterance(seed=0, n=40):
    rng = np.random.default_rng(seed)
    vowels = [
        make_vowel(
            ["AA", "IH", "AO", "EH"][i % 4],
            word=f"word{i}",
            start=0.15 * i,
            duration=float(np.exp(rng.normal(-2.3, 0.5))),
            f0=float(rng.normal(10, 3)),
            slope=float(rng.normal(0, 15)),
            intensity=float(rng.normal(70, 4)),
        )
        for i in range(n)
    ]
    return make_features(
        vowels,
        speaker="spk",
        articulation_rate=float(rng.uniform(2, 7)),
        f0_std_st=float(rng.uniform(1, 5)),
        pause_count=int(rng.integers(0, 4)),
        f0_mean_st=float(rng.normal(10, 2)),
        intensity_mean_db=float(rng.normal(70, 3)),
    )


@pytest.mark.parametrize("max_words", [10, 20, 35, 80, 200])
@pytest.mark.parametrize("max_vowels", [0, 1, 5])
def test_output_is_bounded_for_a_long_utterance(max_words, max_vowels):
    features = long_utterance()
    text = describe(features, max_vowels=max_vowels, max_words=max_words)
    assert 0 < len(text.split()) <= max_words
    assert text.endswith(".")
    assert len(re.findall(r"'word\d+'", text)) <= max_vowels
    if max_words == 200:
        assert len(re.findall(r"'word\d+'", text)) == max_vowels


def test_vowel_sentences_are_dropped_before_utterance_sentences():
    features = long_utterance()
    full = describe(features, max_vowels=5, max_words=500)
    head = describe(features, style="utterance")
    assert len(full.split()) > 40
    shortened = describe(features, max_vowels=5, max_words=len(head.split()) + 20)
    assert shortened.startswith(head) and 0 < shortened.count("'word") < 5


def test_vocabulary_is_closed():
    vocabulary = {
        word for levels in VOCABULARY.values() for phrase in levels.values() for word in phrase.split()
    }
    train = [long_utterance(seed) for seed in range(6)]
    norm = ProsodyNormalizer(min_vowels_per_speaker=1, min_utterances_per_speaker=1).fit(train)
    texts = []
    for seed in range(6, 14):
        features = long_utterance(seed, n=12)
        texts += [
            describe(features, max_vowels=12, max_words=300),
            describe(features, norm.transform(features), max_vowels=12, max_words=300),
            describe(features, norm.transform(features, speaker="unknown"), max_vowels=12, max_words=300),
        ]
    texts.append(describe(scene(door=LOUD_LONG_FALLING, method="nuclei")))
    seen = set()
    for text in texts:
        text = re.sub(r"'[^']+'|/[A-Z]+/|\(?[+-]?\d+(\.\d+)?\)?", " ", text)
        seen |= {w.lower() for w in re.findall(r"[A-Za-z/-]+", text)}
    assert seen - vocabulary - TEMPLATE_WORDS == set()
    assert {"slow", "fast", "narrow", "wide", "short", "long", "quiet", "loud", "rising", "falling"} <= seen


def test_reference_phrasing_follows_the_normaliser():
    train = [long_utterance(seed) for seed in range(6)]
    norm = ProsodyNormalizer(min_vowels_per_speaker=1, min_utterances_per_speaker=1).fit(train)
    features = long_utterance(9)
    known = describe(features, norm.transform(features))
    assert "for this speaker (" in known and "relative to this speaker:" in known and "The voice is" in known
    unknown = describe(features, norm.transform(features, speaker="stranger"))
    assert "compared with other speakers (" in unknown and "relative to this utterance:" in unknown
    alone = describe(features)
    assert "speaker" not in alone and "Pitch averages 118 Hz with" in alone and "The voice" not in alone


def test_absolute_levels_without_a_reference():
    slow = describe(make_features([make_vowel()], articulation_rate=2.5, f0_std_st=1.0, pause_count=0))
    assert slow == (
        "Speech rate is slow (2.5 syllables/s) with no pauses. Pitch averages 118 Hz with narrow "
        "variation (1.0 semitones SD)."
    )
    fast = describe(make_features([make_vowel()], articulation_rate=6.0, f0_std_st=5.0, pause_count=3))
    assert (
        fast.startswith("Speech rate is fast (6.0 syllables/s) with 3 pauses.") and "wide variation" in fast
    )


def test_degenerate_input_gives_short_text_not_errors():
    empty = make_features([], articulation_rate=0.0, f0_mean_hz=NAN, f0_std_st=NAN, pause_count=0)
    assert describe(empty) == describe(empty, style="utterance") == ""
    unvoiced = make_features([make_vowel(start=0.2 * i, f0=NAN, slope=NAN) for i in range(4)], f0_mean_hz=NAN)
    assert "pitch" not in describe(unvoiced).lower()


def test_bad_arguments_raise_config_errors():
    features = scene()
    with pytest.raises(ConfigError, match="max_vowels"):
        describe(features, max_vowels=-1)
    with pytest.raises(ConfigError, match="max_words"):
        describe(features, max_words=5)
    with pytest.raises(ConfigError, match="same features"):
        describe(features, utterance_relative(make_features(features.vowels[:3])))


def test_real_synthesized_speech():
    from emollm.prosody.align import align
    from emollm.prosody.measure import measure
    from emollm.prosody.synth import synthesize

    train = [
        measure(*synthesize("Kids are talking by the door", pitch=p, words_per_minute=r), speaker="m1")
        for p, r in ((0.8, 140), (1.0, 175), (1.2, 220))
    ]
    test = measure(*synthesize("Kids are talking by the door", pitch=1.3, words_per_minute=230), speaker="m1")
    plain = describe(test)
    assert plain == describe(test) and plain.startswith("Speech rate is ")
    assert "'door' /AO/" in plain or "'kids' /IH/" in plain or "'talking' /AO/" in plain
    norm = ProsodyNormalizer(min_vowels_per_speaker=5, min_utterances_per_speaker=2).fit(train)
    known = describe(test, norm.transform(test), style="utterance")
    assert "Pitch is high for this speaker" in known and "Speech rate is fast" in known
    measures = describe(test, norm.transform(test), style="measures")
    assert measure_parts(measures)["mean pitch"] in ("slightly high", "high", "very high")
    assert "Vowels relative to this speaker: 'kids' /IH/ " in measures and measures.endswith(".")
    audio, _ = synthesize("I never said she stole my money")
    nuclei = describe(measure(audio, align(audio)))  # no transcript: syllable nuclei, named by time
    assert "Vowel " in nuclei and "'" not in nuclei and "/" not in nuclei.replace("syllables/s", "")


# -- the "measures" style ------------------------------------------------------------------------------------

# Words the "measures" template writes besides names, levels, VOCABULARY, numbers and quoted/ARPAbet tokens.
MEASURES_TEMPLATE_WORDS = {
    "relative", "to", "this", "speaker", "compared", "with", "other", "speakers", "without", "a", "reference",
    "vowels", "utterance", "most", "salient", "of", "unmeasured", "unvoiced", "vowel", "at", "s",
    "syllables/s", "hz", "semitones", "db",
}  # fmt: skip


def varied_utterance(seed=0, n=40):
    """``long_utterance`` with every utterance measure drawn at random, so each has a spread to normalise by."""
    features = long_utterance(seed, n)
    rng = np.random.default_rng(1000 + seed)
    for field in UTTERANCE_QUANTITIES:
        value = getattr(features.utterance, field)
        setattr(features.utterance, field, float(value * rng.uniform(0.5, 1.5)))
    return features


def fitted_normalizer(seeds=range(6)):
    train = [varied_utterance(seed) for seed in seeds]
    return ProsodyNormalizer(min_vowels_per_speaker=1, min_utterances_per_speaker=1).fit(train)


def measure_parts(text: str) -> dict[str, str]:
    """``name -> value`` of the measures sentence (the text up to the first '.' that ends it)."""
    head = re.split(r"\.(?: |$)", text, maxsplit=1)[0]
    head = head.split(", ", 1)[1]  # drop "Relative to this speaker,"
    pairs = [part.split(": ", 1) for part in head.split("; ")]
    assert all(len(pair) == 2 for pair in pairs), head
    return dict(pairs) if len({name for name, _ in pairs}) == len(pairs) else {"duplicate": head}


def test_measure_names_cover_every_utterance_quantity_once():
    assert set(MEASURE_NAMES) == set(UTTERANCE_QUANTITIES) and len(MEASURE_NAMES) == len(UTTERANCE_QUANTITIES)
    last_words = [name.split()[-1] for name in MEASURE_NAMES.values()]
    assert len(set(last_words)) == len(last_words)  # a word pair "<last word> <level>" names one measure
    assert set(last_words).isdisjoint(w for level in MEASURE_LEVELS for w in level.split())


@pytest.mark.parametrize(
    "z, level",
    [
        (-9.0, "very low"),
        (-2.01, "very low"),
        (-2.0, "low"),
        (-1.01, "low"),
        (-1.0, "slightly low"),
        (-0.51, "slightly low"),
        (-0.5, "typical"),
        (0.0, "typical"),
        (0.5, "typical"),
        (0.51, "slightly high"),
        (1.0, "slightly high"),
        (1.01, "high"),
        (2.0, "high"),
        (2.01, "very high"),
        (9.0, "very high"),
    ],
)
def test_level_words_follow_the_z_cut_points(z, level):
    assert LEVEL_CUTS == (0.5, 1.0, 2.0)
    assert measure_level(z) == level
    features = make_features([make_vowel(start=0.2 * i) for i in range(3)])
    normalized = NormalizedProsody(
        "speaker",
        utterance={q: z if q == "f0_mean_st" else -z for q in UTTERANCE_QUANTITIES},
        vowels=[{} for _ in range(3)],
        vowel_bins=[{} for _ in range(3)],
    )
    parts = measure_parts(describe(features, normalized, style="measures"))
    assert parts["mean pitch"] == level and parts["pitch range"] == measure_level(-z)


def test_measures_style_is_deterministic_and_names_every_measure_once():
    norm = fitted_normalizer()
    features = varied_utterance(9, n=12)
    text = describe(features, norm.transform(features), style="measures")
    assert text == describe(features, norm.transform(features), style="measures")
    assert text == describe_features(features, normalizer=norm, style="measures")
    assert text.startswith("Relative to this speaker, speech rate: ")
    parts = measure_parts(text)
    assert list(parts) == list(MEASURE_NAMES.values())
    assert set(parts.values()) <= set(MEASURE_LEVELS)
    for quantity, name in MEASURE_NAMES.items():
        z = norm.transform(features).utterance[quantity]
        assert parts[name] == measure_level(z)
    # all 12 vowels, in time order, with their duration, pitch and loudness words
    vowels = text.split("Vowels relative to this speaker: ")[1]
    assert re.findall(r"'(word\d+)'", vowels) == [f"word{i}" for i in range(12)]
    first = vowels.split("; ")[0]
    assert re.fullmatch(
        r"'word0' /AA/ (short|medium-length|long), (low|mid|high)-pitched, (quiet|moderately loud|loud)"
        r"(, (falling|level|rising))?",
        first,
    )


def test_measures_reference_phrases_and_raw_values_without_a_reference():
    norm = fitted_normalizer()
    features = varied_utterance(9, n=12)
    stranger = describe(features, norm.transform(features, speaker="stranger"), style="measures")
    assert (
        stranger.startswith("Compared with other speakers, ")
        and "Vowels relative to this utterance: " in stranger
    )
    alone = measure_parts(describe(long_utterance(9, n=12), style="measures"))
    assert alone["mean pitch"] == "118 Hz" and alone["articulation speed"].endswith(" syllables/s")
    assert alone["pausing"] == "10%" and alone["jitter"] == "1.0%" and alone["harmonicity"] == "15 dB"
    assert list(alone) == list(MEASURE_NAMES.values())


@pytest.mark.parametrize("max_words", [MEASURES_MIN_WORDS, 60, 100, 200, 2000])
@pytest.mark.parametrize("max_vowels", [0, 5, None, 300])
def test_measures_style_is_bounded_for_a_long_utterance(max_words, max_vowels):
    norm = fitted_normalizer()
    features = varied_utterance(10, n=300)
    features.vowels[7].word = "pneumonoultramicroscopicsilicovolcanoconiosis"
    text = describe(
        features, norm.transform(features), style="measures", max_vowels=max_vowels, max_words=max_words
    )
    assert 0 < len(text.split()) <= max_words and text.endswith(".")
    assert len(text) <= (MAX_WORD_CHARS + 3) * max_words
    assert list(measure_parts(text)) == list(MEASURE_NAMES.values())  # the measures are never cut
    listed = len(re.findall(r"'[^']+' /[A-Z]+/", text))
    assert listed <= (STYLE_BOUNDS["measures"][0] if max_vowels is None else max_vowels)
    if 0 < listed < 300:
        assert f"({listed} most salient of 300)" in text
    assert all(len(word) <= MAX_WORD_CHARS + 2 for word in re.findall(r"'[^']+'", text))
    if max_words == 2000 and max_vowels == 300:
        assert listed == 300 and "most salient" not in text


def test_measures_style_default_bounds_and_minimum():
    features = long_utterance(10, n=300)
    text = describe(features, style="measures")
    assert len(text.split()) <= STYLE_BOUNDS["measures"][1]
    assert len(re.findall(r"'word\d+'", text)) <= STYLE_BOUNDS["measures"][0]
    assert describe(features) == describe(features, max_vowels=3, max_words=80)  # other styles unchanged
    with pytest.raises(ConfigError, match=f"max_words must be an integer >= {MEASURES_MIN_WORDS}"):
        describe(features, style="measures", max_words=MEASURES_MIN_WORDS - 1)


def test_measures_style_nan_and_degenerate_input():
    empty = make_features([], articulation_rate=0.0, speech_rate=0.0, f0_mean_hz=NAN, f0_std_st=NAN)
    parts = measure_parts(describe(empty, style="measures"))
    assert parts["speech rate"] == parts["articulation speed"] == "unmeasured"  # no vowels: no rate claimed
    assert parts["mean pitch"] == parts["pitch variability"] == "unmeasured"
    assert "Vowels" not in describe(empty, style="measures")
    # with a reference: an undefined measure (NaN z and NaN raw value) is "unmeasured", the rest get levels
    norm = fitted_normalizer()
    features = varied_utterance(9, n=12)
    features.utterance.jitter_local = NAN
    features.vowels[3] = make_vowel("EH", word="word3", start=0.45, f0=NAN, slope=NAN)
    text = describe(features, norm.transform(features), style="measures")
    parts = measure_parts(text)
    assert parts["jitter"] == "unmeasured" and set(parts.values()) - {"unmeasured"} <= set(MEASURE_LEVELS)
    unvoiced = re.search(r"'word3' /EH/ [^;.]*", text).group(0)
    assert "unvoiced" in unvoiced and not re.search(r"pitched|rising|falling|level", unvoiced)
    # two vowels alone: no vowel z-scores (too few to compare), so no vowel is listed
    two = make_features([make_vowel(start=0.0), make_vowel(start=0.3)])
    assert "Vowels" not in describe(two, style="measures")


def test_measures_vocabulary_is_closed():
    vocabulary = {w for levels in VOCABULARY.values() for phrase in levels.values() for w in phrase.split()}
    vocabulary |= {w for phrase in (*MEASURE_NAMES.values(), *MEASURE_LEVELS) for w in phrase.split()}
    norm = fitted_normalizer()
    texts = [describe(scene(door=LOUD_LONG_FALLING, method="nuclei"), style="measures")]
    for seed in range(6, 14):
        features = varied_utterance(seed, n=12)
        features.utterance.hnr_db = 100.0 * (-1) ** seed  # "very high" and "very low"
        texts += [
            describe(features, style="measures"),
            describe(features, norm.transform(features), style="measures"),
            describe(features, norm.transform(features, speaker="unknown"), style="measures"),
        ]
    seen = set()
    for text in texts:
        text = re.sub(r"'[^']+'|/[A-Z]+/|\(?[+-]?\d+(\.\d+)?%?\)?", " ", text)
        seen |= {w.lower() for w in re.findall(r"[A-Za-z/-]+", text)}
    assert seen - vocabulary - MEASURES_TEMPLATE_WORDS == set()
    assert {"very", "slightly", "typical", "short", "long", "quiet", "loud"} <= seen
