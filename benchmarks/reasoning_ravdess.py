"""Verifiable reasoning on RAVDESS: evidence vs template rationales, GRPO with and without the cue reward.

python benchmarks/reasoning_ravdess.py [--data-root ../shared/data] [--rows zero-shot,evidence-text,...]
    [--sft-max-steps N] [--grpo-max-steps N] [--eval-limit N] [--pairs N] [--bf16] [--output-root runs]
    [--out benchmarks/results/reasoning_ravdess.json]

Train actors 01-14, evaluate actors 15-18 (240 clips), 8 classes, the default model. Every row is one
model; each step is a recipe or CLI run in a subprocess, exactly as a user would type it, and each resumes,
so an interrupted benchmark continues where it stopped. Rows (``--rows``, in this order):

* ``zero-shot``: the default model, ``acoustic`` template (prosody description, ``<think>``/``<answer>``);
* ``evidence-text`` / ``reasoning-text``: ``recipes/sft.py --config
  recipes/configs/ravdess/sft_evidence.yaml`` with ``--target evidence`` (the 2-4 measured cues that most
  support the label for this speaker, then their reading) or ``--target reasoning`` (the template
  rationale), prosody as text;
* ``evidence-tokens`` / ``reasoning-tokens``: the same on the tokens route with the ``prosody_functionals``
  encoder (K=4, projector learning rate 1e-3, as ``sft_functionals.yaml``): the model is not shown the
  description, so every cue it names is read from the pseudo-tokens;
* ``evidence-tokens-3ep``: ``evidence-tokens`` trained 3 epochs instead of 2 (315 steps), a lever for its
  claim precision;
* ``grpo-label`` / ``grpo-cue``: ``recipes/grpo.py --config recipes/configs/ravdess/grpo_cue.yaml`` from the
  ``evidence-text`` checkpoint, rewards ``format+label`` (weights 0.5, 1) vs ``format+label+cue`` (0.5, 1,
  0.5), the same steps and seed.

Per row: WA, UA, parse failures and format rate on dev in generate mode (the recipes' own ``eval-dev``;
GRPO's ``eval-after-ravdess-dev``; GRPO runs with ``--eval_before false --cross_dataset none``, as its
starting checkpoint is the ``evidence-text`` row), then ``emollm faithfulness --mode generate`` on dev: claim
precision and coverage of the rationales against the recipient's measures (the claims checked by
:func:`emollm.reasoning.verify_rationale`), and under the counterfactual swap of the voice inputs the share
of predictions that change and that move to the donor's label. Last, where the claims come from: the share
the prompt's description states (the same claim, degree included) and the precision of the others, the ones
a model had to read from the voice or invent (on the tokens route the prompt states none). The issue's
goals: claim precision >= 0.95 after evidence SFT and not lower after GRPO with ``cue``; GRPO with ``cue``
no worse in WA than without; a model that reads the voice follows the donor far more often than the
zero-shot default.

``--bf16`` trains every SFT and GRPO row in bf16 (autocast; evaluation stays float32), 17-18 % shorter steps
on this CPU; each row records whether it did. The rows take about an hour each for the text route's SFT
(210 steps at 14-17 s), less for the tokens route, and GRPO 100 steps at 15-30 s: the whole benchmark is
several hours, over sessions (each step resumes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import read_result, write_result

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs" / "ravdess"
TOKENS = [
    "--route",
    "tokens",
    "--encoder",
    "prosody_functionals",
    "--num_tokens",
    "4",
    "--projector_learning_rate",
    "1e-3",
    "--strategy",
    "acoustic",
]
SFT_ROWS = {
    "evidence-text": ("evidence", []),
    "reasoning-text": ("reasoning", []),
    "evidence-tokens": ("evidence", TOKENS),
    "reasoning-tokens": ("reasoning", TOKENS),
    "evidence-tokens-3ep": ("evidence", [*TOKENS, "--num_train_epochs", "3"]),
}
GRPO_ROWS = {
    "grpo-label": ["--rewards", "format", "label", "--reward_weights", "0.5", "1.0"],
    "grpo-cue": ["--rewards", "format", "label", "cue", "--reward_weights", "0.5", "1.0", "0.5"],
}
ROWS = ["zero-shot", *SFT_ROWS, *GRPO_ROWS]


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, *cmd], cwd=REPO)
    if done.returncode:
        sys.exit(f"reasoning_ravdess: this step failed (exit {done.returncode}); its error is above")


def accuracy(folder: Path) -> dict:
    """WA, UA, parse failures and format rate of an evaluation folder's ``metrics.json``."""
    summary = json.loads((folder / "metrics.json").read_text())
    m = summary["metrics"]  # the harness's label metrics; format_ok_rate sits beside them
    keys = ("n", "wa", "ua", "macro_f1", "parse_failure_rate")
    return {**{k: m.get(k) for k in keys}, "format_ok_rate": summary.get("format_ok_rate")}


def on_dev(command: str, model: str, folder: Path, args, limit: int | None) -> None:
    """``emollm <command>`` (evaluate or faithfulness) on RAVDESS dev in generate mode, unless ``folder`` is
    complete; the zero-shot default model is asked with the ``acoustic`` template (think, then answer)."""
    if (folder / "metrics.json").is_file():
        return
    cmd = ["-m", "emollm.cli", command, "--data", "ravdess", "--split", "dev", "--model", model, "--mode",
           "generate", "--output", str(folder), "--data_root", args.data_root, "--no-progress"]  # fmt: skip
    if model == "default":
        cmd += ["--strategy", "acoustic"]
    run(cmd + (["--limit", str(limit)] if limit else []))


def shown(path: Path | str, args) -> str:
    """``path`` as the user named it (under ``--output-root`` as typed, not the resolved absolute path), so
    the results file does not record this machine's folders."""
    if str(path) == "default":
        return "default"
    return str(Path(args.output_root) / Path(path).relative_to(Path(args.output_root).resolve()))


def faithfulness(model: str, folder: Path, args) -> dict:
    """``emollm faithfulness --mode generate`` on dev (resumable); its swap shares and claim checks."""
    on_dev("faithfulness", model, folder, args, args.pairs)
    m = json.loads((folder / "metrics.json").read_text())
    own = m.get("claims", {}).get("original", {}).get("recipient", {})
    return {
        "pairs": m["n_pairs"],
        "changed": m.get("changed"),
        "moved_to_donor": m.get("moved_to_donor"),
        "claim_precision": own.get("precision"),
        "claim_coverage": own.get("coverage"),
        "rationales_with_claims": own.get("rationales"),
        "checked": own.get("checked"),
        "folder": shown(folder, args),
    }


def claim_sources(folder: Path, args) -> dict:
    """The unswapped rationales' distinct claims in a faithfulness folder, split by whether the description
    in the prompt states them, with their verdicts against the clip's measures (as the faithfulness run
    judged them: speaker statistics fitted on all of dev)."""
    from emollm.data import load_corpus
    from emollm.inputs import describe_utterances
    from emollm.prosody.normalize import normalize_features
    from emollm.reasoning import extract_claims, verify_rationale
    from emollm.training.evidence import measure_utterances

    utterances = {u.id: u for u in load_corpus("ravdess", "dev", data_root=args.data_root)}
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").open(encoding="utf-8")]
    chosen = [utterances[r["id"]] for r in rows]
    normalizer = describe_utterances(chosen, normalizer="speaker", progress=False)[2]
    features = measure_utterances(chosen, progress=False)
    counts = dict.fromkeys(("stated", "stated_true", "unstated", "unstated_true", "unstated_false"), 0)
    by_measure: dict[str, dict[str, int]] = {}  # quantity ("... (vowel)" when a vowel is named) -> verdicts
    by_truth = {k: {"n": 0, "correct": 0} for k in ("all_true", "some_false", "none_verifiable")}
    for row, utt in zip(rows, chosen):
        description = row["original"]["prosody"] or ""
        feats = features.get(utt.id)
        if feats is None:
            continue
        stated = {c.key for c in extract_claims(description)}
        check = verify_rationale(
            row["original"]["rationale"] or "", feats, normalize_features(feats, normalizer, utt.speaker)
        )
        for v in check.verdicts:
            where = "stated" if v.claim.key in stated else "unstated"
            counts[where] += 1
            counts[f"{where}_true"] += v.verdict == "true"
            if where == "unstated":
                counts["unstated_false"] += v.verdict == "false"
            named = v.claim.word or v.claim.vowel or v.claim.position
            measure = by_measure.setdefault(v.claim.quantity + (" (vowel)" if named else ""), {})
            measure[v.verdict] = measure.get(v.verdict, 0) + 1
        truth = "none_verifiable" if not check.n_verifiable else "some_false" if check.n_false else "all_true"
        by_truth[truth]["n"] += 1
        by_truth[truth]["correct"] += row["original"]["label"] == row["gold"]
    total = counts["stated"] + counts["unstated"]
    verifiable = counts["unstated_true"] + counts["unstated_false"]
    return {
        **counts,
        "stated_share": counts["stated"] / total if total else None,
        "unstated_precision": counts["unstated_true"] / verifiable if verifiable else None,
        "by_measure": dict(sorted(by_measure.items())),
        "accuracy_by_rationale_truth": by_truth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, of {', '.join(ROWS)}")
    parser.add_argument("--sft-max-steps", type=int, help="SFT steps (default: the config's 2 epochs)")
    parser.add_argument("--grpo-max-steps", type=int, help="GRPO steps (default: the config's 100)")
    parser.add_argument("--eval-limit", type=int, help="evaluate N dev clips (seeded draw)")
    parser.add_argument("--pairs", type=int, help="faithfulness: N swap pairs (default: all of dev)")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="train in bf16 (autocast; on a CPU with --use_cpu true, which transformers needs for it): "
        "17-18 %% shorter SFT and GRPO steps here (docs/results.md, the cost tables)",
    )
    parser.add_argument(
        "--recount",
        action="store_true",
        help="only recount the claims (where they come from, by measure, accuracy by rationale truth) of "
        "the rows in --out whose faithfulness folders exist; nothing is trained or evaluated",
    )
    parser.add_argument("--output-root", default="runs", help="checkpoints and evaluations go under it")
    parser.add_argument("--out", default="benchmarks/results/reasoning_ravdess.json", help="JSON results")
    args = parser.parse_args()
    wanted = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; accepted: {', '.join(ROWS)}")

    root = Path(args.output_root).resolve()  # the subprocesses run in the repository root
    args.data_root = str(Path(args.data_root).resolve())
    suffix = (f"-limit{args.eval_limit}" if args.eval_limit else "") + (
        f"-pairs{args.pairs}" if args.pairs else ""
    )
    common = ["--data_root", args.data_root] + (
        ["--eval_limit", str(args.eval_limit)] if args.eval_limit else []
    )
    if args.bf16:
        import torch

        common += ["--bf16", "true"] + ([] if torch.cuda.is_available() else ["--use_cpu", "true"])
    out = Path(args.out).resolve()
    rows: dict = read_result(out).get("rows", {}) if out.is_file() else {}
    faithfulness_folder = lambda name: root / "reasoning" / f"faithfulness-{name}{suffix}"  # noqa: E731
    if args.recount:
        wanted = []
        for name, row in rows.items():
            folder = faithfulness_folder(name)
            if (folder / "predictions.jsonl").is_file():
                row["faithfulness"]["claims_by_source"] = claim_sources(folder, args)
        write_result(out, {"rows": rows})
    for name in [r for r in ROWS if r in wanted]:
        if name == "zero-shot":
            folder = root / "reasoning" / f"zero-shot-eval{suffix}"
            on_dev("evaluate", "default", folder, args, args.eval_limit)
            model, evaluation = "default", folder
        elif name in SFT_ROWS:
            target, extra = SFT_ROWS[name]
            model_dir = root / "sft" / f"ravdess-{name}"
            cmd = [
                "recipes/sft.py",
                "--config",
                str(CONFIGS / "sft_evidence.yaml"),
                "--target",
                target,
                "--output_dir",
                str(model_dir),
                *extra,
                *common,
            ]
            run(cmd + (["--max_steps", str(args.sft_max_steps)] if args.sft_max_steps else []))
            model, evaluation = str(model_dir), model_dir / "eval-dev"
        else:
            start = root / "sft" / "ravdess-evidence-text"
            if not (start / "emollm_config.json").is_file():
                parser.error(f"{name} starts from the evidence-text row: run --rows evidence-text first")
            model_dir = root / "grpo" / f"ravdess-{name}"
            cmd = [
                "recipes/grpo.py",
                "--config",
                str(CONFIGS / "grpo_cue.yaml"),
                "--model_name_or_path",
                str(start),
                "--output_dir",
                str(model_dir),
                "--cross_dataset",
                "none",
                "--eval_before",
                "false",
                *GRPO_ROWS[name],
                *common,
            ]
            run(cmd + (["--max_steps", str(args.grpo_max_steps)] if args.grpo_max_steps else []))
            model, evaluation = str(model_dir), model_dir / "eval-after-ravdess-dev"
        row = {
            "model": shown(model, args),
            "bf16": args.bf16 if name != "zero-shot" else None,
            **accuracy(evaluation),
        }
        folder = faithfulness_folder(name)
        row["faithfulness"] = faithfulness(model, folder, args)
        row["faithfulness"]["claims_by_source"] = claim_sources(folder, args)
        rows[name] = row
        write_result(out, {"rows": rows})

    print()
    print(
        "| row | n | WA % | UA % | parse fail % | format ok % | claim precision | coverage | "
        "swap: changed % | swap: to donor % | claims stated by the prompt % | precision of the rest |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name in ROWS:
        row = rows.get(name)
        if row is None:
            continue
        f = row["faithfulness"]
        sources = f.get("claims_by_source", {})
        print(
            f"| {name} | {row['n']} | {pct(row['wa'])} | {pct(row['ua'])} | "
            f"{pct(row['parse_failure_rate'])} | "
            f"{pct(row['format_ok_rate'])} | {num(f['claim_precision'])} | {num(f['claim_coverage'])} | "
            f"{pct(f['changed'])} | {pct(f['moved_to_donor'])} | {pct(sources.get('stated_share'))} | "
            f"{num(sources.get('unstated_precision'))} |"
        )
    print("\nclaims by measure, true / false (unverifiable left out); accuracy by rationale truth")
    for name in ROWS:
        sources = rows.get(name, {}).get("faithfulness", {}).get("claims_by_source", {})
        if "by_measure" not in sources:
            continue
        measures = ", ".join(
            f"{q} {v.get('true', 0)}/{v.get('false', 0)}"
            for q, v in sorted(sources["by_measure"].items(), key=lambda kv: -sum(kv[1].values()))
        )
        truth = sources["accuracy_by_rationale_truth"]
        by_truth = ", ".join(
            f"{k.replace('_', ' ')} {pct(v['correct'] / v['n']) if v['n'] else '-'}% of {v['n']}"
            for k, v in truth.items()
        )
        print(f"{name}: {measures}\n    accuracy: {by_truth}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
