"""The evaluation harness: a corpus split through an :class:`~emollm.api.EmotionReasoner` into metrics.

One run writes one output folder:

=====================  ===================================================================================
``config.json``        the run's settings (what decides the predictions) and the emollm version
``predictions.jsonl``  one JSON row per utterance, appended and flushed batch by batch as they are made
``metrics.json``       WA, UA, weighted/macro F1, parse failures, format compliance, mean true-label
                       probability (score mode), per-class scores, the confusion matrix, 95% bootstrap
                       intervals (``ci95``), the chance and majority baselines and the timing
``report.md``          the same as Markdown tables
``confusion.png``      the confusion matrix
=====================  ===================================================================================

**Resume.** Running the same command again reads ``predictions.jsonl`` and predicts only the utterances it
does not hold yet, so an interrupted run loses at most the batch in flight and never writes a prediction
twice (a half-written last line is dropped). A folder made with different settings is refused, naming the
settings that differ; pass ``overwrite=True`` (``--overwrite``) to start it again.

**Selection.** ``limit=N`` evaluates N utterances drawn with a fixed seed (not the first N, which in a
sorted corpus would be one speaker and one class), kept in corpus order.

**Prosody.** When the strategy uses prosody (``acoustic`` by default) and utterances have audio, features
come from :func:`emollm.prosody.extract_many` with the on-disk cache, so a second run costs nothing.
``normalizer="speaker"`` (the default) fits :class:`~emollm.prosody.normalize.ProsodyNormalizer` on the
evaluated utterances' own audio: per-speaker statistics are unsupervised (labels are never read), as speaker
normalisation is done in practice. ``"none"`` describes each utterance relative to itself; a path loads a
normaliser fitted elsewhere (e.g. on a training split).

**Trained checkpoints.** ``model`` may be a checkpoint folder from ``recipes/sft.py``; a model with adapters
hears each utterance's audio through its encoder, whose frames are cached on disk like the prosody
(:func:`emollm.modeling.encoders.encode_cached`). An adapter trained with per-speaker frame normalisation
(``normalize="speaker"``) gets statistics refit on the evaluated utterances' audio with
``frame_normalizer="speaker"`` (the default, like the prosody normaliser; the model passed in keeps its own),
or the checkpoint's training statistics with ``"checkpoint"``, which is what ``predict`` uses for one clip.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emollm.errors import ConfigError, DataError
from emollm.io import write_text_atomic
from emollm.modeling.base import DEFAULT_MODEL

logger = logging.getLogger(__name__)

CORPUS_LABELS = {"ravdess": "ravdess8", "meld": "meld7", "iemocap": "iemocap4"}


@dataclass
class EvalConfig:
    """Settings of one evaluation run (the ``emollm evaluate`` options)."""

    data: str = field(metadata={"help": "corpus: ravdess, meld, iemocap or manifest:PATH"})
    split: str = field(default="dev", metadata={"help": "split of the corpus (e.g. train, dev, test, all)"})
    strategy: str = field(
        default="minimal", metadata={"help": "prompt template: minimal, acoustic, cot or a .jinja path"}
    )
    mode: str = field(
        default="score",
        metadata={
            "help": "score (label probabilities, no generation) or generate",
            "choices": ["score", "generate"],
        },
    )
    context: int = field(default=0, metadata={"help": "earlier conversation turns shown in the prompt"})
    model: str = field(
        default=DEFAULT_MODEL, metadata={"help": "built-in model name, local folder or hub id"}
    )
    dtype: str = field(
        default="float32",
        metadata={
            "help": "weights' dtype when the model is loaded here (bfloat16 suits GPUs)",
            "choices": ["float32", "bfloat16", "float16"],
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)"}
    )
    output: str | None = field(
        default=None,
        metadata={"help": "output folder (default runs/<data>-<split>-<strategy>-<mode>-c<context>)"},
    )
    labels: str | None = field(
        default=None,
        metadata={"help": "label set (default: the corpus's own; a manifest's labels as written)"},
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate N utterances drawn with --seed"})
    seed: int = field(default=0, metadata={"help": "seed of the --limit draw"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    prosody: bool | None = field(
        default=None, metadata={"help": "describe the voice in the prompt (default: on for acoustic only)"}
    )
    prosody_style: str = field(
        default="vowel",
        metadata={"help": "vowel or utterance description", "choices": ["vowel", "utterance"]},
    )
    normalizer: str = field(
        default="speaker",
        metadata={"help": "speaker (fit on the evaluated audio, no labels), none, or a normaliser JSON path"},
    )
    frame_normalizer: str = field(
        default="speaker",
        metadata={
            "help": "pseudo-token adapters with normalize=speaker: speaker (refit on the evaluated audio, no "
            "labels) or checkpoint (the training statistics saved with the model, as predict uses them)",
            "choices": ["speaker", "checkpoint"],
        },
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "generation length (default 16 for label-only templates, else 128)"}
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per forward pass"})
    length_normalize: bool = field(
        default=False, metadata={"help": "score labels by mean instead of summed token log-probability"}
    )
    calibrate: bool = field(
        default=False, metadata={"help": "score mode: contextual calibration against a content-free input"}
    )
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})

    def output_dir(self) -> Path:
        """The output folder, named after the run when not given."""
        if self.output:
            return Path(self.output)
        data = self.data.replace("manifest:", "manifest-").replace("/", "_")
        strategy = Path(self.strategy).stem
        return Path("runs") / f"{data}-{self.split}-{strategy}-{self.mode}-c{self.context}"


@dataclass
class EvalResult:
    """What :func:`evaluate` produced.

    Attributes:
        metrics: The model's :class:`~emollm.evaluation.EmotionMetrics`.
        baselines: ``{"chance": ..., "majority": ...}`` on the same utterances.
        output_dir: Where the files are.
        predicted: How many predictions this call made (the rest were resumed from the folder).
        summary: The ``metrics.json`` content.
    """

    metrics: object
    baselines: dict
    output_dir: Path
    predicted: int
    summary: dict


def evaluate(config: EvalConfig, *, lm=None, overwrite: bool = False, progress: bool = True) -> EvalResult:
    """Run (or resume) one evaluation and write its output folder.

    Args:
        config: The run's settings.
        lm: A ready :class:`~emollm.modeling.EmotionLM`; default: load ``config.model``.
        overwrite: Delete the predictions of an earlier run in the output folder and start again.
        progress: Show progress bars.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ConfigError: bad settings, or an output folder made with other settings.
        DataError: a corpus that cannot be read or has no labelled utterances.
    """
    from tqdm.auto import tqdm

    from emollm.api import EmotionReasoner
    from emollm.data import load_corpus
    from emollm.labels import get_label_set
    from emollm.modeling.emotion_lm import EmotionLM

    if config.context < 0:
        raise ConfigError(f"context must be >= 0, got {config.context}")
    if config.limit is not None and config.limit < 1:
        raise ConfigError(f"limit must be >= 1, got {config.limit}")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {config.dtype!r}")
    if config.frame_normalizer not in ("speaker", "checkpoint"):
        raise ConfigError(f"frame_normalizer must be speaker or checkpoint, got {config.frame_normalizer!r}")
    corpus = config.data.split(":", 1)[0]
    label_name = config.labels or CORPUS_LABELS.get(corpus)
    utterances = load_corpus(
        config.data, config.split, data_root=config.data_root, labels=label_name, context_turns=config.context
    )
    utterances = [u for u in utterances if u.label is not None]
    if not utterances:
        raise DataError(f"{config.data} split {config.split!r} has no labelled utterances to evaluate")
    if label_name is None:  # a manifest without --labels: its labels as written, in first-seen order
        label_name = list(dict.fromkeys(u.label for u in utterances))
    label_set = get_label_set(label_name)
    if config.limit is not None and config.limit < len(utterances):
        chosen = sorted(random.Random(config.seed).sample(range(len(utterances)), config.limit))
        utterances = [utterances[i] for i in chosen]

    if lm is None:
        import torch

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm = EmotionLM.from_pretrained(config.model, dtype=getattr(torch, config.dtype), device=device)
    reasoner = EmotionReasoner(
        lm,
        labels=label_set,
        strategy=config.strategy,
        mode=config.mode,
        context_turns=config.context,
        prosody=config.prosody,
        prosody_style=config.prosody_style,
        max_new_tokens=config.max_new_tokens,
        length_normalize=config.length_normalize,
        calibrate=config.calibrate,
        batch_size=config.batch_size,
    )
    out = config.output_dir()
    settings = {
        **reasoner.settings(),
        "model": config.model,
        "data": config.data,
        "split": config.split,
        "limit": config.limit,
        "seed": config.seed,
        "normalizer": config.normalizer if reasoner.prosody else None,
        "frame_normalizer": config.frame_normalizer if _normalizes_frames(lm) else None,
        "dtype": _dtype_name(lm),
    }
    done = _prepare_folder(out, settings, overwrite)
    todo = [u for u in utterances if u.id not in done]

    start = time.perf_counter()
    descriptions: dict[str, str | None] = {}
    notes: dict[str, list[str]] = {}
    if reasoner.prosody and todo:
        descriptions, notes = describe_utterances(
            reasoner,
            utterances,
            todo=todo,
            normalizer=config.normalizer,
            workers=config.workers,
            progress=progress,
        )
    features = {}
    if getattr(lm, "modalities", ()) and todo:
        own = dict(lm.frame_normalizers)
        refit = config.frame_normalizer == "speaker"
        features = encode_utterances(lm, utterances, todo=todo, refit=refit, progress=progress)
        lm.frame_normalizers = own  # the caller's model keeps its statistics

    predictions_path = out / "predictions.jsonl"
    chunk = max(1, config.batch_size)  # one forward batch: an interruption loses at most this many
    seen: dict = {}  # prompt -> result across batches (predict_batch uses it only when that is exact)
    bar = tqdm(total=len(utterances), initial=len(utterances) - len(todo), disable=not progress, unit="utt")
    bar.set_description(f"{Path(config.strategy).stem}/{config.mode}")
    with open(predictions_path, "a", encoding="utf-8") as handle:
        for begin in range(0, len(todo), chunk):
            batch = todo[begin : begin + chunk]
            extra = {"features": [features[u.id] for u in batch]} if features else {}
            descs = [descriptions.get(u.id) for u in batch]
            preds = reasoner.predict_batch(batch, prosody=descs, cache=seen, **extra)
            for utt, pred in zip(batch, preds):
                row = {"id": utt.id, "gold": utt.label, **pred.to_dict()}
                row["notes"] = [*notes.get(utt.id, []), *row["notes"]]
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - start

    rows = read_predictions(predictions_path, repair=True)
    ordered = [rows[u.id] for u in utterances]
    train_labels = _train_labels(config, label_set)
    metrics, baseline, summary = _score(ordered, label_set, train_labels, config.mode)
    summary.update(
        {
            "settings": settings,
            "n": len(ordered),
            "predicted_this_run": len(todo),
            "seconds_this_run": round(seconds, 2),
            "utterances_per_second_this_run": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        }
    )
    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "report.md", _report(summary, metrics, baseline, label_set))
    from emollm.evaluation.metrics import plot_confusion_matrix

    title = (
        f"{config.data} {config.split}: {Path(config.strategy).stem}, {config.mode}, context {config.context}"
    )
    plot_confusion_matrix(metrics, label_set, out / "confusion.png", title=title)
    return EvalResult(metrics, baseline, out, len(todo), summary)


# -- the output folder ------------------------------------------------------------------------------------


def _prepare_folder(out: Path, settings: dict, overwrite: bool) -> set[str]:
    """Create or check the folder; return the ids already predicted there."""
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    predictions = out / "predictions.jsonl"
    if overwrite:
        predictions.unlink(missing_ok=True)
    elif config_path.is_file() and predictions.is_file():
        old = json.loads(config_path.read_text(encoding="utf-8")).get("settings", {})
        # A setting missing from an older folder's config.json did not exist then: not a difference.
        changed = [
            f"{key}: {old.get(key)!r} -> {settings.get(key)!r}"
            for key in sorted(old)
            if old.get(key) != settings.get(key)
        ]
        if changed:
            raise ConfigError(
                f"{out} holds predictions made with other settings ({'; '.join(changed)}). Use another "
                "output folder, or --overwrite to start again."
            )
    import emollm

    write_text_atomic(
        config_path, json.dumps({"emollm": emollm.__version__, "settings": settings}, indent=2) + "\n"
    )
    return set(read_predictions(predictions, repair=True)) if predictions.is_file() else set()


def read_predictions(path: Path, *, repair: bool = False) -> dict[str, dict]:
    """Rows of ``predictions.jsonl`` by id, up to the first incomplete line.

    A half-written last line (an interrupted run, or a run still writing) is left out. With ``repair``
    (the harness, before it appends to the file) it is also cut off the file; a reader of another process's
    folder must not repair, or it would cut a line that process is still writing.
    """
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    data = path.read_bytes()
    good = 0  # byte length of the complete, parseable prefix
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        rows[row["id"]] = row
        good += len(line)
    if good < len(data) and repair:
        logger.warning("%s: dropping a half-written last line from an interrupted run", path)
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return rows


def _train_labels(config: EvalConfig, label_set) -> list[str] | None:
    """Gold labels of the corpus's training split, for an honest majority baseline (None if unavailable)."""
    from emollm.data import load_corpus

    if config.split in ("train", "all") or config.data.startswith("manifest:"):
        return None
    try:
        train = load_corpus(config.data, "train", data_root=config.data_root, labels=label_set)
    except (DataError, ConfigError, OSError):
        return None
    labels = [u.label for u in train if u.label is not None]
    return labels or None


# -- prosody ------------------------------------------------------------------------------------------------


def describe_utterances(
    reasoner, utterances, *, todo=None, normalizer: str = "speaker", workers: int = 1, progress: bool = True
):
    """Prosody descriptions and notes for ``todo`` (default: all ``utterances``), keyed by utterance id.

    Features come from the cached batch extractor. ``normalizer``: ``"speaker"`` fits a per-speaker
    normaliser on all ``utterances`` with audio (labels are never read), ``"none"`` describes each
    utterance relative to itself, a path loads a saved normaliser. The reasoner's normaliser is set to it.
    """
    from emollm.modeling.base import cache_dir
    from emollm.prosody.normalize import ProsodyNormalizer
    from emollm.prosody.pipeline import extract_many

    todo = utterances if todo is None else todo
    with_audio = [u for u in utterances if u.has_audio]
    if not with_audio:
        logger.warning("no utterance has audio: the prompts say no audio measurements are available")
        return {}, {u.id: ["no audio: no prosody description"] for u in todo}
    batch = extract_many(with_audio, cache_dir=cache_dir() / "prosody", workers=workers, progress=progress)
    features = {u.id: f for u, f in zip(with_audio, batch.features)}
    notes = {
        u.id: [f"prosody failed: {batch.errors[i]}"] for i, u in enumerate(with_audio) if i in batch.errors
    }
    if normalizer == "speaker":
        fitted = [f for f in batch.features if f is not None]
        reasoner.normalizer = ProsodyNormalizer().fit(fitted) if fitted else None
    elif normalizer == "none":
        reasoner.normalizer = None
    else:
        if not Path(normalizer).is_file():
            raise ConfigError(
                f"normalizer must be 'speaker', 'none' or the path of a normaliser JSON; "
                f"{normalizer!r} is none of these"
            )
        reasoner.normalizer = ProsodyNormalizer.load(normalizer)
    descriptions = {}
    for utt in todo:
        feats = features.get(utt.id)
        descriptions[utt.id] = (reasoner.describe_features(feats, utt.speaker) or None) if feats else None
        if feats is not None:
            notes.setdefault(utt.id, []).extend(feats.notes)
        elif not utt.has_audio:
            notes.setdefault(utt.id, []).append("no audio: no prosody description")
    return descriptions, notes


def _dtype_name(lm) -> str | None:
    """The dtype the model computes in (``"float32"``, ...), None for a model without parameters."""
    parameter = next(iter(lm.model.parameters()), None) if hasattr(lm, "model") else None
    return None if parameter is None else str(parameter.dtype).removeprefix("torch.")


def _normalizes_frames(lm) -> bool:
    return (
        any(lm.normalizes(m) for m in getattr(lm, "modalities", ())) if hasattr(lm, "normalizes") else False
    )


def encode_utterances(
    lm, utterances, *, todo=None, refit: bool = True, progress: bool = True
) -> dict[str, dict]:
    """Encoder frames of every adapted modality for ``todo`` (default: all ``utterances``), keyed by id.

    Frames are cached on disk. Adapters with ``normalize="speaker"`` get their frames z-scored per speaker:
    with ``refit``, by statistics fitted here on all ``utterances`` (their labels are not used; a resumed
    run fits the same) and set on ``lm`` (:meth:`EmotionLM.fit_frame_normalizers`), as
    :func:`describe_utterances` does for the prosody normaliser; without, by ``lm``'s own (a checkpoint's).

    Raises:
        DataError: an utterance without audio for a model that hears audio.
    """
    from emollm.modeling.base import cache_dir
    from emollm.modeling.encoders import encode_cached

    wanted = {u.id for u in (utterances if todo is None else todo)}
    out: dict[str, dict] = {u.id: {} for u in utterances if u.id in wanted}
    for modality in lm.modalities:
        if modality != "audio":
            raise ConfigError(f"the harness feeds audio adapters only; this model also has {modality!r}")
        missing = [u.id for u in utterances if u.audio_path is None]
        if missing:
            raise DataError(
                f"{len(missing)} utterances have no audio file (e.g. {missing[0]}); the model needs it"
            )
        # per-speaker statistics need every utterance's frames; otherwise only those asked for
        refitting = refit and lm.normalizes(modality)
        needed = [u for u in utterances if u.id in wanted or refitting]
        frames = encode_cached(
            lm.encoders[modality],
            [u.audio_path for u in needed],
            cache_dir=cache_dir() / "features",
            progress=progress,
        )
        speakers = [u.speaker for u in needed]
        if refitting:
            lm.fit_frame_normalizers({modality: frames}, speakers)
        for utt, item in zip(needed, lm.normalize_frames(modality, frames, speakers)):
            if utt.id in wanted:
                out[utt.id][modality] = item
    return out


# -- scores and report -------------------------------------------------------------------------------------


def _score(rows: list[dict], label_set, train_labels, mode: str):
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


def _report(summary: dict, metrics, baseline: dict, label_set) -> str:
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
