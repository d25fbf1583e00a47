"""Throughput of the default model on this CPU: label scoring vs generation, batch 1 vs batched.

python benchmarks/lm_throughput.py [--data-root ../shared/data] [--utterances 32] [--batch-sizes 8 16]
    [--single-generate 16] [--max-new-tokens 64] [--threads N] [--seed 0]
    [--out benchmarks/results/lm_throughput.json]

One process, torch's default thread count unless ``--threads`` (all cores). ``--utterances`` different MELD
dev transcripts (a seeded sample; built-in sentences if the corpus is missing) are turned into prompts with
:func:`emollm.prompting.render_prompt` and the default model's chat template:

* **score**: the ``minimal`` template, ravdess8 labels, :func:`emollm.modeling.score_labels` (the shared
  prompt prefix once, one pass over the rest of the prompts, one packed pass over the labels' tokens);
* **generate**: the ``cot`` template, :func:`emollm.modeling.generate`, greedy, exactly ``--max-new-tokens``
  new tokens per utterance (``min_new_tokens`` = ``max_new_tokens``, so EOS cannot end a row early; the
  count is checked on the returned token tensors).

Each mode runs at batch 1 and at each of ``--batch-sizes``; generation at batch 1 uses only the first
``--single-generate`` utterances (the slowest case). Each configuration is timed once over its utterances,
after one untimed warm-up call per mode. Model loading and prompt rendering are not timed. It prints
utterances/s per configuration and the two ratios the issue sets goals for: score batched vs generate
batched per utterance (goal >= 10x) and generate batched vs generate batch 1 (goal >= 3x).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from _common import machine, write_result

FALLBACK_TRANSCRIPTS = (
    "I can't believe you did that!",
    "Okay.",
    "Well, I guess we should go to the store now, otherwise there will be nothing left for dinner.",
    "No way!",
    "Whatever you say.",
    "I'm so happy for you, you really deserve it.",
    "Get out of my apartment.",
    "Hmm, I don't know.",
    "Why would you even say something like that to me?",
    "Oh my God, that is the best news I have heard all year!",
    "Could you pass me the salt, please?",
    "I miss her so much.",
    "Don't touch that, it's disgusting.",
    "Wait, what was that noise?",
    "Fine, fine, I'll do it myself.",
    "We won! We actually won!",
)
GOAL_SCORE_OVER_GENERATE = 10.0
GOAL_BATCHED_OVER_SINGLE = 3.0


def pick_transcripts(data_root: str, count: int, seed: int) -> tuple[list[str], str]:
    """``count`` different transcripts: a seeded sample of MELD dev, else the built-in sentences."""
    try:
        from emollm.data import load_corpus

        utterances = load_corpus("meld", "dev", data_root=data_root)
    except Exception as error:  # noqa: BLE001 - any missing/malformed corpus: fall back, and say so
        print(f"MELD dev not readable under {data_root} ({error}); using built-in sentences", file=sys.stderr)
        utterances = []
    distinct = sorted({u.transcript.strip() for u in utterances if u.transcript and u.transcript.strip()})
    if len(distinct) >= count:
        return random.Random(seed).sample(distinct, count), "meld/dev"
    sentences = list(FALLBACK_TRANSCRIPTS)
    return [sentences[i % len(sentences)] for i in range(count)], "built-in"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding meld/")
    parser.add_argument("--utterances", type=int, default=32, help="different transcripts (prompts)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16], help="batched sizes to time")
    parser.add_argument("--single-generate", type=int, default=16, help="utterances for generate at batch 1")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per generated utterance")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the transcript sample")
    parser.add_argument("--model", default=None, help="model name or path (default: emollm's default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--out", default="benchmarks/results/lm_throughput.json", help="JSON results")
    args = parser.parse_args()

    import torch

    from emollm.labels import get_label_set
    from emollm.modeling import DEFAULT_MODEL, generate, load_base_model, score_labels
    from emollm.prompting import render_prompt

    if args.threads:
        torch.set_num_threads(args.threads)
    model_name = args.model or DEFAULT_MODEL
    load_start = time.perf_counter()
    model, tokenizer = load_base_model(model_name, dtype=getattr(torch, args.dtype), device=args.device)
    load_s = time.perf_counter() - load_start
    labels = get_label_set("ravdess8")
    transcripts, source = pick_transcripts(args.data_root, args.utterances, args.seed)
    score_prompts = [render_prompt(tokenizer, "minimal", transcript=t, labels=labels) for t in transcripts]
    cot_prompts = [render_prompt(tokenizer, "cot", transcript=t, labels=labels) for t in transcripts]

    def token_lengths(prompts: list[str]) -> dict:
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        return {"mean": statistics.fmean(lengths), "min": min(lengths), "max": max(lengths)}

    # Count the new tokens of every generated row (the returned tensors, not re-tokenised text).
    new_token_counts: list[int] = []
    original_generate = model.generate

    def counting_generate(**kwargs):
        output = original_generate(**kwargs)
        new_token_counts.extend([output.shape[1] - kwargs["input_ids"].shape[1]] * output.shape[0])
        return output

    model.generate = counting_generate
    n_new = args.max_new_tokens

    def run_score(prompts: list[str], batch: int) -> None:
        score_labels(model, tokenizer, prompts, labels, batch_size=batch)

    def run_generate(prompts: list[str], batch: int) -> None:
        generate(model, tokenizer, prompts, max_new_tokens=n_new, min_new_tokens=n_new, batch_size=batch)

    # -- warm-up (untimed): one call per mode ---------------------------------------------------------
    warm_start = time.perf_counter()
    run_score(score_prompts[:2], 2)
    run_generate(cot_prompts[:2], 2)
    warmup_s = time.perf_counter() - warm_start
    new_token_counts.clear()

    # -- timed runs --------------------------------------------------------------------------------------
    plan = [("score", 1, score_prompts)]
    plan += [("score", b, score_prompts) for b in args.batch_sizes]
    plan += [("generate", 1, cot_prompts[: args.single_generate])]
    plan += [("generate", b, cot_prompts) for b in args.batch_sizes]
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results: list[dict] = []
    for mode, batch, prompts in plan:
        runner = run_score if mode == "score" else run_generate
        new_token_counts.clear()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        runner(prompts, batch)
        wall, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
        row = {
            "mode": mode,
            "batch_size": batch,
            "utterances": len(prompts),
            "wall_s": wall,
            "cpu_s": cpu_s,
            "utterances_per_s": len(prompts) / wall,
            "ms_per_utterance": 1000 * wall / len(prompts),
        }
        if mode == "generate":
            if set(new_token_counts) != {n_new} or len(new_token_counts) != len(prompts):
                raise SystemExit(
                    f"generation did not give {n_new} new tokens per row: {sorted(new_token_counts)}"
                )
            row["new_tokens_per_utterance"] = n_new
            row["new_tokens_per_s"] = n_new * len(prompts) / wall
        results.append(row)
        print(f"  {mode} batch {batch}: {len(prompts)} utterances in {wall:.2f} s", file=sys.stderr)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    def rate(mode: str, batch: int) -> float:
        return next(r["utterances_per_s"] for r in results if r["mode"] == mode and r["batch_size"] == batch)

    ratios = {
        "score_over_generate_same_batch": {
            b: rate("score", b) / rate("generate", b) for b in args.batch_sizes
        },
        "generate_batched_over_single": {
            b: rate("generate", b) / rate("generate", 1) for b in args.batch_sizes
        },
        "score_batched_over_single": {b: rate("score", b) / rate("score", 1) for b in args.batch_sizes},
        "score_single_over_generate_single": rate("score", 1) / rate("generate", 1),
    }
    best_score = max(rate("score", b) for b in args.batch_sizes)
    best_generate = max(rate("generate", b) for b in args.batch_sizes)
    headline = {
        "score_batched_over_generate_batched": best_score / best_generate,
        "generate_batched_over_single": best_generate / rate("generate", 1),
    }
    goals = {
        "score_batched_over_generate_batched": GOAL_SCORE_OVER_GENERATE,
        "generate_batched_over_single": GOAL_BATCHED_OVER_SINGLE,
    }
    met = {key: headline[key] >= goals[key] for key in goals}

    facts = machine()
    n_params = sum(p.numel() for p in model.parameters())

    print()
    print(
        f"model {model_name} ({type(model).__name__}, {n_params / 1e6:.1f} M parameters, {model.dtype}); "
        f"{len(transcripts)} {source} transcripts; {facts['cpus_allowed']} CPUs, "
        f"{facts['torch_threads']} torch threads; torch {facts['torch']}, transformers "
        f"{facts['transformers']}"
    )
    print(
        f"prompt tokens: score (minimal) {token_lengths(score_prompts)}, generate (cot) "
        f"{token_lengths(cot_prompts)}; {len(labels.labels)} labels; {n_new} new tokens per generated "
        "utterance"
    )
    print()
    print("| mode | batch | utterances | wall s | utterances/s | ms/utterance | new tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        tokens = f"{r['new_tokens_per_s']:.1f}" if "new_tokens_per_s" in r else ""
        print(
            f"| {r['mode']} | {r['batch_size']} | {r['utterances']} | {r['wall_s']:.2f} | "
            f"{r['utterances_per_s']:.2f} | {r['ms_per_utterance']:.0f} | {tokens} |"
        )
    print()
    print("| ratio (utterances/s) | value | goal |")
    print("|---|---:|---:|")
    for b in args.batch_sizes:
        print(f"| score / generate, both batch {b} | {ratios['score_over_generate_same_batch'][b]:.1f}x | |")
    for b in args.batch_sizes:
        print(
            f"| generate batch {b} / generate batch 1 | {ratios['generate_batched_over_single'][b]:.2f}x | |"
        )
    for b in args.batch_sizes:
        print(f"| score batch {b} / score batch 1 | {ratios['score_batched_over_single'][b]:.2f}x | |")
    print(f"| score batch 1 / generate batch 1 | {ratios['score_single_over_generate_single']:.1f}x | |")
    for key, title in (
        ("score_batched_over_generate_batched", "best score batched / best generate batched"),
        ("generate_batched_over_single", "best generate batched / generate batch 1"),
    ):
        verdict = "met" if met[key] else "NOT met"
        print(f"| **{title}** | **{headline[key]:.2f}x** | >= {goals[key]:g}x ({verdict}) |")
    print()
    print(
        f"untimed: model load {load_s:.1f} s, warm-up {warmup_s:.1f} s; "
        f"load average {load_before} -> {load_after}"
    )

    report = {
        "model": model_name,
        "model_class": type(model).__name__,
        "model_parameters": n_params,
        "dtype": str(model.dtype),
        "device": args.device,
        "transcript_source": source,
        "transcripts": transcripts,
        "labels": list(labels.labels),
        "prompt_tokens": {
            "score_minimal": token_lengths(score_prompts),
            "generate_cot": token_lengths(cot_prompts),
        },
        "max_new_tokens": n_new,
        "loadavg": {"before": load_before, "after": load_after},
        "untimed_s": {"model_load": load_s, "warmup": warmup_s},
        "results": results,
        "ratios": {
            k: ({str(b): v for b, v in r.items()} if isinstance(r, dict) else r) for k, r in ratios.items()
        },
        "headline": headline,
        "goals": goals,
        "goals_met": met,
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
