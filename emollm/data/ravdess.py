"""Read RAVDESS (Livingstone & Russo 2018) speech and song clips.

Two layouts are read:

* the shared layout: ``root/manifest.csv`` with columns ``path, emotion, intensity, statement, transcript,
  repetition, actor, gender, duration_s`` (paths relative to ``root``);
* the original release: ``root/Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` (or ``.flac``).

Either way every file name is parsed, so the label, actor and gender of a manifest row are checked against
the name the corpus gave the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emollm.data.manifest import LabelMapper, read_csv_rows
from emollm.data.schema import Utterance
from emollm.errors import ConfigError, DataError
from emollm.labels import LabelSet

logger = logging.getLogger(__name__)

MODALITIES = {1: "full-AV", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
EMOTIONS = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
AUDIO_EXTENSIONS = (".wav", ".flac")
NUM_ACTORS = 24

FILE_PATTERN = (
    "MM-VV-EE-II-SS-RR-AA.wav|.flac: modality 01-03, vocal channel 01-02, emotion 01-08, intensity 01-02, "
    "statement 01-02, repetition 01-02, actor 01-24 (e.g. 03-01-05-01-01-01-12.wav)"
)
_NAME_RE = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)$")
_MANIFEST_COLUMNS = ("path", "emotion", "actor", "gender")


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name, as numbers."""

    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def gender(self) -> str:
        """Odd-numbered actors are male, even-numbered female."""
        return "male" if self.actor % 2 else "female"


def parse_ravdess_name(path: str | Path) -> RavdessName:
    """Parse a RAVDESS file name such as ``03-01-05-01-01-01-12.wav``.

    Raises:
        DataError: naming the file and the expected pattern when the name does not follow it.

    >>> name = parse_ravdess_name("Actor_12/03-01-05-02-01-01-12.wav")
    >>> EMOTIONS[name.emotion], INTENSITIES[name.intensity], name.actor, name.gender
    ('angry', 'strong', 12, 'female')
    """
    match = _NAME_RE.match(Path(path).stem)
    actor = int(match.group(7)) if match else 0
    if match is None or not 1 <= actor <= NUM_ACTORS:
        raise DataError(f"RAVDESS file {str(path)!r} does not follow the naming pattern {FILE_PATTERN}")
    return RavdessName(*(int(g) for g in match.groups()))


def _utterance(path: Path, name: RavdessName, label: str, duration_s: float | None) -> Utterance:
    meta: dict[str, Any] = {
        "intensity": INTENSITIES[name.intensity],
        "statement": name.statement,
        "repetition": name.repetition,
        "actor": name.actor,
        "vocal_channel": VOCAL_CHANNELS[name.vocal_channel],
    }
    if duration_s is not None:
        meta["duration_s"] = duration_s
    return Utterance(
        id=f"ravdess/{path.stem}",
        transcript=STATEMENTS[name.statement],
        label=label,
        audio_path=str(path),
        speaker=f"ravdess/{name.actor:02d}",
        gender=name.gender,
        meta=meta,
    )


def _check_actors(actors: Iterable[int] | None) -> set[int] | None:
    if actors is None:
        return None
    chosen = set()
    for actor in actors:
        if isinstance(actor, bool) or not isinstance(actor, int) or not 1 <= actor <= NUM_ACTORS:
            raise ConfigError(f"actors must be whole numbers 1-{NUM_ACTORS}, got {actor!r}")
        chosen.add(actor)
    return chosen


def _manifest_rows(manifest: Path) -> list[tuple[int, dict[str, str]]]:
    with manifest.open(encoding="utf-8-sig", newline="") as f:
        return read_csv_rows(f, source=str(manifest), corpus="RAVDESS manifest", required=_MANIFEST_COLUMNS)


def _check_row(manifest: Path, lineno: int, row: dict[str, str], name: RavdessName) -> float | None:
    """Check a manifest row against its file name; return its duration (or None)."""
    where = f"RAVDESS manifest {str(manifest)!r} line {lineno}"
    expected = {
        "emotion": EMOTIONS[name.emotion],
        "actor": str(name.actor),
        "gender": name.gender,
        "intensity": INTENSITIES[name.intensity],
    }
    for column, value in expected.items():
        seen = (row.get(column) or "").strip().lower()
        if column == "actor":
            seen = seen.lstrip("0")
        if seen and seen != value:
            raise DataError(
                f"{where}: {column} {row[column]!r} contradicts the file name {row['path']!r} ({value})"
            )
    duration = (row.get("duration_s") or "").strip()
    try:
        return float(duration) if duration else None
    except ValueError:
        raise DataError(f"{where}: duration_s {duration!r} is not a number") from None


def _read_shared_layout(root: Path, actors: set[int] | None, mapper: LabelMapper) -> list[Utterance]:
    manifest = root / "manifest.csv"
    utterances = []
    for lineno, row in _manifest_rows(manifest):
        path = root / row["path"].strip()
        name = parse_ravdess_name(path)
        duration = _check_row(manifest, lineno, row, name)
        if actors is not None and name.actor not in actors:
            continue
        label = mapper(row["emotion"])
        if label is not None:
            utterances.append(_utterance(path, name, label, duration))
    return utterances


def _read_release_layout(root: Path, actors: set[int] | None, mapper: LabelMapper) -> list[Utterance]:
    folders = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    if not folders:
        raise DataError(
            f"RAVDESS root {str(root)!r} has neither manifest.csv nor Actor_XX folders; expected "
            f"root/manifest.csv or root/Actor_01/{FILE_PATTERN.split(':')[0]}"
        )
    utterances = []
    for folder in folders:
        number = folder.name[len("Actor_") :]
        if not (number.isdigit() and len(number) == 2):
            raise DataError(f"RAVDESS folder {str(folder)!r} is not named Actor_XX (two digits)")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith("."):
                continue  # videos (.mp4) and stray files
            name = parse_ravdess_name(path)
            if name.actor != int(number):
                raise DataError(
                    f"RAVDESS file {str(path)!r} names actor {name.actor:02d} but lies in {folder.name}"
                )
            if actors is not None and name.actor not in actors:
                continue
            label = mapper(EMOTIONS[name.emotion])
            if label is not None:
                utterances.append(_utterance(path, name, label, None))
    return utterances


def read_ravdess(
    root: str | Path,
    *,
    actors: Iterable[int] | None = None,
    labels: str | LabelSet | Sequence[str] = "ravdess8",
) -> list[Utterance]:
    """Read RAVDESS clips from the shared layout (``manifest.csv``) or the original release layout.

    Each clip becomes an utterance with id ``"ravdess/<file stem>"``, speaker ``"ravdess/<actor, 2 digits>"``,
    gender (odd actors male, even female), the fixed transcript of its statement, and ``meta`` with
    ``intensity`` ("normal"/"strong"), ``statement``, ``repetition`` and ``actor`` (ints), ``vocal_channel``
    ("speech"/"song") and, in the shared layout, ``duration_s``. Only audio files (.wav, .flac) are read;
    videos are skipped.

    Args:
        root: Folder holding ``manifest.csv`` (used when present) or ``Actor_XX`` folders.
        actors: Keep only these actor numbers (1-24); default all.
        labels: Label set to map emotions to (default ``"ravdess8"``, which keeps all eight); clips whose
            emotion has no label in the set are dropped and counted in one warning.

    Returns:
        The utterances sorted by id.

    Raises:
        DataError: for a missing root, a malformed file name (naming the file and the expected pattern) or
            a manifest row that contradicts its file name.
        ConfigError: for an actor number outside 1-24 or an unknown label set.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "Actor_02").mkdir()
    >>> (root / "Actor_02" / "03-01-06-01-02-01-02.wav").touch()
    >>> u = read_ravdess(root)[0]
    >>> u.id, u.label, u.speaker, u.gender, u.transcript
    ('ravdess/03-01-06-01-02-01-02', 'fearful', 'ravdess/02', 'female', 'Dogs are sitting by the door')
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"RAVDESS root {str(root)!r} does not exist or is not a folder")
    chosen = _check_actors(actors)
    mapper = LabelMapper(labels, f"RAVDESS {str(root)!r}")
    if (root / "manifest.csv").is_file():
        utterances = _read_shared_layout(root, chosen, mapper)
    else:
        utterances = _read_release_layout(root, chosen, mapper)
    mapper.report(logger)
    utterances.sort(key=lambda u: u.id)
    for previous, current in zip(utterances, utterances[1:]):
        if previous.id == current.id:
            raise DataError(
                f"RAVDESS clip {current.id!r} appears twice ({previous.audio_path!r} and "
                f"{current.audio_path!r}); keep one file per clip"
            )
    return utterances
