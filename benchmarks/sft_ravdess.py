"""RAVDESS speaker-independent SFT: prosody-as-text vs pseudo-tokens vs both, next to an openSMILE peer.

python benchmarks/sft_ravdess.py [--data-root ../shared/data] [--rows peer,text,tokens,both]
    [--epochs N] [--max-steps N] [--train-limit N] [--eval-limit N] [--normalize none|speaker]
    [--projector-lr X] [--output-root runs/sft]
    [--workers 2] [--c-grid 0.001,0.01,0.1,1,10] [--overwrite] [--out benchmarks/results/sft_ravdess.json]

Train on actors 01-14 (840 clips), evaluate on actors 15-18 (240 clips, never seen), 8 classes. Rows:

* **peer**: openSMILE eGeMAPSv02 functionals, z-scored per speaker with each speaker's own statistics
  (labels never read), ``LogisticRegression(class_weight="balanced")``, C chosen by GroupKFold (7 folds by
  actor) on the training actors only (mean WA). See ``benchmarks/peers.py``.
* **(a) text / (b) tokens / (c) both / (d) functionals**: the SFT recipe with
  ``recipes/configs/ravdess/sft_{route}.yaml``
  (smollm2-135m-instruct, LoRA r16 on q/k/v/o, ``prosody_frames`` -> ``mlp`` -> 8 pseudo-tokens, ``minimal``
  template, score-mode evaluation), run in this process; the numbers are the recipe's own
  ``<output-root>/ravdess-<route>/eval-dev/metrics.json``. ``--epochs``, ``--max-steps``, ``--train-limit``,
  ``--eval-limit``, ``--normalize`` (the frames' per-speaker normalisation, ``speaker`` in the configs) and
  ``--projector-lr`` (the projector's own learning rate) override the configs (``--epochs`` defaults to
  theirs, 2: 210 steps of batch 8). (d) is the tokens route with the ``prosody_functionals`` encoder, K=4,
  projector learning rate 1e-3.
* **(e)-(p)**: levers on top of (d) (``VARIANTS``): a second encoder at the same placeholder, training-time
  augmentation (train clips only; compute-matched, 210 steps like (d)), class weights, LoRA on the MLP too,
  more epochs, a higher LoRA rank, label smoothing; (k) is the text route (a) with the ``measures``
  description; (o) combines the two best single levers of one seed, speed perturbation and label
  smoothing; (p) is (n) with seed 1; (q)-(s) are the seeds that compare (d) and (n) over three seeds
  each (0, 1, 2): (d) with seeds 1 and 2, (n) with seed 2.
  Not in the default ``--rows``: ``--rows functionals-speed,functionals-noise`` etc.

It prints one table (WA, UA, macro F1 on dev, training seconds) with the chance and majority-class baselines
and the gap of (c) to the peer in WA points (the issue's goal: (c) beats the peer), with its paired-bootstrap
interval and p-value (:mod:`emollm.evaluation.bootstrap`; the peer row keeps its predictions for this, rows
made before it did need ``--rows peer --overwrite``). The JSON is rewritten
after every row; a rerun skips rows already there with the same settings (``--overwrite`` recomputes them),
and the recipe resumes an interrupted training from its last checkpoint. To train a route from scratch,
delete its ``<output-root>/ravdess-<route>`` folder.

    python benchmarks/sft_ravdess.py --rows peer                      # the peer only, seconds (cached)
    python benchmarks/sft_ravdess.py                                  # everything, ~2-2.5 h on 2 CPU cores
    python benchmarks/sft_ravdess.py --max-steps 2 --train-limit 16 --eval-limit 16 \\
        --output-root /tmp/sft_smoke --out /tmp/sft_ravdess_smoke.json   # smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from peers import (
    REPO,
    Results,
    baseline_rows,
    egemaps_peer,
    metrics_row,
    recipe_overrides,
    run_recipe,
    sft_row,
)

ROUTES = {
    "text": "(a) SFT, prosody as text",
    "tokens": "(b) SFT, pseudo-tokens",
    "both": "(c) SFT, both",
    "functionals": "(d) SFT, prosody functionals as 4 pseudo-tokens",
    "functionals-frames": "(e) SFT, functionals (K=4) + frames (K=8) at one placeholder",
    "functionals-speed": "(f) (d) + speed 0.9/1.1 copies, same steps",
    "functionals-pitch": "(g) (d) + pitch -2/+2 st copies, same steps",
    "functionals-noise": "(h) (d) + noise 20 dB copies, same steps",
    "functionals-balanced": "(i) (d) + balanced class weights",
    "functionals-mlp": "(j) (d) + LoRA on attention and MLP",
    "text-measures": "(k) (a) with the measures description",
    "functionals-3ep": "(l) (d) with 3 epochs",
    "functionals-r32": "(m) (d) with LoRA rank 32 (alpha 64)",
    "functionals-smooth": "(n) (d) with label smoothing 0.1",
    "functionals-speed-smooth": "(o) (d) + speed 0.9/1.1 copies + label smoothing 0.1, same steps",
    "functionals-smooth-seed1": "(p) (n) with seed 1",
    "functionals-seed1": "(q) (d) with seed 1",
    "functionals-seed2": "(r) (d) with seed 2",
    "functionals-smooth-seed2": "(s) (n) with seed 2",
}
# row -> (config under recipes/configs/ravdess/, extra overrides). The augmentation rows keep (d)'s 210
# steps (2 epochs of 840 clips): with n copies per clip, 2 / (1 + n) epochs of the larger set, so they cost
# what (d) costs and the comparison is at equal compute, not more updates.
VARIANTS = {
    "text-measures": ("sft_text.yaml", ["--prosody_style", "measures"]),
    "functionals-frames": ("sft_functionals_frames.yaml", []),
    "functionals-speed": (
        "sft_functionals.yaml",
        ["--augment", "speed0.9,speed1.1", "--num_train_epochs", str(2 / 3)],
    ),
    "functionals-pitch": (
        "sft_functionals.yaml",
        ["--augment", "pitch-2,pitch+2", "--num_train_epochs", str(2 / 3)],
    ),
    "functionals-noise": ("sft_functionals.yaml", ["--augment", "noise20", "--num_train_epochs", "1"]),
    "functionals-balanced": ("sft_functionals.yaml", ["--class_weights", "balanced"]),
    "functionals-3ep": ("sft_functionals.yaml", ["--num_train_epochs", "3"]),
    "functionals-r32": ("sft_functionals.yaml", ["--lora_r", "32", "--lora_alpha", "64"]),
    "functionals-smooth": ("sft_functionals.yaml", ["--label_smoothing_factor", "0.1"]),
    "functionals-speed-smooth": (
        "sft_functionals.yaml",
        [
            "--augment",
            "speed0.9,speed1.1",
            "--num_train_epochs",
            str(2 / 3),
            "--label_smoothing_factor",
            "0.1",
        ],
    ),
    "functionals-smooth-seed1": ("sft_functionals.yaml", ["--label_smoothing_factor", "0.1", "--seed", "1"]),
    "functionals-seed1": ("sft_functionals.yaml", ["--seed", "1"]),
    "functionals-seed2": ("sft_functionals.yaml", ["--seed", "2"]),
    "functionals-smooth-seed2": ("sft_functionals.yaml", ["--label_smoothing_factor", "0.1", "--seed", "2"]),
    "functionals-mlp": (
        "sft_functionals.yaml",
        [
            "--lora_target_modules",
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    ),
}
PEER = "peer: eGeMAPSv02 functionals, speaker z, LR"
LABELS = "ravdess8"
DEFAULT_CACHE = str(Path("~/.cache/emollm/bench").expanduser())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument(
        "--rows", default="peer,text,tokens,both,functionals", help="rows to run (comma-separated)"
    )
    parser.add_argument("--epochs", type=float, help="training epochs (default: the configs', 2)")
    parser.add_argument("--max-steps", type=int, help="stop training after N steps (overrides --epochs)")
    parser.add_argument("--train-limit", type=int, help="train on N clips (seeded draw)")
    parser.add_argument("--eval-limit", type=int, help="evaluate N dev clips (seeded draw)")
    parser.add_argument(
        "--normalize", choices=["none", "speaker"], help="tokens/both frames (default: the configs')"
    )
    parser.add_argument("--projector-lr", type=float, help="projector's peak learning rate (default: lr)")
    parser.add_argument("--output-root", default="runs/sft", help="checkpoints go to <root>/ravdess-<route>")
    parser.add_argument("--workers", type=int, default=2, help="prosody/openSMILE extraction processes")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help="openSMILE feature cache ('' for none)")
    parser.add_argument("--c-grid", default="0.001,0.01,0.1,1,10", help="C values tried by the peer's CV")
    parser.add_argument("--overwrite", action="store_true", help="recompute rows already in --out")
    parser.add_argument("--out", default="benchmarks/results/sft_ravdess.json", help="JSON results")
    args = parser.parse_args()
    wanted = args.rows.split(",")
    unknown = sorted(set(wanted) - {"peer", *ROUTES})
    if unknown:
        parser.error(f"--rows: unknown {unknown}; accepted: peer, {', '.join(ROUTES)}")

    from emollm.data import load_corpus

    train = [u for u in load_corpus("ravdess", "train", data_root=args.data_root) if u.label is not None]
    dev = [u for u in load_corpus("ravdess", "dev", data_root=args.data_root) if u.label is not None]
    facts = {
        "train": f"RAVDESS actors 01-14, {len(train)} clips",
        "dev": f"RAVDESS actors 15-18, {len(dev)} clips",
    }
    results = Results(args.out, facts, overwrite=args.overwrite)

    if "peer" in wanted:
        settings = {"features": "eGeMAPSv02 functionals, speaker z", "c_grid": args.c_grid}
        if results.done(PEER, settings):
            print(f"{PEER}: already in {args.out}", file=sys.stderr)
        else:
            start = time.perf_counter()
            grid = [float(c) for c in args.c_grid.split(",")]
            metrics, details = egemaps_peer(
                train, dev, cache_dir=args.cache_dir or None, workers=args.workers, grid=grid
            )
            results.add(
                PEER, metrics_row(metrics, settings=settings, seconds=time.perf_counter() - start, **details)
            )

    for route, title in ROUTES.items():
        if route not in wanted:
            continue
        output_dir = str(Path(args.output_root) / f"ravdess-{route}")
        config_name, extra = VARIANTS.get(route, (f"sft_{route}.yaml", []))
        config = REPO / "recipes" / "configs" / "ravdess" / config_name
        overrides = recipe_overrides(args, output_dir) + extra
        settings = {"config": str(config.relative_to(REPO)), "overrides": overrides}
        if results.done(title, settings):
            print(f"{title}: already in {args.out}", file=sys.stderr)
            continue
        print(f"{title}: recipes/sft.py --config {settings['config']} {' '.join(overrides)}", file=sys.stderr)
        run = run_recipe(config, overrides)
        results.add(title, sft_row(run, settings))

    # Baselines on the dev clips each row was scored on (all 240 unless --eval-limit)
    eval_n = next((r["n"] for name, r in results.rows.items() if name != PEER), len(dev))
    baselines = baseline_rows([u.label for u in dev], LABELS, [u.label for u in train])
    peer, both = results.rows.get(PEER), results.rows.get(ROUTES["both"])
    gap = None if not (peer and both) else both["wa"] - peer["wa"]
    # a comparison needs the row's predictions on disk; when they are gone, keep what an earlier run computed
    paired = paired_with_peer(peer, both, dev) or results.summaries.get("paired_both_vs_peer")
    earlier = results.summaries.get("paired_vs_peer") or {}
    against_peer = {
        title: paired_with_peer(peer, results.rows.get(title), dev) or earlier.get(title)
        for title in ROUTES.values()
    }
    results.write(
        baselines_full_dev=baselines,
        gap_both_minus_peer_wa=gap,
        paired_both_vs_peer=paired,
        paired_vs_peer={title: p for title, p in against_peer.items() if p is not None},
    )

    print()
    print(f"{facts['train']} -> {facts['dev']}; 8 classes; SFT rows evaluated on {eval_n} dev clips")
    print()
    print("| method | n | WA % | UA % | macro F1 % | seconds (train+eval) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in [PEER, *ROUTES.values()]:
        row = results.rows.get(name)
        if row is None:
            print(f"| {name} | - | not run | | | |")
            continue
        train_s = f" ({row['train_s_this_run']:.0f} train)" if row.get("train_s_this_run") else ""
        print(
            f"| {name} | {row['n']} | {100 * row['wa']:.1f} | {100 * row['ua']:.1f} | "
            f"{100 * row['macro_f1']:.1f} | {row['seconds']:.0f}{train_s} |"
        )
    for name, row in baselines.items():
        print(
            f"| {name}: {row['description']} | {len(dev)} | {100 * row['wa']:.1f} | "
            f"{100 * row['ua']:.1f} | {100 * row['macro_f1']:.1f} | - |"
        )
    print()
    if gap is None:
        print("gap (c) - peer: needs both rows")
    else:
        verdict = "beats" if gap > 0 else "does NOT beat"
        print(f"**(c) both {verdict} the peer: WA gap {100 * gap:+.1f} points**")
        if both["n"] != peer["n"]:
            print(f"(on different clips: (c) on {both['n']}, the peer on {peer['n']}; use no --eval-limit)")
    if paired is None:
        print(
            "paired bootstrap (c) vs peer: needs the peer's predictions (--rows peer --overwrite) and (c)'s"
        )
    else:
        wa = paired["metrics"]["wa"]
        print(
            f"paired bootstrap on {paired['n']} clips, (c) - peer: WA {100 * wa['diff']:+.1f}, 95% interval "
            f"[{100 * wa['low']:+.1f}, {100 * wa['high']:+.1f}], p {wa['p']:.3f}"
        )
    for title, comparison in against_peer.items():
        if comparison is not None:
            wa = comparison["metrics"]["wa"]
            print(
                f"{title} - peer, paired on {comparison['n']} clips: WA {100 * wa['diff']:+.1f} "
                f"[{100 * wa['low']:+.1f}, {100 * wa['high']:+.1f}], p {wa['p']:.3f}"
            )
    print(f"wrote {args.out}")


def paired_with_peer(peer: dict | None, both: dict | None, dev) -> dict | None:
    """Paired bootstrap of an SFT row (``both``: (c), or any other) against the peer on the clips both
    predicted (None without both)."""
    from dataclasses import asdict

    from emollm.evaluation.bootstrap import paired_bootstrap
    from emollm.evaluation.harness import read_predictions

    if not (peer and both and peer.get("predictions")):
        return None
    rows = read_predictions(Path(both["output_dir"]) / "eval-dev" / "predictions.jsonl")
    shared = [u for u in dev if u.id in rows and u.id in peer["predictions"]]
    if not shared:
        return None
    result = paired_bootstrap(
        [u.label for u in shared],
        [peer["predictions"][u.id] for u in shared],
        [rows[u.id]["label"] for u in shared],
        LABELS,
    )
    return {"n": len(shared), "metrics": {name: asdict(r) for name, r in result.items()}}


if __name__ == "__main__":
    main()
