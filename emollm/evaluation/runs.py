"""One evaluation run's folder: its settings, its predictions (appended and resumed) and how they are read.

=====================  ===================================================================================
``config.json``        the run's settings (what decides the predictions) and the emollm version
``predictions.jsonl``  one JSON row per utterance, appended line by line (one ``write`` each) as they are
                       made; each row holds ``input_sha256``, the digest of what decided it
                       (:func:`input_digests`), and ``gold``, the label it was scored against
``metrics.json``       written by the harness from the rows (:mod:`emollm.evaluation.report`)
=====================  ===================================================================================

A run holds its folder (:func:`hold_run_folder`, a lock file), so two runs never write one folder. A folder
is resumed only with the settings that made it (:func:`plan_resume`), and only its rows whose
``input_sha256`` still matches the utterance: a row whose transcript, context, speaker or audio changed is
predicted again, a row whose gold label changed is re-scored. An unreadable line is dropped (its utterance is
predicted again), and so is a half-written last line (an interrupted run). Nothing in the folder changes
until the run has something to write (:func:`start_run`), so a run that fails first (``--overwrite`` with a
typo) leaves the old one as it was. :func:`read_predictions` is also how ``emollm compare`` reads another
run's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emollm.errors import ConfigError
from emollm.io import write_text_atomic

logger = logging.getLogger(__name__)

LOCK = ".evaluate.lock"  # held (flock) while a run uses the folder
HOLDER = ".evaluate.lock.json"  # who holds it: pid, host, start time


# -- one run at a time -------------------------------------------------------------------------------------


@contextlib.contextmanager
def hold_run_folder(out: Path) -> Iterator[Path]:
    """Create ``out`` if needed and hold it for one run; another run that tries is refused at once.

    The lock is released when the process ends, however it ends. A folder this call created is removed again
    when the run wrote nothing there.

    Raises:
        ConfigError: another evaluation holds the folder (its pid, host and start time are named).
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise ConfigError(
            f"{out} is in use by another evaluation ({_holder(out)}); wait for it to finish, or give this "
            "run another --output"
        ) from None
    holder = out / HOLDER
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        holder.write_text(json.dumps(info) + "\n", encoding="utf-8")
        yield out
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
        if created and {p.name for p in out.iterdir()} <= {LOCK}:  # nothing written: leave no folder
            (out / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()


def _holder(out: Path) -> str:
    try:
        info = json.loads((out / HOLDER).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its pid is not recorded yet; see {out / HOLDER}"


# -- what decided each prediction --------------------------------------------------------------------------


def input_digests(utterances: Sequence, context_turns: int, *, fitted_on_all: bool = False) -> dict[str, str]:
    """``input_sha256`` of each utterance: what its prediction depends on beside the run's settings.

    The transcript, the context turns the prompt shows (the last ``context_turns``), speaker, dialogue and
    gender, and the audio (its path, size and modification time, or an in-memory waveform's bytes). The gold
    label is not part of it: a corrected label needs re-scoring, not a new prediction. With
    ``fitted_on_all`` (statistics fitted on every evaluated clip shape each prompt: the per-speaker prosody
    or frame normaliser), a digest of all utterances' inputs is mixed into each, since a changed clip
    changes the statistics every prompt is described with.

    Returns:
        Utterance id -> 16 hex digits.
    """
    own = {u.id: _digest(_inputs(u, context_turns)) for u in utterances}
    if not fitted_on_all:
        return own
    everyone = _digest(sorted(own.values()))
    return {uid: _digest([value, everyone]) for uid, value in own.items()}


def _inputs(utterance, context_turns: int) -> dict:
    turns = list(utterance.context or [])
    shown = turns[len(turns) - context_turns :] if context_turns else []
    audio = None
    if utterance.audio_path is not None:
        try:
            stat = os.stat(utterance.audio_path)
            audio = [str(utterance.audio_path), stat.st_size, stat.st_mtime_ns]
        except OSError:
            audio = [str(utterance.audio_path), None, None]
    elif utterance.audio is not None:
        audio = [hashlib.sha256(utterance.audio.tobytes()).hexdigest(), utterance.sample_rate]
    return {
        "transcript": utterance.transcript,
        "context": [[t.speaker, t.text] for t in shown],
        "speaker": utterance.speaker,
        "dialogue_id": utterance.dialogue_id,
        "gender": utterance.gender,
        "audio": audio,
    }


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


# -- resuming ----------------------------------------------------------------------------------------------


@dataclass
class Resume:
    """What an earlier run in the folder leaves to this one (:func:`plan_resume`).

    Attributes:
        rows: The predictions kept, by id, in file order (gold labels brought up to date).
        rewrite: Whether ``predictions.jsonl`` must be rewritten with ``rows`` before anything is appended
            (lines dropped or relabelled, or ``overwrite``).
    """

    rows: dict[str, dict] = field(default_factory=dict)
    rewrite: bool = False


def plan_resume(
    out: Path, settings: dict, expected: Mapping[str, tuple[str, str]], *, overwrite: bool = False
) -> Resume:
    """Check a folder against this run's settings and inputs; changes nothing on disk.

    Args:
        out: The run folder.
        settings: This run's settings.
        expected: Utterance id -> ``(input_sha256, gold label)`` of this run.
        overwrite: Start again: nothing is resumed (the old predictions go at :func:`start_run`).

    Raises:
        ConfigError: the folder holds predictions made with other settings (each difference is named).
    """
    config_path, predictions = out / "config.json", out / "predictions.jsonl"
    if overwrite:
        return Resume(rewrite=predictions.exists())
    if config_path.is_file() and predictions.is_file():
        old = json.loads(config_path.read_text(encoding="utf-8")).get("settings", {})
        # A setting missing from an older folder's config.json did not exist then: not a difference.
        changed = [
            f"{key}: {old.get(key)!r} -> {settings.get(key)!r}"
            for key in sorted(old)
            if old.get(key) != settings.get(key)
        ]
        if changed:
            raise ConfigError(
                f"{out} holds predictions made with other settings ({'; '.join(changed)}). Use another "
                "output folder, or --overwrite to start again."
            )
    rows, bad, partial = _read(predictions)
    _report_damage(predictions, bad, partial)
    kept: dict[str, dict] = {}
    undigested, stale, relabelled = [], [], []
    for uid, row in rows.items():
        if uid not in expected:  # not evaluated this time (e.g. a row gone from the manifest): kept as is
            kept[uid] = row
            continue
        digest, gold = expected[uid]
        if "input_sha256" not in row:
            undigested.append(uid)
        elif row["input_sha256"] != digest:
            stale.append(uid)
        else:
            if row.get("gold") != gold:
                relabelled.append(f"{uid} ({row.get('gold')} -> {gold})")
                row = {**row, "gold": gold}
            kept[uid] = row
    if undigested:
        logger.warning(
            "%s: %d predictions have no input digest (made by an older emollm, e.g. %s); predicting them "
            "again, as their data may have changed",
            predictions, len(undigested), _some(undigested),
        )  # fmt: skip
    if stale:
        logger.warning(
            "%s: the inputs of %d utterances changed since they were predicted (transcript, context, speaker "
            "or audio, or a clip the per-speaker statistics are fitted on; e.g. %s); predicting them again",
            predictions, len(stale), _some(stale),
        )  # fmt: skip
    if relabelled:
        logger.warning(
            "%s: the gold label of %d utterances changed (%s); re-scoring them with the new labels",
            predictions, len(relabelled), _some(relabelled),
        )  # fmt: skip
    return Resume(kept, rewrite=bool(bad or partial or undigested or stale or relabelled))


def start_run(out: Path, settings: dict, resume: Resume) -> None:
    """Write ``config.json`` and leave ``predictions.jsonl`` holding only ``resume.rows``.

    Call it once the run has something to write: before, the folder still holds the earlier run intact.
    """
    import emollm

    predictions = out / "predictions.jsonl"
    if resume.rewrite:
        write_text_atomic(predictions, "".join(_line(row) for row in resume.rows.values()))
    write_text_atomic(
        out / "config.json", json.dumps({"emollm": emollm.__version__, "settings": settings}, indent=2) + "\n"
    )


def _some(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# -- reading and appending ---------------------------------------------------------------------------------


def read_predictions(path: Path, *, repair: bool = False) -> dict[str, dict]:
    """Rows of ``predictions.jsonl`` by id; unreadable lines are left out (and named in a warning).

    A half-written last line (an interrupted run, or a run still writing) is left out quietly but for a log
    line. With ``repair`` the file is rewritten without the lines left out; only the process that holds the
    folder may repair (a reader of another process's folder would cut a line it is still writing).
    """
    rows, bad, partial = _read(path)
    _report_damage(path, bad, partial)
    if repair and (bad or partial):
        write_text_atomic(path, "".join(_line(row) for row in rows.values()))
    return rows


def _read(path: Path) -> tuple[dict[str, dict], list[int], bool]:
    """``(rows by id, line numbers of unreadable lines, whether the last line is half-written)``."""
    rows: dict[str, dict] = {}
    bad: list[int] = []
    if not path.is_file():
        return rows, bad, False
    lines = path.read_bytes().splitlines(keepends=True)
    partial = bool(lines) and not lines[-1].endswith(b"\n")  # lines are written whole: cut off mid-write
    for number, line in enumerate(lines[:-1] if partial else lines, start=1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            if line.strip():
                bad.append(number)
            continue
        rows.pop(row["id"], None)  # a repeated id: the last row wins, in its place
        rows[row["id"]] = row
    return rows, bad, partial


def _report_damage(path: Path, bad: list[int], partial: bool) -> None:
    if bad:
        logger.warning(
            "%s: line%s %s %s unreadable (not a prediction row); left out, so %s predicted again",
            path, "s" if len(bad) > 1 else "", _some([str(n) for n in bad]), "are" if len(bad) > 1 else "is",
            "their utterances are" if len(bad) > 1 else "its utterance is",
        )  # fmt: skip
    if partial:
        logger.warning("%s: leaving out a half-written last line (an interrupted run)", path)


def _line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def append_predictions(path: Path, rows: Iterable[dict]) -> None:
    """Append rows to ``predictions.jsonl``, one ``write`` per line, and flush them to disk.

    Each line reaches the file whole or (killed mid-write) as a half-written last line that the next run
    drops; an interruption loses none of the lines written before.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        for row in rows:
            data = _line(row).encode("utf-8")
            while data:  # a regular file takes it in one write; a short write is finished here
                data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
