"""How sure is a score? Bootstrap intervals for one run and paired comparisons of two runs.

A test set of 240 clips moves WA by 0.4 points per clip, so a difference of two or three points between two
models (or before and after GRPO) may be noise. Both functions resample the *utterances* with replacement
(the percentile bootstrap, Efron & Tibshirani 1993) and recompute the metrics on every resample with the
conventions of :mod:`emollm.evaluation.metrics`: parse failures are wrong answers, UA and macro F1 average
over the gold classes present in the resample, undefined precision or recall counts as 0.

- :func:`bootstrap_ci`: a confidence interval for each metric of one set of predictions.
- :func:`paired_bootstrap`: two sets of predictions on the same utterances (the same resample for both, so
  utterance difficulty cancels out): the difference ``b - a``, its interval and a two-sided p-value,
  ``2 * (min(#(d* <= 0), #(d* >= 0)) + 1) / (B + 1)`` over the ``B`` resampled differences ``d*`` (the
  share of resamples on the other side of zero, doubled; the +1s keep it from being 0, so with 1000
  resamples the smallest p is 0.002). An interval that excludes 0 is a difference at that level.
- :func:`compare_runs`: :func:`paired_bootstrap` on two evaluation folders of the harness.

Resampling utterances treats them as independent; clips of one speaker are not, so with few speakers the
intervals are, if anything, too narrow.

>>> gold = ["happy", "sad"] * 50
>>> a = ["happy"] * 100                                  # half right
>>> b = gold[:80] + ["happy"] * 20                       # 90 right
>>> result = paired_bootstrap(gold, a, b, "iemocap4", n_resamples=500)
>>> round(result["wa"].diff, 2), result["wa"].low > 0, result["wa"].p < 0.01
(0.4, True, True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emollm.errors import ConfigError, DataError
from emollm.labels import get_label_set

METRICS = ("wa", "ua", "weighted_f1", "macro_f1")
"""The metrics resampled, as named in :class:`~emollm.evaluation.metrics.EmotionMetrics`."""

CHUNK = 200  # resamples computed at once (bounds memory on large test sets)


@dataclass(frozen=True)
class PairedResult:
    """One metric of a paired comparison: ``a``, ``b``, ``diff = b - a``, its interval and p-value."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    p: float


def resampled_scores(true_idx: np.ndarray, pred_idx: np.ndarray, k: int, indices: np.ndarray) -> dict:
    """Every metric of :data:`METRICS` on each resample: metric -> ``(resamples,)`` array.

    Args:
        true_idx: Gold classes ``0 .. k-1``, ``(n,)``.
        pred_idx: Predicted classes ``0 .. k``, ``k`` being a parse failure, ``(n,)``.
        k: Number of labels.
        indices: ``(resamples, n)`` example indices; ``np.arange(n)[None]`` scores the data as it is.
    """
    resamples = indices.shape[0]
    codes = true_idx[indices] * (k + 1) + pred_idx[indices]  # cell of the (k, k + 1) confusion matrix
    offsets = (np.arange(resamples) * k * (k + 1))[:, None]
    confusion = np.bincount((codes + offsets).ravel(), minlength=resamples * k * (k + 1))
    confusion = confusion.reshape(resamples, k, k + 1).astype(float)
    support = confusion.sum(axis=2)  # gold count per class
    predicted = confusion[:, :, :k].sum(axis=1)  # predicted count per class (parse failures excluded)
    hits = np.diagonal(confusion[:, :, :k], axis1=1, axis2=2)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, hits / support, 0.0)
        denominator = predicted + support  # 2tp + fp + fn
        f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
    n = support.sum(axis=1)
    classes = present.sum(axis=1)
    return {
        "wa": hits.sum(axis=1) / n,
        "ua": (recall * present).sum(axis=1) / classes,
        "weighted_f1": (f1 * support).sum(axis=1) / n,
        "macro_f1": (f1 * present).sum(axis=1) / classes,
    }


def _encode(y_true, predictions: Sequence[Sequence], labels):
    from emollm.evaluation.metrics import _encode as encode

    label_set = get_label_set(labels)
    true_idx = encode(y_true, label_set, name="y_true", allow_none=False)
    encoded = [encode(p, label_set, name="y_pred", allow_none=True) for p in predictions]
    if any(len(p) != len(true_idx) for p in encoded):
        raise DataError(
            f"predictions must match the gold labels in length ({len(true_idx)}), got "
            f"{[len(p) for p in encoded]}"
        )
    return label_set, true_idx, encoded


def _draws(n: int, n_resamples: int, level: float, seed: int):
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    n_resamples = int(n_resamples)
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, CHUNK):
        yield rng.integers(0, n, size=(min(CHUNK, n_resamples - start), n))


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def bootstrap_ci(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric: metric -> ``(low, high)``, fractions in [0, 1].

    Arguments as in :func:`~emollm.evaluation.metrics.compute_metrics`; ``n_resamples`` resamples of the
    utterances drawn with ``seed``, an interval covering ``level`` of them.

    Raises:
        ConfigError: ``n_resamples`` or ``level`` out of range, or an unknown label set.
        DataError: what :func:`~emollm.evaluation.metrics.compute_metrics` refuses.

    >>> ci = bootstrap_ci(["happy", "sad"] * 50, ["happy"] * 100, "iemocap4", n_resamples=200)
    >>> ci["wa"][0] < 0.5 < ci["wa"][1]
    True
    """
    label_set, true_idx, (pred_idx,) = _encode(y_true, [y_pred], labels)
    k = len(label_set)
    parts = [
        resampled_scores(true_idx, pred_idx, k, idx)
        for idx in _draws(len(true_idx), n_resamples, level, seed)
    ]
    return {m: _interval(np.concatenate([p[m] for p in parts]), level) for m in METRICS}


def paired_bootstrap(
    y_true: Sequence[str],
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    labels,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, PairedResult]:
    """Compare two sets of predictions on the same utterances: metric -> :class:`PairedResult`.

    Both are scored on the same resamples; ``diff`` is ``b - a`` on the data as it is, ``low``/``high`` the
    percentile interval of the resampled differences and ``p`` the two-sided bootstrap p-value (see the
    module docstring).

    Raises:
        ConfigError: ``n_resamples`` or ``level`` out of range, or an unknown label set.
        DataError: the predictions and gold labels differ in length, or hold labels outside the set.
    """
    label_set, true_idx, (a_idx, b_idx) = _encode(y_true, [pred_a, pred_b], labels)
    k = len(label_set)
    whole = np.arange(len(true_idx))[None]
    point_a = resampled_scores(true_idx, a_idx, k, whole)
    point_b = resampled_scores(true_idx, b_idx, k, whole)
    diffs: dict[str, list] = {m: [] for m in METRICS}
    for idx in _draws(len(true_idx), n_resamples, level, seed):
        scores_a = resampled_scores(true_idx, a_idx, k, idx)
        scores_b = resampled_scores(true_idx, b_idx, k, idx)
        for m in METRICS:
            diffs[m].append(scores_b[m] - scores_a[m])
    out = {}
    for m in METRICS:
        d = np.concatenate(diffs[m])
        low, high = _interval(d, level)
        below, above = int(np.sum(d <= 0)), int(np.sum(d >= 0))
        p = min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1))  # never 0: at least 2 / (B + 1)
        a, b = float(point_a[m][0]), float(point_b[m][0])
        out[m] = PairedResult(a=a, b=b, diff=b - a, low=low, high=high, p=p)
    return out


def _load_run(folder: Path) -> tuple[list[str], dict[str, dict]]:
    from emollm.evaluation.runs import read_predictions

    config = folder / "config.json"
    predictions = folder / "predictions.jsonl"
    if not (config.is_file() and predictions.is_file()):
        raise DataError(
            f"{folder} is not an evaluation folder (needs config.json and predictions.jsonl from "
            f"`emollm evaluate`)"
        )
    try:
        labels = json.loads(config.read_text(encoding="utf-8"))["settings"]["labels"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{config} is not a harness config (needs settings.labels): {exc!r}") from exc
    rows = read_predictions(predictions)  # read only: the run may still be writing
    bad = [uid for uid, row in rows.items() if not {"gold", "label"} <= set(row)]
    if bad:
        raise DataError(f"{predictions}: rows without 'gold' and 'label' (e.g. {bad[0]!r})")
    return labels, rows


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """:func:`paired_bootstrap` on two folders of ``emollm evaluate`` (or a recipe's evaluations).

    The utterances both runs predicted are compared (an unfinished run compares on fewer; the count is
    reported). Returns ``{"a", "b", "n", "only_a", "only_b", "level", "n_resamples", "metrics"}`` with
    ``metrics`` a metric -> :class:`PairedResult` dict (as plain dicts).

    Raises:
        DataError: a folder is not an evaluation folder, the runs share no utterance, or a shared utterance
            has different gold labels in the two.
        ConfigError: the runs used different label sets.
    """
    folder_a, folder_b = Path(run_a), Path(run_b)
    labels_a, rows_a = _load_run(folder_a)
    labels_b, rows_b = _load_run(folder_b)
    if labels_a != labels_b:
        raise ConfigError(f"the runs used different label sets: {labels_a} and {labels_b}")
    shared = [uid for uid in rows_a if uid in rows_b]
    if not shared:
        raise DataError(f"{folder_a} and {folder_b} predicted no utterance in common")
    differ = [uid for uid in shared if rows_a[uid]["gold"] != rows_b[uid]["gold"]]
    if differ:
        raise DataError(
            f"{len(differ)} utterances have different gold labels in the two runs (e.g. {differ[0]}: "
            f"{rows_a[differ[0]]['gold']!r} vs {rows_b[differ[0]]['gold']!r}); they are not the same data"
        )
    result = paired_bootstrap(
        [rows_a[u]["gold"] for u in shared],
        [rows_a[u]["label"] for u in shared],
        [rows_b[u]["label"] for u in shared],
        labels_a,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )
    from emollm.evaluation.calibration import compare_calibration

    return {
        "a": str(folder_a),
        "b": str(folder_b),
        "n": len(shared),
        "only_a": len(rows_a) - len(shared),
        "only_b": len(rows_b) - len(shared),
        "level": level,
        "n_resamples": n_resamples,
        "metrics": {m: asdict(r) for m, r in result.items()},
        # score mode: ECE, Brier, NLL (and distribution metrics), None when a run has no probabilities
        "probabilities": compare_calibration(
            folder_a,
            folder_b,
            rows_a,
            rows_b,
            shared,
            labels_a,
            n_resamples=n_resamples,
            level=level,
            seed=seed,
        ),
    }


def comparison_markdown(comparison: dict) -> str:
    """A table of :func:`compare_runs`'s result, in percentage points."""
    level = round(100 * comparison["level"])
    lines = [
        f"A: {comparison['a']}",
        f"B: {comparison['b']}",
        f"{comparison['n']} utterances in both"
        + (
            f" ({comparison['only_a']} only in A, {comparison['only_b']} only in B)"
            if comparison["only_a"] or comparison["only_b"]
            else ""
        )
        + f"; paired bootstrap, {comparison['n_resamples']} resamples",
        "",
        f"| metric | A % | B % | B - A | {level}% interval | p |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, r in comparison["metrics"].items():
        lines.append(
            f"| {name} | {100 * r['a']:.1f} | {100 * r['b']:.1f} | {100 * r['diff']:+.1f} | "
            f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}] | {r['p']:.3f} |"
        )
    if comparison.get("probabilities"):
        from emollm.evaluation.calibration import calibration_comparison_markdown

        lines += [
            "",
            calibration_comparison_markdown(comparison["probabilities"], comparison["level"]),
        ]
    return "\n".join(lines)
