import pytest

from emollm.parsing import has_think_answer_shape, parse_completion


@pytest.mark.parametrize(
    ("completion", "label", "format_ok"),
    [
        ("<think>Loud and fast.</think><answer>angry</answer>", "angry", True),
        ("<think>x</think>\n<answer> Angry. </answer>\n", "angry", True),
        ("<THINK>x</THINK><ANSWER>furious</ANSWER>", "angry", True),  # case and synonyms
        ("<answer>angry</answer>", "angry", False),  # no think block
        ("<think>sad voice</think><answer>sad</answer><answer>angry</answer>", "sad", False),  # first wins
        ("<think>a</think><think>b</think><answer>sad</answer>", "sad", False),
        ("<think>x</think><answer>sad or angry</answer>", "sad", True),  # first label in the answer
        ("<think>x</think><answer>banana</answer>", None, False),
        ("<think>It is not happy</think> so: fearful", "fearful", False),  # after </think>
        ("<think>sounds happy", "happy", False),  # unterminated think: the whole text is read
        ("<THINK>sounds happy</THINK> so: fearful", "fearful", False),  # tags in any case
        ("sounds happy</think> so: fearful", "fearful", False),  # the prompt opened the think block
        ("The speaker is angry.", "angry", False),  # no tags at all
        ("", None, False),
        ("<think>x</think><answer>angry</answer> trailing", "angry", False),
    ],
)
def test_parse_cases(completion, label, format_ok):
    parsed = parse_completion(completion, "ravdess8")
    assert parsed.label == label
    assert parsed.format_ok is format_ok


# The shape is one rule (has_think_answer_shape); format_ok adds that the answer names a label of the set,
# while the GRPO format reward judges the shape alone (tests/test_rewards.py).
@pytest.mark.parametrize(
    ("completion", "shape", "format_ok"),
    [
        ("<think>Loud.</think><answer>angry</answer>", True, True),
        ("<think>Loud.</think><answer>banana</answer>", True, False),  # well tagged, names no label
        ("<think>Loud.</think><answer>angry</answer> I think", False, False),  # text after </answer>
        ("<think>Loud.</think><answer>angry</answer><answer>sad</answer>", False, False),  # two answers
        ("<THINK>Loud.</THINK><ANSWER>angry</ANSWER>", True, True),  # upper-case tags
        ("\n <think>\nLoud.\n</think>\n\n<answer> angry </answer>\n", True, True),  # whitespace around
        ("<think></think><answer>angry</answer>", True, True),  # an empty rationale keeps the shape
        ("<think>a <think>b</think><answer>angry</answer>", False, False),  # a stray tag in the rationale
        ("<think>Loud.</think><answer> </answer>", False, False),  # blank answer
        ("<think>Loud.</think>angry", False, False),
    ],
)
def test_format_ok_is_the_shape_and_a_label(completion, shape, format_ok):
    assert has_think_answer_shape(completion) is shape
    assert parse_completion(completion, "ravdess8").format_ok is format_ok


def test_rationale():
    assert parse_completion("<think> Rising pitch. </think><answer>happy</answer>", "ekman7").rationale == (
        "Rising pitch."
    )
    assert (
        parse_completion("Voice trembles. <answer>fearful</answer>", "ekman7").rationale == "Voice trembles."
    )
    assert parse_completion("Low, slow.</think><answer>sad</answer>", "ekman7").rationale == "Low, slow."
