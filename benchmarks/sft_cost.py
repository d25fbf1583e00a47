"""Cost of one SFT step on this CPU: prosody-as-text vs audio pseudo-tokens, batch 8, the default model.

python benchmarks/sft_cost.py [--data-root ../shared/data] [--warmup 1] [--steps 8] [--rounds 2]
    [--paired-rounds 2] [--workers 2] [--threads N] [--quiet-load 0.8] [--quiet-wait 1200]
    [--out benchmarks/results/sft_cost.json]

The recipe's own settings (``recipes/configs/ravdess/sft_{text,tokens}.yaml``, parsed by the recipe's parser,
:func:`emollm.recipes.sft.make_parser`: smollm2-135m-instruct, LoRA r16 / alpha 32 / dropout 0.05 on q/k/v/o,
``minimal`` template, float32, batch 8, ``max_length`` 512, no activation checkpointing), the model and the
examples built as the recipe builds them (:meth:`EmotionLM.from_pretrained` with the config's adapter,
``normalize`` included; :mod:`emollm.inputs`; :func:`emollm.training.build_examples`), and real RAVDESS
training prompts: ``(warmup + steps) * 8`` clips of actors 01-14, spread over the actors (seeded), so every
step sees a new batch. Configurations:

1. **text**: the vowel-level prosody description in the prompt (the normaliser fit on all 840 training
   clips, as the recipe does), LoRA only.
2. **tokens**: no description; ``prosody_frames`` -> ``mlp`` projector -> K=8 pseudo-tokens at ``<|audio|>``,
   the frames z-scored per speaker (``normalize: speaker``, statistics of all 840 training clips, as the
   recipe does; untimed); LoRA + projector. Its prompts are shorter, so this row is *not* a like-for-like
   comparison.
3. **tokens, text length**: the pseudo-token path at exactly configuration 1's lengths: every row is
   configuration 1's tokenised prompt with the K tokens where ``<|audio|>`` sits in configuration 2's prompt
   overwritten by the K slots (L-8 text tokens + 8 slots = L), plus the clip's frames through the projector.
   Same examples, same shuffling seed: every step's batch has the same width as in configuration 1 (checked).

**Separate processes** (``--rounds``; the order is reversed every other round): each configuration runs in
a fresh subprocess (so ``ru_maxrss`` is its own peak) that loads the model, wraps it with LoRA
(``prepare_for_training``) and runs ``EmotionSFTTrainer.train()`` for ``warmup + steps`` optimizer steps
(no saving, no evaluation). A step is ``_common.StepTimer``'s, the same as in ``grpo_cost.py``: the wall time
between consecutive ``on_step_end`` callbacks: fetching and collating the batch (frames padded, prompts
tokenised), building ``inputs_embeds`` (projector included), forward, backward, AdamW. The first ``warmup``
steps (at least 1) are dropped. These give s/step and peak RSS.

**Paired** (``--paired-rounds``): configurations 1 and 3 in one process, two trainers side by side, stepped
batch by batch on the same batches in ABBA order (collate, ``training_step``, clip, AdamW, scheduler).
Steps seconds apart see the same machine load, so this is the fair ratio on a shared machine; it is the
headline: mean s/step of 3 over 1 (the issue's goal: < 1.15). The separate-process ratio is reported too.

Prompts, descriptions and frames are made in the parent process beforehand (cached on disk), untimed.
Before each subprocess the script waits until the 1-minute load average is below ``--quiet-load`` (polling
every 30 s, at most ``--quiet-wait`` seconds) and records the load average before and after.
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
from dataclasses import dataclass
from pathlib import Path

from _common import StepTimer, rss_mb, spread_subset, wait_until_quiet, warmup_steps, write_result

from emollm.modeling.injection import PSEUDO_TOKEN_ID
from emollm.training import MultimodalCollator
from emollm.training.collators import IGNORE_INDEX

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "text": REPO / "recipes/configs/ravdess/sft_text.yaml",
    "tokens": REPO / "recipes/configs/ravdess/sft_tokens.yaml",
    "tokens_text_length": REPO / "recipes/configs/ravdess/sft_tokens.yaml",
}
TITLES = {
    "text": "(1) text: prosody description, LoRA",
    "tokens": "(2) tokens: 8 pseudo-tokens, LoRA + mlp",
    "tokens_text_length": "(3) tokens at (1)'s length: L-8 text + 8 slots",
}
GOAL_RATIO = 1.15
BATCH = 8
SEED = 0


def parse_recipe(config: Path, output_dir: str, max_steps: int):
    """The recipe's four argument dataclasses for ``config``, with no saving and ``max_steps`` steps."""
    from emollm.recipes.sft import make_parser
    from emollm.training.arguments import parse_recipe_args

    overrides = ["--output_dir", output_dir, "--max_steps", str(max_steps), "--save_strategy", "no"]
    overrides += ["--logging_steps", "1000000", "--report_to", "none", "--per_device_train_batch_size", "8"]
    return parse_recipe_args(make_parser(), ["--config", str(config), *overrides])


def build_lm(model_args, adapter, route: str):
    """The recipe's model for ``route``: the base LLM, and the config's audio adapter for a tokens route."""
    from trl import get_quantization_config

    from emollm.modeling import EmotionLM
    from emollm.training.arguments import route_has_adapters
    from emollm.training.models import model_dtype

    adapters = adapter.to_specs() if route_has_adapters(route) else []
    return EmotionLM.from_pretrained(
        model_args.model_name_or_path, adapters=adapters,
        dtype=model_dtype(model_args), quantization_config=get_quantization_config(model_args),
    )  # fmt: skip


# -- the parent: build the examples once ---------------------------------------------------------------------


def build_jobs(args) -> dict:
    """Examples of the three configurations (JSON-ready) and facts about them."""
    from emollm.inputs import PromptBuilder, describe_utterances, encode_utterances, select_utterances
    from emollm.training import build_examples
    from emollm.training.arguments import route_has_prosody

    start = time.perf_counter()
    examples, clips, in_dim = {}, {}, None
    for name in ("text", "tokens"):
        script, training, model_args, adapter = parse_recipe(CONFIGS[name], tempfile.gettempdir(), 1)
        labels, train = select_utterances(
            script.dataset, script.train_split, labels=script.labels, data_root=args.data_root
        )
        clips[name] = spread_subset(train, (args.warmup + args.steps) * BATCH, SEED)
        lm = build_lm(model_args, adapter, script.route)
        prompts = PromptBuilder(
            lm.tokenizer, script.strategy, labels,
            context_turns=script.context_turns, placeholders=lm.placeholders,
        )  # fmt: skip
        descriptions, frames = {}, {}
        if route_has_prosody(script.route):
            # The recipe's normaliser: per-speaker statistics of all the training clips (labels never read).
            descriptions, _, _ = describe_utterances(
                train, todo=clips[name], style=script.prosody_style, workers=args.workers
            )
        if lm.adapters:
            # The recipe's frames: z-scored per speaker when the config says normalize: speaker (statistics of
            # all the training clips, labels never read).
            frames, _ = encode_utterances(lm, train, todo=clips[name])
            in_dim = lm.encoders["audio"].output_dim
        examples[name] = build_examples(
            clips[name], prompts, target=script.target, prosody=descriptions, frames=frames
        )
        tokenizer, hidden = lm.tokenizer, lm.model.get_input_embeddings().embedding_dim
        del lm
    prepare_s = time.perf_counter() - start
    if [u.id for u in clips["text"]] != [u.id for u in clips["tokens"]]:
        raise SystemExit("the text and tokens configurations drew different clips: check their datasets")
    text_examples, token_examples = examples["text"], examples["tokens"]

    k = adapter.num_tokens
    text_collator = MultimodalCollator(tokenizer, {}, max_length=training.max_length)
    token_collator = MultimodalCollator(tokenizer, {"audio": k}, max_length=training.max_length)
    same_examples, text_lengths, token_lengths = [], [], []
    for text_ex, token_ex in zip(text_examples, token_examples):
        text_ids, text_labels = text_collator.encode(text_ex)
        token_ids, _ = token_collator.encode(token_ex)
        slot = token_ids.index(PSEUDO_TOKEN_ID)
        prompt_length = next(i for i, t in enumerate(text_labels) if t != IGNORE_INDEX)
        slot = min(slot, prompt_length - k)  # the slots must replace prompt tokens, never the target
        same_examples.append(
            {**text_ex, "audio_frames": token_ex["audio_frames"], "slot_start": slot, "num_slots": k}
        )
        text_lengths.append(len(text_ids))
        token_lengths.append(len(token_ids))

    return {
        "model": model_args.model_name_or_path,
        "examples": {"text": text_examples, "tokens": token_examples, "tokens_text_length": same_examples},
        "facts": {
            "clips": [u.id for u in clips["text"]],
            "prepare_s": round(prepare_s, 1),
            "row_tokens": {
                "text": _stats(text_lengths),
                "tokens": _stats(token_lengths),
                "tokens_text_length": _stats(text_lengths),
            },
            "frames_per_clip": _stats([len(ex["audio_frames"]) for ex in token_examples]),
            "frames_normalize": adapter.normalize,
            "example_prompt": {
                "text": text_examples[0]["prompt"] + text_examples[0]["completion"],
                "tokens": token_examples[0]["prompt"] + token_examples[0]["completion"],
            },
        },
        "projector_parameters": projector_parameters(in_dim, hidden, k),
    }


def projector_parameters(in_dim: int, hidden: int, num_tokens: int) -> dict:
    """``num_parameters()`` of every projector, encoder ``in_dim`` -> ``hidden``, K=``num_tokens``."""
    from emollm.modeling.projectors import PROJECTORS, build_projector

    counts = {
        name: build_projector(name, in_dim, hidden, num_tokens=num_tokens).num_parameters()
        for name in PROJECTORS
    }
    return {"in_dim": in_dim, "hidden": hidden, "num_tokens": num_tokens, "counts": counts}


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
    }


# -- the worker: one configuration, in its own process -------------------------------------------------------


def make_trainer(name: str, examples: list[dict], steps: int, callbacks=()):
    """The recipe's trainer for one configuration: a fresh model with LoRA (and projector), ``steps`` steps.

    Returns:
        ``(trainer, recording collator, parameter counts, model load seconds)``.
    """
    from datasets import Dataset
    from transformers import set_seed
    from trl import get_peft_config

    from emollm.training import EmotionSFTTrainer, count_parameters
    from emollm.training.sft import prepare_for_training

    output_dir = tempfile.mkdtemp(prefix=f"sft_cost_{name}_")
    script, training, model_args, adapter = parse_recipe(CONFIGS[name], output_dir, steps)
    training.remove_unused_columns = False
    training.dataset_kwargs = {"skip_prepare_dataset": True}
    set_seed(training.seed)  # before the projector is initialised, as the recipe does

    load_start = time.perf_counter()
    lm = build_lm(model_args, adapter, script.route)
    tokenizer, adapters = lm.tokenizer, lm.adapters
    model = prepare_for_training(
        lm.model, get_peft_config(model_args), gradient_checkpointing=training.activation_checkpointing
    )
    load_s = time.perf_counter() - load_start

    collator_class = SameLengthCollator if name == "tokens_text_length" else MultimodalCollator
    collator = RecordingCollator(collator_class(tokenizer, lm.num_tokens, max_length=training.max_length))
    trainer = EmotionSFTTrainer(
        model=model,
        args=training,
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        processing_class=tokenizer,
        base_model=model_args.model_name_or_path,
        adapters=adapters,
        projector_learning_rate=adapter.projector_learning_rate,
        callbacks=list(callbacks),
    )
    trainer.recipe_args = (training, model_args)
    return trainer, collator, count_parameters(model), load_s


def run_worker(name: str, job_path: str, result_path: str, steps: int, threads: int | None) -> None:
    """Train ``steps`` steps of one configuration with ``trainer.train()``; write timings and peak RSS."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    rss_start = rss_mb()
    job = json.loads(Path(job_path).read_text())
    timer = StepTimer()
    trainer, collator, counts, load_s = make_trainer(name, job["examples"][name], steps, [timer])
    rss_loaded = rss_mb()
    trainer.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    slots = [int((ids == PSEUDO_TOKEN_ID).sum(1).max()) for ids in collator.input_ids]
    training, model_args = trainer.recipe_args
    result = {
        "name": name,
        "step_s": timer.durations(),
        "batch_width": [int(ids.shape[1]) for ids in collator.input_ids],
        "batch_real_tokens": [int(mask.sum()) for mask in collator.attention],
        "pseudo_slots_per_row": slots,
        "batch_ids": collator.ids,
        "peak_rss_mb": peak_mb,
        "rss_at_start_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "model_load_s": load_s,
        "parameters": counts,
        "torch_threads": torch.get_num_threads(),
        "training_args": {
            "per_device_train_batch_size": training.per_device_train_batch_size,
            "learning_rate": training.learning_rate,
            "max_length": training.max_length,
            "gradient_checkpointing": training.gradient_checkpointing,
            "bf16": training.bf16,
            "lora": {
                "r": model_args.lora_r,
                "alpha": model_args.lora_alpha,
                "dropout": model_args.lora_dropout,
                "target_modules": model_args.lora_target_modules,
            },
        },
    }
    Path(result_path).write_text(json.dumps(result))


def run_paired(job_path: str, result_path: str, steps: int, threads: int | None) -> None:
    """Configurations 1 and 3 in one process, step by step on the same batches, in ABBA order.

    Load on a shared machine drifts over minutes; two steps a few seconds apart see nearly the same load,
    so the per-batch ratio (3)/(1) is far less noisy than comparing two processes run minutes apart. Each
    step is what ``Trainer`` does per batch: collate, ``training_step`` (loss with ``inputs_embeds``,
    backward), gradient clipping, AdamW, scheduler, zero grad.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    job = json.loads(Path(job_path).read_text())
    names = ("text", "tokens_text_length")
    setups = {}
    for name in names:
        trainer, collator, _, _ = make_trainer(name, job["examples"][name], steps)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        trainer.current_gradient_accumulation_steps = 1  # what train() sets before its first step
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        setups[name] = (trainer, collator, trainable)

    def step(name: str, examples: list[dict]) -> float:
        trainer, collator, trainable = setups[name]
        begin = time.perf_counter()
        batch = collator(examples)
        trainer.training_step(trainer.model, batch)
        torch.nn.utils.clip_grad_norm_(trainable, trainer.args.max_grad_norm)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        trainer.optimizer.zero_grad()
        return time.perf_counter() - begin

    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(steps):
        batches = {name: job["examples"][name][index * BATCH : (index + 1) * BATCH] for name in names}
        order = names if index % 2 == 0 else tuple(reversed(names))
        for name in order:
            times[name].append(step(name, batches[name]))
    widths = {name: [int(ids.shape[1]) for ids in setups[name][1].input_ids] for name in names}
    Path(result_path).write_text(json.dumps({"step_s": times, "batch_width": widths}))


class RecordingCollator:
    """Wraps a collator and keeps every batch's ids, attention mask and utterance ids."""

    def __init__(self, collator):
        self.collator = collator
        self.input_ids, self.attention, self.ids = [], [], []

    def __call__(self, examples):
        batch = self.collator(examples)
        self.input_ids.append(batch["input_ids"].clone())
        self.attention.append(batch["attention_mask"].clone())
        self.ids.append([example["id"] for example in examples])
        return batch


@dataclass
class SameLengthCollator(MultimodalCollator):
    """The tokens route at the text route's length: the text prompt with K tokens overwritten by slots.

    Each example carries the text route's ``prompt``, the clip's ``audio_frames``, ``slot_start`` and
    ``num_slots``; the row keeps the text route's length, ``num_slots`` of its prompt tokens become slots.
    """

    def encode(self, example):
        text = MultimodalCollator(self.tokenizer, {}, self.max_length, self.add_special_tokens)
        ids, labels = text.encode(example)
        start, count = example["slot_start"], example["num_slots"]
        if any(t != IGNORE_INDEX for t in labels[start : start + count]):
            raise ValueError(f"{example['id']}: the slots would overwrite target tokens")
        ids[start : start + count] = [PSEUDO_TOKEN_ID] * count
        return ids, labels


# -- the parent: run, print, write ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--warmup", type=warmup_steps, default=1, help="untimed optimizer steps first (>= 1)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    parser.add_argument("--rounds", type=int, default=2, help="run the configurations this many times")
    parser.add_argument("--paired-rounds", type=int, default=2, help="paired (1)/(3) processes (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="prosody extraction processes")
    parser.add_argument("--threads", type=int, help="torch threads in the workers (default: torch's)")
    parser.add_argument("--quiet-load", type=float, default=0.8, help="wait for a 1-min load below this")
    parser.add_argument("--quiet-wait", type=float, default=1200, help="longest wait (s) per configuration")
    parser.add_argument("--out", default="benchmarks/results/sft_cost.json", help="JSON results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "paired":
        run_paired(args.job, args.result, args.warmup + args.steps, args.threads)
        return
    if args.worker:
        run_worker(args.worker, args.job, args.result, args.warmup + args.steps, args.threads)
        return

    import torch

    job = build_jobs(args)
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="sft_cost_") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        for round_index in range(args.rounds):
            order = list(CONFIGS) if round_index % 2 == 0 else list(reversed(CONFIGS))
            for name in order:
                quiet = wait_until_quiet(args.quiet_load, args.quiet_wait)
                result_path = Path(tmp) / f"{name}-{round_index}.json"
                command = [sys.executable, __file__, "--worker", name, "--job", str(job_path)]
                command += ["--result", str(result_path), "--warmup", str(args.warmup)]
                command += ["--steps", str(args.steps)] + (
                    ["--threads", str(args.threads)] if args.threads else []
                )
                print(f"round {round_index + 1}: {name} ({quiet})", file=sys.stderr, flush=True)
                start = time.perf_counter()
                subprocess.run(command, check=True, cwd=REPO)
                result = json.loads(result_path.read_text())
                result.update(
                    quiet, loadavg_after=list(os.getloadavg()), process_s=time.perf_counter() - start
                )
                result["timed_step_s"] = result["step_s"][args.warmup :]
                runs[name].append(result)
        paired = []
        for round_index in range(args.paired_rounds):
            quiet = wait_until_quiet(args.quiet_load, args.quiet_wait)
            result_path = Path(tmp) / f"paired-{round_index}.json"
            command = [sys.executable, __file__, "--worker", "paired", "--job", str(job_path)]
            command += ["--result", str(result_path), "--warmup", str(args.warmup)]
            command += ["--steps", str(args.steps)] + (
                ["--threads", str(args.threads)] if args.threads else []
            )
            print(f"paired round {round_index + 1} ({quiet})", file=sys.stderr, flush=True)
            subprocess.run(command, check=True, cwd=REPO)
            result = json.loads(result_path.read_text())
            result.update(quiet, loadavg_after=list(os.getloadavg()))
            paired.append(result)

    rows = {}
    for name, results in runs.items():
        if not results:
            continue
        timed = [s for r in results for s in r["timed_step_s"]]
        rows[name] = {
            "title": TITLES[name],
            "s_per_step": _stats(timed),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "rss_after_load_mb": max(r["rss_after_load_mb"] for r in results),
            "row_tokens": job["facts"]["row_tokens"][name],
            "batch_width": _stats([w for r in results for w in r["batch_width"][args.warmup :]]),
            "pseudo_slots_per_row": results[0]["pseudo_slots_per_row"][0],
            "parameters": results[0]["parameters"],
            "runs": results,
        }
    same_batches = all(
        a["batch_ids"] == b["batch_ids"] and a["batch_width"] == b["batch_width"]
        for a, b in zip(runs["text"], runs["tokens_text_length"])
    )
    ratios = {}
    if rows:
        mean = {name: rows[name]["s_per_step"]["mean"] for name in rows}
        median = {name: rows[name]["s_per_step"]["median"] for name in rows}
        ratios["separate_processes"] = {
            "tokens_text_length_over_text_mean": mean["tokens_text_length"] / mean["text"],
            "tokens_text_length_over_text_median": median["tokens_text_length"] / median["text"],
            "tokens_over_text_mean": mean["tokens"] / mean["text"],
        }
    paired_summary = None
    if paired:
        text = [t for r in paired for t in r["step_s"]["text"][args.warmup :]]
        same = [t for r in paired for t in r["step_s"]["tokens_text_length"][args.warmup :]]
        per_batch = [b / a for a, b in zip(text, same)]
        paired_summary = {
            "text_s_per_step": _stats(text),
            "tokens_text_length_s_per_step": _stats(same),
            "per_batch_ratio": _stats(per_batch),
            "same_widths": all(
                r["batch_width"]["text"] == r["batch_width"]["tokens_text_length"] for r in paired
            ),
            "runs": paired,
        }
        ratios["paired"] = {
            "tokens_text_length_over_text_mean": statistics.fmean(same) / statistics.fmean(text),
            "per_batch_ratio_median": statistics.median(per_batch),
        }
    headline_source = "paired" if paired else "separate_processes"
    headline = ratios[headline_source]["tokens_text_length_over_text_mean"]
    met = headline < GOAL_RATIO

    model = job["model"]
    print()
    print(
        f"model {model}; batch {BATCH}; {args.warmup} warm-up + {args.steps} timed steps x {args.rounds} "
        f"round(s); {len(job['facts']['clips'])} RAVDESS train clips; torch threads "
        f"{torch.get_num_threads()} on {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| configuration | row tokens (mean) | batch width (mean) | slots | s/step mean | std | min | max | "
        "peak RSS MB | trainable LoRA | trainable projector |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows.values():
        s = row["s_per_step"]
        print(
            f"| {row['title']} | {row['row_tokens']['mean']:.1f} | {row['batch_width']['mean']:.1f} | "
            f"{row['pseudo_slots_per_row']} | {s['mean']:.3f} | {s['std']:.3f} | {s['min']:.3f} | "
            f"{s['max']:.3f} | {row['peak_rss_mb']:.0f} | {row['parameters']['lora']:,} | "
            f"{row['parameters']['projector']:,} |"
        )
    print()
    if paired_summary:
        t, u, r = (
            paired_summary[k] for k in ("text_s_per_step", "tokens_text_length_s_per_step", "per_batch_ratio")
        )
        print(
            f"Paired, one process, ABBA on the same {args.steps} batches x {len(paired)}: (1) "
            f"{t['mean']:.3f} s/step (std {t['std']:.3f}), (3) {u['mean']:.3f} (std {u['std']:.3f}); "
            f"per-batch ratio median {r['median']:.3f}, range {r['min']:.3f}-{r['max']:.3f}; "
            f"same widths: {paired_summary['same_widths']}."
        )
    verdict = "met" if met else "NOT met"
    print(
        f"**(3) / (1), same sequence length: {headline:.3f}x mean s/step** "
        f"({headline_source.replace('_', ' ')}); "
        f"goal < {GOAL_RATIO} ({verdict}). Ratios: {json.dumps(ratios)}. Same batches and widths in the "
        f"separate runs of (1) and (3): {same_batches}."
    )
    pp = job["projector_parameters"]
    print()
    print(
        f"| projector (prosody_frames {pp['in_dim']} -> hidden {pp['hidden']}, K={pp['num_tokens']}) "
        "| parameters |"
    )
    print("|---|---:|")
    for name, count in pp["counts"].items():
        print(f"| {name} | {count:,} |")
    print()
    loads = [(r["loadavg_at_start"][0], r["loadavg_after"][0]) for rs in runs.values() for r in rs]
    print(
        f"untimed preparation {job['facts']['prepare_s']} s; "
        f"1-min load average before/after each run: {loads}"
    )

    report = {
        "model": model,
        "batch_size": BATCH,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "rounds": args.rounds,
        "quiet_load_threshold": args.quiet_load,
        "configurations": rows,
        "same_batches_text_and_tokens_text_length": same_batches,
        "paired": paired_summary,
        "ratios": ratios,
        "headline_ratio": {"value": headline, "source": headline_source},
        "goal": f"(3) / (1) mean s/step < {GOAL_RATIO}",
        "goal_met": met,
        "projector_parameters": pp,
        "facts": job["facts"],
    }
    write_result(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
