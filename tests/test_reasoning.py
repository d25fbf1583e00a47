"""Cue claims in rationales and their check against the measures (emollm.reasoning).

Ground truth comes from Praat-synthesised speech at set pitch and rate, normalised against the same voice at
ordinary settings, so "high pitch" and "fast speech" are known to be true (or false) before anything runs.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from emollm.errors import ConfigError
from emollm.prosody.describe import describe
from emollm.prosody.normalize import NormalizedProsody, ProsodyNormalizer
from emollm.reasoning import (
    FALSE,
    TRUE,
    UNVERIFIABLE,
    Claim,
    RationaleCheck,
    extract_claims,
    salient_cues,
    verify_rationale,
)

TEXT = "Kids are talking by the door"
TRAIN = ((0.8, 140), (1.0, 175), (1.2, 220), (0.9, 160), (1.1, 200))  # (Praat pitch multiplier, words/min)


@pytest.fixture(scope="module")
def speech():
    """A normaliser fitted on ordinary speech of one voice, and clips whose truth is set by the synthesiser."""
    from emollm.prosody.measure import measure
    from emollm.prosody.synth import synthesize

    def clip(pitch, rate, text=TEXT):
        return measure(*synthesize(text, pitch=pitch, words_per_minute=rate), speaker="m1")

    def nuclei(pitch, rate):  # no transcript: vowels are syllable nuclei, named "Vowel 3 (at 1.20 s)"
        from emollm.prosody.align import align

        audio, _ = synthesize("I never said she stole my money", pitch=pitch, words_per_minute=rate)
        return measure(audio, align(audio), speaker="m1")

    train = [clip(p, r) for p, r in TRAIN]
    norm = ProsodyNormalizer(min_vowels_per_speaker=5, min_utterances_per_speaker=2).fit(train)
    clips = {
        "high_fast": clip(1.5, 260),
        "low_slow": clip(0.7, 110),
        "pauses": clip(1.0, 150, "Well, I never said that, honestly, you know"),
        "short": clip(1.4, 280, "Stop it now"),
        "nuclei": nuclei(1.3, 200),
    }
    return SimpleNamespace(norm=norm, train=train, clips=clips)


# -- the phrasing table: text -> the claims read from it (str(Claim): [maybe] [not] quantity [degree] level) --

PHRASINGS = [
    # the descriptions' own sentences, all three styles
    ("Speech rate is fast (5.8 syllables/s) with 1 pause.", ["articulation_rate high", "pause_count 1"]),
    ("Speech rate is moderate (4.1 syllables/s) with no pauses.", ["articulation_rate mid", "pause_count 0"]),
    ("Pitch is high for this speaker (+1.2 SD) with wide variation.", ["f0_mean_st high", "f0_std_st high"]),
    ("Pitch is medium compared with other speakers (-0.2 SD) with moderate variation.",
     ["f0_mean_st mid", "f0_std_st mid"]),
    ("Pitch averages 111 Hz with narrow variation (1.4 semitones SD).", ["f0_std_st low"]),
    ("The voice is moderately loud (+0.1 SD).", ["intensity_mean_db mid"]),
    ("'door' /AO/ is long (0.41 s), loud and falling in pitch.",
     ["log_duration high 'door' /AO/", "intensity_rel_db high 'door' /AO/", "contour low 'door' /AO/"]),
    ("Vowel 3 (at 1.20 s) is short (0.05 s).", ["log_duration low #3"]),
    ("Relative to this speaker, speech rate: very high; pausing: 0%; mean pitch: slightly low; jitter: typical.",
     ["speech_rate very high", "f0_mean_st slightly low", "jitter_local mid"]),
    ("Vowels relative to this speaker: 'kids' /IH/ medium-length, mid-pitched, quiet, level.",
     ["log_duration mid 'kids' /IH/", "f0_mean_st mid 'kids' /IH/", "intensity_rel_db low 'kids' /IH/",
      "contour mid 'kids' /IH/"]),
    # paraphrases of utterance cues
    ("The pitch is high.", ["f0_mean_st high"]),
    ("She speaks with a raised, elevated pitch.", ["f0_mean_st high", "f0_mean_st high"]),
    ("A deep voice.", ["f0_mean_st low"]),
    ("The voice is loud.", ["intensity_mean_db high"]),
    ("He is practically shouting.", ["intensity_mean_db high"]),
    ("A strong voice and high energy.", ["intensity_mean_db high", "intensity_mean_db high"]),
    ("Intense anger.", []),
    ("Soft, hushed delivery.", ["intensity_mean_db low", "intensity_mean_db low"]),
    ("Speech is fast.", ["articulation_rate high"]),
    ("She talks rapidly.", ["articulation_rate high"]),
    ("The tempo is slow.", ["articulation_rate low"]),
    ("A high speaking rate.", ["articulation_rate high"]),
    ("Narrow pitch variation.", ["f0_std_st low"]),
    ("Flat, monotone intonation.", ["f0_std_st low", "f0_std_st low"]),
    ("Animated intonation with a wide pitch range.", ["f0_std_st high", "f0_range_st high"]),
    ("Many pauses.", ["pause_ratio high"]),
    ("There are three pauses.", ["pause_count 3"]),
    ("Few long pauses.", ["pause_ratio low", "pause_ratio high"]),
    ("The loudness dynamics are wide and the voice is breathy.", ["intensity_range_db high", "hnr_db low"]),
    ("Jitter is high.", ["jitter_local high"]),
    ("The pitch is very high and the pace slightly slow.", ["f0_mean_st very high", "articulation_rate slightly low"]),
    # paraphrases of vowel cues
    ("'door' is long.", ["log_duration high 'door'"]),
    ("Falling pitch on 'door'.", ["contour low 'door'"]),
    ("The /AO/ in 'door' is drawn out.", ["log_duration high 'door' /AO/"]),
    ("The word door is lengthened and rises.", ["log_duration high 'door'", "contour high 'door'"]),
    ("'kids' is loud, but 'door' is clipped.", ["intensity_rel_db high 'kids'", "log_duration low 'door'"]),
    ("“door” has a high pitch.", ["f0_mean_st high 'door'"]),
    ("'door' is spoken quickly.", ["articulation_rate high"]),  # a rate belongs to the utterance
    ("'don't' /OW/ is stretched.", ["log_duration high 'don't' /OW/"]),
    # negations and hedges
    ("The voice is not loud.", ["not intensity_mean_db high"]),
    ("Pitch isn't particularly high.", ["not f0_mean_st high"]),
    ("She never speaks quickly.", ["not articulation_rate high"]),
    ("No wide variation.", ["not f0_std_st high"]),
    ("Not loud but fast.", ["not intensity_mean_db high", "articulation_rate high"]),
    ("Maybe the pitch is high.", ["maybe f0_mean_st high"]),
    ("The speech seems slow.", ["maybe articulation_rate low"]),
    ("It might be that the voice is quiet.", ["maybe intensity_mean_db low"]),
    ("The high pitch might indicate fear.", ["f0_mean_st high"]),  # the hedge is about the inference
    # no cue at all
    ("The speaker sounds low and sad.", []),
    ("I think she is angry about the door.", []),
    ("", []),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), PHRASINGS, ids=[t[:40] or "empty" for t, _ in PHRASINGS])
def test_phrasings(text, expected):
    assert [str(claim) for claim in extract_claims(text)] == expected


def test_the_phrasing_table_is_large():
    assert len(PHRASINGS) >= 30 and len({text for text, _ in PHRASINGS}) == len(PHRASINGS)


def test_claims_keep_their_clause_and_scope():
    first, second = extract_claims("Pitch is high. 'door' /AO/ is long")
    assert (first.text, first.scope) == ("Pitch is high", "utterance")
    assert (second.word, second.vowel, second.scope) == ("door", "AO", "vowel")
    assert Claim("f0_mean_st", "high").key == Claim("f0_mean_st", "high", text="other words").key


# -- every sentence a description writes verifies as true ---------------------------------------------------


@pytest.mark.parametrize("style", ["vowel", "utterance", "measures"])
def test_descriptions_verify_as_true(speech, style):
    features = [*speech.train, *speech.clips.values()]
    for f in features:
        for normalized in (speech.norm.transform(f), speech.norm.transform(f, speaker="a stranger"), None):
            text = describe(f, normalized, style=style)
            check = verify_rationale(text, f, normalized)
            wrong = [(str(v.claim), v.verdict, v.measured) for v in check.verdicts if v.verdict != TRUE]
            assert check.precision == 1.0 and not wrong, (text, wrong)
            assert check.n_true >= 2


def test_measures_style_gives_one_claim_per_measure_with_a_level(speech):
    features = speech.clips["pauses"]
    text = describe(features, speech.norm.transform(features), style="measures")
    head = text.split(". Vowels")[0]
    with_level = [
        part for part in head.split("; ") if part.split(": ")[-1].split()[-1] in ("low", "high", "typical")
    ]
    claims = [c for c in extract_claims(head) if c.scope == "utterance"]
    assert len(claims) == len(with_level) >= 8


def test_a_copied_description_inside_a_think_block(speech):
    features = speech.clips["high_fast"]
    normalized = speech.norm.transform(features)
    copied = describe(features, normalized, style="vowel")
    text = f"<think>The description says: {copied} So the speaker is excited.</think><answer>happy</answer>"
    check = verify_rationale(text, features, normalized)
    assert check.precision == 1.0 and check.n_true == len(extract_claims(copied))


# -- hand-written rationales against known truth ------------------------------------------------------------


def verdicts(speech, clip, text):
    features = speech.clips[clip]
    check = verify_rationale(text, features, speech.norm.transform(features))
    return [v.verdict for v in check.verdicts]


@pytest.mark.parametrize(
    ("clip", "text", "expected"),
    [
        ("high_fast", "The pitch is high and the speech is fast.", [TRUE, TRUE]),
        ("high_fast", "A raised, shrill voice, rapid delivery, and it is loud.", [TRUE, TRUE, TRUE]),
        ("high_fast", "The pitch is low and the speech is slow.", [FALSE, FALSE]),
        ("high_fast", "A deep voice, spoken quietly and slowly.", [FALSE, FALSE, FALSE]),
        ("high_fast", "Pitch is typical.", [FALSE]),
        ("high_fast", "There are two pauses.", [FALSE]),
        ("high_fast", "No pauses at all.", [TRUE]),
        ("low_slow", "A deep voice and a slow, unhurried pace.", [TRUE, TRUE]),  # a repeat counts once
        ("low_slow", "Pitch is very low.", [TRUE]),
        ("low_slow", "High-pitched and fast.", [FALSE, FALSE]),
        ("low_slow", "'door' /AO/ is long and falling in pitch.", [TRUE, TRUE]),
        ("low_slow", "'door' is short and rising.", [FALSE, FALSE]),
        ("pauses", "Speech is slow with 3 pauses.", [TRUE, TRUE]),
        ("pauses", "'banana' is long.", [UNVERIFIABLE]),  # no such word
    ],
)
def test_known_truth(speech, clip, text, expected):
    assert verdicts(speech, clip, text) == expected


def test_negations_are_judged_only_when_decisive(speech):
    assert verdicts(speech, "high_fast", "The pitch is not high.") == [FALSE]
    assert verdicts(speech, "high_fast", "The pitch is not low.") == [TRUE]  # it is clearly high
    assert verdicts(speech, "high_fast", "The pitch is not typical.") == [TRUE]
    assert verdicts(speech, "high_fast", "The voice isn't very quiet.") == [TRUE]
    assert judge("Pitch is not high.", 0.0, "mid") == UNVERIFIABLE  # moderate: "not high", yet not decisive
    assert judge("Pitch is not very high.", 1.5, "high") == UNVERIFIABLE  # high, but not very: not decisive
    assert judge("Pitch is not high.", 0.45, "high") == FALSE  # the bin says high


def test_hedged_claims_are_never_counted(speech):
    for text in ("Maybe the pitch is high.", "The pitch might be low.", "It seems perhaps not loud."):
        check = verify_rationale(
            text, speech.clips["high_fast"], speech.norm.transform(speech.clips["high_fast"])
        )
        assert check.n_unverifiable == len(check.claims) == 1 and check.verdicts[0].reason == "hedged"
        assert check.precision is None and check.reward() == 0.0


# -- tolerance: borderline values are unverifiable ----------------------------------------------------------


def judge(text, z, bin_=None, quantity="f0_mean_st"):
    features = SimpleNamespace(utterance=SimpleNamespace(pause_count=1), vowels=[])
    bins = {quantity: bin_} if bin_ else {}
    return (
        verify_rationale(text, features, NormalizedProsody("speaker", {quantity: z}, bins))
        .verdicts[0]
        .verdict
    )


@pytest.mark.parametrize(
    ("text", "z", "bin_", "expected"),
    [
        ("Pitch is high.", 0.6, None, TRUE),  # slightly high on the 7-step scale
        ("Pitch is high.", 0.45, "high", TRUE),  # the bin agrees: "typical" on the 7-step scale
        ("Pitch is high.", 0.4, "mid", UNVERIFIABLE),  # within 0.25 SD of the band
        ("Pitch is high.", 0.1, "mid", FALSE),
        ("Pitch is typical.", 0.7, "high", UNVERIFIABLE),
        ("Pitch is typical.", 0.9, "high", FALSE),
        ("Pitch is typical.", 0.9, "mid", TRUE),  # the bin agrees
        ("Pitch is very high.", 2.1, "high", TRUE),
        ("Pitch is very high.", 1.9, "high", UNVERIFIABLE),
        ("Pitch is very high.", 1.5, "high", FALSE),
        ("Pitch is slightly high.", 0.8, "high", TRUE),
        ("Pitch is slightly high.", 1.5, "high", FALSE),
        ("Pitch is slightly low.", -1.1, "low", UNVERIFIABLE),
        ("Pitch is high.", math.nan, None, UNVERIFIABLE),  # no reference
    ],
)
def test_tolerance_band(text, z, bin_, expected):
    assert judge(text, z, bin_) == expected


def test_raw_levels_and_contours_have_their_own_bands():
    vowel = SimpleNamespace(word="door", phone="AO", duration=0.2, f0_slope_st=-7.0)  # a 1.4 st fall
    features = SimpleNamespace(
        utterance=SimpleNamespace(articulation_rate=5.6, pause_count=0), vowels=[vowel]
    )
    normalized = NormalizedProsody("utterance", vowels=[{}], vowel_bins=[{}])
    check = verify_rationale(
        "Speech is fast. 'door' is falling. 'door' is rising. Many pauses.", features, normalized
    )
    assert [v.verdict for v in check.verdicts] == [TRUE, UNVERIFIABLE, FALSE, FALSE]
    assert check.verdicts[1].measured == "level" and check.verdicts[1].value == pytest.approx(-1.4)


# -- the check as a reward --------------------------------------------------------------------------------------


def test_counts_precision_coverage_and_reward(speech):
    features = speech.clips["low_slow"]
    normalized = speech.norm.transform(features)
    text = "Pitch is low. Pitch is low. Speech is slow. The voice is loud. Maybe it is fast. 'door' is long."
    check = verify_rationale(text, features, normalized)
    assert (check.n_true, check.n_false, check.n_unverifiable) == (3, 1, 1)  # the repeat counts once
    assert check.precision == pytest.approx(0.75) and check.reward(min_verifiable=4) == pytest.approx(0.75)
    assert check.reward(min_verifiable=5) == 0.0
    assert check.salient == salient_cues(features, normalized)
    assert {"f0_mean_st", "articulation_rate"} <= set(check.covered) <= set(check.salient)
    assert check.coverage == pytest.approx(len(check.covered) / len(check.salient))
    row = check.to_dict()
    assert row["n_true"] == 3 and row["precision"] == pytest.approx(0.75) and len(row["verdicts"]) == 5
    assert {v["verdict"] for v in row["verdicts"]} == {TRUE, FALSE, UNVERIFIABLE}


def test_negated_and_mid_claims_cover_nothing(speech):
    features = speech.clips["high_fast"]
    normalized = speech.norm.transform(features)
    check = verify_rationale("The pitch is not low. The rate is not slow.", features, normalized)
    assert check.n_true == 2 and check.covered == ()


def test_normalized_must_match_the_features(speech):
    features = speech.clips["short"]
    with pytest.raises(ConfigError, match="same features"):
        verify_rationale("Pitch is high.", features, speech.norm.transform(speech.clips["low_slow"]))


def test_empty_rationale():
    check = verify_rationale("", SimpleNamespace(utterance=None, vowels=[]), NormalizedProsody("speaker"))
    assert check == RationaleCheck((), (), ()) and check.precision is None and check.coverage is None
    assert check.reward() == 0.0
