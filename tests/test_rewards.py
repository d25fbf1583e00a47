"""Who judges what: the format reward judges the <think>/<answer> shape, the label reward the answer.

The shape is :func:`emollm.parsing.has_think_answer_shape`, the same rule evaluation's ``format_ok`` uses;
``format_ok`` also asks that the answer names a label. The other reward tests are in tests/test_grpo.py.
"""

import pytest

from emollm.parsing import has_think_answer_shape, parse_completion
from emollm.training.rewards import format_reward, label_reward

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
