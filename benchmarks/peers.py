"""Shared by ``sft_ravdess.py`` and ``sft_meld.py``: the classical peers, the SFT rows and the results file.

Not a benchmark of its own. The peers are what a careful engineer would try first without an LLM:

* :func:`egemaps_peer` (RAVDESS): openSMILE eGeMAPSv02 functionals (88 per clip), each feature z-scored over
  each speaker's own clips (that speaker's statistics, labels never read; dev speakers use their own),
  ``SimpleImputer(median) -> StandardScaler -> LogisticRegression(class_weight="balanced")``.
* :func:`tfidf_peer` (MELD): TF-IDF of word 1-2 grams of the utterance, optionally next to a second TF-IDF of
  the previous context turns, ``LogisticRegression``.

``C`` is chosen by grouped cross-validation on the training split only (RAVDESS: GroupKFold by actor; MELD:
GroupKFold by dialogue), never on dev. :func:`run_recipe` runs the SFT recipe's ``main()``
(:mod:`emollm.recipes.sft`) in this process and reads the metrics its evaluation wrote. :class:`Results` is
the resumable JSON file of a benchmark, in the envelope of ``_common.write_result``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _common import machine, read_result, write_result

from emollm.evaluation.metrics import baselines, compute_metrics

REPO = Path(__file__).resolve().parent.parent
SEED = 0
MAX_ITER = 5000


# -- the results file ----------------------------------------------------------------------------------------


class Results:
    """A benchmark's JSON, rewritten after every row: ``results`` is ``{"facts", "rows": {name: row}, ...}``.

    The file is ``_common.write_result``'s envelope (command, code hash and machine of the last run); a file
    from before the envelope, with ``rows`` at the top, is read too, so an older run resumes. A row is
    skipped on a rerun when it is already there with the same ``settings`` (unless ``overwrite``); a row
    made with other settings is computed again and replaced. Rows not run this time are kept. The envelope's
    ``machine`` is the last write's, so each row also keeps the machine that made it (``row["machine"]``,
    ``_common.machine()`` when the row was added): a file may hold rows from a CPU and from a GPU.

    Args:
        path: The JSON file.
        facts: What the rows were computed on (the splits), written as ``results["facts"]``.
        overwrite: Recompute rows already in the file.
    """

    def __init__(self, path: str | Path, facts: dict, overwrite: bool = False):
        self.path = Path(path)
        old = read_result(self.path) if self.path.is_file() else {}
        self.rows: dict[str, dict] = old.get("rows", {})
        # the summaries an earlier run wrote (a comparison whose run folders are gone is kept, not lost)
        self.summaries: dict = {k: v for k, v in old.items() if k not in ("facts", "rows")}
        self.overwrite = overwrite
        self.facts = facts

    def done(self, name: str, settings: dict) -> bool:
        """Whether row ``name`` was made with ``settings`` already."""
        row = self.rows.get(name)
        if self.overwrite or row is None:
            return False
        return row.get("settings") == json.loads(json.dumps(settings))

    def add(self, name: str, row: dict) -> None:
        """Store (or replace) a row, with this run's machine, and rewrite the file."""
        self.rows[name] = {**row, "machine": machine()}
        self.write()

    def write(self, **extra) -> None:
        """Rewrite the file: the facts, every row and ``extra`` (summaries), in the envelope."""
        write_result(self.path, {"facts": self.facts, "rows": self.rows, **extra})


def metrics_row(metrics, *, settings: dict, seconds: float | None = None, **extra) -> dict:
    """The table's numbers of an :class:`~emollm.evaluation.EmotionMetrics` (full metrics kept too)."""
    return {
        "n": metrics.n,
        "wa": metrics.wa,
        "ua": metrics.ua,
        "weighted_f1": metrics.weighted_f1,
        "macro_f1": metrics.macro_f1,
        "seconds": None if seconds is None else round(seconds, 1),
        "settings": settings,
        **extra,
        "metrics": metrics.to_dict(),
    }


def baseline_rows(gold: Sequence[str], labels: str, train_labels: Sequence[str]) -> dict[str, dict]:
    """Chance (expected uniform guess) and majority class of the training labels, scored on ``gold``."""
    out = {}
    for name, metrics in baselines(list(gold), labels, train_labels=list(train_labels)).items():
        out[name] = {
            "wa": metrics.wa,
            "ua": metrics.ua,
            "weighted_f1": metrics.weighted_f1,
            "macro_f1": metrics.macro_f1,
            "description": metrics.description,
        }
    return out


# -- choosing C ----------------------------------------------------------------------------------------------


def choose_c(
    make_model: Callable[[float], object],
    x,
    y: np.ndarray,
    groups: np.ndarray,
    grid: Sequence[float],
    folds: int,
    score: Callable[[np.ndarray, np.ndarray], float],
) -> tuple[float, dict[str, float]]:
    """``C`` with the best mean ``score`` over GroupKFold folds of the training data (ties: smaller C).

    Args:
        make_model: ``C`` -> an unfitted scikit-learn estimator (a pipeline: everything is refit per fold).
        x: Training inputs (array, sparse matrix or list, indexable by integer arrays).
        y: Training labels.
        groups: Speaker or dialogue of each row; a group never spans two folds.
        grid: Candidate values of C.
        folds: Number of folds.
        score: ``(gold, predicted) -> float``, higher is better.

    Returns:
        The chosen C and the mean score of every C.
    """
    from sklearn.model_selection import GroupKFold

    splits = list(GroupKFold(n_splits=min(folds, len(set(groups)))).split(np.zeros(len(y)), y, groups))
    means = {}
    for c in grid:
        scores = []
        for train_idx, val_idx in splits:
            model = make_model(c).fit(_take(x, train_idx), y[train_idx])
            scores.append(score(y[val_idx], model.predict(_take(x, val_idx))))
        means[c] = float(np.mean(scores))
    best = max(grid, key=lambda c: (means[c], -c))
    return best, {str(c): v for c, v in means.items()}


def _take(x, idx: np.ndarray):
    if isinstance(x, list):
        return [x[i] for i in idx]
    return x.iloc[idx] if hasattr(x, "iloc") else x[idx]


# -- RAVDESS: openSMILE eGeMAPSv02 functionals ---------------------------------------------------------------


def egemaps_peer(train: Sequence, dev: Sequence, *, cache_dir: str | None, workers: int, grid, folds=7):
    """The openSMILE peer on RAVDESS: fit on ``train`` utterances, score ``dev``.

    Features come from ``prosody_probe.opensmile_features`` (cached on disk, shared with that benchmark, a
    sibling module like this one);
    each speaker's features are z-scored with that speaker's own mean and standard deviation.

    Returns:
        ``(metrics on dev, details)``; details hold the chosen C, the CV scores and the timing.
    """
    from prosody_probe import opensmile_features, speaker_z
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    items = list(train) + list(dev)
    raw, names = opensmile_features([u.audio_path for u in items], cache_dir, workers)
    features_s = time.perf_counter() - start
    matrix = speaker_z(raw, [u.speaker for u in items])
    y = np.array([u.label for u in items])
    n_train = len(train)

    def make_model(c: float):
        return make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(C=c, max_iter=MAX_ITER, class_weight="balanced", random_state=SEED),
        )

    fit_start = time.perf_counter()
    groups = np.array([u.speaker for u in train])
    best, cv = choose_c(make_model, matrix[:n_train], y[:n_train], groups, grid, folds, accuracy_score)
    model = make_model(best).fit(matrix[:n_train], y[:n_train])
    predicted = [str(label) for label in model.predict(matrix[n_train:])]
    metrics = compute_metrics(list(y[n_train:]), predicted, "ravdess8")
    details = {
        "n_features": len(names),
        "chosen_c": best,
        "cv_wa_by_c": cv,
        "cv": f"GroupKFold({min(folds, len(set(groups)))}) by actor over the training actors, mean WA",
        "features_s": round(features_s, 1),
        "fit_s": round(time.perf_counter() - fit_start, 1),
        "predictions": dict(zip([u.id for u in dev], predicted)),  # for paired comparisons with the LLM rows
    }
    return metrics, details


# -- MELD: TF-IDF + logistic regression ----------------------------------------------------------------------


def context_text(utterance, turns: int) -> str:
    """The last ``turns`` context turns' words, oldest first, joined by newlines."""
    if turns <= 0:
        return ""
    return "\n".join(turn.text for turn in utterance.context[-turns:])


def tfidf_peer(train: Sequence, dev: Sequence, *, context_turns: int, class_weight, grid, folds: int = 5):
    """TF-IDF (word 1-2 grams) + logistic regression on MELD: fit on ``train``, score ``dev``.

    The utterance has its own TF-IDF; with ``context_turns`` > 0 the previous turns get a second one beside it
    (so a word counts differently in the utterance and in its context). ``C`` is chosen by GroupKFold over
    the training dialogues, mean weighted F1.

    Returns:
        ``(metrics on dev, details)``.
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline

    def frame(utterances) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "text": [u.transcript or "" for u in utterances],
                "context": [context_text(u, context_turns) for u in utterances],
            }
        )

    def make_model(c: float):
        vectorizers = [("text", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), "text")]
        if context_turns > 0:
            vectorizers.append(
                ("context", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2), "context")
            )
        return make_pipeline(
            ColumnTransformer(vectorizers),
            LogisticRegression(C=c, max_iter=MAX_ITER, class_weight=class_weight, random_state=SEED),
        )

    def weighted_f1(gold, pred) -> float:
        return f1_score(gold, pred, average="weighted", zero_division=0)

    start = time.perf_counter()
    x_train, y_train = frame(train), np.array([u.label for u in train])
    groups = np.array([u.dialogue_id for u in train])
    best, cv = choose_c(make_model, x_train, y_train, groups, grid, folds, weighted_f1)
    model = make_model(best).fit(x_train, y_train)
    metrics = compute_metrics([u.label for u in dev], list(model.predict(frame(dev))), "meld7")
    details = {
        "chosen_c": best,
        "cv_weighted_f1_by_c": cv,
        "cv": f"GroupKFold({min(folds, len(set(groups)))}) by dialogue over train, mean weighted F1",
        "cv_best_weighted_f1": cv[str(best)],
        "fit_s": round(time.perf_counter() - start, 1),
    }
    return metrics, details


# -- SFT rows: the recipe, in this process -------------------------------------------------------------------


def recipe_overrides(args, output_dir: str) -> list[str]:
    """Recipe command-line overrides from a benchmark's ``--max-steps/--epochs/--train-limit/...``."""
    out = ["--output_dir", output_dir, "--data_root", args.data_root]
    for flag, value in (
        ("--max_steps", args.max_steps),
        ("--num_train_epochs", args.epochs),
        ("--train_limit", args.train_limit),
        ("--eval_limit", args.eval_limit),
        ("--normalize", getattr(args, "normalize", None)),
        ("--projector_learning_rate", getattr(args, "projector_lr", None)),
        ("--workers", args.workers),
    ):
        if value is not None:
            out += [flag, str(value)]
    return out


def sft_row(run: dict, settings: dict) -> dict:
    """A results row from :func:`run_recipe`'s record: the recipe's metrics, timings and where it wrote."""
    m = run["metrics"]["metrics"]
    return {
        "n": m["n"],
        "wa": m["wa"],
        "ua": m["ua"],
        "weighted_f1": m["weighted_f1"],
        "macro_f1": m["macro_f1"],
        "seconds": round(run["total_s"], 1),
        "settings": settings,
        "train_s_this_run": run.get("train_s"),
        "eval_s_this_run": run.get("eval_s"),
        "steps": run.get("steps"),
        "train_examples": run.get("train_examples"),
        "output_dir": run["output_dir"],
        "eval_baselines": run["metrics"]["baselines"],
        "metrics": m,
    }


def run_recipe(config: str | Path, overrides: Sequence[str]) -> dict:
    """Run ``emollm sft --config config *overrides`` in this process; its results and timings.

    Training resumes from the last checkpoint in the output folder and the evaluation resumes its
    predictions, as the recipe does on its own. The trainer is timed by wrapping ``train()``.

    Returns:
        ``{"metrics": eval-<split>/metrics.json, "train_s", "eval_s", "total_s", "steps", "train_examples",
        "output_dir", "argv"}``; ``train_s`` and ``eval_s`` cover this call only (a resumed run did less).
    """
    import emollm.recipes.sft as recipe
    from emollm.training.arguments import parse_recipe_args

    argv = ["--config", str(config), *overrides]
    parsed = parse_recipe_args(recipe.make_parser(), argv)
    script_args, training_args, model_args, adapter_args = parsed
    record: dict = {}
    base_trainer, base_evaluate = recipe.EmotionSFTTrainer, recipe.evaluate

    class TimedTrainer(base_trainer):
        def train(self, *args, **kwargs):
            begin = time.perf_counter()
            output = super().train(*args, **kwargs)
            record["train_s"] = time.perf_counter() - begin
            record["steps"] = self.state.global_step
            record["train_examples"] = len(self.train_dataset)
            return output

    def timed_evaluate(*args, **kwargs):
        begin = time.perf_counter()
        result = base_evaluate(*args, **kwargs)
        record["eval_s"] = time.perf_counter() - begin
        return result

    start = time.perf_counter()
    recipe.EmotionSFTTrainer, recipe.evaluate = TimedTrainer, timed_evaluate
    try:
        recipe.main(script_args, training_args, model_args, adapter_args)
    finally:
        recipe.EmotionSFTTrainer, recipe.evaluate = base_trainer, base_evaluate
    record["total_s"] = time.perf_counter() - start
    metrics_path = Path(training_args.output_dir) / f"eval-{script_args.eval_split}" / "metrics.json"
    record.update(
        metrics=json.loads(metrics_path.read_text()),
        output_dir=training_args.output_dir,
        argv=argv,
        num_train_epochs=training_args.num_train_epochs,
        max_steps=training_args.max_steps,
    )
    return record
