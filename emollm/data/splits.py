"""Speaker-independent splits: no speaker is ever on both sides of a split.

Emotion recognisers learn voices easily, so evaluating on a speaker seen in training overstates accuracy.
Every helper here splits by speaker (or by a group of speakers, such as an IEMOCAP session) and checks
the result with :func:`check_disjoint_speakers`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence

from emollm.data.schema import Utterance
from emollm.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# The suggested development split of RAVDESS, by actor. Actors 19-24 are withheld from the shared data
# (../shared/data/ravdess holds actors 1-18): the project is evaluated on them independently, so "test"
# is empty there.
RAVDESS_SPLITS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(1, 15)),
    "dev": tuple(range(15, 19)),
    "test": tuple(range(19, 25)),
    "all": tuple(range(1, 25)),
}
IEMOCAP_SESSIONS = (1, 2, 3, 4, 5)


def _speaker(u: Utterance) -> str:
    if u.speaker is None:
        raise DataError(f"utterance {u.id!r} has no speaker, so it cannot be split by speaker")
    return u.speaker


def speakers_of(utterances: Iterable[Utterance]) -> set[str]:
    """The set of speaker ids in ``utterances`` (every utterance must have one)."""
    return {_speaker(u) for u in utterances}


def check_disjoint_speakers(parts: dict[str, Sequence[Utterance]]) -> None:
    """Raise DataError if any speaker appears in two parts of a split.

    >>> a, b = Utterance("x", speaker="s1"), Utterance("y", speaker="s2")
    >>> check_disjoint_speakers({"train": [a], "test": [b]})  # fine: returns None
    """
    owner: dict[str, str] = {}
    for name, part in parts.items():
        for speaker in speakers_of(part):
            if speaker in owner and owner[speaker] != name:
                raise DataError(
                    f"speaker {speaker!r} appears in both the {owner[speaker]!r} and {name!r} splits"
                )
            owner[speaker] = name


def split_by_speaker(
    utterances: Sequence[Utterance],
    test_speakers: Iterable[str],
    *,
    dev_speakers: Iterable[str] = (),
) -> dict[str, list[Utterance]]:
    """Split utterances into train / (dev) / test by speaker id.

    Speakers listed but absent from ``utterances`` are allowed (their part is simply smaller).

    Args:
        utterances: Utterances that all have a ``speaker``.
        test_speakers: Speaker ids for the test part.
        dev_speakers: Speaker ids for the dev part; when empty, the result has no ``"dev"`` key.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``, input order kept within each part.

    Raises:
        ConfigError: when a speaker is listed for both dev and test.
        DataError: when an utterance has no speaker.

    >>> us = [Utterance(str(i), speaker=s) for i, s in enumerate(["a", "b", "a", "c"])]
    >>> {k: [u.id for u in v] for k, v in split_by_speaker(us, ["a"]).items()}
    {'train': ['1', '3'], 'test': ['0', '2']}
    """
    test, dev = set(test_speakers), set(dev_speakers)
    if test & dev:
        raise ConfigError(f"speakers {sorted(test & dev)} are listed for both dev and test")
    parts: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for u in utterances:
        speaker = _speaker(u)
        parts["test" if speaker in test else "dev" if speaker in dev else "train"].append(u)
    if not dev:
        del parts["dev"]
    check_disjoint_speakers(parts)
    return parts


def _check_split(split: str, accepted: Sequence[str], corpus: str) -> None:
    if split not in accepted:
        raise DataError(f"unknown {corpus} split {split!r}; accepted: {list(accepted)}")


def ravdess_actor(u: Utterance) -> int:
    """The RAVDESS actor number of an utterance, from ``meta["actor"]`` or a ``ravdess/NN`` speaker id."""
    actor = u.meta.get("actor")
    if actor is None and u.speaker is not None:
        match = re.fullmatch(r"ravdess/(\d+)", u.speaker)
        actor = match.group(1) if match else None
    try:
        return int(actor)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(
            f"utterance {u.id!r} has no RAVDESS actor (meta['actor'] {u.meta.get('actor')!r}, "
            f"speaker {u.speaker!r})"
        ) from None


def ravdess_split(utterances: Sequence[Utterance], split: str) -> list[Utterance]:
    """The RAVDESS utterances of one split of the suggested development split, by actor.

    train = actors 1-14, dev = 15-18, test = 19-24, all = 1-24. Actors 19-24 are withheld from the shared
    data, so ``"test"`` is empty there (logged as a warning).

    Raises:
        DataError: for an unknown split name (listing the accepted ones) or an utterance without an actor.

    >>> us = [Utterance(f"u{a}", speaker=f"ravdess/{a:02d}", meta={"actor": a}) for a in (3, 16, 20)]
    >>> [u.id for u in ravdess_split(us, "dev")]
    ['u16']
    """
    _check_split(split, list(RAVDESS_SPLITS), "RAVDESS")
    actors = set(RAVDESS_SPLITS[split])
    chosen = [u for u in utterances if ravdess_actor(u) in actors]
    if not chosen and utterances:
        logger.warning(
            "RAVDESS split %r (actors %s) is empty: actors 19-24 are withheld from the shared data",
            split,
            sorted(actors),
        )
    return chosen


def iemocap_session(u: Utterance) -> int:
    """The IEMOCAP session of an utterance, from ``meta["session"]`` or an ``iemocap/SesNN?`` speaker id."""
    session = u.meta.get("session")
    if session is None and u.speaker is not None:
        match = re.fullmatch(r"iemocap/Ses(\d\d)[FM]", u.speaker)
        session = match.group(1) if match else None
    try:
        return int(session)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"utterance {u.id!r} has no IEMOCAP session (speaker {u.speaker!r})") from None


def iemocap_split(utterances: Sequence[Utterance], test_session: int = 5) -> dict[str, list[Utterance]]:
    """Leave-one-session-out split of IEMOCAP: test = ``test_session``, train = the other four.

    Each session has its own two actors, so the split is speaker-independent.

    Raises:
        ConfigError: for a session outside 1-5.

    >>> us = [Utterance(f"u{s}", speaker=f"iemocap/Ses0{s}F", meta={"session": s}) for s in (1, 5)]
    >>> {k: [u.id for u in v] for k, v in iemocap_split(us).items()}
    {'train': ['u1'], 'test': ['u5']}
    """
    if test_session not in IEMOCAP_SESSIONS:
        raise ConfigError(f"test_session must be one of {list(IEMOCAP_SESSIONS)}, got {test_session!r}")
    parts: dict[str, list[Utterance]] = {"train": [], "test": []}
    for u in utterances:
        parts["test" if iemocap_session(u) == test_session else "train"].append(u)
    check_disjoint_speakers(parts)
    return parts


def leave_one_speaker_out(
    utterances: Sequence[Utterance],
) -> Iterator[tuple[str, list[Utterance], list[Utterance]]]:
    """Yield ``(speaker, train, test)`` once per speaker, in sorted speaker order; test = that speaker.

    >>> us = [Utterance(str(i), speaker=s) for i, s in enumerate("abab")]
    >>> [(s, len(train), len(test)) for s, train, test in leave_one_speaker_out(us)]
    [('a', 2, 2), ('b', 2, 2)]
    """
    for speaker in sorted(speakers_of(utterances)):
        parts = split_by_speaker(utterances, [speaker])
        yield speaker, parts["train"], parts["test"]


def speaker_folds(
    utterances: Sequence[Utterance], n_folds: int = 5
) -> list[tuple[list[Utterance], list[Utterance]]]:
    """K-fold cross-validation by speaker: ``n_folds`` pairs of ``(train, test)``.

    Folds come from scikit-learn's ``GroupKFold`` (speakers as groups; folds balanced by utterance count,
    deterministic). Every speaker is in exactly one test fold.

    Raises:
        ConfigError: when ``n_folds`` is below 2 or above the number of speakers.

    >>> us = [Utterance(str(i), speaker=s) for i, s in enumerate("aabbccdd")]
    >>> [len(test) for train, test in speaker_folds(us, n_folds=2)]
    [4, 4]
    """
    from sklearn.model_selection import GroupKFold

    groups = [_speaker(u) for u in utterances]
    n_speakers = len(set(groups))
    if not 2 <= n_folds <= n_speakers:
        raise ConfigError(
            f"n_folds must be between 2 and the number of speakers ({n_speakers}), got {n_folds!r}"
        )
    folds = []
    for train_idx, test_idx in GroupKFold(n_splits=n_folds).split(groups, groups=groups):
        parts = {"train": [utterances[i] for i in train_idx], "test": [utterances[i] for i in test_idx]}
        check_disjoint_speakers(parts)
        folds.append((parts["train"], parts["test"]))
    return folds
