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

``format_ok`` is True only for exactly one ``<think>...</think>`` followed by exactly one
``<answer>...</answer>`` whose content names a label.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from emollm.labels import LabelSet, normalize_label

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_FORMAT = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says.

    Attributes:
        label: Canonical label, or None when no label could be read.
        rationale: The ``<think>`` text; without one, the text before a lone ``</think>`` or before the
            answer, or the whole text when there are no tags.
        format_ok: Exactly one think block followed by exactly one answer block that names a label.
    """

    label: str | None
    rationale: str
    format_ok: bool


def parse_completion(text: str, labels: str | LabelSet | Sequence[str]) -> ParsedCompletion:
    """Read the label, rationale and format of a model's completion.

    >>> parse_completion("<think>Raised voice.</think><answer>Angry</answer>", "ravdess8")
    ParsedCompletion(label='angry', rationale='Raised voice.', format_ok=True)
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
    match = _FORMAT.match(text)
    format_ok = bool(
        match
        and len(answers) == 1
        and len(thinks) == 1
        and normalize_label(match.group(2), labels) is not None
    )
    return ParsedCompletion(label=label, rationale=rationale, format_ok=format_ok)
