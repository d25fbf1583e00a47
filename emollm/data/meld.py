r"""Read MELD (Poria et al. 2019) dialogue CSVs, repairing their text encoding.

The MELD CSVs mix encodings: most of the file is UTF-8, but some releases carry raw Windows-1252 bytes
(``\x92`` for ’), C1 control characters (the same bytes decoded as Latin-1), or mojibake (UTF-8 read as
Windows-1252 and saved again: ``â€™``). :func:`repair_text` undoes all three.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emollm.data.manifest import LabelMapper, _cp1252_char, decode_mixed, read_csv_rows
from emollm.data.schema import Turn, Utterance
from emollm.errors import ConfigError, DataError
from emollm.labels import LabelSet

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
FILE_NAMES = {split: f"{split}_sent_emo.csv" for split in SPLITS}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
META_COLUMNS = {
    "Sentiment": "sentiment",
    "Season": "season",
    "Episode": "episode",
    "StartTime": "start_time",
    "EndTime": "end_time",
}

# Typographic punctuation -> plain ASCII (prompts and tokenizers see one spelling of each).
ASCII_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2012": "-",
        "\u2015": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)


_CP1252_BYTE = {_cp1252_char(b): b for b in range(0x80, 0x100)}
_C1_RE = re.compile("[\u0080-\u009f]")
_CONT = "[" + re.escape("".join(_cp1252_char(b) for b in range(0x80, 0xC0))) + "]"
# A UTF-8 lead byte read as cp1252 followed by the right number of continuation bytes read as cp1252.
_MOJIBAKE_RE = re.compile(
    "[\u00c2-\u00df]" + _CONT + "|[\u00e0-\u00ef]" + _CONT + "{2}|[\u00f0-\u00f4]" + _CONT + "{3}"
)


def _unmojibake(match: re.Match[str]) -> str:
    try:
        return bytes(_CP1252_BYTE[c] for c in match.group()).decode("utf-8")
    except UnicodeDecodeError:
        return match.group()


def repair_text(text: str) -> str:
    r"""Clean one MELD string.

    Steps: mojibake such as ``â€™`` is decoded back to the character it was; C1 control characters
    (``\x85``, ``\x91``-``\x97``, ...) become their Windows-1252 characters; then typographic
    punctuation becomes plain ASCII: ‘ ’ -> ``'``, “ ” -> ``"``, – — -> ``-``, … -> ``...``, no-break space ->
    space. Letters such as é stay. Surrounding whitespace is stripped.

    >>> repair_text("You must\x92ve had your hands full\x85")
    "You must've had your hands full..."
    >>> repair_text("Oh my God, itâ€™s \x93Nestlé\x94 \u2014 isnâ€™t it?")
    'Oh my God, it\'s "Nestlé" - isn\'t it?'
    """
    text = _MOJIBAKE_RE.sub(_unmojibake, text)
    text = _C1_RE.sub(lambda m: _cp1252_char(ord(m.group())), text)
    return text.translate(ASCII_PUNCTUATION).strip()


def _split_and_file(path_or_root: Path, split: str | None) -> tuple[str, Path]:
    """Resolve the CSV to read and the split name its ids use."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown MELD split {split!r}; accepted: {list(SPLITS)}")
    if path_or_root.is_dir():
        if split is None:
            raise ConfigError(f"MELD folder {str(path_or_root)!r} needs a split; accepted: {list(SPLITS)}")
        path = path_or_root / FILE_NAMES[split]
        if not path.is_file():
            found = sorted(p.name for p in path_or_root.glob("*.csv"))
            raise DataError(
                f"MELD split {split!r} needs {str(path)!r}, which does not exist; CSVs seen: {found}"
            )
        return split, path
    if not path_or_root.is_file():
        raise DataError(f"MELD path {str(path_or_root)!r} is neither a CSV file nor a folder")
    if split is None:
        split = next((s for s in SPLITS if path_or_root.name.lower().startswith(s)), None)
        if split is None:
            raise ConfigError(
                f"cannot tell the MELD split of {path_or_root.name!r} (not named <split>_sent_emo.csv); "
                f"pass split=, one of {list(SPLITS)}"
            )
    return split, path_or_root


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    text = io.StringIO(decode_mixed(path.read_bytes()).lstrip("\ufeff"), newline="")
    return read_csv_rows(text, source=str(path), corpus="MELD", required=REQUIRED_COLUMNS)


def _int(row: dict[str, str], column: str, where: str) -> int:
    value = (row.get(column) or "").strip()
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{where}: {column} {value!r} is not a whole number") from None


def _meta(row: dict[str, str], where: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for column, key in META_COLUMNS.items():
        if column in row and row[column] is not None:
            value = row[column].strip()
            meta[key] = _int(row, column, where) if key in ("season", "episode") and value else value
    return meta


def read_meld(
    path_or_root: str | Path,
    *,
    split: str | None = None,
    context_turns: int | None = None,
    labels: str | LabelSet | Sequence[str] = "meld7",
) -> list[Utterance]:
    r"""Read one MELD split: text, speaker, label and the conversation so far.

    Each row becomes an utterance with id ``"meld/<split>/dia<D>_utt<U>"``, speaker ``"meld/<name>"``,
    dialogue id ``"meld/<split>/<D>"``, ``turn`` = Utterance_ID (MELD numbers turns from 0; a few dialogues
    skip numbers), ``context`` = the earlier rows of the same dialogue as ``Turn(name, text)``, oldest
    first, and ``meta`` with ``sentiment``, ``season``, ``episode``, ``start_time`` and ``end_time``. Text
    and speaker names go through :func:`repair_text`. Rows are sorted by dialogue, then utterance id,
    whatever the CSV order. Rows dropped for their label still count as context.

    Args:
        path_or_root: A MELD CSV, or the folder holding ``<split>_sent_emo.csv``.
        split: ``"train"``, ``"dev"`` or ``"test"``; needed with a folder, otherwise read from the file
            name when omitted.
        context_turns: Keep only the last N turns of context (default: all of them).
        labels: Label set to map MELD's emotions to (default ``"meld7"``, MELD's own seven); rows whose
            emotion has no label in the set are dropped and counted in one warning.

    Returns:
        The utterances sorted by (dialogue, utterance id).

    Raises:
        DataError: for a missing file, a missing column, a non-numeric id or a repeated (dialogue,
            utterance) pair.
        ConfigError: for an unknown split, a negative ``context_turns`` or an unknown label set.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dev_sent_emo.csv"
    >>> _ = path.write_bytes(b"Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\n"
    ...                      b"I\x92m fine,Ross,anger,0,1\nHi,Rachel,neutral,0,0\n")
    >>> u = read_meld(path)[1]
    >>> u.id, u.speaker, u.transcript, u.label, u.context
    ('meld/dev/dia0_utt1', 'meld/Ross', "I'm fine", 'anger', [Turn(speaker='Rachel', text='Hi')])
    """
    if context_turns is not None and context_turns < 0:
        raise ConfigError(f"context_turns must be None or >= 0, got {context_turns!r}")
    split, path = _split_and_file(Path(path_or_root), split)
    mapper = LabelMapper(labels, f"MELD {str(path)!r}")

    rows: dict[tuple[int, int], tuple[int, dict[str, str]]] = {}
    for lineno, row in _read_rows(path):
        where = f"MELD file {str(path)!r} line {lineno}"
        key = (_int(row, "Dialogue_ID", where), _int(row, "Utterance_ID", where))
        if key in rows:
            raise DataError(f"{where}: dialogue {key[0]} utterance {key[1]} repeats line {rows[key][0]}")
        rows[key] = (lineno, row)

    utterances: list[Utterance] = []
    history: list[Turn] = []
    current_dialogue = None
    for (dialogue, turn), (lineno, row) in sorted(rows.items()):
        if dialogue != current_dialogue:
            current_dialogue, history = dialogue, []
        name, text = repair_text(row["Speaker"] or ""), repair_text(row["Utterance"] or "")
        label = mapper(row["Emotion"])
        if label is not None:
            context = history if context_turns is None else history[max(0, len(history) - context_turns) :]
            utterances.append(
                Utterance(
                    id=f"meld/{split}/dia{dialogue}_utt{turn}",
                    transcript=text,
                    label=label,
                    speaker=f"meld/{name}",
                    dialogue_id=f"meld/{split}/{dialogue}",
                    turn=turn,
                    context=list(context),
                    meta=_meta(row, f"MELD file {str(path)!r} line {lineno}"),
                )
            )
        history.append(Turn(name, text))
    mapper.report(logger)
    return utterances
