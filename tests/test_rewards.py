"""Who judges what: the format reward judges the <think>/<answer> shape, the label reward the answer.

The shape is :func:`emollm.parsing.has_think_answer_shape`, the same rule evaluation's ``format_ok`` uses;
``format_ok`` also asks that the answer names a label. The cue reward is judged here on hand-written
completions about a synthesised clip whose truth is known; the other reward tests are in tests/test_grpo.py.
"""

import json

import pytest

from emollm.errors import ConfigError
from emollm.parsing import has_think_answer_shape, parse_completion
from emollm.training.rewards import cue_reward, format_reward, label_reward

CASES = [
    # completion, format reward, label reward (gold: angry)
    ("<think>Loud.</think><answer>angry</answer>", 1.0, 1.0),
    ("<think>Loud.</think><answer>banana</answer>", 1.0, 0.0),  # the tags are right, the label is not
    ("<think>Loud.</think><answer>angry</answer> I think", 0.0, 1.0),  # text after </answer>
    ("<think>Loud.</think><answer>angry</answer><answer>sad</answer>", 0.0, 1.0),  # two answers: first read
    ("<THINK>Loud.</THINK><ANSWER>Angry</ANSWER>", 1.0, 1.0),  # upper-case tags
]


@pytest.mark.parametrize(("completion", "fmt", "correct"), CASES)
def test_format_reward_judges_the_shape_and_label_reward_the_answer(completion, fmt, correct):
    assert format_reward([completion]) == [fmt]
    assert label_reward([completion], label="angry", label_set="ravdess8") == [correct]


@pytest.mark.parametrize("completion", [case[0] for case in CASES])
def test_format_reward_and_format_ok_share_one_shape(completion):
    shape = has_think_answer_shape(completion)
    parsed = parse_completion(completion, "ravdess8")
    assert format_reward([completion]) == [1.0 if shape else 0.0]
    assert parsed.format_ok is (shape and parsed.label is not None)


# -- the cue reward: claims about the voice, checked against the row's measures ------------------------------

TEXT = "Kids are talking by the door"


@pytest.fixture(scope="module")
def loud_fast():
    """A clip with high pitch, fast speech and a loud voice for this speaker, its record and description."""
    from emollm.prosody.describe import describe
    from emollm.prosody.measure import measure
    from emollm.prosody.normalize import ProsodyNormalizer
    from emollm.prosody.synth import synthesize
    from emollm.training.evidence import prosody_record

    def clip(pitch, rate):
        return measure(*synthesize(TEXT, pitch=pitch, words_per_minute=rate), speaker="m1")

    train = [clip(p, r) for p, r in ((0.8, 140), (1.0, 175), (1.2, 220), (0.9, 160), (1.1, 200))]
    norm = ProsodyNormalizer(min_vowels_per_speaker=5, min_utterances_per_speaker=2).fit(train)
    features = clip(1.5, 260)
    normalized = norm.transform(features)
    description = describe(features, normalized)
    return prosody_record(features, normalized, description), description


def think(rationale, answer="angry"):
    return f"<think>{rationale}</think><answer>{answer}</answer>"


TRUE_2 = "The pitch is high and the speech is fast."  # both true of the clip
CUE_CASES = [
    # completion, reward (min_claims 2, no penalty)
    (think(TRUE_2), 1.0),  # true
    (think("The pitch is low and the speech is slow."), 0.0),  # false
    (think("The pitch is high and the speech is slow."), 0.5),  # one of each
    (think("I cannot tell from the recording."), 0.0),  # none
    (think("The pitch is high."), 0.0),  # one true claim: below the minimum
    (think("Maybe the pitch is high; the speech seems fast."), 0.0),  # hedged: unverifiable
    (think("'banana' is long and 'apple' is loud."), 0.0),  # absent words: unverifiable
    (think(f"{TRUE_2} {TRUE_2} {TRUE_2}"), 1.0),  # a repeat counts once
    (think(TRUE_2, answer="sad"), 0.0),  # true, but against the answer's arousal: no support
    (think("The pitch is high and the speech is slow.", answer="sad"), 0.0),  # one false, one against
    (think(TRUE_2, answer="disgust"), 1.0),  # a label without an arousal: any true cue supports it
    ("<think>The pitch is high and the speech is fast, so", 0.0),  # cut off: no answer
    ([{"role": "assistant", "content": think(TRUE_2)}], 1.0),  # conversational
]


@pytest.mark.parametrize(("completion", "expected"), CUE_CASES)
def test_cue_reward_on_hand_written_completions(loud_fast, completion, expected):
    record, _ = loud_fast
    assert cue_reward([completion], prosody=[record], label_set="ravdess8") == [expected]


def test_cue_reward_gives_no_credit_for_the_copied_description(loud_fast):
    record, description = loud_fast
    copied = think(description)  # every sentence is true, and none is the model's own
    assert cue_reward([copied], prosody=[record], min_claims=1) == [0.0]
    own = think(f"{description} So: {TRUE_2}")  # the copy earns nothing, the own clause does
    assert cue_reward([own], prosody=[record]) == [1.0]
    retyped = think(description.upper().replace(". ", ".  "))  # case and spacing do not hide a copy
    assert cue_reward([retyped], prosody=[record], min_claims=1) == [0.0]
    rows_without_description = json.dumps({**json.loads(record), "description": None})  # tokens route
    assert cue_reward([copied], prosody=[rows_without_description], min_claims=1) == [1.0]


def test_cue_reward_settings_penalty_and_missing_measures(loud_fast):
    record, _ = loud_fast
    one = think("The pitch is high.")
    assert cue_reward([one], prosody=[record], min_claims=1) == [1.0]
    half = think("The pitch is high and the speech is slow.")
    assert cue_reward([half], prosody=[record], false_penalty=0.25) == [0.25]
    lying = think("The pitch is low.")  # below the minimum, yet charged for the false claim
    assert cue_reward([lying], prosody=[record], false_penalty=0.25) == [-0.25]
    assert cue_reward([think(TRUE_2)], prosody=[None]) == [0.0]  # a row without measures
    assert cue_reward([think(TRUE_2)], prosody=[json.loads(record)]) == [1.0]  # a parsed record too
    with pytest.raises(ConfigError, match="min_claims"):
        cue_reward([one], prosody=[record], min_claims=0)
    with pytest.raises(ConfigError, match="false_penalty"):
        cue_reward([one], prosody=[record], false_penalty=-1.0)
