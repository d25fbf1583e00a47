"""Read IEMOCAP (Busso et al. 2008) from the ``IEMOCAP_full_release`` layout.

Files read, per session ``N``::

    root/SessionN/dialog/EmoEvaluation/<dialog>.txt      labels, V/A/D, annotator votes
    root/SessionN/dialog/transcriptions/<dialog>.txt     "<utt> [start-end]: text"
    root/SessionN/sentences/wav/<dialog>/<utt>.wav       one clip per utterance

An utterance id such as ``Ses01F_impro01_M003`` names the session (01), the dialogue
(``Ses01F_impro01``) and, in the letter before the final number, the gender of the speaker (M).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emollm.data.manifest import LabelMapper
from emollm.data.schema import Turn, Utterance
from emollm.errors import ConfigError, DataError
from emollm.labels import LabelSet, get_label_set, normalize_label

logger = logging.getLogger(__name__)

SESSIONS = (1, 2, 3, 4, 5)
RAW_CODES = ("neu", "hap", "sad", "ang", "exc", "fru", "sur", "fea", "dis", "oth", "xxx")

EVALUATION_PATTERN = "[START - END]<tab>UTTERANCE_ID<tab>CODE<tab>[V, A, D]"
_NUM = r"-?\d+(?:\.\d+)?"
_EVAL_RE = re.compile(
    rf"^\[\s*(?P<start>{_NUM})\s*-\s*(?P<end>{_NUM})\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+"
    rf"\[\s*(?P<v>{_NUM})\s*,\s*(?P<a>{_NUM})\s*,\s*(?P<d>{_NUM})\s*\]\s*$"
)
_UTT_RE = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])[0-9X]+$")
_TRANSCRIPT_RE = re.compile(rf"^(?P<utt>Ses\S+)\s+\[(?P<start>{_NUM})-(?P<end>{_NUM})\]:\s?(?P<text>.*)$")
_GENDERS = {"F": "female", "M": "male"}


@dataclass
class Evaluation:
    """One utterance's block of an EmoEvaluation file."""

    utt: str
    start: float
    end: float
    code: str
    vad: tuple[float, float, float]
    votes: list[list[str]] = field(default_factory=list)  # one list of categories per "C-" line


# IEMOCAP's three-letter category codes (xxx = no agreement, oth = other: no label).
CODES = {
    "neu": "neutral",
    "hap": "happy",
    "sad": "sad",
    "ang": "angry",
    "exc": "excited",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgust",
}


def parse_utterance_id(utt: str, where: str = "IEMOCAP") -> tuple[int, str, str]:
    """Session number, dialogue id and speaker tag of an utterance id.

    Raises:
        DataError: for an id that does not look like ``SesNN[FM]_<dialog>_[FM]<number>``.

    >>> parse_utterance_id("Ses01F_script01_1_M003")
    (1, 'Ses01F_script01_1', 'Ses01M')
    """
    match = _UTT_RE.match(utt)
    if match is None:
        raise DataError(
            f"{where}: utterance id {utt!r} does not look like SesNN[FM]_<dialog>_[FM]<number>, "
            f"e.g. Ses01F_impro01_F000"
        )
    return int(match["session"]), utt.rsplit("_", 1)[0], f"Ses{match['session']}{match['gender']}"


def parse_evaluation_file(path: Path) -> list[Evaluation]:
    """Parse an ``EmoEvaluation/<dialog>.txt`` file into one :class:`Evaluation` per utterance.

    Header lines (``[...]``) must match :data:`EVALUATION_PATTERN`; categorical annotator lines (``C-...:``)
    attach to the header above them; other lines (``%`` comments, ``A-`` dimensional votes) are skipped.

    Raises:
        DataError: naming the file, the line number and the line for a malformed header or an annotator
            line before any header.
    """
    evaluations: list[Evaluation] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        where = f"IEMOCAP file {str(path)!r} line {lineno}"
        if line.startswith("["):
            match = _EVAL_RE.match(line)
            if match is None:
                raise DataError(f"{where}: {line!r} does not match {EVALUATION_PATTERN}")
            parse_utterance_id(match["utt"], where)
            vad = (float(match["v"]), float(match["a"]), float(match["d"]))
            evaluations.append(
                Evaluation(match["utt"], float(match["start"]), float(match["end"]), match["code"], vad)
            )
        elif line.startswith("C-"):
            if not evaluations:
                raise DataError(f"{where}: annotator line {line!r} comes before any utterance header")
            evaluations[-1].votes.append(_categories(line))
    return evaluations


def _categories(line: str) -> list[str]:
    r"""``"C-E2:\tFrustration; Anger;\t(comment)"`` -> ``["Frustration", "Anger"]``."""
    body = line.split(":", 1)[1] if ":" in line else ""
    body = body.split("(", 1)[0]
    return [c.strip() for c in body.split(";") if c.strip()]


def vote_distribution(votes: Sequence[Sequence[str]], labels: LabelSet) -> dict[str, float] | None:
    """Annotator votes -> label shares, or None when no vote names a label of the set.

    Rule: each annotator line counts once. Its categories are mapped with
    :func:`~emollm.labels.normalize_label` ("Other..." entries are skipped, so a free-text note such as
    "Other:annoyed" is never read as an emotion); the annotator's vote is shared equally among the
    distinct labels it named. Annotators none of whose categories map are left out. The shares are
    divided by the number of annotators that count, so they sum to 1.

    >>> vote_distribution([["Frustration", "Anger"], ["Neutral state"], ["Excited"], ["Other:odd"]],
    ...                   get_label_set("iemocap4"))
    {'angry': 0.3333, 'neutral': 0.3333, 'happy': 0.3333}
    """
    shares: dict[str, float] = {}
    annotators = 0
    for categories in votes:
        named = {normalize_label(c, labels) for c in categories if not c.lower().startswith("other")}
        named.discard(None)
        if not named:
            continue
        annotators += 1
        for label in sorted(named):
            shares[label] = shares.get(label, 0.0) + 1.0 / len(named)
    if not annotators:
        return None
    return {label: round(share / annotators, 4) for label, share in shares.items()}


def parse_transcription_file(path: Path) -> dict[str, tuple[float, str]]:
    """``transcriptions/<dialog>.txt`` -> utterance id -> (start time, text).

    Lines that are not ``<utt> [start-end]: text`` (e.g. notes without timing) are skipped.
    """
    turns: dict[str, tuple[float, str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPT_RE.match(line.strip())
        if match is not None and _UTT_RE.match(match["utt"]):
            turns[match["utt"]] = (float(match["start"]), match["text"].strip())
    return turns


def _find_root(root: Path) -> Path:
    if not root.is_dir():
        raise DataError(f"IEMOCAP root {str(root)!r} does not exist or is not a folder")
    if not any(root.glob("Session[1-5]")) and (root / "IEMOCAP_full_release").is_dir():
        return root / "IEMOCAP_full_release"
    return root


def _session_folders(root: Path, sessions: Iterable[int] | None) -> list[Path]:
    if sessions is None:
        folders = [root / f"Session{n}" for n in SESSIONS if (root / f"Session{n}").is_dir()]
        if not folders:
            raise DataError(f"IEMOCAP root {str(root)!r} has no Session1..Session5 folders")
        return folders
    folders = []
    for n in sessions:
        if n not in SESSIONS:
            raise ConfigError(f"unknown IEMOCAP session {n!r}; accepted: {list(SESSIONS)}")
        if not (root / f"Session{n}").is_dir():
            folder = str(root / f"Session{n}")
            raise DataError(f"IEMOCAP session {n} needs the folder {folder!r}, which is missing")
        folders.append(root / f"Session{n}")
    return folders


def _read_dialog(
    session_dir: Path,
    eval_path: Path,
    mapper: LabelMapper,
    context_turns: int | None,
) -> list[Utterance]:
    """Utterances of one dialogue, with turn numbers and context from its transcription."""
    evaluations = parse_evaluation_file(eval_path)
    transcript_path = session_dir / "dialog" / "transcriptions" / eval_path.name
    texts = parse_transcription_file(transcript_path) if transcript_path.is_file() else {}
    starts = {utt: start for utt, (start, _) in texts.items()}
    starts.update({e.utt: e.start for e in evaluations})
    timeline = sorted(starts, key=lambda utt: (starts[utt], utt))
    position = {utt: i for i, utt in enumerate(timeline)}

    utterances = []
    for ev in sorted(evaluations, key=lambda e: position[e.utt]):
        label = mapper(ev.code)
        if label is None:
            continue
        session, dialog, tag = parse_utterance_id(ev.utt)
        history = [
            Turn(parse_utterance_id(utt)[2], texts[utt][1])
            for utt in timeline[: position[ev.utt]]
            if utt in texts and texts[utt][1]
        ]
        if context_turns is not None:
            history = history[max(0, len(history) - context_turns) :]
        wav = session_dir / "sentences" / "wav" / dialog / f"{ev.utt}.wav"
        utterances.append(
            Utterance(
                id=f"iemocap/{ev.utt}",
                transcript=texts[ev.utt][1] if ev.utt in texts else None,
                label=label,
                audio_path=str(wav) if wav.is_file() else None,
                speaker=f"iemocap/{tag}",
                gender=_GENDERS[tag[-1]],
                dialogue_id=f"iemocap/{dialog}",
                turn=position[ev.utt],
                context=history,
                label_distribution=vote_distribution(ev.votes, mapper.label_set),
                meta={
                    "session": session,
                    "raw_label": ev.code,
                    "valence": ev.vad[0],
                    "activation": ev.vad[1],
                    "dominance": ev.vad[2],
                    "start": ev.start,
                    "end": ev.end,
                    "scripted": "_script" in dialog,
                },
            )
        )
    return utterances


def read_iemocap(
    root: str | Path,
    *,
    sessions: Iterable[int] | None = None,
    labels: str | LabelSet | Sequence[str] = "iemocap4",
    context_turns: int | None = None,
) -> list[Utterance]:
    r"""Read IEMOCAP utterances with labels, annotator distributions, transcripts and dialogue context.

    Raw codes (neu hap sad ang exc fru sur fea dis oth xxx) are mapped with
    :func:`~emollm.labels.normalize_label`: ``iemocap4`` keeps neutral, happy (hap and exc), sad and angry;
    every other code (xxx, oth, and here fru, sur, fea, dis) is dropped and counted in one warning.

    Each utterance has id ``"iemocap/<utt>"``, speaker ``"iemocap/Ses01F"`` (session + the speaker's
    gender letter), ``gender``, ``dialogue_id`` ``"iemocap/<dialog>"``, ``turn`` = position among all
    transcribed turns of the dialogue ordered by start time, ``context`` = the earlier turns as
    ``Turn("Ses01M", text)``, ``label_distribution`` from the annotators' categorical votes (see
    :func:`vote_distribution`), ``audio_path`` (None when the wav is missing) and ``meta`` with
    ``session``, ``raw_label``, ``valence``, ``activation``, ``dominance``, ``start``, ``end`` (seconds)
    and ``scripted``.

    Args:
        root: The ``IEMOCAP_full_release`` folder (or a folder containing it).
        sessions: Session numbers to read (1-5); default every session present.
        labels: Label set, default ``"iemocap4"``; e.g. ``"iemocap6"`` keeps exc and fru apart.
        context_turns: Keep only the last N turns of context (default: all).

    Returns:
        The utterances ordered by session, dialogue and turn.

    Raises:
        DataError: for a missing root or session folder, or a malformed EmoEvaluation line (naming the
            file, line number and the pattern expected).
        ConfigError: for an unknown session number or label set, or a negative ``context_turns``.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> evals = root / "Session1" / "dialog" / "EmoEvaluation"
    >>> evals.mkdir(parents=True)
    >>> _ = (evals / "Ses01F_impro01.txt").write_text(
    ...     "[6.2901 - 8.2357]\tSes01F_impro01_F000\texc\t[3.5000, 3.0000, 2.5000]\n"
    ...     "C-E2:\tExcited;\t()\nC-E3:\tHappiness; Surprise;\t()\n")
    >>> u = read_iemocap(root)[0]
    >>> u.label, u.speaker, u.gender, u.label_distribution
    ('happy', 'iemocap/Ses01F', 'female', {'happy': 1.0})
    """
    if context_turns is not None and context_turns < 0:
        raise ConfigError(f"context_turns must be None or >= 0, got {context_turns!r}")
    root = _find_root(Path(root))
    mapper = LabelMapper(get_label_set(labels), f"IEMOCAP {str(root)!r}", aliases=CODES)
    utterances: list[Utterance] = []
    for session_dir in _session_folders(root, sessions):
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        eval_files = sorted(p for p in eval_dir.glob("*.txt") if not p.name.startswith("."))
        if not eval_files:
            raise DataError(f"IEMOCAP session folder {str(session_dir)!r} has no {str(eval_dir)}/*.txt files")
        for eval_path in eval_files:
            utterances.extend(_read_dialog(session_dir, eval_path, mapper, context_turns))
    mapper.report(logger)
    return utterances
