"""Evaluation: metrics (WA, UA, F1, parse failures, confusion matrices) and the harness (``evaluate``).

The harness loads torch and transformers, so it is imported from :mod:`emollm.evaluation.harness` (or as
``emollm.evaluate``), not here.
"""

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
