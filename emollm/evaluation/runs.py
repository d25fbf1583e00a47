"""One evaluation run's folder: its settings, its predictions (appended and resumed) and how they are read.

=====================  ===================================================================================
``config.json``        the run's settings (what decides the predictions) and the emollm version
``predictions.jsonl``  one JSON row per utterance, appended and flushed batch by batch as they are made
``metrics.json``       written by the harness from the rows (:mod:`emollm.evaluation.report`)
=====================  ===================================================================================

A folder is resumed only with the settings that made it; a half-written last line (an interrupted run) is
dropped. :func:`read_predictions` is also how ``emollm compare`` reads another run's folder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from emollm.errors import ConfigError
from emollm.io import write_text_atomic

logger = logging.getLogger(__name__)


def prepare_run_folder(out: Path, settings: dict, overwrite: bool) -> set[str]:
    """Create ``out`` or check that its predictions were made with ``settings``; return the ids it holds.

    Raises:
        ConfigError: the folder holds predictions made with other settings (each difference is named).
    """
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    predictions = out / "predictions.jsonl"
    if overwrite:
        predictions.unlink(missing_ok=True)
    elif config_path.is_file() and predictions.is_file():
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
    import emollm

    write_text_atomic(
        config_path, json.dumps({"emollm": emollm.__version__, "settings": settings}, indent=2) + "\n"
    )
    return set(read_predictions(predictions, repair=True)) if predictions.is_file() else set()


def read_predictions(path: Path, *, repair: bool = False) -> dict[str, dict]:
    """Rows of ``predictions.jsonl`` by id, up to the first incomplete line.

    A half-written last line (an interrupted run, or a run still writing) is left out. With ``repair``
    (the harness, before it appends to the file) it is also cut off the file; a reader of another process's
    folder must not repair, or it would cut a line that process is still writing.
    """
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    data = path.read_bytes()
    good = 0  # byte length of the complete, parseable prefix
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        rows[row["id"]] = row
        good += len(line)
    if good < len(data) and repair:
        logger.warning("%s: dropping a half-written last line from an interrupted run", path)
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return rows


def append_predictions(path: Path, rows: Iterable[dict]) -> None:
    """Append rows to ``predictions.jsonl`` and flush them to disk (an interruption loses none of them)."""
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
