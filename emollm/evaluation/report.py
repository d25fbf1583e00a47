"""An evaluation run's scores and its Markdown report, from its prediction rows.

``metrics.json`` holds WA, UA, weighted/macro F1, parse failures, format compliance, mean true-label
probability (score mode), per-class scores, the confusion matrix, 95% bootstrap intervals (``ci95``) and the
chance and majority baselines; ``report.md`` the same as Markdown tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def score_rows(rows: list[dict], label_set, train_labels, mode: str):
    """Metrics, baselines and the ``metrics.json`` summary of prediction rows (``gold``, ``label``, ...).

    Returns:
        ``(metrics, baselines, summary)``.
    """
    from emollm.evaluation.bootstrap import bootstrap_ci
    from emollm.evaluation.metrics import baselines, compute_metrics

    gold = [row["gold"] for row in rows]
    pred = [row["label"] for row in rows]
    probabilities = None
    if mode == "score":
        probabilities = np.array([[row["distribution"][lab] for lab in label_set.labels] for row in rows])
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float round-off
    metrics = compute_metrics(gold, pred, label_set, probabilities=probabilities)
    baseline = baselines(gold, label_set, train_labels=train_labels)
    ci95 = bootstrap_ci(gold, pred, label_set, n_resamples=1000, level=0.95, seed=0)
    generated = [row for row in rows if row.get("completion") is not None]
    summary = {
        "metrics": metrics.to_dict(),
        "ci95": {name: list(bounds) for name, bounds in ci95.items()},  # bootstrap over utterances
        "baselines": {name: b.to_dict() for name, b in baseline.items()},
        "format_ok_rate": (
            sum(bool(row["format_ok"]) for row in generated) / len(generated) if generated else None
        ),
        "with_prosody": sum(row.get("prosody") is not None for row in rows),
    }
    return metrics, baseline, summary


def report_markdown(summary: dict, metrics, baseline: dict, label_set) -> str:
    """``report.md``: the scores next to the baselines, bootstrap intervals, per-class scores, settings."""
    from emollm.evaluation.metrics import summary_markdown

    s = summary["settings"]
    lines = [
        f"# {s['data']} {s['split']}: {Path(s['strategy']).stem} prompt, {s['mode']} mode, "
        f"context {s['context_turns']}",
        "",
        f"Model `{s['model']}`, {summary['n']} utterances, labels {', '.join(label_set.labels)}; "
        f"{summary['with_prosody']} prompts carried a prosody description.",
    ]
    if summary["format_ok_rate"] is not None:
        lines.append(f"Completions in the exact `<think>..</think><answer>..</answer>` format: "
                     f"{100 * summary['format_ok_rate']:.1f}%.")  # fmt: skip
    lines += [
        "",
        "## Scores next to the baselines",
        "",
        summary_markdown({"model": metrics, **baseline}),
        "",
        "95% bootstrap intervals of the model's scores (1000 resamples of the utterances): "
        + ", ".join(
            f"{name} {100 * low:.1f}-{100 * high:.1f}" for name, (low, high) in summary["ci95"].items()
        )
        + ". Compare two runs on the same utterances with `emollm compare A B`.",
        "",
        "## The model, per class",
        "",
        metrics.to_markdown(name="model"),
        "",
        "Settings:",
        "",
        "```json",
        json.dumps(s, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
