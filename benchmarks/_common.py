"""What every benchmark shares: the clip draw, the code hash, the step timer, machine facts, the results file.

Not a benchmark. The scripts import it as a sibling (``from _common import ...``: Python puts a script's own
folder first on ``sys.path``), the way ``sft_ravdess.py`` imports ``peers``.

* :func:`spread_subset`: a seeded draw of clips dealt round-robin over the speakers.
* :func:`emollm_source_hash`: SHA-256 of the emollm code a result came from (the prosody code alone, which
  also names the prosody benchmarks' feature cache, or the whole package with its prompt templates).
* ``StepTimer``: the one definition of a training step, for the SFT and GRPO cost benchmarks.
* :func:`machine`: the facts of the machine that made a result.
* :func:`write_result` / :func:`read_result`: every ``benchmarks/results/*.json`` is one envelope,
  ``{"benchmark", "command", "emollm_source", "machine", "results"}``, with the benchmark's own numbers
  under ``results``; :func:`read_result` also reads the files written before the envelope existed.

Only the standard library is imported at module level: ``prosody_speed.py`` pins its thread pools before
numpy is imported and times its own imports, so nothing here may load numpy, torch or transformers early.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

PACKAGES = (
    "numpy",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "scikit-learn",
    "opensmile",
    "praat-parselmouth",
    "pocketsphinx",
)
"""Distributions whose versions :func:`machine` records (those installed)."""


# -- which clips --------------------------------------------------------------------------------------------


def spread_subset(utterances: list, limit: int, seed: int) -> list:
    """``limit`` clips, the same for a seed: each speaker's clips shuffled, then dealt round-robin.

    Speakers are taken in sorted order and each one's clips sorted by id before the shuffle, so the draw
    depends on the seed and the set of clips only, not on the order they came in. ``limit`` of 0 (or less),
    or at least the number of clips, keeps every clip in the order given.

    >>> from types import SimpleNamespace as U
    >>> clips = [U(id=f"{s}-{i}", speaker=s) for s in "ab" for i in range(3)]
    >>> [u.speaker for u in spread_subset(clips, 4, seed=0)]
    ['a', 'b', 'a', 'b']
    >>> len(spread_subset(clips, 0, seed=0))
    6
    """
    if limit <= 0 or limit >= len(utterances):
        return list(utterances)
    rng = random.Random(seed)
    by_speaker: dict[str, list] = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    queues = []
    for speaker in sorted(by_speaker):
        clips = sorted(by_speaker[speaker], key=lambda u: u.id)
        rng.shuffle(clips)
        queues.append(clips)
    chosen: list = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


# -- which code ---------------------------------------------------------------------------------------------


def emollm_source_hash(scope: str = "prosody") -> str:
    """SHA-256 of the emollm code behind a result.

    Args:
        scope: ``"prosody"``: ``emollm/audio.py`` and ``emollm/prosody/*.py``, each as file name + bytes (what
            makes the prosody features; the prosody benchmarks name their ``extract_many`` cache folder after
            it, whose own key knows the code only by ``PIPELINE_VERSION``). ``"package"``: every ``.py`` file
            of the package (by its path inside it) and the shipped prompt templates.

    Raises:
        ValueError: another ``scope``.
    """
    import emollm

    package = Path(emollm.__file__).parent
    digest = hashlib.sha256()
    if scope == "prosody":
        for path in [package / "audio.py", *sorted((package / "prosody").glob("*.py"))]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    elif scope == "package":
        from emollm.prompting import prompts_dir

        files = [(p.relative_to(package).as_posix(), p) for p in package.rglob("*.py")]
        files += [(f"prompts/{p.name}", p) for p in prompts_dir().glob("*.jinja")]
        for name, path in sorted(files):
            digest.update(name.encode() + b"\0" + path.read_bytes())
    else:
        raise ValueError(f"scope must be 'prosody' or 'package', got {scope!r}")
    return digest.hexdigest()


# -- one training step --------------------------------------------------------------------------------------


def _make_step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step, as the Trainer runs it: the same definition for SFT and GRPO.

        A step is the time between the end of the previous optimizer step and the end of this one
        (consecutive ``on_step_end`` callbacks): fetching and collating the batch, which the Trainer does
        *before* ``on_step_begin`` (SFT: prompts tokenised, frames padded), then ``training_step`` (GRPO:
        sampling the completions, the rewards and the log-probabilities; both: forward with
        ``inputs_embeds``, backward), gradient clipping, the optimizer and the scheduler, and the logging of
        the previous step. ``on_step_begin`` -> ``on_step_end`` would leave the collation out, which is part
        of what the pseudo-token route costs.

        The first step is measured from ``on_train_begin``, so it also carries the start of training (the
        data loader, the first batch): it is a warm-up step and never timed. Drop the first ``warmup``
        entries of :meth:`durations`, ``warmup`` >= 1 (:func:`warmup_steps` checks the flag).
        """

        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

        def durations(self) -> list[float]:
            """Seconds of every optimizer step, warm-up steps included, in order."""
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return StepTimer


def __getattr__(name: str):
    # StepTimer subclasses transformers' TrainerCallback: built on first use, so that importing this module
    # loads neither transformers nor torch (see the module docstring).
    if name == "StepTimer":
        timer = _make_step_timer()
        globals()["StepTimer"] = timer
        return timer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def warmup_steps(text: str) -> int:
    """``argparse`` type of ``--warmup``: an integer >= 1 (the first step is never timed; see StepTimer)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"got {value}; it must be >= 1: the first step also carries the start of training"
        )
    return value


def run_measured(command: list[str], env: dict | None = None) -> dict:
    """Run ``command`` to its end: ``{"status": exit code, "seconds": wall time, "peak_rss_mb": its peak}``.

    The peak resident memory is the child's own (``os.wait4``'s ``ru_maxrss``, KiB on Linux), not this
    process's: what a command costs when a benchmark starts it in a fresh process.
    """
    import subprocess

    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    return {
        "status": os.waitstatus_to_exitcode(status),
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def rss_mb() -> float:
    """Current resident set size (MB) of this process (NaN where ``/proc`` is missing)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_until_quiet(threshold: float, max_wait: float) -> dict:
    """Poll the 1-minute load average every 30 s until it is below ``threshold`` or ``max_wait`` passes."""
    start = time.monotonic()
    first = os.getloadavg()
    while os.getloadavg()[0] >= threshold and time.monotonic() - start < max_wait:
        print(f"  load average {os.getloadavg()[0]:.2f} >= {threshold}: waiting", file=sys.stderr, flush=True)
        time.sleep(30)
    now = os.getloadavg()
    return {
        "loadavg_at_request": list(first),
        "loadavg_at_start": list(now),
        "waited_s": round(time.monotonic() - start, 1),
        "quiet": now[0] < threshold,
    }


# -- which machine ------------------------------------------------------------------------------------------


def machine() -> dict:
    """The facts of this machine, for every result: CPU, cores, memory, Python and library versions, GPU.

    ``torch_threads``, ``gpu`` and ``cuda`` are there only when the benchmark has imported torch (the
    prosody benchmarks never do; importing it here would cost them seconds and memory for nothing).
    """
    from importlib.metadata import PackageNotFoundError, version

    facts: dict = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _proc_value("/proc/cpuinfo", "model name"),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": None,
        "system": platform.system(),
        "python": platform.python_version(),
    }
    memory = _proc_value("/proc/meminfo", "MemTotal")
    if memory:
        facts["memory_gb"] = round(int(memory.split()[0]) / 1024**2, 1)
    for package in PACKAGES:
        try:
            facts[package] = version(package)
        except PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        facts["gpu"] = torch.cuda.get_device_name(0) if cuda else None
        facts["cuda"] = torch.version.cuda if cuda else None
    facts["loadavg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return facts


def _proc_value(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a ``/proc`` file, or None."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


# -- the results file ---------------------------------------------------------------------------------------


def write_result(path: str | Path, results, *, benchmark: str | None = None) -> dict:
    """Write ``results`` in the envelope every results file shares, atomically; return the envelope.

    ``{"benchmark": script name, "command": the command line, "emollm_source": {"package": SHA-256,
    "prosody": SHA-256} (:func:`emollm_source_hash`), "machine": :func:`machine`, "results": results}``.

    Args:
        path: The JSON file (its folder is created).
        results: The benchmark's own numbers (JSON-ready; other values are written as ``str``).
        benchmark: Its name; default the running script's (``sft_ravdess``).
    """
    from emollm.io import write_text_atomic

    envelope = {
        "benchmark": benchmark or Path(sys.argv[0]).stem,
        "command": shlex.join(["python", *sys.argv]),
        "emollm_source": {scope: emollm_source_hash(scope) for scope in ("package", "prosody")},
        "machine": machine(),
        "results": results,
    }
    write_text_atomic(Path(path), json.dumps(envelope, indent=1, default=str) + "\n")
    return envelope


def is_envelope(data) -> bool:
    """Whether ``data`` (a parsed results file) is :func:`write_result`'s envelope."""
    return isinstance(data, dict) and {"benchmark", "results", "machine"} <= set(data)


def read_result(path: str | Path):
    """The benchmark's own numbers in a results file: the envelope's ``results``, or a whole older file.

    Files written before the envelope had the numbers at the top level next to ``command`` (and ``facts``,
    ``machine`` or ``emollm_source_sha256``); no older file has a ``benchmark`` key, so the two never mix.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "old.json").write_text('{"command": "python x.py", "rows": {"a": 1}}')
    >>> read_result(folder / "old.json")["rows"]
    {'a': 1}
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["results"] if is_envelope(data) else data
