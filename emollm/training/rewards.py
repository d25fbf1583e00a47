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
- :func:`cue_reward`: the precision of the rationale's own claims about the voice, checked against the
  measured prosody each row carries (:func:`emollm.reasoning.verify_rationale`); 0 below ``min_claims``
  counted claims; clauses copied from the prompt's description and true claims against the answer's arousal
  do not count.

Rewards are chosen by name in a recipe config (``rewards: [format, label]``, weights in ``reward_weights``)
through the literal :data:`REWARDS` registry; :func:`get_reward_funcs` binds their settings
(``cue_min_claims``...).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

from emollm.errors import ConfigError
from emollm.labels import LABEL_SETS, normalize_label
from emollm.parsing import has_think_answer_shape, parse_completion
from emollm.reasoning import FALSE, TRUE, extract_claims, verify_rationale
from emollm.training.evidence import affect, arousal_direction, read_prosody_record

_TAG = re.compile(r"</?(think|answer)>", re.IGNORECASE)
LENGTH_MAX_WORDS = 60
CUE_MIN_CLAIMS = 2
_SPACES = re.compile(r"\s+")


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


def cue_reward(
    completions: Sequence,
    prosody: Sequence[str | Mapping | None] | str | Mapping | None = None,
    min_claims: int = CUE_MIN_CLAIMS,
    false_penalty: float = 0.0,
    **kwargs,
) -> list[float]:
    """Precision of the rationale's own claims about the voice, against the measured prosody of the row.

    The ``<think>`` text is read by :func:`emollm.reasoning.verify_rationale` against the row's measures
    (:func:`emollm.training.evidence.read_prosody_record`). Of its claims, the reward counts:

    - every **false** claim;
    - a **true** claim only when it is the model's own (made at least once in a clause that is not a
      verbatim span of the prompt's description, ignoring case and spacing: restating the description is
      true but not reasoning) and it agrees with the arousal of the answered label
      (:func:`~emollm.training.evidence.arousal_direction`: "loud" does not support ``sad``; cues without an
      arousal direction, and labels without one, always agree).

    reward = true / (true + false) when at least ``min_claims`` claims count, else 0 (saying nothing, hedging
    or copying cannot win), minus ``false_penalty`` per false claim. 0 for a completion that answers no label
    (or is cut off in its ``<think>``) and for a row without measures.

    Args:
        completions: The model's completions.
        prosody: Each row's :func:`~emollm.training.evidence.prosody_record` (the dataset's ``prosody``
            column), or None where the utterance has no measures.
        min_claims: Fewest counted claims that earn anything (>= 1).
        false_penalty: Subtracted per false claim (>= 0).
        **kwargs: ``label_set`` reads the answer in that set.

    Raises:
        ConfigError: ``min_claims`` below 1 or a negative ``false_penalty``.

    >>> cue_reward(["<think>Nothing to say.</think><answer>sad</answer>"], prosody=[None])
    [0.0]
    """
    if min_claims < 1:
        raise ConfigError(f"min_claims must be >= 1, got {min_claims}")
    if false_penalty < 0:
        raise ConfigError(f"false_penalty must be >= 0, got {false_penalty}")
    n = len(completions)
    sets = _label_sets(kwargs.get("label_set"), n)
    rewards = []
    for completion, record, label_set in zip(completions, _per_row(prosody, n), sets, strict=True):
        answer = _predicted(completion, label_set)
        features, normalized, description = read_prosody_record(record)
        if answer is None or features is None:
            rewards.append(0.0)
            continue
        rationale = parse_completion(completion_text(completion), label_set).rationale
        arousal = affect(answer)[0]
        source = _flat(description or "")
        own = {c.key for c in extract_claims(rationale) if not (source and _flat(c.text) in source)}
        supported = false = 0
        for verdict in verify_rationale(rationale, features, normalized).verdicts:  # a repeat counts once
            claim = verdict.claim
            if verdict.verdict == FALSE:
                false += 1
            elif verdict.verdict == TRUE and claim.key in own:  # said in a clause of its own at least once
                direction = arousal_direction(claim.quantity, claim.level, claim.negated)
                supported += arousal is None or direction is None or direction == arousal
        counted = supported + false
        precision = supported / counted if counted >= min_claims else 0.0
        rewards.append(precision - false_penalty * false)
    return rewards


def _flat(text: str) -> str:
    """Lower case, one space between words, no sentence punctuation at the ends: for the copy check."""
    return _SPACES.sub(" ", text.lower()).strip(" .,;:!?")


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
    "cue": cue_reward,
}
"""Reward name (as written in a recipe config) -> function."""


def get_reward_funcs(names: Sequence[str], settings: Mapping[str, Mapping] | None = None) -> list:
    """The reward functions named in a config, in order.

    Args:
        names: Reward names (:data:`REWARDS`).
        settings: name -> keyword arguments bound to that reward (``{"cue": {"min_claims": 3}}``); a bound
            reward is a ``functools.partial``, which TRL logs under the function's own name.

    Raises:
        ConfigError: for an empty list, an unknown name (the message lists the valid ones) or a repeat.

    >>> [f.__name__ for f in get_reward_funcs(["format", "label"])]
    ['format_reward', 'label_reward']
    >>> get_reward_funcs(["cue"], {"cue": {"min_claims": 3}})[0].keywords
    {'min_claims': 3}
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
    settings = settings or {}
    return [functools.partial(REWARDS[name], **settings[name]) if settings.get(name) else REWARDS[name]
            for name in names]  # fmt: skip
