"""Calibration before and after temperature scaling: ECE, Brier and NLL of score-mode evaluations.

python benchmarks/calibration_table.py [--data-root ../shared/data] [--runs zs-ravdess,zs-meld]
    [--sft-ravdess FOLDER] [--sft-meld FOLDER] [--output-root runs/calibration]
    [--out benchmarks/results/calibration.json]

Rows (each a score-mode evaluation folder of ``emollm evaluate``; missing ones are run here, resumably):

* ``zs-ravdess``: the zero-shot default model on RAVDESS dev (actors 15-18, 240 clips), ``minimal``
  template with the prosody description, score mode;
* ``zs-meld``: the zero-shot default model on MELD dev (1,109 utterances), 2 context turns, score mode;
* ``--sft-ravdess`` / ``--sft-meld``: an SFT checkpoint's own dev evaluation (the recipes write it to
  ``<output_dir>/eval-dev``), e.g. ``runs/sft/ravdess-functionals/eval-dev``.

Temperature scaling must be fit on other utterances than it is scored on. The dev split is cut in two by
speaker (RAVDESS: actors 15-16 | 17-18) or by dialogue (MELD: even | odd dialogue ids), ``T`` is fit on
one half (:func:`emollm.evaluation.calibration.fit_temperature`, the NLL-optimal ``T``) and applied to the
other, and back (two-fold cross-fitting); the "after" figures pool both scored halves. The in-sample ``T``
(fit and scored on all of dev, what ``--save-temperature`` records) is printed beside it as the
optimistic bound. Temperature scaling never changes the top-1 label, so WA and UA are the same before and
after. Reads the stored ``predictions.jsonl`` (unscaled probabilities): seconds once the runs exist.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import write_result

REPO = Path(__file__).resolve().parents[1]

ZERO_SHOT = {
    "zs-ravdess": ("zero-shot default, RAVDESS dev", "ravdess", ["--prosody"]),
    "zs-meld": ("zero-shot default, MELD dev (2 context turns)", "meld", ["--context", "2"]),
}


def run_zero_shot(name: str, folder: Path, data_root: str) -> None:
    title, corpus, extra = ZERO_SHOT[name]
    cmd = [
        sys.executable,
        "-m",
        "emollm.cli",
        "evaluate",
        "--data",
        corpus,
        "--split",
        "dev",
        "--mode",
        "score",
        "--model",
        "default",
        "--output",
        str(folder),
        "--data_root",
        data_root,
        "--no-progress",
        *extra,
    ]
    print("$", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def halves(corpus: str, ids: list[str], data_root: str) -> np.ndarray:
    """0/1 per utterance: its half of dev (RAVDESS: actors 15-16 | 17-18; MELD: dialogue id parity)."""
    from emollm.data import load_corpus

    by_id = {u.id: u for u in load_corpus(corpus, "dev", data_root=data_root)}
    if corpus == "ravdess":
        return np.asarray([int(by_id[uid].meta["actor"] >= 17) for uid in ids])
    return np.asarray([int(by_id[uid].dialogue_id.rsplit("/", 1)[-1]) % 2 for uid in ids])


def calibration_row(folder: Path, corpus: str, data_root: str) -> dict:
    from emollm.evaluation.calibration import (
        PROB_FLOOR,
        apply_temperature,
        brier_score,
        expected_calibration_error,
        fit_temperature,
        negative_log_likelihood,
    )
    from emollm.evaluation.harness import read_predictions

    labels = json.loads((folder / "metrics.json").read_text())["metrics"]["labels"]
    rows = [r for r in read_predictions(folder / "predictions.jsonl").values() if r.get("distribution")]
    rows = [r for r in rows if r.get("gold") in labels]
    if not rows:
        sys.exit(f"calibration_table: {folder} holds no label distributions (a score-mode run is needed)")
    ids = [r["id"] for r in rows]
    probs = np.array([[r["distribution"][lab] for lab in labels] for r in rows], dtype=np.float64)
    probs = probs / probs.sum(1, keepdims=True)
    gold = np.array([labels.index(r["gold"]) for r in rows])
    scores = np.log(np.clip(probs, PROB_FLOOR, None))
    side = halves(corpus, ids, data_root)
    if len(set(side.tolist())) < 2:
        sys.exit(f"calibration_table: {folder} covers one half of dev only; cross-fitting needs both")

    def measures(p: np.ndarray) -> dict:
        return {
            "ece": expected_calibration_error(p, gold),
            "brier": brier_score(p, gold),
            "nll": negative_log_likelihood(p, gold),
        }

    after = np.empty_like(probs)
    fitted = {}
    for half in (0, 1):
        fit_on, score_on = side != half, side == half
        t = fit_temperature(scores[fit_on], gold[fit_on])
        fitted[f"T fit on half {1 - half}, scored on half {half}"] = t
        after[score_on] = apply_temperature(probs[score_on], t)
    t_all = fit_temperature(scores, gold)
    return {
        "folder": str(folder),
        "n": len(rows),
        "halves_n": [int((side == 0).sum()), int((side == 1).sum())],
        "wa": float(np.mean(probs.argmax(1) == gold)),
        "before": measures(probs),
        "after_crossfit": measures(after),
        "temperatures_crossfit": fitted,
        "in_sample_temperature": t_all,
        "after_in_sample": measures(apply_temperature(probs, t_all)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/ and meld/")
    parser.add_argument("--runs", default="zs-ravdess,zs-meld", help="zero-shot rows to run or read")
    parser.add_argument(
        "--sft-ravdess", help="an SFT checkpoint's RAVDESS dev evaluation folder (score mode)"
    )
    parser.add_argument("--sft-meld", help="an SFT checkpoint's MELD dev evaluation folder (score mode)")
    parser.add_argument("--output-root", default="runs/calibration", help="zero-shot evaluation folders")
    parser.add_argument("--out", default="benchmarks/results/calibration.json", help="JSON results")
    args = parser.parse_args()
    args.data_root = str(Path(args.data_root).resolve())  # the evaluations run in the repository root

    table: dict[str, tuple[Path, str]] = {}
    for name in [n for n in args.runs.split(",") if n]:
        if name not in ZERO_SHOT:
            parser.error(f"--runs: unknown {name!r}; accepted: {', '.join(ZERO_SHOT)}")
        folder = Path(args.output_root).resolve() / name
        if not (folder / "metrics.json").is_file():
            run_zero_shot(name, folder, args.data_root)
        table[ZERO_SHOT[name][0]] = (folder, ZERO_SHOT[name][1])
    if args.sft_ravdess:
        table[f"SFT {args.sft_ravdess}, RAVDESS dev"] = (Path(args.sft_ravdess), "ravdess")
    if args.sft_meld:
        table[f"SFT {args.sft_meld}, MELD dev"] = (Path(args.sft_meld), "meld")

    results = {
        title: calibration_row(folder, corpus, args.data_root) for title, (folder, corpus) in table.items()
    }
    protocol = "Temperature scaling must " + __doc__.split("Temperature scaling must")[1].strip()
    write_result(args.out, {"rows": results, "protocol": protocol})

    print(
        "| run | n | WA % | ECE before / after | Brier before / after | NLL before / after | T (cross-fit) | "
        "T in-sample, ECE / NLL then |"
    )
    print("|---|---:|---:|---|---|---|---|---|")
    for title, row in results.items():
        b, a, s = row["before"], row["after_crossfit"], row["after_in_sample"]
        ts = ", ".join(f"{t:.2f}" for t in row["temperatures_crossfit"].values())
        print(
            f"| {title} | {row['n']} | {100 * row['wa']:.1f} | {b['ece']:.3f} / {a['ece']:.3f} | "
            f"{b['brier']:.3f} / {a['brier']:.3f} | {b['nll']:.3f} / {a['nll']:.3f} | {ts} | "
            f"{row['in_sample_temperature']:.2f}: {s['ece']:.3f} / {s['nll']:.3f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
