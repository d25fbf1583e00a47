"""What transcripts are worth: one checkpoint on RAVDESS dev with the gold transcript, the ASR one, and none.

python benchmarks/transcript_worth.py --model CHECKPOINT [--data-root ../shared/data] [--limit N] [--seed 0]
    [--asr pocketsphinx] [--workers 1] [--output-root runs/transcript_worth]
    [--out benchmarks/results/transcript_worth.json]

RAVDESS dev (actors 15-18, 240 clips, 8 classes; ``--limit N``: N clips dealt round-robin over the actors,
``_common.spread_subset``), the same checkpoint (the best SFT text or both route) in three conditions that
differ only in the transcript each clip comes with:

* **gold**: the corpus's own sentence ("Kids are talking by the door" / "Dogs are sitting by the door"):
  the prompt shows it and the forced aligner finds the vowels with it. This is the recipe's own evaluation
  (``<checkpoint>/eval-dev``): the manifest keeps the corpus's ids, speakers (``ravdess/15``...) and genders,
  so the per-speaker prosody and frame statistics are fitted on the same clips by the same speakers (checked
  on 8 clips with the vowel description: the same prompts and label probabilities as ``--data ravdess``).
* **asr**: what :func:`emollm.asr.transcribe` heard (``--asr``, pocketsphinx by default), in the prompt and
  aligned, as ``emollm predict`` does for audio without a transcript; an implausible alignment of the
  recognised words falls back to syllable nuclei, and a clip where nothing was recognised has no transcript.
  pocketsphinx writes lower case without punctuation, so even a clip it heard right shows the model
  "kids are talking by the door", not the corpus's "Kids are talking by the door" (the vowels are the same).
* **none**: an empty transcript cell, which a manifest reads as "no transcript" (None): the prompt says the
  words are unknown and the vowels are syllable nuclei, as ``emollm predict --asr none`` gives.

Each condition is a CSV manifest under ``--output-root`` (id, absolute audio path, transcript, label,
speaker, gender), evaluated by ``emollm evaluate --data manifest:<csv> --split all --labels ravdess8`` in a
subprocess, into ``<output-root>/<condition>/`` (evaluate resumes an interrupted run). The
checkpoint's own prompt settings (strategy, prosody on or off, description style, context, and mode where
saved in its ``emollm_config.json``) are passed as flags, as the SFT recipe passes them to its evaluation
(``emollm evaluate`` also takes them from the checkpoint when no flag is given); a model that is not a
checkpoint (``--model default`` for a smoke run) is asked the way the text route is: the ``minimal``
template with the vowel description (``default`` names the default model, smollm2-135m-instruct).

Reported per condition: WA, UA, macro F1, and against gold on the same clips the paired bootstrap
(:func:`emollm.evaluation.bootstrap.paired_bootstrap`, 1000 resamples: difference, 95 % interval,
two-sided p) of WA and UA; the clips whose vowels came from syllable nuclei (prediction notes) and the
clips with no transcript in the prompt; the ASR word error rate against the gold sentences
(:func:`emollm.asr.word_errors`). When the checkpoint folder holds the recipe's ``eval-dev`` run, the gold
condition's predictions are compared with it clip by clip (they should agree).

Transcripts are cached per clip (id -> text, confidence, seconds), one JSON line each, in
``~/.cache/emollm/bench/transcripts-<backend>.jsonl``: a rerun transcribes nothing and an interrupted run
resumes. The cache is keyed by backend only: delete the file after changing the recogniser. About 1 s per
clip for pocketsphinx, then three evaluations of the checkpoint.

    python benchmarks/transcript_worth.py --model runs/sft/ravdess-text
    python benchmarks/transcript_worth.py --model default --limit 8 --output-root /tmp/tw_smoke \\
        --out /tmp/tw_smoke.json                                      # smoke test, a few minutes
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import spread_subset, write_result

from emollm.asr import check_backend, transcribe, word_errors
from emollm.data import load_corpus
from emollm.io import write_text_atomic

LABELS = "ravdess8"
CONDITIONS = ("gold", "asr", "none")
CACHE_DIR = Path("~/.cache/emollm/bench").expanduser()
TEXT_ROUTE = {"strategy": "minimal", "prosody": True, "prosody_style": "vowel", "context_turns": 0}
"""How a model that is not a checkpoint is asked: as ``recipes/configs/ravdess/sft_text.yaml`` trains."""

# checkpoint's saved reasoner setting -> emollm evaluate flag
EVAL_FLAGS = {
    "strategy": "--strategy",
    "prosody": "--prosody",
    "prosody_style": "--prosody_style",
    "context_turns": "--context",
    "mode": "--mode",
    "max_new_tokens": "--max_new_tokens",
    "length_normalize": "--length_normalize",
    "calibrate": "--calibrate",
}


# -- transcripts ------------------------------------------------------------------------------------------


def cache_path(backend: str) -> Path:
    """``~/.cache/emollm/bench/transcripts-<backend>.jsonl``, the backend's odd characters as ``_``."""
    return CACHE_DIR / f"transcripts-{re.sub(r'[^A-Za-z0-9._-]+', '_', backend)}.jsonl"


def read_cache(path: Path) -> dict[str, dict]:
    """Cached transcripts by clip id (a later line wins; a half-written last line is skipped)."""
    rows: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                rows[row["id"]] = row
    return rows


def transcribe_all(utterances: list, backend: str) -> tuple[dict[str, dict], int]:
    """Each clip's transcript, from the cache or recognised now (and appended to it); how many were cached."""
    path = cache_path(backend)
    cached = read_cache(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    hits = 0
    todo = [u for u in utterances if u.id not in cached]
    for index, utt in enumerate(utterances, 1):
        if utt.id in cached:
            out[utt.id] = cached[utt.id]
            hits += 1
            continue
        start = time.perf_counter()
        heard = transcribe(utt.audio_path, backend)
        row = {
            "id": utt.id,
            "text": heard.text,
            "confidence": heard.confidence,
            "seconds": round(time.perf_counter() - start, 3),
            "notes": heard.notes,
        }
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        out[utt.id] = row
        done = index - hits
        if done % 20 == 0 or done == len(todo):
            print(f"  transcribed {done}/{len(todo)} clips", flush=True)
    return out, hits


# -- manifests and evaluations ----------------------------------------------------------------------------


def write_manifest(path: Path, utterances: list, transcripts: dict[str, str]) -> None:
    """A CSV manifest of ``utterances`` with ``transcripts[id]`` ("" reads back as no transcript)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "audio_path", "transcript", "label", "speaker", "gender"])
    for u in utterances:
        audio = str(Path(u.audio_path).resolve())
        writer.writerow([u.id, audio, transcripts[u.id], u.label, u.speaker or "", u.gender or ""])
    write_text_atomic(path, buffer.getvalue())


def checkpoint_settings(model: str) -> tuple[dict, str]:
    """The prompt settings the model is evaluated with, and where they came from."""
    from emollm.modeling.checkpoint import is_checkpoint, read_checkpoint_config

    if not is_checkpoint(model):
        return dict(TEXT_ROUTE), "not a checkpoint: asked as the text route is (minimal, vowel description)"
    saved = read_checkpoint_config(model).get("reasoner", {})
    labels = saved.get("labels")
    if labels is not None:
        from emollm.labels import get_label_set

        if list(labels) != list(get_label_set(LABELS).labels):
            raise SystemExit(f"--model {model!r} was trained on labels {labels}, not {LABELS}")
    return {k: v for k, v in saved.items() if k in EVAL_FLAGS}, "the checkpoint's emollm_config.json"


def evaluate_command(manifest: Path, output: Path, args, settings: dict) -> list[str]:
    command = [sys.executable, "-m", "emollm.cli", "evaluate", "--data", f"manifest:{manifest}"]
    command += ["--split", "all", "--model", args.model, "--labels", LABELS, "--output", str(output)]
    command += ["--data_root", args.data_root, "--workers", str(args.workers), "--no-progress"]
    for key, value in settings.items():
        if value is not None:
            command += [EVAL_FLAGS[key], str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def clip_notes(rows: dict[str, dict], ids: list[str]) -> dict[str, int]:
    """Clips whose vowels came from syllable nuclei (fallback included), fell back, had no transcript."""
    notes = {i: " | ".join(rows[i].get("notes") or []) for i in ids if i in rows}
    return {
        "nuclei": sum("vowels are syllable nuclei" in n for n in notes.values()),
        "fell_back": sum("fell back to syllable nuclei" in n for n in notes.values()),
        "no_transcript": sum("no transcript" in n for n in notes.values()),
    }


def against_recipe(model: str, gold_rows: dict[str, dict], ids: list[str]) -> dict | None:
    """The gold condition vs the recipe's own ``<checkpoint>/eval-dev`` run, on the clips both predicted."""
    from emollm.evaluation.harness import read_predictions

    folder = Path(model) / "eval-dev"
    if not (folder / "predictions.jsonl").is_file():
        return None
    recipe = read_predictions(folder / "predictions.jsonl")
    shared = [i for i in ids if i in recipe and i in gold_rows]
    same = sum(recipe[i].get("label") == gold_rows[i].get("label") for i in shared)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    return {
        "folder": str(folder),
        "clips_shared": len(shared),
        "same_label": same,
        "recipe_wa": metrics.get("metrics", {}).get("wa"),
        "recipe_ua": metrics.get("metrics", {}).get("ua"),
        "recipe_n": metrics.get("n"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint folder (or any model; 'default': the default model, for a smoke run)",
    )
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=0, help="dev clips, spread over the actors (0: all 240)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit draw")
    parser.add_argument("--asr", default="pocketsphinx", help="speech recognition: pocketsphinx or hf:<path>")
    parser.add_argument("--workers", type=int, default=1, help="prosody extraction processes per evaluation")
    parser.add_argument("--output-root", default="runs/transcript_worth", help="manifests and evaluations")
    parser.add_argument("--out", default="benchmarks/results/transcript_worth.json", help="JSON results")
    args = parser.parse_args()
    if args.model == "default":
        from emollm.modeling.base import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    problem = check_backend(args.asr)
    if problem or args.asr == "none":
        raise SystemExit(f"--asr: {problem or 'none transcribes nothing; the none condition is always run'}")

    from emollm.evaluation.bootstrap import paired_bootstrap
    from emollm.evaluation.harness import read_predictions

    dev = load_corpus("ravdess", "dev", data_root=args.data_root)
    chosen = {u.id for u in spread_subset(dev, args.limit, args.seed)}
    clips = [u for u in dev if u.id in chosen]  # corpus order, as the corpus evaluation has them
    print(f"RAVDESS dev: {len(clips)} clips; transcribing with {args.asr}", flush=True)
    heard, cached = transcribe_all(clips, args.asr)
    errors = [word_errors(u.transcript, heard[u.id]["text"]) for u in clips]
    wer = sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))
    exact = sum(e == 0 for e, _ in errors)
    nothing_heard = sum(not heard[u.id]["text"].strip() for u in clips)

    settings, source = checkpoint_settings(args.model)
    root = Path(args.output_root)
    texts = {
        "gold": {u.id: u.transcript or "" for u in clips},
        "asr": {u.id: heard[u.id]["text"] for u in clips},
        "none": {u.id: "" for u in clips},
    }
    runs: dict[str, dict] = {}
    predictions: dict[str, dict] = {}
    for condition in CONDITIONS:
        manifest = root / f"{condition}.csv"
        write_manifest(manifest, clips, texts[condition])
        command = evaluate_command(manifest, root / condition, args, settings)
        print(f"\n== {condition}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        status = subprocess.run(command).returncode
        if status != 0:
            raise SystemExit(f"emollm evaluate failed for the {condition} condition (exit status {status})")
        summary = json.loads((root / condition / "metrics.json").read_text(encoding="utf-8"))
        predictions[condition] = read_predictions(root / condition / "predictions.jsonl")
        metrics = summary["metrics"]
        runs[condition] = {
            "n": summary["n"],
            "wa": metrics["wa"],
            "ua": metrics["ua"],
            "macro_f1": metrics["macro_f1"],
            "parse_failures": metrics.get("parse_failures"),
            "with_prosody": summary.get("with_prosody"),
            "ci95": summary.get("ci95"),
            "seconds": round(time.perf_counter() - start, 1),
            "notes": clip_notes(predictions[condition], [u.id for u in clips]),
            "output_dir": str(root / condition),
        }

    from dataclasses import asdict

    for condition in CONDITIONS[1:]:
        shared = [u for u in clips if u.id in predictions["gold"] and u.id in predictions[condition]]
        result = paired_bootstrap(
            [u.label for u in shared],
            [predictions["gold"][u.id]["label"] for u in shared],
            [predictions[condition][u.id]["label"] for u in shared],
            LABELS,
        )
        runs[condition]["vs_gold"] = {"n": len(shared), "metrics": {m: asdict(r) for m, r in result.items()}}
    recipe = against_recipe(args.model, predictions["gold"], [u.id for u in clips])

    prosody = bool(settings.get("prosody"))
    print(f"\nRAVDESS dev, {len(clips)} clips, model {args.model} ({source}); settings {settings}\n")
    print(
        "| condition | n | WA % | UA % | macro F1 % | WA vs gold, points [95 % interval] | p "
        "| UA vs gold, points [95 % interval] | p | vowels from nuclei | no transcript |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for condition in CONDITIONS:
        run = runs[condition]
        cells = []
        for metric in ("wa", "ua"):
            paired = run.get("vs_gold", {}).get("metrics", {}).get(metric)
            if paired is None:
                cells += ["", ""]
            else:
                cells += [
                    f"{100 * paired['diff']:+.1f} [{100 * paired['low']:+.1f}, {100 * paired['high']:+.1f}]",
                    f"{paired['p']:.3f}",
                ]
        nuclei = str(run["notes"]["nuclei"]) if prosody else "(no prosody)"
        print(
            f"| {condition} | {run['n']} | {100 * run['wa']:.1f} | {100 * run['ua']:.1f} "
            f"| {100 * run['macro_f1']:.1f} | {' | '.join(cells)} | {nuclei} "
            f"| {run['notes']['no_transcript']} |"
        )
    print(
        f"\nASR ({args.asr}) word error rate on these clips: {100 * wer:.1f} % "
        f"({sum(e for e, _ in errors)} / {sum(n for _, n in errors)} words); clips exactly right: {exact}; "
        f"nothing recognised: {nothing_heard}; {cached} of {len(clips)} transcripts from the cache "
        f"{cache_path(args.asr)}"
    )
    if prosody:
        fell = ", ".join(f"{c} {runs[c]['notes']['fell_back']}" for c in CONDITIONS)
        print(f"alignment fell back to syllable nuclei (implausible or failed): {fell}")
    if recipe is not None:
        print(
            f"gold vs the recipe's own {recipe['folder']}: same label on {recipe['same_label']} of "
            f"{recipe['clips_shared']} shared clips (recipe WA {recipe['recipe_wa']}, n {recipe['recipe_n']})"
        )

    seconds = [heard[u.id]["seconds"] for u in clips if heard[u.id].get("seconds") is not None]
    write_result(
        args.out,
        {
            "model": args.model,
            "settings": settings,
            "settings_source": source,
            "labels": LABELS,
            "clips": len(clips),
            "limit": args.limit,
            "seed": args.seed,
            "asr": {
                "backend": args.asr,
                "wer": wer,
                "word_errors": sum(e for e, _ in errors),
                "words": sum(n for _, n in errors),
                "clips_exactly_right": exact,
                "clips_nothing_recognised": nothing_heard,
                "cached": cached,
                "cache": str(cache_path(args.asr)),
                "seconds_per_clip": sum(seconds) / len(seconds) if seconds else None,
            },
            "conditions": runs,
            "gold_vs_recipe_eval_dev": recipe,
            "transcripts": {u.id: {"gold": u.transcript, "asr": heard[u.id]["text"]} for u in clips},
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
