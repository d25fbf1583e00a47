"""Cost of one GRPO step on this CPU, both routes: seconds per step (generation and loss) and peak RAM.

python benchmarks/grpo_cost.py [--data-root ../shared/data] [--routes text,tokens] [--warmup 1] [--steps 4]
    [--completion-tokens 64] [--workers 2] [--quiet-load 0.8] [--quiet-wait 600]
    [--out benchmarks/results/grpo_cost.json]

The recipe's settings (``recipes/configs/ravdess/grpo_{text,tokens}.yaml``, parsed by the recipe's parser,
:func:`emollm.recipes.grpo.make_parser`: ``acoustic`` template, 2 prompts x ``num_generations`` 4 = 8
completions per step, LoRA r16 on q/k/v/o, float32, beta 0, DAPO loss), the default model
(smollm2-135m-instruct) with a fresh LoRA (and for the tokens route a fresh ``prosody_frames`` -> ``mlp``
projector with K=8, its frames z-scored per speaker as the config says, ``normalize: speaker``), built as the
recipe builds it (:func:`emollm.training.models.load_policy`, :mod:`emollm.inputs`,
:func:`emollm.training.grpo.build_grpo_examples`), and real RAVDESS prompts of actors 01-14. Every
completion is exactly ``--completion-tokens`` long (``min_new_tokens`` = ``max_new_tokens``), so the figure
does not depend on when an untrained model happens to stop; a real run whose completions end
earlier is cheaper. Each route runs in a fresh subprocess (so ``ru_maxrss`` is its own peak) for
``warmup + steps`` optimizer steps; a step is ``_common.StepTimer``'s, the same as in ``sft_cost.py``: the
wall time between consecutive ``on_step_end`` callbacks (fetching the batch, sampling 8 completions from
``inputs_embeds``, the rewards, the policy's log-probabilities, backward, AdamW). The trainer's
``generate_seconds`` splits the step into generation and the rest. The first ``warmup`` steps (at least 1)
are dropped. Before each subprocess the script waits for a 1-minute load average below
``--quiet-load`` (at most ``--quiet-wait`` s) and records the load. Not in the default run: ``text-bf16``,
the text route in bf16 (``--bf16 true --use_cpu true``: autocast on the CPU); measure it beside ``text``
(``--routes text,text-bf16``), as runs minutes apart differ. A run keeps the routes already in ``--out``
that it does not measure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    StepTimer,
    read_result,
    rss_mb,
    spread_subset,
    wait_until_quiet,
    warmup_steps,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs" / "ravdess"
ROUTES = {  # --routes name -> (config, recipe overrides)
    "text": ("grpo_text.yaml", []),
    "tokens": ("grpo_tokens.yaml", []),
    "text-bf16": ("grpo_text.yaml", ["--bf16", "true", "--use_cpu", "true"]),  # autocast on the CPU
}


def run_worker(route: str, args) -> dict:
    """``warmup + steps`` GRPO steps of one route from the default model; timings and peak RSS."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import get_peft_config, get_quantization_config

    from emollm.inputs import PromptBuilder, describe_utterances, encode_utterances, select_utterances
    from emollm.recipes.grpo import make_parser
    from emollm.training import count_parameters, prepare_for_training
    from emollm.training.arguments import parse_recipe_args, route_has_adapters, route_has_prosody
    from emollm.training.grpo import EmotionGRPOTrainer, build_grpo_examples
    from emollm.training.models import load_policy, model_dtype
    from emollm.training.rewards import get_reward_funcs

    steps = args.warmup + args.steps
    overrides = [
        "--output_dir", tempfile.mkdtemp(prefix=f"grpo_cost_{route}_"),
        "--max_steps", str(steps), "--save_strategy", "no", "--logging_steps", "1", "--report_to", "none",
        "--max_completion_length", str(args.completion_tokens),
        "--model_name_or_path", "smollm2-135m-instruct",  # the configs start from SFT checkpoints: same size
    ]  # fmt: skip
    config, extra = ROUTES[route]
    script, training, model_args, adapter = parse_recipe_args(
        make_parser(), ["--config", str(CONFIGS / config), *overrides, *extra]
    )
    training.remove_unused_columns = False
    training.generation_kwargs = {"min_new_tokens": args.completion_tokens}
    prompts_per_step = training.per_device_train_batch_size // training.num_generations

    labels, train = select_utterances(
        script.dataset, script.train_split, labels=script.labels, data_root=args.data_root
    )
    chosen = spread_subset(train, steps * prompts_per_step, seed=0)

    rss_start = rss_mb()
    load_start = time.perf_counter()
    set_seed(training.seed)  # before the projector is initialised, as the recipe does
    fresh = adapter.to_specs() if route_has_adapters(script.route) else []
    lm, base_model, _ = load_policy(
        model_args.model_name_or_path, fresh,
        dtype=model_dtype(model_args), quantization_config=get_quantization_config(model_args),
    )  # fmt: skip
    prompts = PromptBuilder(
        lm.tokenizer, script.strategy, labels,
        context_turns=script.context_turns, placeholders=lm.placeholders,
    )  # fmt: skip
    descriptions, frames = {}, {}
    if route_has_prosody(script.route):
        # the normaliser is fit on all training speakers, as the recipe does
        descriptions, _, _ = describe_utterances(
            train, todo=chosen, style=script.prosody_style, workers=args.workers
        )
    if lm.adapters:  # frames z-scored per speaker when the config says so (statistics of all training clips)
        frames, _ = encode_utterances(lm, train, todo=chosen)
    rows = build_grpo_examples(chosen, prompts, prosody=descriptions, frames=frames)
    model = prepare_for_training(lm.model, get_peft_config(model_args))
    timer = StepTimer()
    training.shuffle_dataset = False
    trainer = EmotionGRPOTrainer(
        model=model,
        reward_funcs=get_reward_funcs(script.rewards),
        args=training,
        train_dataset=Dataset.from_list(rows),
        processing_class=lm.tokenizer,
        base_model=base_model,
        adapters=lm.adapters,
        projector_learning_rate=adapter.projector_learning_rate,
        callbacks=[timer],
    )
    load_s = time.perf_counter() - load_start
    rss_loaded = rss_mb()
    trainer.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    step_s = timer.durations()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    prompt_tokens = [len(lm.tokenize([row["prompt"]])[0]) for row in rows]
    return {
        "route": route,
        "step_s": step_s,
        "generate_s": [entry.get("generate_seconds") for entry in logs],
        "completion_mean_length": [entry.get("completions/mean_length") for entry in logs],
        "prompt_tokens_mean": statistics.mean(prompt_tokens),
        "peak_rss_mb": peak_mb,
        "rss_at_start_mb": rss_start,
        "rss_after_setup_mb": rss_loaded,
        "setup_s": load_s,
        "parameters": count_parameters(model),
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "num_generations": training.num_generations,
            "per_device_train_batch_size": training.per_device_train_batch_size,
            "max_completion_length": training.max_completion_length,
            "min_new_tokens": args.completion_tokens,
            "beta": training.beta,
            "loss_type": training.loss_type,
            "strategy": script.strategy,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--routes", default="text,tokens")
    parser.add_argument("--warmup", type=warmup_steps, default=1, help="first steps dropped from the timing")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per route")
    parser.add_argument("--completion-tokens", type=int, default=64, help="tokens per completion (fixed)")
    parser.add_argument("--workers", type=int, default=2, help="prosody extraction processes")
    parser.add_argument("--quiet-load", type=float, default=0.8)
    parser.add_argument("--quiet-wait", type=float, default=600)
    parser.add_argument("--out", default="benchmarks/results/grpo_cost.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        Path(args.result).write_text(json.dumps(run_worker(args.worker, args)))
        return

    routes = args.routes.split(",")
    unknown = [route for route in routes if route not in ROUTES]
    if unknown:
        parser.error(f"--routes: unknown {', '.join(unknown)}; accepted: {', '.join(ROUTES)}")
    earlier = read_result(args.out) if Path(args.out).is_file() else {}
    results = {"model": "smollm2-135m-instruct", "routes": dict(earlier.get("routes", {}))}  # a run replaces
    for route in routes:  # the routes it measures and keeps the others
        load = wait_until_quiet(args.quiet_load, args.quiet_wait)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            result_path = handle.name
        cmd = [sys.executable, __file__, "--worker", route, "--result", result_path]
        cmd += ["--data-root", args.data_root, "--warmup", str(args.warmup), "--steps", str(args.steps)]
        cmd += ["--completion-tokens", str(args.completion_tokens), "--workers", str(args.workers)]
        subprocess.run(cmd, check=True)
        row = json.loads(Path(result_path).read_text())
        timed = row["step_s"][args.warmup :]
        row.update(load, loadavg_after=list(os.getloadavg()), timed_step_s=timed)
        row["mean_step_s"] = statistics.mean(timed)
        row["median_step_s"] = statistics.median(timed)
        generate = [g for g in row["generate_s"][args.warmup :] if g is not None]
        row["mean_generate_s"] = statistics.mean(generate) if generate else None
        results["routes"][route] = row
        write_result(args.out, results)

    print()
    per_step = f"2 prompts x 4 completions x {args.completion_tokens} tokens"
    print(f"GRPO step on {os.cpu_count()} CPU cores: {per_step}")
    print()
    print(
        "| route | prompt tokens | s/step (mean) | s/step (median) | generation s | peak RSS GB | trainable |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for route, row in results["routes"].items():
        gen = "-" if row["mean_generate_s"] is None else f"{row['mean_generate_s']:.1f}"
        print(
            f"| {route} | {row['prompt_tokens_mean']:.0f} | {row['mean_step_s']:.1f} | "
            f"{row['median_step_s']:.1f} | {gen} | {row['peak_rss_mb'] / 1024:.2f} | "
            f"{row['parameters']['trainable']:,} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
