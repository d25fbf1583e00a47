"""How far to trust score-mode probabilities: calibration, gold label distributions, temperature scaling.

Every score-mode evaluation reports these next to the label metrics (:mod:`emollm.evaluation.metrics`
holds ``ece``, ``brier`` and ``nll``; the harness adds the rest to ``metrics.json``). Probabilities are
per utterance over the labels of the set, in set order; gold labels are their positions ``0 .. k-1``.

- **ECE** (expected calibration error, Guo et al., 2017): the predictions' confidences (the probability of
  the predicted label, in score mode the top-1 probability) go into 15 equal-width bins, ``(b/15, (b+1)/15]``
  (a confidence of 0 into the first); ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``. A prediction that
  named no label (a parse failure) has no confidence and is left out.
- **Brier score**, multi-class form (Brier, 1950): ``mean_i sum_c (p_ic - y_ic)^2`` with ``y`` the one-hot
  gold label; 0 is perfect, 2 the worst, ``1 - 1/k`` the uniform guess. Some papers report the binary form
  on the top-1 label instead; this is not that.
- **NLL**: ``mean_i -ln p_i(gold)``, each probability clipped at :data:`PROB_FLOOR` (1e-12) so one zero
  costs 27.6 nats rather than infinity.

Where utterances have a gold label *distribution* (IEMOCAP's annotator votes, a manifest's ``distribution``
column; see :func:`gold_distribution`), :func:`distribution_scores` compares it with the predicted one, as
work on ambiguous emotions (AmbER^2-style soft-label evaluation) does: the mean Bhattacharyya coefficient
``sum_c sqrt(p_c q_c)`` (1: the same distribution), the mean Jensen-Shannon divergence with base-2 logs (0:
the same, 1: disjoint) and ``R^2 = 1 - SS_res / SS_tot`` over all utterance x label cells, ``SS_res =
sum (p - q)^2`` and ``SS_tot = sum (q - mean q)^2`` (the mean over all cells, 1/k): 1 is perfect, 0 is no
better than predicting the mean, and it can be negative.

**Temperature scaling** (Guo et al., 2017) is the standard fix for over- or under-confidence: the label
log-probabilities are divided by one temperature ``T`` before the softmax (:func:`apply_temperature`);
``T > 1`` softens them. It never changes the top-1 label, so WA, UA and F1 stay as they are.
:func:`fit_temperature` picks the ``T`` that minimises the NLL on a development split; the harness reports
that ``fitted_temperature`` for every score-mode run, ``--save-temperature`` writes it into a checkpoint
folder (:data:`TEMPERATURE_FILE`) and ``--temperature-scaling`` applies one to another run's scores.

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
>>> gold = np.array([0, 1, 0])
>>> round(expected_calibration_error(probs, gold), 4)  # one per bin: (0.1 + 0.8 + 0.4) / 3
0.4333
>>> round(brier_score(probs, gold), 4)  # (0.02 + 1.28 + 0.32) / 3
0.54
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emollm.errors import ConfigError, DataError
from emollm.io import atomic_path, write_text_atomic

logger = logging.getLogger(__name__)

N_BINS = 15
"""Equal-width confidence bins of the ECE and the reliability diagram."""

PROB_FLOOR = 1e-12
"""Probabilities are clipped at this before the log of the NLL."""

TEMPERATURE_FILE = "temperature.json"
"""A checkpoint's fitted temperature, beside its ``emollm_config.json`` (see :func:`save_temperature`)."""

TEMPERATURE_BOUNDS = (0.01, 100.0)
"""The range :func:`fit_temperature` searches."""

DISTRIBUTION_METRICS = ("bhattacharyya", "js_divergence", "r2")
"""The keys of :func:`distribution_scores` beside ``n``."""

_CHUNK = 200  # resamples drawn at once, as emollm.evaluation.bootstrap draws them


# --------------------------------------------------------------------------------------- calibration


def reliability_bins(
    probabilities: Any,
    gold: Any,
    *,
    predicted: Any = None,
    weights: Any = None,
    n_bins: int = N_BINS,
) -> list[dict]:
    """The predictions sorted into equal-width confidence bins: what the ECE and the diagram are made of.

    Args:
        probabilities: ``(n, k)``, rows summing to 1, columns in label-set order.
        gold: ``(n,)`` gold label positions ``0 .. k-1``.
        predicted: ``(n,)`` predicted positions, ``k`` (or any value outside ``0 .. k-1``) for a parse
            failure, which is left out; default: the top-1 label of each row (ties: the first).
        weights: ``(n,)`` example weights (default 1 each).
        n_bins: Number of bins over ``[0, 1]``.

    Returns:
        One dict per bin, lowest first: ``lower``, ``upper``, ``count`` (summed weight), ``accuracy`` and
        ``confidence`` (means over the bin; None for an empty bin).

    >>> bins = reliability_bins([[0.9, 0.1], [0.1, 0.9]], [0, 0], n_bins=5)  # both 90% sure, one right
    >>> [(b["count"], b["accuracy"]) for b in bins if b["count"]]
    [(2.0, 0.5)]
    """
    count, correct, confidence, edges = _binned(probabilities, gold, predicted, weights, n_bins)
    out = []
    for b in range(n_bins):
        filled = count[b] > 0
        out.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": float(count[b]),
                "accuracy": float(correct[b] / count[b]) if filled else None,
                "confidence": float(confidence[b] / count[b]) if filled else None,
            }
        )
    return out


def expected_calibration_error(
    probabilities: Any,
    gold: Any,
    *,
    predicted: Any = None,
    weights: Any = None,
    n_bins: int = N_BINS,
) -> float | None:
    """ECE: ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over equal-width confidence bins (Guo et al., 2017).

    Arguments as in :func:`reliability_bins`. Returns None when no prediction named a label.

    >>> round(expected_calibration_error([[0.7, 0.3], [0.7, 0.3]], [0, 1]), 4)  # 70% sure, 50% right
    0.2
    """
    count, correct, confidence, _ = _binned(probabilities, gold, predicted, weights, n_bins)
    total = count.sum()
    return float(np.abs(correct - confidence).sum() / total) if total > 0 else None


def brier_score(probabilities: Any, gold: Any, *, weights: Any = None) -> float:
    """Multi-class Brier score: ``mean_i sum_c (p_ic - y_ic)^2``, in ``[0, 2]``.

    >>> brier_score([[0.5, 0.5]], [0])
    0.5
    """
    probs, gold_idx, w = _arrays(probabilities, gold, weights)
    onehot = np.eye(probs.shape[1])[gold_idx]
    return float(np.average(((probs - onehot) ** 2).sum(axis=1), weights=w))


def negative_log_likelihood(probabilities: Any, gold: Any, *, weights: Any = None) -> float:
    """``mean_i -ln max(p_i(gold), 1e-12)`` in nats.

    >>> round(negative_log_likelihood([[0.25, 0.75], [1.0, 0.0]], [1, 1]), 4)  # (0.2877 + 27.631) / 2
    13.9594
    """
    probs, gold_idx, w = _arrays(probabilities, gold, weights)
    true = probs[np.arange(len(gold_idx)), gold_idx]
    return float(np.average(-np.log(np.maximum(true, PROB_FLOOR)), weights=w))


def plot_reliability_diagram(
    bins: Sequence[Mapping], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Draw a reliability diagram and save it as a PNG (atomically, like the confusion matrix).

    Top: the accuracy of each confidence bin as a bar, the bin's mean confidence as a marker, and the
    diagonal of perfect calibration; bottom: how many predictions fell into each bin.

    Args:
        bins: :func:`reliability_bins`'s result (or ``metrics.json``'s ``calibration.bins``).
        path: Where to write the PNG.
        title: Figure title; "Reliability" by default; n and the ECE go on a second line.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = sum(b["count"] for b in bins)
    filled = [b for b in bins if b["count"] > 0]
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in filled) / n if n else None
    title = (title or "Reliability") + (f"\nn={n:.0f}, ECE {100 * ece:.1f}%" if ece is not None else "\nn=0")
    lefts = [b["lower"] for b in bins]
    widths = [b["upper"] - b["lower"] for b in bins]

    fig = Figure(figsize=(6.5, 6.0), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    top.bar(lefts, [b["accuracy"] or 0.0 for b in bins], width=widths, align="edge", color="#4C72B0",
            edgecolor="white", label="accuracy of the bin")  # fmt: skip
    top.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="#DD8452",
             markersize=4, clip_on=False, label="(mean confidence, accuracy)")  # fmt: skip
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title, fontsize=10)
    counts = [b["count"] for b in bins]
    bottom.bar(lefts, counts, width=widths, align="edge", color="grey", edgecolor="white")
    for left, width, c in zip(lefts, widths, counts):
        if c:
            bottom.text(left + width / 2, c, f"{c:.0f}", ha="center", va="bottom", fontsize=7)
    bottom.set_ylim(0, max(max(counts, default=0), 1) * 1.3)
    bottom.set_xlabel(f"confidence: probability of the predicted label ({len(bins)} bins)")
    bottom.set_ylabel("predictions")

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# ---------------------------------------------------------------------------- gold label distributions


def distribution_scores(probabilities: Any, gold_distributions: Any) -> dict:
    """Predicted against gold label distributions: Bhattacharyya coefficient, JS divergence and R^2.

    Args:
        probabilities: ``(n, k)`` predicted distributions.
        gold_distributions: ``(n, k)`` gold distributions (e.g. annotator vote shares), same label order.

    Returns:
        ``{"n", "bhattacharyya", "js_divergence", "r2"}``: the means over utterances of
        ``sum_c sqrt(p_c q_c)`` and of the base-2 Jensen-Shannon divergence (in [0, 1]), and
        ``1 - SS_res / SS_tot`` over all cells (None when every gold cell is the same, e.g. all uniform).

    Raises:
        DataError: the two arrays differ in shape.

    >>> scores = distribution_scores([[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]])
    >>> scores["bhattacharyya"], scores["js_divergence"], scores["r2"]
    (0.5, 0.5, -3.0)
    """
    p = np.asarray(probabilities, dtype=np.float64)
    q = np.asarray(gold_distributions, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2 or not len(p):
        raise DataError(
            f"predicted and gold distributions must both have shape (n, k) with n >= 1, got {p.shape} and "
            f"{q.shape}"
        )
    parts = _distribution_parts(p, q)
    return {"n": len(p), **{m: _distribution_value(m, parts) for m in DISTRIBUTION_METRICS}}


def gold_distribution(utterance, label_set) -> dict[str, float] | None:
    """An utterance's gold label distribution over ``label_set`` (every label, in set order), or None.

    Read from ``utterance.label_distribution`` (IEMOCAP's annotator votes), else from a manifest column
    ``distribution`` (or ``label_distribution``), which the manifest reader keeps in ``meta``: a JSON object
    (or its text in a CSV cell) label -> share or vote count. Keys are matched to the set's labels as written,
    else through :func:`emollm.labels.normalize_label` (``"excited"`` counts as iemocap4's happy); shares of
    keys that name no label of the set are left out and the rest renormalised, as IEMOCAP's votes for other
    categories are. None when there is no distribution or nothing of it names a label of the set.

    Raises:
        DataError: a distribution that is not an object of non-negative numbers.

    >>> from emollm.data import Utterance
    >>> from emollm.labels import get_label_set
    >>> votes = '{"excited": 2, "neutral": 1, "bored": 1}'  # a CSV cell; "bored" is not in iemocap4
    >>> u = Utterance(id="a", label="happy", meta={"distribution": votes})
    >>> gold_distribution(u, get_label_set("iemocap4"))
    {'neutral': 0.3333333333333333, 'happy': 0.6666666666666666, 'sad': 0.0, 'angry': 0.0}
    """
    from emollm.labels import normalize_label

    raw = utterance.label_distribution
    if raw is None:
        meta = utterance.meta or {}
        raw = meta.get("distribution", meta.get("label_distribution"))
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise DataError(f"utterance {utterance.id!r}: distribution {raw!r} is not JSON: {exc}") from None
    if not isinstance(raw, Mapping) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in raw.values()
    ):
        raise DataError(
            f"utterance {utterance.id!r}: a label distribution must be an object label -> non-negative "
            f'share, e.g. {{"happy": 0.75, "neutral": 0.25}}; got {raw!r}'
        )
    shares = dict.fromkeys(label_set.labels, 0.0)
    for key, value in raw.items():
        label = key if key in shares else normalize_label(str(key), label_set)
        if label is not None:
            shares[label] += float(value)
    total = sum(shares.values())
    if total <= 0:
        return None
    return {label: share / total for label, share in shares.items()}


# -------------------------------------------------------------------------------- temperature scaling


def apply_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """``softmax(ln p / T)`` row by row: the distributions temperature ``T`` gives (``T = 1``: unchanged).

    Works on probabilities after contextual calibration as well: ``ln p`` is the label scores up to a
    constant per row, which the softmax ignores.

    >>> apply_temperature([[0.8, 0.2]], 2.0).round(4).tolist()  # sqrt(4) : sqrt(1)
    [[0.6667, 0.3333]]
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if not temperature > 0:
        raise ConfigError(f"a temperature must be > 0, got {temperature!r}")
    if temperature == 1:
        return probs
    return _softmax(_log(probs) / temperature)


def fit_temperature(scores: Any, gold: Any, *, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature that minimises the NLL of ``softmax(scores / T)`` on ``gold`` (Guo et al., 2017).

    A bounded one-dimensional search over ``ln T`` (scipy's ``minimize_scalar``, deterministic); the NLL is
    convex in ``1 / T``, so the minimum found is the only one. Fit it on a development split, never on the
    split it is then scored on.

    Args:
        scores: ``(n, k)`` label logits or log-probabilities (any constant per row), finite. From stored
            probabilities: ``np.log(probabilities)`` (zeros clipped to the smallest float).
        gold: ``(n,)`` gold label positions.
        bounds: The range searched; a result at a bound (e.g. data the scores separate perfectly, which
            wants ``T -> 0``) is logged.

    Returns:
        ``T`` as a float.

    Raises:
        DataError: scores that are not finite or not ``(n, k)``, or gold positions out of range.

    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(0, 3, size=(20000, 4))
    >>> drawn_at_2 = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2.0)
    >>> gold = (drawn_at_2.cumsum(1) < rng.random((20000, 1))).sum(1)  # labels drawn at T = 2
    >>> round(fit_temperature(logits, gold), 2)
    2.04
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z, gold_idx, _ = _arrays(scores, gold, None, probabilities=False)
    if not np.all(np.isfinite(z)):
        raise DataError("scores must be finite; clip zero probabilities before the log")
    low, high = bounds
    if not 0 < low < high:
        raise ConfigError(f"bounds must be 0 < low < high, got {bounds}")
    true = z[np.arange(len(gold_idx)), gold_idx]

    def nll(log_t: float) -> float:
        beta = math.exp(-log_t)
        return float(np.mean(logsumexp(beta * z, axis=1) - beta * true))

    found = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded",
                            options={"xatol": 1e-7})  # fmt: skip
    temperature = math.exp(found.x)
    if min(abs(found.x - math.log(low)), abs(found.x - math.log(high))) < 1e-3:
        logger.warning("fitted temperature %.4g is at the edge of the range searched %s", temperature, bounds)
    return temperature


def save_temperature(folder: str | os.PathLike, temperature: float, **fitted_on: Any) -> Path:
    """Write ``temperature`` into ``folder/temperature.json`` (a checkpoint folder), atomically.

    ``fitted_on`` records where it came from (data, split, n, the NLL before and after); it is never read
    back. Returns the file's path.
    """
    path = Path(folder).expanduser() / TEMPERATURE_FILE
    write_text_atomic(path, json.dumps({"temperature": temperature, "fitted_on": fitted_on}, indent=2) + "\n")
    return path


def load_temperature(option: str | float | None, model: str | os.PathLike | None = None) -> tuple[float, str]:
    """The temperature an evaluation applies, and where it came from: ``(T, source)``.

    Args:
        option: ``None``/``"none"``: 1 (no scaling); a positive number; ``"checkpoint"``: the
            :data:`TEMPERATURE_FILE` in the ``model`` folder; or a path: an evaluation folder (or its
            ``metrics.json``: its ``fitted_temperature``, e.g. a dev run's), a checkpoint folder holding
            :data:`TEMPERATURE_FILE`, or that file itself.
        model: The evaluated model's folder, for ``"checkpoint"``.

    Raises:
        ConfigError: a non-positive number, a missing file, or a file that holds no temperature.
    """
    if option is None or (isinstance(option, str) and option.strip().lower() in ("none", "off", "")):
        return 1.0, "none"
    try:
        value = float(option)
    except (TypeError, ValueError):
        value = None
    if value is not None:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"temperature_scaling is {option!r}; a temperature must be a number > 0")
        return value, "given"
    if option == "checkpoint":
        if model is None or not (Path(model).expanduser() / TEMPERATURE_FILE).is_file():
            raise ConfigError(
                f"temperature_scaling is 'checkpoint', but the model {str(model)!r} has no "
                f"{TEMPERATURE_FILE}; fit one with `emollm evaluate --model CHECKPOINT --split dev "
                "--save-temperature`"
            )
        option = Path(model).expanduser() / TEMPERATURE_FILE
    path = Path(option).expanduser()
    if path.is_dir():
        path = path / TEMPERATURE_FILE if (path / TEMPERATURE_FILE).is_file() else path / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"temperature_scaling is {str(option)!r}: cannot read {path} ({exc}); accepted: none, a number "
            "> 0, checkpoint, an evaluation folder, or a checkpoint folder (or file) with temperature.json"
        ) from None
    found = data.get("temperature") if isinstance(data, dict) else None
    if found is None and isinstance(data, dict):  # an evaluation's metrics.json
        found = (data.get("calibration") or {}).get("fitted_temperature")
    if not isinstance(found, (int, float)) or not found > 0:
        raise ConfigError(f"{path} holds no fitted temperature (a score-mode run's metrics.json has one)")
    return float(found), str(path)


# -------------------------------------------------------------------------- comparing two runs (paired)


def compare_calibration(
    folder_a: str | os.PathLike,
    folder_b: str | os.PathLike,
    rows_a: Mapping[str, dict],
    rows_b: Mapping[str, dict],
    shared: Sequence[str],
    labels: Sequence[str],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict | None:
    """Two runs' probabilities on the same utterances, compared by paired bootstrap (``emollm compare``).

    As :func:`~emollm.evaluation.bootstrap.paired_bootstrap` does for WA, UA and F1: ECE, Brier and NLL,
    and, where rows carry ``gold_distribution``, the distribution metrics.

    Each run's probabilities are scaled by the temperature its ``metrics.json`` applied (1 when none). The
    resamples are drawn as :mod:`~emollm.evaluation.bootstrap` draws them (the same ``seed`` gives the same
    resamples); the distribution metrics resample only the shared utterances with a gold distribution.

    Returns:
        None unless every shared row of both runs has a ``distribution`` (score mode); else ``{"n",
        "n_distribution", "temperature_a", "temperature_b", "metrics"}``, ``metrics`` a metric -> ``{"a",
        "b", "diff", "low", "high", "p"}`` dict like :class:`~emollm.evaluation.bootstrap.PairedResult`'s.

    Raises:
        ConfigError: ``n_resamples`` or ``level`` out of range.
    """
    if not all(
        isinstance(rows.get(u, {}).get("distribution"), dict) for rows in (rows_a, rows_b) for u in shared
    ):
        return None
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index[rows_a[u]["gold"]] for u in shared])
    temperatures = [_applied_temperature(folder) for folder in (folder_a, folder_b)]

    def probabilities(rows, ids, temperature):
        probs = np.array([[rows[u]["distribution"][label] for label in labels] for u in ids], dtype=float)
        return apply_temperature(probs / probs.sum(axis=1, keepdims=True), temperature)

    groups = [
        (
            ("ece", "brier", "nll"),
            len(shared),
            _calibration_value,
            [
                _calibration_parts(
                    probabilities(rows, shared, t),
                    gold,
                    np.array([index.get(rows[u]["label"], k) for u in shared]),
                )
                for rows, t in zip((rows_a, rows_b), temperatures)
            ],
        )
    ]
    with_dist = [u for u in shared if _row_gold_distribution(rows_a[u], rows_b[u], labels)]
    if with_dist:
        q = np.array([_row_gold_distribution(rows_a[u], rows_b[u], labels) for u in with_dist])
        parts = [
            _distribution_parts(probabilities(rows, with_dist, t), q)
            for rows, t in zip((rows_a, rows_b), temperatures)
        ]
        groups.append((DISTRIBUTION_METRICS, len(with_dist), _distribution_value, parts))

    metrics = {}
    for names, n, value, (part_a, part_b) in groups:
        diffs: dict[str, list] = {m: [] for m in names}
        for idx in _resamples(n, n_resamples, level, seed):
            for m in names:
                diffs[m].append(value(m, part_b, idx) - value(m, part_a, idx))
        for m in names:
            a, b = value(m, part_a), value(m, part_b)
            if a is None or b is None:
                continue
            d = np.concatenate(diffs[m])
            d = d[np.isfinite(d)]  # a resample with no spread in the gold cells has no R^2
            low, high = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
            p = min(1.0, 2 * (min(int(np.sum(d <= 0)), int(np.sum(d >= 0))) + 1) / (len(d) + 1))
            metrics[m] = {"a": a, "b": b, "diff": b - a, "low": float(low), "high": float(high), "p": p}
    return {
        "n": len(shared),
        "n_distribution": len(with_dist),
        "temperature_a": temperatures[0],
        "temperature_b": temperatures[1],
        "metrics": metrics,
    }


def calibration_comparison_markdown(comparison: dict, level: float = 0.95) -> str:
    """A table of :func:`compare_calibration`'s result (values as they are, not percentages)."""
    lower_is_better = {"ece", "brier", "nll", "js_divergence"}
    scaled = [
        f"{name} scaled by T={t:.3g}"
        for name, t in (("A", comparison["temperature_a"]), ("B", comparison["temperature_b"]))
        if t != 1
    ]
    lines = [
        f"Probabilities ({comparison['n']} utterances"
        + (f"; gold distributions for {comparison['n_distribution']}" if comparison["n_distribution"] else "")
        + (f"; {', '.join(scaled)}" if scaled else "")
        + "):",
        "",
        f"| metric | A | B | B - A | {round(100 * level)}% interval | p | better |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for name, r in comparison["metrics"].items():
        lines.append(
            f"| {name} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
            f"[{r['low']:+.4f}, {r['high']:+.4f}] | {r['p']:.3f} | "
            f"{'lower' if name in lower_is_better else 'higher'} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- helpers


def _arrays(values: Any, gold: Any, weights: Any, *, probabilities: bool = True):
    array = np.asarray(values, dtype=np.float64)
    gold_idx = np.asarray(gold, dtype=np.intp).reshape(-1)
    what = "probabilities" if probabilities else "scores"
    if array.ndim != 2 or array.shape[0] != len(gold_idx) or not len(gold_idx):
        raise DataError(
            f"{what} must have shape (n, k) with one row per gold label ({len(gold_idx)}), got {array.shape}"
        )
    if np.any((gold_idx < 0) | (gold_idx >= array.shape[1])):
        raise DataError(f"gold label positions must be in 0 .. {array.shape[1] - 1}")
    w = np.ones(len(gold_idx)) if weights is None else np.asarray(weights, dtype=np.float64)
    return array, gold_idx, w


def _binned(probabilities, gold, predicted, weights, n_bins):
    """Per bin: summed weight, weight of right predictions, summed confidence; and the bin edges."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    probs, gold_idx, w = _arrays(probabilities, gold, weights)
    parts = _calibration_parts(probs, gold_idx, predicted, n_bins=n_bins)
    keep = parts["named"] * w
    count = np.bincount(parts["bin"], weights=keep, minlength=n_bins)
    correct = np.bincount(parts["bin"], weights=keep * parts["correct"], minlength=n_bins)
    confidence = np.bincount(parts["bin"], weights=keep * parts["confidence"], minlength=n_bins)
    return count, correct, confidence, np.linspace(0.0, 1.0, n_bins + 1)


def _calibration_parts(probs: np.ndarray, gold_idx: np.ndarray, predicted, *, n_bins: int = N_BINS) -> dict:
    """Per-utterance pieces the calibration metrics are means or binned sums of."""
    n, k = probs.shape
    pred = np.argmax(probs, axis=1) if predicted is None else np.asarray(predicted, dtype=np.intp)
    named = (pred >= 0) & (pred < k)  # a parse failure has no confidence
    safe = np.where(named, pred, 0)
    confidence = np.where(named, probs[np.arange(n), safe], 0.0)
    onehot = np.eye(k)[gold_idx]
    return {
        "named": named.astype(float),
        "correct": (named & (safe == gold_idx)).astype(float),
        "confidence": confidence,
        # (lower, upper]; the tolerance keeps 0.8 * 15 = 12.000000000000002 in the bin that ends at 0.8
        "bin": np.clip(np.ceil(confidence * n_bins - 1e-9).astype(np.intp) - 1, 0, n_bins - 1),
        "brier": ((probs - onehot) ** 2).sum(axis=1),
        "nll": -np.log(np.maximum(probs[np.arange(n), gold_idx], PROB_FLOOR)),
        "n_bins": n_bins,
    }


def _calibration_value(metric: str, parts: dict, idx: np.ndarray | None = None):
    """A calibration metric on the data (``idx`` None) or on each resample of ``idx`` ``(R, n)``."""
    if idx is None:
        idx = np.arange(len(parts["nll"]))[None]
        single = True
    else:
        single = False
    if metric in ("brier", "nll"):
        values = parts[metric][idx].mean(axis=1)
    else:  # ECE from binned sums, every resample at once: sum_b |sum(correct - confidence)| / n_named
        n_bins = parts["n_bins"]
        offsets = (np.arange(idx.shape[0]) * n_bins)[:, None]
        cells = (parts["bin"][idx] + offsets).ravel()
        gap = (parts["correct"] - parts["confidence"]) * parts["named"]
        sums = np.bincount(cells, weights=gap[idx].ravel(), minlength=idx.shape[0] * n_bins)
        named = parts["named"][idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.abs(sums.reshape(idx.shape[0], n_bins)).sum(axis=1) / named
    if single:
        return float(values[0]) if np.isfinite(values[0]) else None
    return values


def _distribution_parts(p: np.ndarray, q: np.ndarray) -> dict:
    from scipy.spatial.distance import jensenshannon

    return {
        "bhattacharyya": np.sqrt(p * q).sum(axis=1),
        "js_divergence": jensenshannon(p, q, base=2, axis=1) ** 2,  # scipy gives the distance, its root
        "ss_res": ((p - q) ** 2).sum(axis=1),
        "q_sum": q.sum(axis=1),
        "q_sq": (q**2).sum(axis=1),
        "k": q.shape[1],
    }


def _distribution_value(metric: str, parts: dict, idx: np.ndarray | None = None):
    """A distribution metric on the data (``idx`` None) or on each resample of ``idx`` ``(R, n)``."""
    single = idx is None
    if single:
        idx = np.arange(len(parts["ss_res"]))[None]
    if metric in ("bhattacharyya", "js_divergence"):
        values = parts[metric][idx].mean(axis=1)
    else:  # R^2 = 1 - SS_res / SS_tot, SS_tot = sum q^2 - (sum q)^2 / cells
        cells = idx.shape[1] * parts["k"]
        ss_tot = parts["q_sq"][idx].sum(axis=1) - parts["q_sum"][idx].sum(axis=1) ** 2 / cells
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(ss_tot > 1e-12, 1 - parts["ss_res"][idx].sum(axis=1) / ss_tot, np.nan)
    if single:
        return float(values[0]) if np.isfinite(values[0]) else None
    return values


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(probs, np.finfo(np.float64).tiny))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _resamples(n: int, n_resamples: int, level: float, seed: int):
    """Resampled indices ``(chunk, n)``, drawn as :mod:`emollm.evaluation.bootstrap` draws them."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    rng = np.random.default_rng(seed)
    for start in range(0, int(n_resamples), _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, int(n_resamples) - start), n))


def _applied_temperature(folder) -> float:
    try:
        data = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
        return float((data.get("calibration") or {}).get("temperature") or 1.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 1.0


def _row_gold_distribution(row_a: dict, row_b: dict, labels: Sequence[str]) -> list[float] | None:
    dist = row_a.get("gold_distribution") or row_b.get("gold_distribution")
    if not isinstance(dist, dict):
        return None
    return [float(dist.get(label, 0.0)) for label in labels]
