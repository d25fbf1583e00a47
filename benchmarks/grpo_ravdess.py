"""RAVDESS SFT -> GRPO, both routes: WA, UA and parse failures before and after GRPO, and seconds per step.

python benchmarks/grpo_ravdess.py [--data-root ../shared/data] [--routes text,tokens] [--sft-max-steps N]
    [--grpo-max-steps N] [--eval-limit N] [--output-root runs] [--out benchmarks/results/grpo_ravdess.json]

Train actors 01-14, evaluate actors 15-18 (240 clips), 8 classes. Per route, two recipe runs in
subprocesses, exactly as a user would type them:

1. ``recipes/sft.py --config recipes/configs/ravdess/sft_<route>.yaml --strategy acoustic --target reasoning
   --output_dir <root>/sft/ravdess-<route>-reasoning``: the SFT checkpoint, trained on
   ``<think>template rationale</think><answer>label</answer>`` (the cold start GRPO needs);
2. ``recipes/grpo.py --config recipes/configs/ravdess/grpo_<route>.yaml --model_name_or_path <that>
   --output_dir <root>/grpo/ravdess-<route>``: rewards ``format`` (0.5) + ``label`` (1.0), 2 prompts x 4
   completions per step, 96-token completions (text route: 192); it evaluates the SFT checkpoint (before)
   and the GRPO model (after) with the harness in generate mode, in-domain and (text route) on MELD dev,
   words only.

Both recipes resume, so an interrupted benchmark continues where it stopped; the numbers are read from the
recipes' own outputs (``grpo_summary.json``, ``trainer_state.json``). The issue's goal: parse failures below
1% after GRPO. Seconds per GRPO step are the trainer's ``step_time`` over the logged steps of this machine
(for a controlled figure see ``benchmarks/grpo_cost.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import write_result

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs" / "ravdess"


def run(script: str, config: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, str(REPO / "recipes" / script), "--config", str(config), *overrides]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def step_times(output_dir: Path) -> list[float]:
    """``step_time`` of every logged GRPO step, from the last checkpoint's trainer state."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        return []
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry["step_time"] for entry in state["log_history"] if "step_time" in entry]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--routes", default="text,tokens")
    parser.add_argument("--sft-max-steps", type=int, help="SFT steps (default: the config's 2 epochs)")
    parser.add_argument("--grpo-max-steps", type=int, help="GRPO steps (default: the config's 100)")
    parser.add_argument("--eval-limit", type=int, help="evaluate N dev clips (seeded draw)")
    parser.add_argument("--output-root", default="runs")
    parser.add_argument("--out", default="benchmarks/results/grpo_ravdess.json")
    args = parser.parse_args()

    root = Path(args.output_root)
    common = ["--data_root", args.data_root]
    if args.eval_limit:
        common += ["--eval_limit", str(args.eval_limit)]
    results = {"routes": {}}
    for route in args.routes.split(","):
        if route not in ("text", "tokens"):
            parser.error(f"--routes: unknown {route!r}; accepted: text, tokens")
        sft_dir = root / "sft" / f"ravdess-{route}-reasoning"
        sft = ["--strategy", "acoustic", "--target", "reasoning", "--output_dir", str(sft_dir), *common]
        if args.sft_max_steps:
            sft += ["--max_steps", str(args.sft_max_steps)]
        run("sft.py", CONFIGS / f"sft_{route}.yaml", sft)

        grpo_dir = root / "grpo" / f"ravdess-{route}"
        grpo = ["--model_name_or_path", str(sft_dir), "--output_dir", str(grpo_dir), *common]
        if args.grpo_max_steps:
            grpo += ["--max_steps", str(args.grpo_max_steps)]
        run("grpo.py", CONFIGS / f"grpo_{route}.yaml", grpo)

        summary = json.loads((grpo_dir / "grpo_summary.json").read_text())
        times = step_times(grpo_dir)
        results["routes"][route] = {
            "sft_dir": str(sft_dir),
            "grpo_dir": str(grpo_dir),
            "evaluations": summary["evaluations"],
            "after_minus_before": summary.get("after_minus_before", {}),
            "grpo_step_s_mean": statistics.mean(times) if times else None,
            "grpo_logged_steps": len(times),
        }
        write_result(args.out, results)

    print()
    print("| route | evaluation | when | n | WA % | UA % | macro F1 % | parse failures % | format ok % |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for route, row in results["routes"].items():
        for key, ev in row["evaluations"].items():
            when, name = key.split("/", 1)
            fmt = "-" if ev["format_ok_rate"] is None else f"{100 * ev['format_ok_rate']:.1f}"
            print(
                f"| {route} | {name} ({ev['note']}) | {when} | {ev['n']} | {100 * ev['wa']:.1f} | "
                f"{100 * ev['ua']:.1f} | {100 * ev['macro_f1']:.1f} | "
                f"{100 * ev['parse_failure_rate']:.1f} | {fmt} |"
            )
    print()
    for route, row in results["routes"].items():
        after = [
            ev
            for key, ev in row["evaluations"].items()
            if key.startswith("after/") and ev["note"] == "in-domain"
        ]
        if after:
            rate = after[0]["parse_failure_rate"]
            verdict = "meets" if rate < 0.01 else "does NOT meet"
            print(f"{route}: parse failures after GRPO {100 * rate:.1f}%: {verdict} the < 1% goal")
        for name, metrics in row.get("after_minus_before", {}).items():
            wa = metrics["wa"]
            print(
                f"{route}: {name} WA after - before {100 * wa['diff']:+.1f}, 95% interval "
                f"[{100 * wa['low']:+.1f}, {100 * wa['high']:+.1f}], p {wa['p']:.3f} (paired bootstrap)"
            )
        if row["grpo_step_s_mean"] is not None:
            print(
                f"{route}: {row['grpo_step_s_mean']:.1f} s per GRPO step "
                f"({row['grpo_logged_steps']} logged steps)"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
