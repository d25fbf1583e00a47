"""Zero-shot accuracy of the default model: every strategy x mode on RAVDESS and MELD dev.

Runs the evaluation harness (``emollm.evaluation.harness.evaluate``) once per row of the grid below, each
into its own folder under ``--runs`` (resumable: an interrupted benchmark picks up where it stopped), then
prints one table and writes it as JSON. Chance and majority-class baselines come from the same runs.

Grid:

- RAVDESS, all 1080 clips, 8 classes: minimal / acoustic / cot x score / generate, plus acoustic with the
  prosody description switched off (the same prompt saying no measurements are available), which shows
  what the description adds.
- MELD dev (1109 utterances, 7 classes, no audio in ../shared): the three strategies x two modes, with
  context 0 and 4 turns. With no audio, ``acoustic`` runs as its text-only form.

Each row carries its WA's 95% bootstrap interval; at the end, every acoustic run is compared with its
no-prosody twin on the same utterances (paired bootstrap: the description's effect on WA, its interval and
p-value; :mod:`emollm.evaluation.bootstrap`).

``--limit N`` draws N utterances per run (seeded), for a quicker, noisier table; ``--generate-limit``
does that for generate-mode runs only (they cost ~100x more on a CPU).

    python benchmarks/zero_shot.py                        # the full grid
    python benchmarks/zero_shot.py --generate-limit 200   # generate runs on a seeded subset of 200
    python benchmarks/zero_shot.py --device cuda --dtype bfloat16   # on a GPU (dtype recorded per run)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import write_result

from emollm.evaluation.harness import EvalConfig, evaluate
from emollm.modeling import EmotionLM


def grid(data_root: str) -> list[tuple[str, dict]]:
    """(name, EvalConfig keyword arguments) for every run."""
    runs = []
    for mode in ("score", "generate"):
        for strategy in ("minimal", "acoustic", "cot"):
            kwargs = {"data": "ravdess", "split": "all", "strategy": strategy, "mode": mode}
            runs.append((f"ravdess/{strategy}/{mode}", kwargs))
        runs.append((f"ravdess/acoustic-no-prosody/{mode}", {"data": "ravdess", "split": "all",
                     "strategy": "acoustic", "mode": mode, "prosody": False}))  # fmt: skip
    for name in ("acoustic", "acoustic-no-prosody", "minimal"):  # contextual calibration, score mode
        kwargs = {"data": "ravdess", "split": "all", "strategy": name.split("-")[0], "mode": "score"}
        kwargs.update({"calibrate": True, **({"prosody": False} if "no-prosody" in name else {})})
        runs.append((f"ravdess/{name}/score+calibrated", kwargs))
    for context in (0, 4):
        for mode in ("score", "generate"):
            for strategy in ("minimal", "acoustic", "cot"):
                runs.append((f"meld-dev/c{context}/{strategy}/{mode}", {"data": "meld", "split": "dev",
                             "strategy": strategy, "mode": mode, "context": context}))  # fmt: skip
        kwargs = {"data": "meld", "split": "dev", "strategy": "minimal", "mode": "score", "context": context}
        runs.append((f"meld-dev/c{context}/minimal/score+calibrated", {**kwargs, "calibrate": True}))
    for _, kwargs in runs:
        kwargs["data_root"] = data_root
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", default="benchmarks/runs/zero_shot", help="folder of the per-run outputs")
    parser.add_argument("--limit", type=int, help="utterances per run (seeded draw); default all")
    parser.add_argument("--generate-limit", type=int, help="utterances per generate-mode run")
    parser.add_argument(
        "--only", help="run only grid rows whose name contains one of these (comma-separated)"
    )
    parser.add_argument("--max-new-tokens", type=int, help="generation length (default: 16 or 128)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available, else cpu)")
    parser.add_argument("--out", default="benchmarks/results/zero_shot.json")
    args = parser.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = EmotionLM.from_pretrained(dtype=getattr(torch, args.dtype), device=device)
    rows = []
    for name, kwargs in grid(args.data_root):
        if args.only and not any(part in name for part in args.only.split(",")):
            continue
        limit = args.generate_limit if kwargs["mode"] == "generate" and args.generate_limit else args.limit
        output = f"{args.runs}/{name.replace('/', '-')}"
        config = EvalConfig(
            **kwargs,
            limit=limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            output=output,
        )
        start = time.perf_counter()
        result = evaluate(config, lm=lm, progress=True)
        m, b = result.metrics, result.baselines
        rows.append(
            {
                "run": name,
                "n": m.n,
                "wa": m.wa,
                "wa_ci95": result.summary["ci95"]["wa"],
                "ua": m.ua,
                "weighted_f1": m.weighted_f1,
                "macro_f1": m.macro_f1,
                "parse_failure_rate": m.parse_failure_rate,
                "format_ok_rate": result.summary["format_ok_rate"],
                "mean_true_prob": m.mean_true_prob,
                "with_prosody": result.summary["with_prosody"],
                "chance_wa": b["chance"].wa,
                "majority_wa": b["majority"].wa,
                "majority_ua": b["majority"].ua,
                "majority": b["majority"].description,
                "seconds": round(time.perf_counter() - start, 1),
                "output": str(result.output_dir),
            }
        )
        print(_table(rows[-1:]), flush=True)
        _write(args, rows)  # after every run, so a stopped benchmark still leaves its finished rows

    print("\n" + _table(rows))
    effects = prosody_effects(rows)
    for name, wa in effects.items():
        print(
            f"{name}: acoustic with - without the description, WA {100 * wa['diff']:+.1f}, 95% interval "
            f"[{100 * wa['low']:+.1f}, {100 * wa['high']:+.1f}], p {wa['p']:.3f} (paired bootstrap)"
        )
    _write(args, rows, prosody_effect_wa=effects)
    print(f"wrote {args.out}")
    return 0


def prosody_effects(rows: list[dict]) -> dict[str, dict]:
    """What the description adds: paired bootstrap of acoustic vs acoustic-no-prosody, per run pair done."""
    from emollm.evaluation.bootstrap import compare_runs

    done = {r["run"]: r["output"] for r in rows}
    effects = {}
    for name, without in done.items():
        if "/acoustic-no-prosody/" not in name:
            continue
        with_name = name.replace("/acoustic-no-prosody/", "/acoustic/")
        if with_name in done:
            effects[with_name] = compare_runs(without, done[with_name])["metrics"]["wa"]
    return effects


def _write(args: argparse.Namespace, rows: list[dict], **extra) -> None:
    settings = {
        "limit": args.limit,
        "generate_limit": args.generate_limit,
        "max_new_tokens": args.max_new_tokens,
        "only": args.only,
        "dtype": args.dtype,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
    }
    write_result(args.out, {"settings": settings, "rows": rows, **extra})


def _table(rows: list[dict]) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    def interval(bounds):
        return "-" if not bounds else f"{100 * bounds[0]:.1f}-{100 * bounds[1]:.1f}"

    lines = [
        "| run | n | WA % | WA 95% interval | UA % | wF1 % | mF1 % | unparsed % | format ok % | p(true) % "
        "| chance WA % | majority WA % |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['n']} | {pct(r['wa'])} | {interval(r.get('wa_ci95'))} | {pct(r['ua'])} | "
            f"{pct(r['weighted_f1'])} | "
            f"{pct(r['macro_f1'])} | {pct(r['parse_failure_rate'])} | {pct(r['format_ok_rate'])} | "
            f"{pct(r['mean_true_prob'])} | {pct(r['chance_wa'])} | {pct(r['majority_wa'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
