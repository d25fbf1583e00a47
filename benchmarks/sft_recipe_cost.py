"""Cost of each piece the RAVDESS SFT configurations add, measured on the recipe itself: s/step and peak RSS.

    python benchmarks/sft_recipe_cost.py [--data-root ../shared/data] [--warmup 2] [--steps 8]
        [--rows text,functionals,...] [--augment-clips 16] [--out benchmarks/results/sft_recipe_cost.json]

Each row runs ``emollm.recipes.sft.main`` in a fresh subprocess, exactly as ``emollm sft --config ...`` runs
it (the config's model, adapters, prompts, collator and trainer), with ``--max_steps warmup+steps``, no
saving and no evaluation, on ``(warmup + steps) * 8`` training clips (the recipe's own seeded draw,
``--train_limit``; the same clips in every row, every step a new batch). The only change is one
``_common.StepTimer`` callback handed to the recipe's trainer: a step is the wall time between consecutive
optimizer steps (collation, ``inputs_embeds``, forward, backward, AdamW), the first ``warmup`` dropped. Peak
RSS is the subprocess's (``os.wait4``): model, data and training together. Rows (``ROWS``):

* **text**: ``sft_text.yaml``, the prosody description in the prompt, LoRA on q/k/v/o (the reference);
* **functionals**: ``sft_functionals.yaml``, row (d): ``prosody_functionals`` -> mlp -> 4 pseudo-tokens;
* **functionals + frames**: ``sft_functionals_frames.yaml``, row (e): two encoders (K 4 + 8), one placeholder;
* **alignment stage**: (d) with ``--use_peft false``: the projector alone trains, the LLM is frozen;
* **LoRA attention + MLP**: (d) with LoRA on the MLP too, row (j);
* **class weights**: (d) with ``--class_weights balanced``, row (i): the weighted loss (TRL's fused head);
* **label smoothing**: (d) with ``--label_smoothing_factor 0.1``, row (n): TRL computes the full logits for
  the smoothed loss, then a second forward pass without gradients for its metrics;
* **evidence target**: ``sft_evidence.yaml``, the text route trained to write the evidence rationale
  (issue 19; the evidence model is fitted on the row's clips first), and the same in bf16 (``--bf16 true
  --use_cpu true``: autocast on the CPU), to size ``benchmarks/reasoning_ravdess.py``.

Not in the default run (``--rows meld-cpu,meld-cpu-mlp,meld-cpu-mlp-fp32``): ``meld/sft_cpu.yaml`` (text and
two context turns, square-root class weights, bf16) with LoRA on attention (as shipped), on attention and MLP,
and that in float32: what one MELD step costs, to size a config for a session.

Rows already in ``--out`` are kept (a run replaces the rows it measures), so the MELD rows can be added later.

**Augmentation** has no per-step cost (a copy is one more training example); its cost is making each copy
once. ``--augment-clips`` training clips get one copy per augmentation (speed 0.9, pitch +2 st, noise 20 dB),
in a subprocess with ``$EMOLLM_CACHE`` in a fresh temporary folder (nothing cached is reused): seconds per
copy to write the WAV (``augment_utterances``) and to extract its prosody (``describe_utterances``, one
worker), which is what the functionals encoder and the description read.

The steps of different rows run minutes apart, and the same row in two processes has differed by up to half
here (MELD's attention-only row: 4.25 and 6.50 s/step, the machine idle both times): compare rows within one
run, and only differences well beyond that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import read_result, run_measured, warmup_steps, write_result

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "recipes/configs"
ATTENTION = ["--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]
D = "ravdess/sft_functionals.yaml"
MELD_CPU = "meld/sft_cpu.yaml"
EVIDENCE = "ravdess/sft_evidence.yaml"
BF16_CPU = ["--bf16", "true", "--use_cpu", "true"]  # use_cpu: transformers takes bf16 without a GPU
ROWS = {  # name -> (title, config, recipe overrides)
    "text": ("text: description in the prompt, LoRA q/k/v/o", "ravdess/sft_text.yaml", []),
    "functionals": ("(d) functionals, K=4, LoRA + mlp", D, []),
    "functionals-frames": ("(e) functionals K=4 + frames K=8", "ravdess/sft_functionals_frames.yaml", []),
    "alignment": ("(d) alignment stage: projector only", D, ["--use_peft", "false"]),
    "mlp-lora": ("(j) (d), LoRA on attention + MLP", D, ALL_LINEAR),
    "class-weights": ("(i) (d), balanced class weights", D, ["--class_weights", "balanced"]),
    "label-smoothing": ("(n) (d), label smoothing 0.1", D, ["--label_smoothing_factor", "0.1"]),
    "evidence-text": ("text route, evidence target (sft_evidence.yaml)", EVIDENCE, []),
    "evidence-text-bf16": ("the same in bf16 (autocast on the CPU)", EVIDENCE, BF16_CPU),
    "meld-cpu": ("MELD sft_cpu.yaml: LoRA q/k/v/o, bf16", MELD_CPU, ATTENTION),
    "meld-cpu-mlp": ("MELD sft_cpu.yaml, LoRA attention + MLP", MELD_CPU, ALL_LINEAR),
    "meld-cpu-mlp-fp32": ("the same in float32", MELD_CPU, [*ALL_LINEAR, "--bf16", "false"]),
}  # fmt: skip
RAVDESS_ROWS = [name for name, (_, config, _) in ROWS.items() if config.startswith("ravdess/")]  # the default
AUGMENTATIONS = "speed0.9,pitch+2,noise20"
BATCH = 8


# -- the workers ---------------------------------------------------------------------------------------------


def run_recipe_worker(row: str, data_root: str, steps: int, result_path: str) -> None:
    """The recipe's ``main`` on one row's config with a step timer; results to ``result_path``."""
    from _common import StepTimer

    import emollm.recipes.sft as recipe
    from emollm.recipes.sft import make_parser
    from emollm.training import count_parameters
    from emollm.training.arguments import parse_recipe_args

    _, config, extra = ROWS[row]
    timer, counts = StepTimer(), {}
    original = recipe.EmotionSFTTrainer

    class TimedTrainer(original):
        def __init__(self, *args, callbacks=None, **kwargs):
            super().__init__(*args, callbacks=[*(callbacks or []), timer], **kwargs)
            counts.update(count_parameters(self.model))

    recipe.EmotionSFTTrainer = TimedTrainer
    with tempfile.TemporaryDirectory(prefix=f"sft_recipe_cost_{row}_") as output_dir:
        argv = ["--config", str(CONFIGS / config), *extra, "--output_dir", output_dir]
        argv += ["--data_root", data_root, "--max_steps", str(steps), "--train_limit", str(steps * BATCH)]
        argv += ["--eval_split", "none", "--save_strategy", "no", "--logging_steps", "1000000"]
        argv += ["--report_to", "none", "--workers", "1"]
        started = time.perf_counter()
        recipe.main(*parse_recipe_args(make_parser(), argv))
        seconds = time.perf_counter() - started
    result = {"step_s": timer.durations(), "parameters": counts, "recipe_s": seconds, "argv": argv}
    Path(result_path).write_text(json.dumps(result))


def run_augment_worker(data_root: str, clips: int, result_path: str) -> None:
    """Seconds per copy to write augmented WAVs and extract their prosody (a fresh ``$EMOLLM_CACHE``)."""
    from _common import spread_subset

    from emollm.augment import augment_utterances, parse_augmentations
    from emollm.inputs import describe_utterances, select_utterances

    _, train = select_utterances("ravdess", "train", data_root=data_root)
    chosen = spread_subset(train, clips, seed=0)
    result = {}
    for augmentation in parse_augmentations(AUGMENTATIONS):
        started = time.perf_counter()
        copies = augment_utterances(chosen, [augmentation], seed=0)
        made = time.perf_counter() - started
        started = time.perf_counter()
        describe_utterances(copies, workers=1, progress=False)
        extracted = time.perf_counter() - started
        result[augmentation.name] = {"copies": len(copies), "make_s": made / len(copies)}
        result[augmentation.name]["prosody_s"] = extracted / len(copies)
    Path(result_path).write_text(json.dumps(result))


# -- the parent ----------------------------------------------------------------------------------------------


def subprocess_run(arguments: list[str], env: dict | None = None) -> tuple[dict, float]:
    """This script as a worker: its result and its peak RSS (MB)."""
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        command = [sys.executable, __file__, *arguments, "--result", str(result_path)]
        run = run_measured(command, env)
        if run["status"] != 0:
            raise SystemExit(f"worker {arguments} failed with status {run['status']}")
        return json.loads(result_path.read_text()), run["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--warmup", type=warmup_steps, default=2, help="untimed optimizer steps first (>= 1)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    parser.add_argument(
        "--rows", default=",".join(RAVDESS_ROWS), help=f"comma-separated, of: {', '.join(ROWS)}"
    )
    parser.add_argument("--augment-clips", type=int, default=16, help="clips per augmentation (0: none)")
    parser.add_argument("--out", default="benchmarks/results/sft_recipe_cost.json", help="JSON results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_root = str(Path(args.data_root).resolve())
    if args.worker == "augment":
        run_augment_worker(data_root, args.augment_clips, args.result)
        return
    if args.worker:
        run_recipe_worker(args.worker, data_root, args.warmup + args.steps, args.result)
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")

    results: dict = {"warmup": args.warmup, "steps": args.steps, "batch": BATCH, "rows": {}}
    if args.out and Path(args.out).is_file():  # earlier rows of the same step counts are kept
        earlier = read_result(args.out)
        if (earlier.get("warmup"), earlier.get("steps")) == (args.warmup, args.steps):
            results = {**earlier, "rows": {k: v for k, v in earlier["rows"].items() if k in ROWS}}
    for row in rows:
        print(f"{row} ...", flush=True)
        flags = ["--data-root", data_root, "--warmup", str(args.warmup), "--steps", str(args.steps)]
        worker, peak = subprocess_run(["--worker", row, *flags])
        timed = worker["step_s"][args.warmup :]
        results["rows"][row] = {
            "title": ROWS[row][0],
            "config": ROWS[row][1],
            "overrides": ROWS[row][2],
            "s_per_step": statistics.fmean(timed),
            "s_per_step_median": statistics.median(timed),
            "step_s": worker["step_s"],
            "peak_rss_mb": round(peak),
            "trainable": worker["parameters"]["trainable"],
            "parameters": worker["parameters"],
            "recipe_s": worker["recipe_s"],
        }
        if args.out:
            write_result(args.out, results)
    if args.augment_clips > 0:
        print("augmentation ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="sft_recipe_cost_cache_") as cache:
            env = {**os.environ, "EMOLLM_CACHE": cache}
            flags = ["--data-root", data_root, "--augment-clips", str(args.augment_clips)]
            worker, peak = subprocess_run(["--worker", "augment", *flags], env)
        results["augmentation"] = {"clips": args.augment_clips, "peak_rss_mb": round(peak), **worker}

    print(f"\n| row | s/step (mean / median of {args.steps}) | peak RSS (MB) | trainable parameters |")
    print("|---|---:|---:|---:|")
    for row in results["rows"].values():
        print(
            f"| {row['title']} | {row['s_per_step']:.2f} / {row['s_per_step_median']:.2f} | "
            f"{row['peak_rss_mb']} | {row['trainable']:,} |"
        )
    if "augmentation" in results:
        clips = results["augmentation"]["clips"]
        print(f"\n| augmentation ({clips} clips) | s per copy: WAV | s per copy: prosody |")
        print("|---|---:|---:|")
        for name, value in results["augmentation"].items():
            if isinstance(value, dict):
                print(f"| {name} | {value['make_s']:.2f} | {value['prosody_s']:.2f} |")
    if args.out:
        write_result(args.out, results)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
