"""Completion -> label, rationale and a format check.

Rules, in order:

1. If the completion has an ``<answer>...</answer>`` span, the label is the first label of the set named
   inside the *first* such span (several labels: the first one wins).
2. Otherwise the label is the first label named anywhere after the last ``</think>``, with or without an
   opening ``<think>`` (chat templates that open the think block in the prompt leave only the closing tag
   in the completion), or in the whole text when there is no ``</think>``. Tags match in any case.
3. Names go through :func:`emollm.labels.normalize_label`: case, inflections and synonyms are accepted and a
   negated mention ("not happy") is skipped. Text that names no label gives ``label=None`` (a parse
   failure, counted separately by the metrics).

The shape is defined once, by :func:`has_think_answer_shape`: exactly one ``<think>...</think>`` then exactly
one non-blank ``<answer>...</answer>``, only whitespace around and between them, no other ``think`` or
``answer`` tag anywhere, tags in any case. Two functions judge the format with it:

- ``ParsedCompletion.format_ok`` (evaluation's format compliance) = the shape **and** an answer that names a
  label of the set: a well-tagged ``<answer>banana</answer>`` is not a usable answer.
- :func:`emollm.training.rewards.format_reward` (GRPO) = the shape only, as in DeepSeek-R1 and R1-Omni,
  whose format reward checks the tags: whether the answer is a label, and the right one, is
  :func:`~emollm.training.rewards.label_reward`'s job, so a wrong or unknown label is not punished twice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from emollm.labels import LabelSet, normalize_label

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_SHAPE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)


def has_think_answer_shape(text: str) -> bool:
    """Whether ``text`` is exactly one think block followed by exactly one non-blank answer block.

    Whitespace (newlines included) may surround and separate the two blocks; anything else outside them,
    any further ``<think>``, ``</think>``, ``<answer>`` or ``</answer>`` (a second block, a tag nested in the
    rationale) or a blank answer breaks the shape. Tags match in any case; the rationale may be empty. The
    answer's content is not judged here (see the module docstring for who judges it).

    >>> has_think_answer_shape(" <think>Loud.</think>  <answer>banana</answer> ")
    True
    >>> has_think_answer_shape("<THINK>Loud.</THINK><ANSWER>angry</ANSWER>")
    True
    >>> [has_think_answer_shape(t) for t in ["<answer>angry</answer>",  # no think block
    ...     "<think>.</think><answer>angry</answer> I think",  # text after the answer
    ...     "<think>.</think><answer>sad</answer><answer>angry</answer>",  # two answers
    ...     "<think>.</think><answer> </answer>"]]  # blank answer
    [False, False, False, False]
    """
    match = _SHAPE.fullmatch(text)
    return bool(match) and len(_TAG.findall(text)) == 4 and bool(match.group(2).strip())


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says.

    Attributes:
        label: Canonical label, or None when no label could be read.
        rationale: The ``<think>`` text; without one, the text before a lone ``</think>`` or before the
            answer, or the whole text when there are no tags.
        format_ok: :func:`has_think_answer_shape` and the answer names a label of the set.
    """

    label: str | None
    rationale: str
    format_ok: bool


def parse_completion(text: str, labels: str | LabelSet | Sequence[str]) -> ParsedCompletion:
    """Read the label, rationale and format of a model's completion.

    >>> parse_completion("<think>Raised voice.</think><answer>Angry</answer>", "ravdess8")
    ParsedCompletion(label='angry', rationale='Raised voice.', format_ok=True)
    >>> parse_completion("<think>Raised voice.</think><answer>banana</answer>", "ravdess8").format_ok
    False
    >>> parse_completion("I think the speaker is scared.", "meld7").label
    'fear'
    """
    answers = _ANSWER.findall(text)
    thinks = _THINK.findall(text)
    think_ends = list(_THINK_END.finditer(text))
    if answers:
        label = normalize_label(answers[0], labels)
    else:
        tail = text[think_ends[-1].end() :] if think_ends else text
        label = normalize_label(tail, labels)
    if thinks:
        rationale = thinks[0].strip()
    elif think_ends:
        rationale = text[: think_ends[0].start()].strip()
    elif answers:
        rationale = text[: text.lower().find("<answer>")].strip()
    else:
        rationale = text.strip()
    # in the shape there is exactly one answer block, so ``label`` was read from it
    format_ok = has_think_answer_shape(text) and label is not None
    return ParsedCompletion(label=label, rationale=rationale, format_ok=format_ok)
