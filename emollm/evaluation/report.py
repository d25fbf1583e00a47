"""An evaluation run's scores and its Markdown report, from its prediction rows.

``metrics.json`` holds WA, UA, weighted/macro F1, parse failures, format compliance, per-class scores, the
confusion matrix, 95% bootstrap intervals (``ci95``) and the chance and majority baselines; in score mode
also the mean true-label probability, ``nll``, ``ece`` and ``brier`` (in ``metrics``), a ``calibration``
section (the temperature applied and the one fitted on these utterances, the reliability bins) and, where
utterances have gold label distributions, a ``distribution`` section (Bhattacharyya coefficient,
Jensen-Shannon divergence, R^2; see :mod:`emollm.evaluation.calibration`). A generate-mode run has no
probabilities: those keys are null. ``report.md`` holds the same as Markdown tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def score_rows(
    rows: list[dict],
    label_set,
    train_labels,
    mode: str,
    *,
    gold_distributions: Mapping[str, Mapping[str, float] | None] | None = None,
    temperature: float = 1.0,
    temperature_source: str = "none",
):
    """Metrics, baselines and the ``metrics.json`` summary of prediction rows (``gold``, ``label``, ...).

    Args:
        rows: Prediction rows, one per utterance.
        label_set: The :class:`~emollm.labels.LabelSet` scored on.
        train_labels: Gold labels of the training split for the majority baseline, or None.
        mode: ``"score"`` (rows hold ``distribution``) or ``"generate"``.
        gold_distributions: Utterance id -> gold label distribution over the set (None or absent: none),
            e.g. :func:`~emollm.evaluation.calibration.gold_distribution` of each utterance.
        temperature: Applied to the rows' distributions before every probabilistic score (the labels do
            not change); ``temperature_source`` says where it came from.

    Returns:
        ``(metrics, baselines, summary)``.
    """
    from emollm.evaluation.bootstrap import bootstrap_ci
    from emollm.evaluation.calibration import apply_temperature
    from emollm.evaluation.metrics import baselines, compute_metrics

    gold = [row["gold"] for row in rows]
    pred = [row["label"] for row in rows]
    raw = probabilities = None
    if mode == "score":
        raw = np.array([[row["distribution"][lab] for lab in label_set.labels] for row in rows])
        raw = raw / raw.sum(axis=1, keepdims=True)  # float round-off
        probabilities = apply_temperature(raw, temperature)
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
        "calibration": None,
        "distribution": None,
    }
    if raw is not None:
        summary["calibration"] = _calibration(
            rows, label_set, raw, probabilities, temperature, temperature_source
        )
        summary["distribution"] = _distribution(rows, label_set, probabilities, gold_distributions or {})
    return metrics, baseline, summary


def _calibration(rows, label_set, raw, probabilities, temperature: float, source: str) -> dict:
    """``metrics.json``'s ``calibration``: the temperature applied and fitted, the reliability bins."""
    from emollm.evaluation.calibration import (
        N_BINS,
        _log,
        brier_score,
        expected_calibration_error,
        fit_temperature,
        negative_log_likelihood,
        reliability_bins,
    )

    index = {label: i for i, label in enumerate(label_set.labels)}
    gold = np.array([index[row["gold"]] for row in rows])
    pred = np.array([index.get(row["label"], len(index)) for row in rows])  # no label: left out of the bins
    unscaled = None
    if temperature != 1:
        unscaled = {
            "ece": expected_calibration_error(raw, gold, predicted=pred),
            "brier": brier_score(raw, gold),
            "nll": negative_log_likelihood(raw, gold),
            "mean_true_prob": float(raw[np.arange(len(gold)), gold].mean()),
        }
    return {
        "temperature": temperature,
        "temperature_source": source,
        # what temperature scaling fitted on these utterances would use (apply it to another split)
        "fitted_temperature": fit_temperature(_log(raw), gold),
        "unscaled": unscaled,
        "n_bins": N_BINS,
        "bins": reliability_bins(probabilities, gold, predicted=pred),
    }


def _distribution(rows, label_set, probabilities, gold_distributions: Mapping) -> dict | None:
    """``metrics.json``'s ``distribution``: predicted against gold distributions, where there are any."""
    from emollm.evaluation.calibration import distribution_scores

    have = [i for i, row in enumerate(rows) if gold_distributions.get(row["id"])]
    if not have:
        return None
    q = np.array(
        [[gold_distributions[rows[i]["id"]].get(lab, 0.0) for lab in label_set.labels] for i in have]
    )
    return distribution_scores(probabilities[have], q)


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
        *_probability_lines(summary),
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


def _probability_lines(summary: dict) -> list[str]:
    """The report's section on the probabilities (score mode); nothing in generate mode."""
    calibration, m = summary.get("calibration"), summary["metrics"]
    if not calibration:
        return []
    scores = (
        f"ECE {_pct(m['ece'])}% ({calibration['n_bins']} bins), Brier {m['brier']:.4f}, NLL {m['nll']:.4f}"
    )
    lines = ["## Probabilities", ""]
    if calibration["temperature"] != 1:
        before = calibration["unscaled"]
        lines.append(
            f"With temperature {calibration['temperature']:.3g} ({calibration['temperature_source']}): "
            f"{scores}; "
            f"unscaled: ECE {_pct(before['ece'])}%, Brier {before['brier']:.4f}, NLL {before['nll']:.4f}."
        )
    else:
        lines.append(f"{scores}.")
    lines += [
        "",
        "Temperature scaling fitted on these utterances would use "
        f"T = {calibration['fitted_temperature']:.3g} (fit it on a dev split and apply it to another with "
        "`--temperature-scaling`). Reliability diagram: `reliability.png`.",
        "",
    ]
    dist = summary.get("distribution")
    if dist:
        r2 = "–" if dist["r2"] is None else f"{dist['r2']:.3f}"
        lines += [
            f"Against the gold label distributions of {dist['n']} utterances: Bhattacharyya coefficient "
            f"{dist['bhattacharyya']:.3f}, Jensen-Shannon divergence {dist['js_divergence']:.3f} (base 2), "
            f"R^2 {r2}.",
            "",
        ]
    return lines


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"
