"""Evaluation: metrics (WA, UA, F1, parse failures, confusion matrices)."""

from emollm.evaluation.metrics import (
    UNPARSED,
    EmotionMetrics,
    baselines,
    compute_metrics,
    confusion_markdown,
    plot_confusion_matrix,
    summary_markdown,
)

__all__ = [
    "UNPARSED",
    "EmotionMetrics",
    "baselines",
    "compute_metrics",
    "confusion_markdown",
    "plot_confusion_matrix",
    "summary_markdown",
]
