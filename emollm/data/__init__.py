"""Datasets as lists of :class:`Utterance`: readers for RAVDESS, MELD, IEMOCAP and generic manifests.

>>> from emollm.data import load_corpus, to_dataset
>>> train = load_corpus("ravdess", "train")  # doctest: +SKIP
>>> to_dataset(train)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from emollm.data.iemocap import read_iemocap
from emollm.data.manifest import LabelMapper, read_manifest
from emollm.data.meld import read_meld, repair_text
from emollm.data.ravdess import parse_ravdess_name, read_ravdess
from emollm.data.schema import Turn, Utterance, to_dataset
from emollm.data.splits import (
    RAVDESS_SPLITS,
    check_disjoint_speakers,
    iemocap_split,
    leave_one_speaker_out,
    ravdess_split,
    speaker_folds,
    split_by_speaker,
)
from emollm.errors import ConfigError, DataError
from emollm.labels import LabelSet

logger = logging.getLogger(__name__)

__all__ = [
    "CORPORA",
    "LabelMapper",
    "Turn",
    "Utterance",
    "DEFAULT_LABEL_SETS",
    "check_disjoint_speakers",
    "corpus_problem",
    "default_label_set",
    "iemocap_split",
    "leave_one_speaker_out",
    "load_corpus",
    "parse_ravdess_name",
    "ravdess_split",
    "read_iemocap",
    "read_manifest",
    "read_meld",
    "read_ravdess",
    "repair_text",
    "speaker_folds",
    "split_by_speaker",
    "to_dataset",
]

# Corpus name -> the split names load_corpus accepts for it (None means "all").
CORPORA: dict[str, tuple[str, ...]] = {
    "ravdess": tuple(RAVDESS_SPLITS),
    "meld": ("train", "dev", "test", "all"),
    "iemocap": ("train", "test", "all"),
    "manifest:PATH": ("all", "<any value of the manifest's split column>"),
}
IEMOCAP_TEST_SESSION = 5
# Corpus name -> the label set its gold labels are read into by default.
DEFAULT_LABEL_SETS = {"ravdess": "ravdess8", "meld": "meld7", "iemocap": "iemocap4"}

Labels = str | LabelSet | Sequence[str] | None


def corpus_problem(option: str, spec) -> str | None:
    """What is wrong with a corpus option (``--data``, ``--dataset``...); None when load_corpus takes it.

    Accepted: a corpus name, or ``manifest:PATH`` with a file at PATH.

    >>> corpus_problem("data", "ravdess") is None, corpus_problem("data", "ravdes")
    (True, "data is 'ravdes'; accepted: ravdess, meld, iemocap or manifest:PATH")
    """
    name, _, path = str(spec).partition(":")
    if f"{name}:PATH" in CORPORA:
        return None if Path(path).is_file() else f"{option} {spec!r}: no manifest file at {path!r}"
    if name in CORPORA and not path:
        return None
    known = [c for c in CORPORA if ":" not in c]
    return f"{option} is {spec!r}; accepted: {', '.join(known)} or manifest:PATH"


def default_label_set(corpus: str) -> str | None:
    """The label set a corpus is read into by default; None for a manifest (its labels as written).

    >>> default_label_set("meld"), default_label_set("manifest:clips.csv")
    ('meld7', None)
    """
    name = corpus.split(":", 1)[0]
    if name == "manifest":
        return None
    if name not in DEFAULT_LABEL_SETS:
        raise ConfigError(f"unknown corpus {corpus!r}; accepted: {list(CORPORA)}")
    return DEFAULT_LABEL_SETS[name]


def _check_split(corpus: str, split: str) -> None:
    if split not in CORPORA[corpus]:
        raise DataError(f"unknown {corpus} split {split!r}; accepted: {list(CORPORA[corpus])}")


def _load_meld(root: Path, split: str, labels: Labels, context_turns: int | None) -> list[Utterance]:
    _check_split("meld", split)
    if split != "all":
        return read_meld(
            root, split=split, labels=labels or DEFAULT_LABEL_SETS["meld"], context_turns=context_turns
        )
    present = [s for s in ("train", "dev", "test") if (root / f"{s}_sent_emo.csv").is_file()]
    if not present:
        raise DataError(f"MELD folder {str(root)!r} has none of train/dev/test_sent_emo.csv")
    return [
        u
        for s in present
        for u in read_meld(
            root, split=s, labels=labels or DEFAULT_LABEL_SETS["meld"], context_turns=context_turns
        )
    ]


def _load_iemocap(root: Path, split: str, labels: Labels, context_turns: int | None) -> list[Utterance]:
    _check_split("iemocap", split)
    utterances = read_iemocap(
        root, labels=labels or DEFAULT_LABEL_SETS["iemocap"], context_turns=context_turns
    )
    if split == "all":
        return utterances
    chosen = iemocap_split(utterances, test_session=IEMOCAP_TEST_SESSION)[split]
    if not chosen:
        logger.warning("IEMOCAP split %r is empty: %s holds no session for it", split, str(root))
    return chosen


def _load_manifest(path: Path, split: str, labels: Labels) -> list[Utterance]:
    utterances = read_manifest(path, labels=labels)
    if split == "all":
        return utterances
    seen = sorted({str(u.meta["split"]) for u in utterances if u.meta.get("split") is not None})
    if split not in seen:
        raise DataError(
            f"manifest {str(path)!r} has no rows with split {split!r}; accepted: ['all'] + the values of "
            f"its 'split' column: {seen}"
        )
    return [u for u in utterances if str(u.meta.get("split")) == split]


def load_corpus(
    spec: str,
    split: str | None = None,
    *,
    data_root: str | Path = "../shared/data",
    labels: Labels = None,
    context_turns: int | None = None,
) -> list[Utterance]:
    """Load a corpus, or one split of it, by name.

    ==================  =========================================  ========================================
    spec                reads                                      splits
    ==================  =========================================  ========================================
    ``ravdess``         ``<data_root>/ravdess``                    train (actors 1-14), dev (15-18),
                                                                   test (19-24), all
    ``meld``            ``<data_root>/meld/<split>_sent_emo.csv``  train, dev, test, all (every file present)
    ``iemocap``         ``<data_root>/iemocap`` (full release)     train (sessions 1-4), test (5), all
    ``manifest:PATH``   PATH (relative to the working directory)   all, or a value of its ``split`` column
    ==================  =========================================  ========================================

    Args:
        spec: Corpus name, see the table.
        split: Split name; None means ``"all"``.
        data_root: Folder holding the corpora.
        labels: Label set to map to; default the corpus's own (ravdess8, meld7, iemocap4; manifests keep
            their labels as written).
        context_turns: Keep only the last N context turns (MELD, IEMOCAP).

    Raises:
        ConfigError: for an unknown spec.
        DataError: for an unknown split name (listing the accepted ones) or missing/malformed data.

    >>> load_corpus("ravdess", "dev", data_root="../shared/data")  # doctest: +SKIP
    """
    split = "all" if split is None else split
    data_root = Path(data_root)
    if spec.startswith("manifest:"):
        return _load_manifest(Path(spec[len("manifest:") :]), split, labels)
    if spec == "ravdess":
        _check_split("ravdess", split)
        return ravdess_split(
            read_ravdess(data_root / "ravdess", labels=labels or DEFAULT_LABEL_SETS["ravdess"]), split
        )
    if spec == "meld":
        return _load_meld(data_root / "meld", split, labels, context_turns)
    if spec == "iemocap":
        return _load_iemocap(data_root / "iemocap", split, labels, context_turns)
    raise ConfigError(f"unknown corpus {spec!r}; accepted: {list(CORPORA)}")
