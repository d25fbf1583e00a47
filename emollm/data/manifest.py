r"""Read a generic CSV/TSV/JSONL manifest into :class:`~emollm.data.schema.Utterance` records.

Also home of what the corpus readers share: :class:`LabelMapper`, which maps raw labels to a label set and
reports, in one consistent log message, the rows it dropped because their label has no match;
:func:`read_csv_rows`, which refuses rows with missing or extra fields and rows swallowed by an unclosed
quote; and :func:`decode_mixed`, which reads the bytes of a file that are not UTF-8 as Windows-1252.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from emollm.data.schema import Utterance
from emollm.errors import ConfigError, DataError
from emollm.labels import LabelSet, get_label_set, normalize_label

logger = logging.getLogger(__name__)

# File extension -> format. ``.json-lines`` and ``.jsonl`` are the same thing.
FORMATS: dict[str, str] = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json-lines": "jsonl"}

# Utterance field -> the column names tried, in order, when ``columns`` does not name one.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "audio_path": ("audio_path", "path"),
    "transcript": ("transcript", "text"),
    "label": ("label", "emotion"),
    "speaker": ("speaker",),
    "gender": ("gender",),
    "dialogue_id": ("dialogue_id",),
    "turn": ("turn",),
}

_GENDERS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}
_NO_GENDER = {"", "unknown", "n/a", "na", "none"}


class LabelMapper:
    """Map a corpus's raw labels to a label set and count the ones that do not map.

    Every reader uses one mapper per call, then :meth:`report`: a single ``WARNING`` on the reader's
    logger names how many rows were dropped and which raw values they had.

    Args:
        labels: A label-set name, a :class:`~emollm.labels.LabelSet` or a list of labels.
        source: What is being read (a file or corpus name), for the log message.
        aliases: The corpus's own codes -> label words, read before normalising (lower-case keys), e.g.
            IEMOCAP's ``{"exc": "excited"}``; IEMOCAP-4 then merges excited into happy.

    >>> mapper = LabelMapper("iemocap4", "demo", aliases={"exc": "excited", "fru": "frustrated"})
    >>> mapper("exc"), mapper("Neutral"), mapper("fru"), mapper("fru")
    ('happy', 'neutral', None, None)
    >>> mapper.kept, dict(mapper.dropped)
    (2, {'fru': 2})
    """

    def __init__(
        self, labels: str | LabelSet | Sequence[str], source: str, aliases: dict[str, str] | None = None
    ):
        self.label_set = get_label_set(labels)
        self.source = source
        self.aliases = aliases or {}  # corpus codes -> words, e.g. IEMOCAP's "exc" -> "excited"
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self._cache: dict[str, str | None] = {}

    def __call__(self, raw: str | None) -> str | None:
        """The label for ``raw``, or None (the row is to be dropped; counted under ``raw``)."""
        key = "" if raw is None else str(raw).strip()
        if key not in self._cache:
            word = self.aliases.get(key.lower(), key)
            self._cache[key] = normalize_label(word, self.label_set) if key else None
        label = self._cache[key]
        if label is None:
            self.dropped[key] += 1
        else:
            self.kept += 1
        return label

    def report(self, log: logging.Logger = logger) -> None:
        """Log one warning naming the dropped count and raw values, if any row was dropped."""
        if not self.dropped:
            return
        total = self.kept + sum(self.dropped.values())
        values = ", ".join(f"{raw!r} x{n}" for raw, n in self.dropped.most_common())
        log.warning(
            "%s: dropped %d of %d utterances whose label has no match in label set %r %s: %s",
            self.source,
            sum(self.dropped.values()),
            total,
            self.label_set.name,
            list(self.label_set.labels),
            values,
        )


def read_csv_rows(f, *, source: str, corpus: str, required: Sequence[str], delimiter: str = ",") -> list:
    """Rows of a CSV stream as ``(line number, row dict)``; DataError naming any missing column.

    Shared by the corpus readers whose files are CSV with known columns. A cell may hold a line break,
    but not lines that look like whole rows (an unclosed quote swallowing the rows after it), and every
    row must have as many fields as the header.
    """
    where = f"{corpus} file {source!r}"
    reader = csv.reader(f, delimiter=delimiter)
    fieldnames = _csv_header(reader, where)
    missing = [c for c in required if c not in (fieldnames or [])]
    if missing:
        raise DataError(
            f"{where} lacks columns {missing}; columns seen: {fieldnames}; needed: {list(required)}"
        )
    return list(_csv_records(reader, fieldnames, where, delimiter=delimiter, line_breaks=True))


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _csv_header(reader, where: str) -> list[str] | None:
    """The header row of a ``csv.reader`` (None for an empty file), refusing an unclosed quote in it."""
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"{where} line 1: {err}") from None
    if header is not None and reader.line_num > 1:
        _check_line_breaks(header, header, where, 1, reader.line_num, ",", False)
    return header


def _csv_records(
    reader, header: list[str], where: str, *, delimiter: str, line_breaks: bool
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(first line, row)`` for every record after the header; blank lines are skipped.

    Raises:
        DataError: naming the line, for a row with more or fewer fields than the header, for a cell that
            runs over several lines (``line_breaks`` False) or holds lines that look like whole rows
            (``line_breaks`` True): both the mark of an unclosed quote.
    """
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. "field larger than field limit": a quote swallowing the file
            raise DataError(
                f"{where} line {start}: {err} (an unclosed quote?); write a quote inside a quoted cell as "
                'two ("")'
            ) from None
        except UnicodeDecodeError as err:
            raise DataError(
                f"{where} line {start} is not valid UTF-8 ({err.reason}); save it as UTF-8"
            ) from None
        if not fields:
            continue
        if reader.line_num > start:
            _check_line_breaks(fields, header, where, start, reader.line_num, delimiter, line_breaks)
        if len(fields) != len(header):
            missing = f"; missing: {header[len(fields) :]}" if len(fields) < len(header) else ""
            raise DataError(
                f"{where} line {start}: {len(fields)} fields, but the header has {len(header)}: "
                f"{header}{missing}"
            )
        yield start, dict(zip(header, fields))


def _check_line_breaks(
    fields: list[str], header: list[str], where: str, start: int, end: int, delimiter: str, line_breaks: bool
) -> None:
    """Refuse a record over lines ``start``-``end`` whose cells hold line breaks.

    With ``line_breaks`` a cell may hold line breaks, but not lines with as many delimiters as a whole row.
    """
    whole_row = max(1, len(header) - 1)
    for i, value in enumerate(fields):
        lines = _LINE_BREAK.split(value)
        if len(lines) < 2:
            continue
        if line_breaks and not any(line.count(delimiter) >= whole_row for line in lines[1:]):
            continue
        name = header[i] if i < len(header) else f"field {i + 1}"
        what = "holds what look like whole rows" if line_breaks else "holds line breaks"
        raise DataError(
            f"{where} line {start}: the {name!r} cell runs over lines {start}-{end} and {what}: an unclosed "
            f'quote? A cell that opens with a quote (") must close with one, and a quote inside a quoted '
            f'cell is written as two ("")'
            + ("" if line_breaks else "; for text with line breaks use a JSONL manifest")
        )


# -- text encodings -----------------------------------------------------------------------------------------


def _cp1252_char(byte: int) -> str:
    """The character Windows-1252 gives a byte; its five unassigned bytes fall back to Latin-1."""
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


_ESCAPED_RE = re.compile("[\udc80-\udcff]+")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_mixed(raw: bytes) -> str:
    r"""Decode bytes as UTF-8, reading every byte that is not valid UTF-8 as Windows-1252.

    >>> decode_mixed("café ".encode() + b"must\x92ve")
    'café must’ve'
    """
    text = raw.decode("utf-8", errors="surrogateescape")
    return _ESCAPED_RE.sub(lambda m: "".join(_cp1252_char(ord(c) - 0xDC00) for c in m.group()), text)


def decode_manifest(raw: bytes, where: str) -> str:
    r"""The text of a manifest's bytes: UTF-8 (with or without a BOM) or UTF-16/32 with a BOM.

    Bytes that are not valid UTF-8 are read as Windows-1252 (what Excel on Windows saves as "CSV"; Latin-1
    gives the same letters), as the MELD reader does, with one warning naming the first such line and how
    it reads, so a file in yet another encoding is noticed.

    Args:
        raw: The file's bytes.
        where: The file, for messages (``"manifest 'm.csv'"``).

    Raises:
        DataError: for a NUL byte (UTF-16 without its BOM, or not a text file) or a broken UTF-16/32 file.

    >>> decode_manifest(b"id,text\n1,caf\xe9\n", "manifest 'm.csv'")
    'id,text\n1,café\n'
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{where} starts with a {codec} byte-order mark but is not {codec}: {err}"
                ) from None
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise DataError(
            f"{where} line {line} holds a NUL byte: UTF-16 without its byte-order mark, or not a text file? "
            "save it as UTF-8"
        )
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        text = decode_mixed(raw)
        line = raw.count(b"\n", 0, err.start) + 1
        lines = sum(1 for chunk in raw.split(b"\n") if not _is_utf8(chunk))
        logger.warning(
            "%s is not valid UTF-8 (first at line %d, byte 0x%02x; %d line(s) in all): read those bytes as "
            "Windows-1252, so line %d reads %r; if the file uses another encoding, save it as UTF-8",
            where,
            line,
            raw[err.start],
            lines,
            line,
            text.split("\n")[line - 1].rstrip("\r")[:120],
        )
        return text


def _is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def manifest_format(path: str | Path) -> str:
    """The format of a manifest from its extension: ``"csv"``, ``"tsv"`` or ``"jsonl"``.

    Raises:
        DataError: for any other extension.

    >>> manifest_format("data/train.JSONL")
    'jsonl'
    """
    name = Path(path).name.lower()
    for ext, fmt in FORMATS.items():
        if name.endswith(ext):
            return fmt
    raise DataError(f"manifest {str(path)!r} has an unsupported extension; accepted: {sorted(FORMATS)}")


def _read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, row)`` for every record of a CSV/TSV/JSONL file."""
    where = f"manifest {str(path)!r}"
    f = io.StringIO(decode_manifest(path.read_bytes(), where), newline="")
    if fmt in ("csv", "tsv"):
        delimiter = "," if fmt == "csv" else "\t"
        reader = csv.reader(f, delimiter=delimiter)
        header = _csv_header(reader, where)
        if header is None:
            raise DataError(f"{where} is empty: it has no header row")
        yield from _csv_records(reader, header, where, delimiter=delimiter, line_breaks=False)
        return
    for lineno, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} line {lineno} is not valid JSON: {e}") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} line {lineno}: expected a JSON object, got {type(row).__name__}")
        yield lineno, row


def _resolve_columns(
    columns: Mapping[str, str] | None, seen: Sequence[str], path: Path
) -> dict[str, str | None]:
    """Field -> column name (or None when absent), checking the user's mapping against the file."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ConfigError(
            f"columns names unknown Utterance fields {unknown}; accepted: {list(DEFAULT_COLUMNS)}"
        )
    resolved: dict[str, str | None] = {}
    for fld, candidates in DEFAULT_COLUMNS.items():
        if fld in columns:
            if columns[fld] not in seen:
                raise DataError(
                    f"manifest {str(path)!r} has no column {columns[fld]!r} (given for {fld!r}); "
                    f"columns seen: {list(seen)}"
                )
            resolved[fld] = columns[fld]
        else:
            resolved[fld] = next((c for c in candidates if c in seen), None)
    if resolved["audio_path"] is None and resolved["transcript"] is None:
        raise DataError(
            f"manifest {str(path)!r} needs an audio column {list(DEFAULT_COLUMNS['audio_path'])} or a "
            f"transcript column {list(DEFAULT_COLUMNS['transcript'])}; columns seen: {list(seen)}"
        )
    return resolved


def _text(value: Any) -> str | None:
    """A cell as stripped text, or None when empty/null."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _gender(value: Any, where: str) -> str | None:
    text = (_text(value) or "").lower()
    if text in _NO_GENDER:
        return None
    if text not in _GENDERS:
        raise DataError(f"{where}: gender {value!r} is not one of {sorted(_GENDERS)} (or empty)")
    return _GENDERS[text]


def _turn(value: Any, where: str) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise DataError(f"{where}: turn {value!r} is not a whole number")
    return int(number)


def _audio_path(value: Any, root: Path) -> str | None:
    text = _text(value)
    if text is None:
        return None
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else root / path)


def read_manifest(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    labels: str | LabelSet | Sequence[str] | None = None,
    root: str | Path | None = None,
) -> list[Utterance]:
    r"""Read a CSV, TSV or JSONL manifest, one utterance per row.

    Columns are found by name: ``id``, ``audio_path`` (or ``path``), ``transcript`` (or ``text``), ``label``
    (or ``emotion``), ``speaker``, ``gender``, ``dialogue_id`` and ``turn``; ``columns`` overrides any of
    them. Every other column goes into ``meta`` (CSV cells as strings, JSON values as they are). Empty
    cells are None. Without an id column, ids are ``"<file stem>/<row>"`` with rows counted from 1. CSV
    and TSV cells cannot hold line breaks (JSONL strings can). The file is UTF-8; bytes that are not are
    read as Windows-1252, with a warning (see :func:`decode_manifest`).

    Args:
        path: The manifest; the format comes from the extension (.csv, .tsv, .jsonl, .json-lines).
        columns: Utterance field -> column name in the file, e.g. ``{"label": "emo"}``.
        labels: If given (a label-set name, LabelSet or list), raw labels are normalised with
            :func:`~emollm.labels.normalize_label`; rows whose label does not map are dropped and
            counted in one warning on this module's logger. Rows with an empty label are kept, unlabelled.
            If None, labels are kept as written.
        root: Folder that relative audio paths are resolved against; default: the manifest's folder.

    Returns:
        The utterances in file order.

    Raises:
        DataError: for a missing file, an unsupported extension, a missing required column, a malformed
            row (more or fewer fields than the header, a cell running over several lines: an unclosed
            quote), a NUL byte or a repeated id.
        ConfigError: for an unknown field name in ``columns`` or an unknown label set.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_text("path,emotion,actor\na.wav,Happiness,3\n")
    >>> [(u.id, u.label, u.meta) for u in read_manifest(folder / "m.csv", labels="ravdess8")]
    [('m/1', 'happy', {'actor': '3'})]
    """
    path = Path(path)
    fmt = manifest_format(path)
    if not path.is_file():
        raise DataError(f"manifest {str(path)!r} does not exist or is not a file")
    root = Path(root) if root is not None else path.parent
    mapper = LabelMapper(labels, str(path)) if labels is not None else None

    rows = list(_read_rows(path, fmt))
    if not rows:
        raise DataError(f"manifest {str(path)!r} has no rows")
    seen = list(dict.fromkeys(key for _, row in rows for key in row))  # JSONL rows may differ in keys
    resolved = _resolve_columns(columns, seen, path)
    used = {col for col in resolved.values() if col}

    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    for number, (lineno, row) in enumerate(rows, start=1):
        where = f"manifest {str(path)!r} line {lineno}"
        cell = {fld: (row.get(col) if col else None) for fld, col in resolved.items()}

        label = _text(cell["label"])
        if label is not None and mapper is not None:
            label = mapper(label)
            if label is None:
                continue
        uid = _text(cell["id"]) or f"{path.stem}/{number}"
        if uid in first_line:
            raise DataError(
                f"{where}: id {uid!r} repeats the id of line {first_line[uid]}; ids must be unique"
            )
        first_line[uid] = lineno
        utterances.append(
            Utterance(
                id=uid,
                transcript=_text(cell["transcript"]),
                label=label,
                audio_path=_audio_path(cell["audio_path"], root),
                speaker=_text(cell["speaker"]),
                gender=_gender(cell["gender"], where),
                dialogue_id=_text(cell["dialogue_id"]),
                turn=_turn(cell["turn"], where),
                meta={k: (None if v == "" else v) for k, v in row.items() if k not in used},
            )
        )
    if mapper is not None:
        mapper.report(logger)
    return utterances
