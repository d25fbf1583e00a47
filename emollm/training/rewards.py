"""Verifiable rewards for GRPO: plain functions with TRL's reward signature.

TRL calls every reward function as ``fn(prompts=..., completions=..., completion_ids=..., **columns)``, where
``columns`` are the dataset's other columns, one value per completion (``label``, ``label_set``,
``label_distribution``...). Each function here returns one float per completion:

- :func:`format_reward`: 1 when the completion has the shape of
  :func:`emollm.parsing.has_think_answer_shape` (exactly one ``<think>...</think>`` then exactly one
  non-blank ``<answer>...</answer>``, nothing else around them), else 0. It judges the tags only, as the
  format rewards of DeepSeek-R1 and R1-Omni do: ``<think>.</think><answer>banana</answer>`` earns 1 here and
  0 from :func:`label_reward`, which judges the answer. (Evaluation's ``format_ok`` asks for both: the
  shape and an answer that names a label.)
- :func:`label_reward`: 1 when the answer names the gold label, else 0. The answer is read by
  :func:`emollm.parsing.parse_completion` and compared after :func:`emollm.labels.normalize_label`, so
  "Angry", "anger" and "furious" all match ``angry`` (R1-Omni compares exact strings, which punishes a right
  answer in the wrong spelling). A completion that names no label gets 0, and so does one cut off inside its
  ``<think>`` (emotions named while reasoning are not an answer).
- :func:`soft_label_reward`: the gold distribution's mass on the predicted label (for corpora with annotator
  votes, e.g. IEMOCAP or MSP-Podcast); rows without a distribution fall back to :func:`label_reward`.
- :func:`length_penalty`: 0 up to ``max_words`` words, then down linearly to -1 at twice that,
  against long, repetitive rationales that pad their way to the format reward.

Rewards are chosen by name in a recipe config (``rewards: [format, label]``, weights in ``reward_weights``)
through the literal :data:`REWARDS` registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from emollm.errors import ConfigError
from emollm.labels import LABEL_SETS, normalize_label
from emollm.parsing import has_think_answer_shape, parse_completion

_TAG = re.compile(r"</?(think|answer)>", re.IGNORECASE)
LENGTH_MAX_WORDS = 60


def completion_text(completion) -> str:
    """The text of a completion: a string, or the last message of a conversational completion.

    >>> completion_text([{"role": "assistant", "content": "<answer>sad</answer>"}])
    '<answer>sad</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion is a string or a list of messages, got {type(completion).__name__}")


def _per_row(value, n: int) -> list:
    """A column value per completion: TRL passes lists; a single value (direct calls) is repeated."""
    if isinstance(value, list) and len(value) == n:
        return value
    return [value] * n


def _label_sets(value, n: int) -> list:
    """The ``label_set`` of each completion: a per-row list (TRL), or one set for all (direct calls).

    One set is a name (``"ravdess8"``), a :class:`~emollm.labels.LabelSet` or a list of labels; a list of n
    strings that are not all set names is one list of labels, not n names.
    """
    if isinstance(value, list) and len(value) == n:
        names = all(isinstance(v, str) for v in value)
        if not names or all(v in LABEL_SETS for v in value):
            return value
    return [value] * n


def format_reward(completions: Sequence, **kwargs) -> list[float]:
    """1.0 for one ``<think>...</think>`` then one non-blank ``<answer>...</answer>``, else 0.0.

    The shape only (:func:`emollm.parsing.has_think_answer_shape`): what the answer says is judged by
    :func:`label_reward`, so an answer outside the label set still earns the format reward.

    >>> format_reward(["<think>Loud.</think><answer>angry</answer>", "<answer>angry</answer>",
    ...                "<think>a</think><answer>x</answer><answer>y</answer>",
    ...                "<think>Loud.</think><answer>banana</answer>"])
    [1.0, 0.0, 0.0, 1.0]
    """
    return [1.0 if has_think_answer_shape(completion_text(c)) else 0.0 for c in completions]


def label_reward(completions: Sequence, label: Sequence[str] | str, **kwargs) -> list[float]:
    """1.0 when the completion's answer is the gold label (case, inflections and synonyms tolerated).

    Args:
        completions: The model's completions.
        label: The gold label of each completion's prompt (the dataset's ``label`` column).
        **kwargs: ``label_set`` (a set name or list per row) reads answers in that set, so "joy" counts for
            ``happy`` in ``ravdess8``; without it answers are compared as emotion concepts.

    >>> label_reward(["<think>.</think><answer>Anger</answer>", "furious!", "<answer>calm</answer>", "hmm"],
    ...              label=["angry", "angry", "angry", "angry"])
    [1.0, 1.0, 0.0, 0.0]
    """
    n = len(completions)
    sets = _label_sets(kwargs.get("label_set"), n)
    rewards = []
    for completion, gold, label_set in zip(completions, _per_row(label, n), sets, strict=True):
        predicted = _predicted(completion, label_set)
        rewards.append(
            1.0 if predicted is not None and predicted == normalize_label(gold, label_set) else 0.0
        )
    return rewards


def soft_label_reward(
    completions: Sequence,
    label: Sequence[str] | str | None = None,
    label_distribution: Sequence[Mapping[str, float] | None] | None = None,
    **kwargs,
) -> list[float]:
    """The annotators' share of the predicted label (rows without votes: :func:`label_reward`).

    >>> soft_label_reward(["<answer>sad</answer>", "<answer>neutral</answer>", "<answer>happy</answer>"],
    ...                   label=["sad"] * 3, label_distribution=[{"sad": 0.75, "neutral": 0.25}] * 3)
    [0.75, 0.25, 0.0]
    """
    n = len(completions)
    sets = _label_sets(kwargs.get("label_set"), n)
    distributions = _per_row(label_distribution, n)
    golds = _per_row(label, n)
    rewards = []
    for completion, gold, distribution, label_set in zip(
        completions, golds, distributions, sets, strict=True
    ):
        if not distribution:
            if gold is None:
                raise ConfigError("soft_label_reward needs a label_distribution or a label column")
            rewards.extend(label_reward([completion], [gold], label_set=[label_set]))
            continue
        predicted = _predicted(completion, label_set)
        mass = {}
        for name, share in distribution.items():
            key = normalize_label(name, label_set)
            if key is not None:
                mass[key] = mass.get(key, 0.0) + float(share)
        rewards.append(mass.get(predicted, 0.0) if predicted is not None else 0.0)
    return rewards


def length_penalty(completions: Sequence, max_words: int = LENGTH_MAX_WORDS, **kwargs) -> list[float]:
    """0 up to ``max_words`` words, falling linearly to -1.0 at ``2 * max_words`` and beyond.

    Words are counted over the whole completion with its tags removed (rationale and answer alike, so
    padding cannot hide inside ``<answer>``).

    >>> short = "<think>" + "word " * 30 + "</think><answer>sad</answer>"
    >>> length_penalty([short, "word " * 90, "word " * 500])
    [0.0, -0.5, -1.0]
    """
    if max_words < 1:
        raise ConfigError(f"max_words must be >= 1, got {max_words}")
    rewards = []
    for completion in completions:
        words = len(_TAG.sub(" ", completion_text(completion)).split())
        rewards.append(-min(1.0, (words - max_words) / max_words) if words > max_words else 0.0)
    return rewards


def _predicted(completion, label_set) -> str | None:
    """The answered label, or None.

    None also when the rationale was opened but never closed: a cut-off completion names emotions while
    reasoning, and those are not its answer.
    """
    text = completion_text(completion)
    lowered = text.lower()
    if "<think>" in lowered and "</think>" not in lowered and "<answer>" not in lowered:
        return None
    return parse_completion(text, label_set).label


REWARDS = {
    "format": format_reward,
    "label": label_reward,
    "soft_label": soft_label_reward,
    "length": length_penalty,
}
"""Reward name (as written in a recipe config) -> function."""


def get_reward_funcs(names: Sequence[str]) -> list:
    """The reward functions named in a config, in order.

    Raises:
        ConfigError: for an empty list, an unknown name (the message lists the valid ones) or a repeat.

    >>> [f.__name__ for f in get_reward_funcs(["format", "label"])]
    ['format_reward', 'label_reward']
    """
    names = list(names)
    if not names:
        raise ConfigError(f"give at least one reward; valid names: {', '.join(REWARDS)}")
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ConfigError(f"unknown reward(s) {unknown}; valid names: {', '.join(REWARDS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"reward(s) {repeated} named twice; give each once and weight it in reward_weights")
    return [REWARDS[name] for name in names]
