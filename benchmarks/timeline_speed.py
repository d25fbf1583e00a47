"""Timeline speed, memory and segment boundaries on long recordings made of RAVDESS clips with pauses.

    python benchmarks/timeline_speed.py [--minutes 10 60] [--asr pocketsphinx] [--model NAME] [--mode both]
        [--data-root ../shared/data] [--work runs/timeline_speed] [--seed 0]
        [--out benchmarks/results/timeline_speed.json]

For each length, a recording is built once (and kept under ``--work``, outside the repository): RAVDESS
speech clips in a seeded random order, each trimmed to its speech (``librosa.effects.trim`` at 30 dB below
the clip's loudest frame; librosa's default of 60 dB keeps the recording floor of quiet clips, -80 dBFS and
below, as speech), with pauses of 0.5-2 s (seeded, uniform) of low noise at -80 dBFS, the clips' own floor,
between them, written as a 48 kHz 16-bit mono WAV clip by clip (the builder never holds the recording
either). The clips' trimmed spans are then the true speech segments; they are approximate where a clip
opens with a breath or ends in a creaky or breathy fade, which trimming keeps and voice activity may not.

``emollm timeline`` runs on it in a subprocess (the default model unless ``--model``; ``--asr`` pocketsphinx
by default, ``none`` to leave speech recognition out; ``--mode score`` by default: the distribution and its
label without a generated rationale, whose cost grows with ``max_new_tokens`` and is measured by
``lm_throughput.py``; ``--mode both`` adds it), and the table gives:

* **audio s / s**: seconds of recording per second of wall time, model loading included;
* **peak RSS**: the subprocess's peak resident memory (``os.wait4``), model included;
* **boundary precision / recall**: a found segment start (end) is a hit when a true clip start (end) lies
  within ``--tolerance`` (0.2 s) of it, each true boundary matched once; precision is hits over found
  boundaries, recall hits over true ones;
* **segments**: found / true; **label acc.**: the share of clips whose one overlapping segment (more than half
  of the clip) got the clip's RAVDESS label (zero-shot, for scale only).

``--minutes 1`` is a quick check (about a minute with ``--asr none``). Each row is written to ``--out`` as
soon as it is measured, with the command that made it, and replaces only an earlier row of the same length,
ASR, model and mode: ``--minutes 10`` and ``--minutes 60`` can run in separate sessions, and the table printed
at the end is every row in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path

from _common import is_envelope, run_measured, write_result

SAMPLE_RATE = 48000
PAUSE = (0.5, 2.0)
PAUSE_DBFS = -80.0
TRIM_DB = 30


def build_recording(minutes: float, data_root: Path, work: Path, seed: int) -> tuple[Path, list[dict]]:
    """A WAV of RAVDESS clips with pauses, and each clip's ``{"start", "end", "label", "id"}``; cached."""
    import librosa
    import numpy as np
    import soundfile as sf

    from emollm.data.ravdess import read_ravdess

    stem = f"ravdess_{minutes:g}min_seed{seed}"
    wav, spans_path = work / f"{stem}.wav", work / f"{stem}.json"
    if wav.is_file() and spans_path.is_file():
        return wav, json.loads(spans_path.read_text())
    work.mkdir(parents=True, exist_ok=True)
    clips = [
        u for u in read_ravdess(data_root / "ravdess") if u.meta.get("vocal_channel", "speech") == "speech"
    ]
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    level = 10 ** (PAUSE_DBFS / 20)
    order: list = []
    spans: list[dict] = []
    position, target = 0, int(minutes * 60 * SAMPLE_RATE)
    tmp = wav.with_suffix(".partial.wav")
    with sf.SoundFile(tmp, "w", SAMPLE_RATE, 1, "PCM_16") as out:
        while position < target:
            if not order:
                order = list(clips)
                rng.shuffle(order)
            clip = order.pop()
            samples, _ = librosa.load(clip.audio_path, sr=SAMPLE_RATE, mono=True)
            speech, _ = librosa.effects.trim(samples, top_db=TRIM_DB)
            pause = noise.normal(0, level, int(rng.uniform(*PAUSE) * SAMPLE_RATE)).astype(np.float32)
            out.write(pause)
            position += len(pause)
            spans.append(
                {
                    "id": clip.id,
                    "label": clip.label,
                    "start": position / SAMPLE_RATE,
                    "end": (position + len(speech)) / SAMPLE_RATE,
                }
            )
            out.write(speech)
            position += len(speech)
        tail = noise.normal(0, level, SAMPLE_RATE).astype(np.float32)
        out.write(tail)
    os.replace(tmp, wav)
    spans_path.write_text(json.dumps(spans) + "\n")
    return wav, spans


def run_timeline(wav: Path, output: Path, args) -> dict:
    """``emollm timeline`` in a subprocess: wall seconds, peak RSS (MB) and exit status."""
    command = [sys.executable, "-c", "import sys; from emollm.cli import main; sys.exit(main())", "timeline"]
    command += [str(wav), "--output", str(output), "--asr", args.asr, "--overwrite", "--no-progress"]
    if args.model:
        command += ["--model", args.model]
    command += ["--mode", args.mode]
    return run_measured(command)


def boundary_scores(found: list[float], true: list[float], tolerance: float) -> int:
    """Hits: found boundaries within ``tolerance`` of a true one, each true boundary matched at most once.

    >>> boundary_scores([1.0, 5.1, 9.0], [1.1, 5.0, 7.0], 0.2)
    2
    """
    hits, j = 0, 0
    true = sorted(true)
    for value in sorted(found):
        while j < len(true) and true[j] < value - tolerance:
            j += 1
        if j < len(true) and abs(true[j] - value) <= tolerance:
            hits += 1
            j += 1
    return hits


def score(rows: list[dict], spans: list[dict], tolerance: float) -> dict:
    """Boundary precision and recall, segment counts and label accuracy of matched clips."""
    result = {"segments_found": len(rows), "segments_true": len(spans)}
    for side in ("start", "end"):
        hits = boundary_scores([r[side] for r in rows], [s[side] for s in spans], tolerance)
        result[f"{side}_hits"] = hits
    hits = result["start_hits"] + result["end_hits"]
    result["precision"] = hits / (2 * len(rows)) if rows else 0.0
    result["recall"] = hits / (2 * len(spans)) if spans else 0.0
    correct = matched = 0
    for span in spans:
        length = span["end"] - span["start"]
        over = [r for r in rows if min(r["end"], span["end"]) - max(r["start"], span["start"]) > length / 2]
        if len(over) == 1:
            matched += 1
            correct += over[0]["label"] == span["label"]
    result["clips_matched"] = matched
    result["label_accuracy"] = correct / matched if matched else None
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60], help="recording lengths")
    parser.add_argument("--asr", default="pocketsphinx", help="pocketsphinx, hf:<path> or none")
    parser.add_argument("--model", help="model (default: emollm's default model)")
    parser.add_argument(
        "--mode",
        default="score",
        choices=["score", "generate", "both"],
        help="decoding (default score: the distribution, no generated rationale)",
    )
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--work", type=Path, default=Path("runs/timeline_speed"), help="recordings and outputs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.2, help="boundary tolerance, seconds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/timeline_speed.json"))
    args = parser.parse_args(argv)

    rows_out = earlier_rows(args.out)
    for minutes in args.minutes:
        started = time.perf_counter()
        wav, spans = build_recording(minutes, args.data_root, args.work, args.seed)
        print(f"{minutes:g} min: {wav} ({len(spans)} clips) ready in {time.perf_counter() - started:.0f} s")
        output = args.work / f"{wav.stem}_{args.asr.replace(':', '_').replace('/', '_')}"
        run = run_timeline(wav, output, args)
        if run["status"] != 0:
            raise SystemExit(f"emollm timeline failed on {wav} with status {run['status']}")
        import soundfile as sf

        duration = sf.info(str(wav)).duration
        lines = (output / "segments.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        summary = json.loads((output / "summary.json").read_text())
        row = {
            "minutes": minutes,
            "audio_seconds": round(duration, 1),
            "wall_seconds": round(run["seconds"], 1),
            "audio_s_per_s": round(duration / run["seconds"], 2),
            "peak_rss_mb": round(run["peak_rss_mb"]),
            "asr": args.asr,
            "model": args.model or "default",
            "mode": args.mode,
            "seed": args.seed,
            "tolerance": args.tolerance,
            "timeline_seconds": summary["seconds"],
            "command": shlex.join(["python", *sys.argv]),
            **score(rows, spans, args.tolerance),
        }
        rows_out = [r for r in rows_out if _key(r) != _key(row)] + [row]
        rows_out.sort(key=lambda r: (r["asr"], r["model"], r["mode"], r["minutes"]))
        if args.out:
            write_result(args.out, {"rows": rows_out})

    print()
    columns = ["minutes", "ASR", "model", "audio s / s", "peak RSS (MB)", "boundary precision"]
    columns += ["boundary recall", "segments found / true", "label acc."]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows_out:
        accuracy = "-" if r["label_accuracy"] is None else f"{r['label_accuracy']:.3f}"
        print(
            f"| {r['minutes']:g} | {r['asr']} | {r['model']} | {r['audio_s_per_s']:.2f} | "
            f"{r['peak_rss_mb']} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['segments_found']} / {r['segments_true']} | {accuracy} |"
        )
    if args.out:
        print(f"\nwrote {args.out}")
    return {"rows": rows_out}


def _key(row: dict) -> tuple:
    return row["minutes"], row["asr"], row["model"], row["mode"], row.get("seed", 0)


def earlier_rows(path: Path | None) -> list[dict]:
    """The rows already in ``path``; a row written before rows carried their command gets the file's."""
    if not path or not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    results = data["results"] if is_envelope(data) else data
    rows = results.get("rows", [])
    for row in rows:
        row.setdefault("command", data.get("command"))
        row.setdefault("seed", results.get("seed", 0))
    return rows


if __name__ == "__main__":
    main()
