"""Emotion-recognition metrics: WA, UA, F1, parse failures, confusion matrix; NLL, ECE, Brier score.

The arithmetic is scikit-learn's; this module decides what goes into it. Labels are encoded as their
position in the label set, ``0 .. k-1``, and a parse failure (a completion that named no label, given as
``None``) as the sentinel class ``k``. The sentinel is part of every prediction vector, so a parse failure
is always a wrong answer, but it is never in the ``labels=`` list that recall and F1 are averaged over, so it
is never scored as a class of its own and never mistaken for a real one.

Conventions (the usual ones in speech-emotion-recognition papers):

- **WA** (weighted accuracy) is plain accuracy over all examples.
- **UA** (unweighted accuracy) is the mean over gold classes of that class's recall.
- **weighted F1** weights each class's F1 by its gold support.
- **macro F1** is the unweighted mean of F1 over the classes present in the gold labels.

Label-set classes with no gold example are listed in :attr:`EmotionMetrics.per_class` (support 0) and in the
confusion matrix, but are left out of UA and macro F1: their recall is undefined, and counting them as 0
(or 1) would make the score depend on which classes a test split happens to lack. Predicting such a class is
still an error, charged to the gold class's recall. Undefined precision (a class never predicted) counts as
0 (``zero_division=0``), so a model that never predicts a class scores F1 0 on it.

With probabilities (score mode), the probabilistic scores are defined in :mod:`emollm.evaluation.calibration`:
NLL is the mean ``-ln p(gold)`` with ``p`` clipped at 1e-12, the Brier score its multi-class form
``mean sum_c (p_c - y_c)^2``, and the ECE bins the probability of the *predicted* label (the top-1 label in
score mode) into 15 equal-width bins, leaving parse failures out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from emollm.errors import ConfigError, DataError
from emollm.evaluation.calibration import brier_score, expected_calibration_error, negative_log_likelihood
from emollm.io import atomic_path
from emollm.labels import LabelSet, get_label_set

UNPARSED = "(unparsed)"
"""Name of the confusion-matrix column that counts parse failures (predictions given as None)."""

_PROB_TOLERANCE = 1e-3  # how far a probability row may sum from 1 before it is rejected

LabelsArg = str | LabelSet | Sequence[str]


@dataclass(frozen=True)
class EmotionMetrics:
    """The scores of one set of predictions against gold labels.

    All scores are fractions in [0, 1]; :meth:`to_markdown` shows them as percentages.

    Attributes:
        n: Number of examples (parse failures included).
        wa: Weighted accuracy: share of examples predicted correctly; parse failures are wrong.
        ua: Unweighted accuracy: mean recall over the classes present in the gold labels.
        weighted_f1: F1 per class averaged with gold support as weights.
        macro_f1: F1 per class averaged over the classes present in the gold labels.
        parse_failures: Number of predictions that named no label (given as None).
        parse_failure_rate: ``parse_failures / n``.
        per_class: Label -> ``{"precision", "recall", "f1", "support"}`` for every label of the set, in set
            order; ``support`` is the number of gold examples.
        confusion: Shape ``(k, k + 1)``: rows are gold labels in set order, columns the predicted labels in
            set order and a last column, :data:`UNPARSED`, for parse failures. Integer counts, except for
            the expected matrix of the chance baseline (see :func:`baselines`).
        labels: The label set's labels, in order.
        mean_true_prob: Mean probability given to the gold label, when probabilities were passed.
        nll: Mean negative log-likelihood (natural log) of the gold label, each probability clipped at 1e-12,
            when probabilities were passed.
        ece: Expected calibration error over 15 equal-width bins of the predicted label's probability
            (parse failures left out; None when every prediction is one), when probabilities were passed.
        brier: Multi-class Brier score, ``mean sum_c (p_c - y_c)^2`` in [0, 2], when probabilities were
            passed.
        description: What produced the predictions, e.g. for a baseline; empty for a model.
    """

    n: int
    wa: float
    ua: float
    weighted_f1: float
    macro_f1: float
    parse_failures: int
    parse_failure_rate: float
    per_class: dict[str, dict[str, float]]
    confusion: np.ndarray = field(repr=False)
    labels: tuple[str, ...]
    mean_true_prob: float | None = None
    nll: float | None = None
    ece: float | None = None
    brier: float | None = None
    description: str = ""

    @property
    def confusion_columns(self) -> list[str]:
        """Column names of :attr:`confusion`: the labels, then :data:`UNPARSED`."""
        return [*self.labels, UNPARSED]

    def to_dict(self) -> dict[str, Any]:
        """The metrics as plain Python values, ready for ``json.dump``."""
        confusion = self.confusion.tolist()
        return {
            "n": self.n,
            "wa": self.wa,
            "ua": self.ua,
            "weighted_f1": self.weighted_f1,
            "macro_f1": self.macro_f1,
            "parse_failures": self.parse_failures,
            "parse_failure_rate": self.parse_failure_rate,
            "mean_true_prob": self.mean_true_prob,
            "nll": self.nll,
            "ece": self.ece,
            "brier": self.brier,
            "labels": list(self.labels),
            "per_class": {label: dict(values) for label, values in self.per_class.items()},
            "confusion": confusion,
            "confusion_columns": self.confusion_columns,
            "description": self.description,
        }

    def to_markdown(self, name: str = "model") -> str:
        """A Markdown report: a summary table, a per-class table and the confusion matrix.

        Args:
            name: Row name in the summary table.
        """
        lines = ["| label | precision % | recall % | F1 % | support |", "|---|---:|---:|---:|---:|"]
        absent = False
        for label, values in self.per_class.items():
            support = _format_count(values["support"])
            if values["support"] == 0:
                support += " *"
                absent = True
            lines.append(
                f"| {label} | {_pct(values['precision'])} | {_pct(values['recall'])} | "
                f"{_pct(values['f1'])} | {support} |"
            )
        if absent:
            lines.append("")
            lines.append("\\* no gold example: left out of UA and macro F1.")
        return "\n\n".join(
            [
                summary_markdown({name: self}),
                "\n".join(lines),
                confusion_markdown(self.confusion, self.labels),
            ]
        )


def compute_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: LabelsArg,
    *,
    probabilities: Any = None,
) -> EmotionMetrics:
    """Score predicted emotion labels against gold labels.

    A prediction of None is a parse failure: the model's output named no label. It counts as wrong for WA,
    UA and both F1 scores (it lowers the recall of its gold class), it is counted in the
    :data:`UNPARSED` column of the confusion matrix, and its count and share are reported separately. It is
    never dropped and never counted as a real class.

    UA and macro F1 average over the classes present in ``y_true``; classes of the set with no gold example
    are reported with support 0 but left out of those averages. Undefined precision or recall counts as 0
    (scikit-learn's ``zero_division=0``). See the module docstring for the reasoning.

    Args:
        y_true: Gold labels, each a label of ``labels`` as spelled there.
        y_pred: Predicted labels (labels of ``labels``) or None for a parse failure; same length as
            ``y_true``. Map free text to labels first with :func:`emollm.labels.normalize_label`.
        labels: A label-set name (``"iemocap4"``), a :class:`~emollm.labels.LabelSet` or a list of labels.
        probabilities: Optional array of shape ``(n, k)``: per example, a probability for each label in
            label-set order; each row sums to 1. Adds :attr:`~EmotionMetrics.mean_true_prob`,
            :attr:`~EmotionMetrics.nll`, :attr:`~EmotionMetrics.ece` (over the probability each prediction
            gives its own label, so pass the labels the probabilities pick) and :attr:`~EmotionMetrics.brier`.

    Returns:
        The metrics.

    Raises:
        ConfigError: ``labels`` is not a known label set or a non-empty list of labels.
        DataError: no examples; ``y_true`` and ``y_pred`` differ in length; a gold label is not in the set;
            a prediction is neither a label of the set nor None; ``probabilities`` has the wrong shape, is
            not finite or non-negative, or a row does not sum to 1.

    >>> m = compute_metrics(["happy", "sad", "sad", "angry"], ["happy", "sad", None, "happy"], "iemocap4")
    >>> m.wa, m.ua  # 2 of 4 right; recalls happy 1, sad 1/2, angry 0 (neutral has no gold example)
    (0.5, 0.5)
    >>> m.parse_failures, m.parse_failure_rate
    (1, 0.25)
    >>> m.confusion[2].tolist()  # gold "sad": once "sad", once unparsed
    [0, 0, 1, 0, 1]
    """
    label_set = get_label_set(labels)
    true_idx = _encode(y_true, label_set, name="y_true", allow_none=False)
    pred_idx = _encode(y_pred, label_set, name="y_pred", allow_none=True)
    if len(true_idx) != len(pred_idx):
        raise DataError(
            f"y_true and y_pred must have the same length, got {len(true_idx)} gold labels and "
            f"{len(pred_idx)} predictions"
        )
    probs = None if probabilities is None else _check_probabilities(probabilities, len(true_idx), label_set)
    return _score(true_idx, pred_idx, label_set, probs)


def baselines(
    y_true: Sequence[str],
    labels: LabelsArg,
    train_labels: Sequence[str] | None = None,
) -> dict[str, EmotionMetrics]:
    """Chance and majority-class reference scores, computed like a model's.

    - ``"chance"``: the expected scores of guessing each label uniformly at random. Every gold example is
      scored once against each of the k labels with weight 1/k, so WA and UA are exactly 1/k, the confusion
      matrix holds expected (fractional) counts, and the F1 scores are those of that expected matrix. The
      guess's probabilities are uniform, so ``mean_true_prob`` is 1/k, ``nll`` is log k, ``brier`` is
      1 - 1/k and ``ece`` is 0 (1/k sure, right 1/k of the time).
    - ``"majority"``: always predicting the most frequent label of ``train_labels`` when given (the honest
      baseline), else of ``y_true``; ties go to the label that comes first in the set. The
      ``description`` says which label and where it came from.

    Args:
        y_true: Gold labels of the evaluation set.
        labels: A label-set name, a :class:`~emollm.labels.LabelSet` or a list of labels.
        train_labels: Gold labels of the training set, for the majority class.

    Returns:
        ``{"chance": EmotionMetrics, "majority": EmotionMetrics}``.

    Raises:
        ConfigError: ``labels`` is not a known label set or a non-empty list of labels.
        DataError: no examples, or a gold or training label not in the set.

    >>> b = baselines(["sad", "sad", "happy", "angry"], "iemocap4")
    >>> b["chance"].wa, b["majority"].wa
    (0.25, 0.5)
    >>> b["majority"].description
    "majority class 'sad' (of the evaluation labels)"
    """
    label_set = get_label_set(labels)
    k = len(label_set)
    true_idx = _encode(y_true, label_set, name="y_true", allow_none=False)
    n = len(true_idx)

    chance = _score(
        np.repeat(true_idx, k),
        np.tile(np.arange(k), n),
        label_set,
        np.full((n * k, k), 1.0 / k),
        weights=np.full(n * k, 1.0 / k),
    )
    chance = replace(chance, description=f"uniform random guess over {k} labels (expected scores)")

    if train_labels is not None:
        source_idx = _encode(train_labels, label_set, name="train_labels", allow_none=False)
        source = "training"
    else:
        source_idx, source = true_idx, "evaluation"
    majority_idx = int(np.argmax(np.bincount(source_idx, minlength=k)))  # argmax: first label on ties
    majority = _score(true_idx, np.full(n, majority_idx), label_set, None)
    majority = replace(
        majority,
        description=f"majority class {label_set.labels[majority_idx]!r} (of the {source} labels)",
    )
    return {"chance": chance, "majority": majority}


def summary_markdown(rows: Mapping[str, EmotionMetrics]) -> str:
    """One Markdown table with a row of headline scores per system, e.g. a model next to its baselines.

    Args:
        rows: Row name -> metrics, in display order.

    >>> b = baselines(["sad", "sad", "happy", "angry"], "iemocap4")
    >>> print(summary_markdown({"majority": b["majority"]}))
    | system | n | WA % | UA % | weighted F1 % | macro F1 % | unparsed |
    |---|---:|---:|---:|---:|---:|---:|
    | majority | 4 | 50.00 | 33.33 | 33.33 | 22.22 | 0 (0.00%) |
    """
    with_probs = any(m.mean_true_prob is not None for m in rows.values())
    header = "| system | n | WA % | UA % | weighted F1 % | macro F1 % | unparsed |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if with_probs:
        header += " p(true) % | NLL |"
        rule += "---:|---:|"
    lines = [header, rule]
    for name, m in rows.items():
        line = (
            f"| {name} | {m.n} | {_pct(m.wa)} | {_pct(m.ua)} | {_pct(m.weighted_f1)} | {_pct(m.macro_f1)} | "
            f"{m.parse_failures} ({_pct(m.parse_failure_rate)}%) |"
        )
        if with_probs:
            nll = "–" if m.nll is None else f"{m.nll:.4f}"
            line += f" {_pct(m.mean_true_prob)} | {nll} |"
        lines.append(line)
    return "\n".join(lines)


def confusion_markdown(confusion: Any, labels: LabelsArg) -> str:
    """A confusion matrix as a Markdown table: gold labels down, predicted labels across.

    Args:
        confusion: Shape ``(k, k)`` or ``(k, k + 1)``; in the latter the last column is :data:`UNPARSED`.
        labels: The k labels (a label-set name, a LabelSet or a list), in the matrix's order.

    Raises:
        ConfigError: the matrix's shape does not fit the labels.

    >>> print(confusion_markdown([[3, 1, 0], [0, 2, 1]], ["happy", "sad"]))
    | gold / predicted | happy | sad | (unparsed) |
    |---|---:|---:|---:|
    | happy | 3 | 1 | 0 |
    | sad | 0 | 2 | 1 |
    """
    matrix, names = _matrix_and_labels(confusion, labels)
    columns = list(names) + ([UNPARSED] if matrix.shape[1] == len(names) + 1 else [])
    lines = [
        "| gold / predicted | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, row in zip(names, matrix):
        lines.append(f"| {label} | " + " | ".join(_format_count(value) for value in row) + " |")
    return "\n".join(lines)


def plot_confusion_matrix(
    metrics_or_matrix: EmotionMetrics | Any,
    labels: LabelsArg | None,
    path: str | os.PathLike,
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix and save it as a PNG.

    Uses matplotlib's Agg canvas directly (no pyplot, no display, no global backend change). The file is
    written to a temporary file in the same folder and then moved into place, so a reader never sees a
    half-written image. Missing parent folders are created.

    Args:
        metrics_or_matrix: An :class:`EmotionMetrics`, or a count matrix of shape ``(k, k)`` or
            ``(k, k + 1)`` (last column: parse failures).
        labels: The k labels; may be None when ``metrics_or_matrix`` is an EmotionMetrics.
        path: Where to write the PNG.
        normalize: Colour and label each cell by its share of the gold row (in %), with the count below;
            when False, colour and label by counts.
        title: Figure title; by default "Confusion matrix", plus n, WA and UA when metrics are given.

    Returns:
        The path written, as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: no labels for a bare matrix, or a matrix whose shape does not fit the labels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(metrics_or_matrix, EmotionMetrics):
        metrics = metrics_or_matrix
        if labels is not None and tuple(get_label_set(labels).labels) != metrics.labels:
            raise ConfigError(
                f"labels {list(get_label_set(labels).labels)} do not match the metrics' labels "
                f"{list(metrics.labels)}; pass labels=None to use the metrics' own"
            )
        matrix, names = _matrix_and_labels(metrics.confusion, metrics.labels)
        if title is None:
            title = f"Confusion matrix (n={metrics.n}, WA {_pct(metrics.wa)}%, UA {_pct(metrics.ua)}%)"
    else:
        if labels is None:
            raise ConfigError("plot_confusion_matrix needs labels when given a bare matrix")
        matrix, names = _matrix_and_labels(metrics_or_matrix, labels)
    title = "Confusion matrix" if title is None else title
    columns = list(names) + ([UNPARSED] if matrix.shape[1] == len(names) + 1 else [])

    row_sums = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
    shown = shares if normalize else matrix.astype(float)
    vmax = 1.0 if normalize else max(float(matrix.max()), 1.0)

    k, c = matrix.shape
    fig = Figure(figsize=(2.5 + 0.85 * c, 1.8 + 0.7 * k), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, label="share of gold row" if normalize else "count")
    for i in range(k):
        for j in range(c):
            count = _format_count(matrix[i, j])
            text = f"{100 * shares[i, j]:.0f}%\n({count})" if normalize else count
            colour = "white" if shown[i, j] > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(c), columns, rotation=45, ha="right")
    row_names = [f"{name} ({_format_count(total)})" for name, total in zip(names, row_sums[:, 0])]
    ax.set_yticks(range(k), row_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold (number of examples)")
    ax.set_title(title, fontsize=10)

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# --------------------------------------------------------------------------------------------- helpers


def _encode(values: Iterable[Any], label_set: LabelSet, *, name: str, allow_none: bool) -> np.ndarray:
    """Labels -> positions in the set; None -> k (the parse-failure sentinel) when allowed."""
    if isinstance(values, str):
        raise DataError(f"{name} must be a sequence of labels, got a single string {values!r}")
    values = list(values)
    if not values:
        raise DataError(f"{name} is empty: metrics need at least one example")
    index = {label: i for i, label in enumerate(label_set.labels)}
    k = len(label_set)
    codes = np.empty(len(values), dtype=np.intp)
    bad: dict[str, None] = {}
    for i, value in enumerate(values):
        if value is None and allow_none:
            codes[i] = k
        elif isinstance(value, str) and value in index:
            codes[i] = index[value]
        else:
            bad.setdefault(repr(value))
    if bad:
        shown = list(bad)[:5]
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        hint = (
            "; None marks a parse failure, and emollm.labels.normalize_label maps free text to labels"
            if allow_none
            else ""
        )
        raise DataError(
            f"{name} holds values that are not labels of {label_set.name!r}: {', '.join(shown)}{more}; "
            f"accepted: {list(label_set.labels)}{hint}"
        )
    return codes


def _check_probabilities(probabilities: Any, n: int, label_set: LabelSet) -> np.ndarray:
    k = len(label_set)
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"probabilities must be a numeric array of shape ({n}, {k}): {err}") from None
    if probs.shape != (n, k):
        raise DataError(
            f"probabilities must have shape (n_examples, n_labels) = ({n}, {k}) with columns in the order "
            f"{list(label_set.labels)}, got shape {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise DataError("probabilities must be finite and non-negative")
    sums = probs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _PROB_TOLERANCE)
    if off.size:
        raise DataError(
            f"each row of probabilities must sum to 1, but {off.size} rows do not "
            f"(row {off[0]} sums to {sums[off[0]]:.4f}); apply a softmax over the labels first"
        )
    return probs / sums[:, None]


def _score(
    true_idx: np.ndarray,
    pred_idx: np.ndarray,
    label_set: LabelSet,
    probs: np.ndarray | None,
    *,
    weights: np.ndarray | None = None,
) -> EmotionMetrics:
    """The metrics from encoded labels (sentinel k = parse failure), optionally weighted per example."""
    k = len(label_set)
    all_classes = list(range(k))
    gold_classes = sorted(set(true_idx.tolist()))  # UA and macro F1 average over these only

    wa = accuracy_score(true_idx, pred_idx, sample_weight=weights)
    ua = recall_score(
        true_idx, pred_idx, labels=gold_classes, average="macro", sample_weight=weights, zero_division=0
    )
    weighted_f1 = f1_score(
        true_idx, pred_idx, labels=all_classes, average="weighted", sample_weight=weights, zero_division=0
    )
    macro_f1 = f1_score(
        true_idx, pred_idx, labels=gold_classes, average="macro", sample_weight=weights, zero_division=0
    )
    precision, recall, f1, _ = precision_recall_fscore_support(
        true_idx, pred_idx, labels=all_classes, average=None, sample_weight=weights, zero_division=0
    )
    # Rows for classes 0..k-1 only (no gold example is ever the sentinel); columns include the sentinel.
    confusion = confusion_matrix(true_idx, pred_idx, labels=[*all_classes, k], sample_weight=weights)[:k]
    support = confusion.sum(axis=1)
    if weights is None:
        confusion = confusion.astype(np.int64)

    n = int(round(float(confusion.sum())))
    failures = int(round(float(confusion[:, k].sum())))
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(round(float(support[i]))),
        }
        for i, label in enumerate(label_set.labels)
    }

    mean_true_prob = nll = ece = brier = None
    if probs is not None:
        w = np.ones(len(true_idx)) if weights is None else weights
        mean_true_prob = float(np.average(probs[np.arange(len(true_idx)), true_idx], weights=w))
        nll = negative_log_likelihood(probs, true_idx, weights=w)
        brier = brier_score(probs, true_idx, weights=w)
        ece = expected_calibration_error(
            probs, true_idx, predicted=pred_idx, weights=w
        )  # sentinel k: left out

    return EmotionMetrics(
        n=n,
        wa=float(wa),
        ua=float(ua),
        weighted_f1=float(weighted_f1),
        macro_f1=float(macro_f1),
        parse_failures=failures,
        parse_failure_rate=failures / n,
        per_class=per_class,
        confusion=confusion,
        labels=tuple(label_set.labels),
        mean_true_prob=mean_true_prob,
        nll=nll,
        ece=ece,
        brier=brier,
    )


def _matrix_and_labels(confusion: Any, labels: LabelsArg) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(get_label_set(labels).labels)
    matrix = np.asarray(confusion)
    k = len(names)
    if matrix.ndim != 2 or matrix.shape[0] != k or matrix.shape[1] not in (k, k + 1):
        raise ConfigError(
            f"a confusion matrix for {k} labels must have shape ({k}, {k}) or ({k}, {k + 1}), "
            f"got shape {matrix.shape}"
        )
    return matrix, names


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _format_count(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.2f}"
