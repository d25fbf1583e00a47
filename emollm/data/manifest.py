"""Read a generic CSV/TSV/JSONL manifest into :class:`~emollm.data.schema.Utterance` records.

Also home of :class:`LabelMapper`, which every reader uses to map raw labels to a label set and to report,
in one consistent log message, the rows it dropped because their label has no match.
"""

from __future__ import annotations

import csv
import json
import logging
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

    Shared by the corpus readers whose files are CSV with known columns.
    """
    reader = csv.DictReader(f, delimiter=delimiter)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{corpus} file {source!r} lacks columns {missing}; columns seen: {reader.fieldnames}; "
            f"needed: {list(required)}"
        )
    return [(reader.line_num, row) for row in reader]


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
    with path.open(encoding="utf-8-sig", newline="") as f:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t")
            if reader.fieldnames is None:
                raise DataError(f"manifest {str(path)!r} is empty: it has no header row")
            for row in reader:
                if None in row:
                    raise DataError(
                        f"manifest {str(path)!r} line {reader.line_num}: {len(row) - 1 + len(row[None])} "
                        f"fields, but the header has {len(reader.fieldnames)}: {reader.fieldnames}"
                    )
                yield reader.line_num, row
            return
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"manifest {str(path)!r} line {lineno} is not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"manifest {str(path)!r} line {lineno}: expected a JSON object, got {type(row).__name__}"
                )
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
    cells are None. Without an id column, ids are ``"<file stem>/<row>"`` with rows counted from 1.

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
            row or a repeated id.
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
