"""The evaluation harness: a corpus split through an :class:`~emollm.api.EmotionReasoner` into metrics.

One run writes one output folder (:mod:`emollm.evaluation.runs` owns it, :mod:`emollm.evaluation.report`
writes its scores):

=====================  ===================================================================================
``config.json``        the run's settings (what decides the predictions) and the emollm version
``predictions.jsonl``  one JSON row per utterance, appended and flushed batch by batch as they are made
``metrics.json``       WA, UA, weighted/macro F1, parse failures, format compliance, per-class scores, the
                       confusion matrix, 95% bootstrap intervals (``ci95``), the chance and majority
                       baselines and the timing; score mode adds the mean true-label probability, ``nll``,
                       ``ece`` and ``brier``, a ``calibration`` section and, where utterances have gold label
                       distributions, a ``distribution`` section (:mod:`emollm.evaluation.report`)
``report.md``          the same as Markdown tables
``confusion.png``      the confusion matrix
``reliability.png``    score mode: the reliability diagram (accuracy against confidence, 15 bins)
=====================  ===================================================================================

**Temperature scaling** (score mode) changes only the probabilities, never the predicted labels, so it is
applied when the rows are scored and is not one of the settings a folder is resumed with: every run reports
the ``fitted_temperature`` of its own utterances; ``save_temperature`` writes it into the ``model``
checkpoint folder (run it on a dev split) and ``temperature_scaling`` applies one (a number, ``checkpoint``
or a dev run's folder) to another split (see :mod:`emollm.evaluation.calibration`).

**Resume.** Running the same command again reads ``predictions.jsonl`` and predicts only the utterances it
does not hold yet, so an interrupted run loses at most the batch in flight and never writes a prediction
twice (a half-written last line is dropped). Each row records ``input_sha256``, a digest of what decided it
(transcript, context shown, speaker, audio file): a row whose utterance changed since, or that an older
emollm wrote without a digest, is predicted again, and a corrected gold label is re-scored; a warning names
them. An unreadable line costs only its own prediction. A folder made with different settings is refused,
naming the settings that differ; pass ``overwrite=True`` (``--overwrite``) to start it again. The old
predictions go only once the new run has its first batch, so a run that fails before (a typo) keeps them.
A run holds its folder (a lock file): a second run on the same folder is refused, naming the first.

**Selection.** ``limit=N`` evaluates N utterances drawn with a fixed seed (not the first N, which in a
sorted corpus would be one speaker and one class), kept in corpus order.

What the model is shown is built by :mod:`emollm.inputs`, exactly as the training recipes build it.

**Prosody.** When the strategy uses prosody (``acoustic`` by default) and utterances have audio, features
come from :func:`emollm.prosody.extract_many` with the on-disk cache, so a second run costs nothing.
``normalizer="speaker"`` (the default) fits :class:`~emollm.prosody.normalize.ProsodyNormalizer` on the
evaluated utterances' own audio: per-speaker statistics are unsupervised (labels are never read), as speaker
normalisation is done in practice. ``"none"`` describes each utterance relative to itself; a path loads a
normaliser fitted elsewhere (e.g. on a training split).

**Trained checkpoints.** ``model`` may be a checkpoint folder from ``emollm sft`` or ``emollm grpo``
(``"default"`` names the default model). A checkpoint is asked as it was trained: the prompt options left
unset (None: ``strategy``, ``mode``, ``context``, ``prosody``, ``prosody_style``, ``max_new_tokens``,
``calibrate``, ``length_normalize``) take its saved settings (:data:`CHECKPOINT_SETTINGS`), and only then
the defaults; an option given always wins. A model with adapters hears each utterance's audio through its
encoder, whose frames are cached on disk like the prosody (:func:`emollm.modeling.encoders.encode_cached`).
An adapter trained with per-speaker frame normalisation (``normalize="speaker"``) gets statistics refit on
the evaluated utterances' audio with ``frame_normalizer="speaker"`` (the default, like the prosody
normaliser; the model passed in is not changed), or the checkpoint's training statistics with
``"checkpoint"``, which is what ``predict`` uses for one clip.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from emollm.data import corpus_problem
from emollm.errors import ConfigError, ModelError, check_config
from emollm.evaluation.calibration import gold_distribution, load_temperature, save_temperature
from emollm.evaluation.report import report_markdown, score_rows
from emollm.evaluation.runs import (
    append_predictions,
    hold_run_folder,
    input_digests,
    plan_resume,
    read_predictions,
    start_run,
)
from emollm.inputs import (
    NORMALIZERS,
    check_audio_files,
    describe_utterances,
    encode_utterances,
    frames_of,
    select_utterances,
)
from emollm.io import write_text_atomic
from emollm.labels import parse_label_option
from emollm.modeling.base import DEFAULT_MODEL
from emollm.prompting import check_template

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_SETTINGS", "EvalConfig", "EvalResult", "evaluate", "read_predictions"]

CHECKPOINT_SETTINGS = {
    "strategy": ("strategy", "minimal"),
    "mode": ("mode", "score"),
    "context": ("context_turns", 0),
    "prosody": ("prosody", None),  # None: the template decides (on for acoustic only)
    "prosody_style": ("prosody_style", "vowel"),
    "max_new_tokens": ("max_new_tokens", None),  # None: 16 or 128, by the template
    "calibrate": ("calibrate", False),
    "length_normalize": ("length_normalize", False),
}
""":class:`EvalConfig` option -> (the saved ``reasoner`` setting it falls back to, the default)."""
PASSED_ON = ("system", "max_vowels", "max_words", "do_sample", "temperature")
"""Saved ``reasoner`` settings with no ``evaluate`` option, given to the reasoner as ``predict`` does."""


@dataclass
class EvalConfig:
    """Settings of one evaluation run (the ``emollm evaluate`` options).

    The prompt options left None are filled in here: from the ``reasoner`` section of the ``model``
    checkpoint's ``emollm_config.json`` (:data:`CHECKPOINT_SETTINGS`), else with the defaults; a saved
    ``mode`` other than score or generate (``both``) counts as unsaved, and a saved ``calibrate`` or
    ``length_normalize`` is not used in generate mode. ``from_checkpoint`` names the options that came from
    the checkpoint.

    >>> config = EvalConfig(data="ravdess")  # the default model is no checkpoint: the defaults
    >>> config.strategy, config.mode, config.context, config.prosody_style, config.from_checkpoint
    ('minimal', 'score', 0, 'vowel', [])
    """

    data: str = field(metadata={"help": "corpus: ravdess, meld, iemocap or manifest:PATH", "required": True})
    split: str = field(default="dev", metadata={"help": "split of the corpus (e.g. train, dev, test, all)"})
    strategy: str | None = field(
        default=None,
        metadata={
            "help": "prompt template: minimal, acoustic, cot or a .jinja path (default: a checkpoint's own, "
            "else minimal)"
        },
    )
    mode: str | None = field(
        default=None,
        metadata={
            "help": "score (label probabilities, no generation) or generate (default: a checkpoint's own, "
            "else score)",
            "choices": ["score", "generate"],
        },
    )
    context: int | None = field(
        default=None,
        metadata={"help": "earlier turns shown in the prompt (default: a checkpoint's own, else 0)"},
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "built-in model name ('default' for the default), local folder, hub id or checkpoint "
            "folder"
        },
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
    labels: str | None = field(  # a list works too, from Python
        default=None,
        metadata={
            "help": "label set: a name (ravdess8, meld7, ...) or comma-separated labels (default: the "
            "corpus's own; a manifest's labels as written)"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate N utterances drawn with --seed"})
    seed: int = field(default=0, metadata={"help": "seed of the --limit draw"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    prosody: bool | None = field(
        default=None,
        metadata={
            "help": "describe the voice in the prompt: --prosody or --no-prosody (default: a checkpoint's "
            "own, else the template's: acoustic only)",
            "nargs": "?",  # a bare --prosody means true, as for the bool options
            "const": True,
        },
    )
    prosody_style: str | None = field(
        default=None,
        metadata={
            "help": "vowel (summary + 3 salient vowels), utterance (summary only) or measures (every "
            "utterance measure relative to the speaker, then every vowel; carries the most signal) "
            "(default: a checkpoint's own, else vowel)",
            "choices": ["vowel", "utterance", "measures"],
        },
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
        default=None,
        metadata={
            "help": "generation length (default: a checkpoint's own, else 16 for label-only templates, "
            "else 128)"
        },
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per forward pass"})
    length_normalize: bool | None = field(
        default=None,
        metadata={
            "help": "score labels by mean instead of summed token log-probability (default: a checkpoint's "
            "own, else off)",
            "nargs": "?",
            "const": True,
        },
    )
    calibrate: bool | None = field(
        default=None,
        metadata={
            "help": "score mode: contextual calibration against a content-free input (default: a "
            "checkpoint's own, else off)",
            "nargs": "?",
            "const": True,
        },
    )
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})
    temperature_scaling: str = field(
        default="none",
        metadata={
            "help": "score mode: divide the label log-probabilities by a temperature before the "
            "probabilistic scores (labels never change): none, a number, checkpoint (the --model folder's "
            "temperature.json) or an evaluation folder (its fitted temperature, e.g. a dev run's)"
        },
    )
    save_temperature: bool = field(
        default=False,
        metadata={
            "help": "score mode: fit the temperature on this run's utterances (use a dev split) and save "
            "it in the --model checkpoint folder as temperature.json"
        },
    )
    from_checkpoint: list[str] = field(default_factory=list, init=False, compare=False)
    """The options that took the checkpoint's saved settings (filled in when the config is made)."""

    def __post_init__(self):
        if self.model == "default":
            self.model = DEFAULT_MODEL
        problems = []
        try:
            saved = checkpoint_settings(self.model)
        except ModelError as exc:  # an unreadable emollm_config.json
            saved = {}
            problems.append(str(exc))
        self.from_checkpoint = self._fill_unset(saved)
        problems += run_problems(self)
        if self.save_temperature and (self.mode != "score" or not _is_checkpoint(self.model)):
            problems.append(
                f"save_temperature needs mode score and a checkpoint folder as model, got mode {self.mode!r} "
                f"and model {self.model!r}"
            )
        if self.temperature_scaling not in ("none", "checkpoint"):  # a number or a path; read when it runs
            try:
                load_temperature(self.temperature_scaling)
            except ConfigError as exc:
                problems.append(str(exc))
        if self.mode == "generate":  # options that act on the label distribution, which generate has not
            ignored = [name for name in ("calibrate", "length_normalize") if getattr(self, name)]
            ignored += ["temperature_scaling"] if self.temperature_scaling != "none" else []
            if ignored:
                problems.append(
                    f"{', '.join(ignored)} act on the label probabilities of mode score; mode generate would "
                    "ignore them"
                )
        if self.device is not None:
            from emollm.api import device_problem

            problems.append(device_problem(self.device) or "")
        problems.append(_output_problem(self.output_dir()) or "")
        for check in (lambda: check_template(self.strategy), lambda: self.label_set()):
            try:
                check()
            except ConfigError as exc:
                problems.append(str(exc))
        if self.from_checkpoint and any(p for p in problems):
            problems.append(f"({', '.join(self.from_checkpoint)} from the checkpoint {self.model})")
        check_config(self, [p for p in problems if p])

    def _fill_unset(self, saved: dict) -> list[str]:
        """Fill the prompt options left None: the checkpoint's ``saved`` setting, else the default."""
        taken = []
        for name, (key, default) in CHECKPOINT_SETTINGS.items():  # mode comes before calibrate
            if getattr(self, name) is not None:
                continue
            value = saved.get(key)
            if name == "mode" and value not in ("score", "generate"):
                value = None  # "both" (predict's default) scores; the harness has no "both"
            elif name in ("calibrate", "length_normalize") and self.mode == "generate":
                value = None  # a saved score-mode setting does not apply to generation
            elif name == "context":
                value = saved_context_turns(saved)
            if value is not None:
                taken.append(name)
            setattr(self, name, default if value is None else value)
        return taken

    def label_set(self):
        """``labels`` as :func:`emollm.inputs.select_utterances` takes it (None: the corpus's own).

        A set's name, comma-separated labels on the command line, or a list from Python.
        """
        return parse_label_option(self.labels)

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


def saved_context_turns(saved: dict) -> int | None:
    """The number of context turns in a checkpoint's saved ``reasoner`` settings, if it is a number.

    None ("all turns") or anything else counts as unsaved: an evaluation shows a fixed number of turns.

    >>> saved_context_turns({"context_turns": 2}), saved_context_turns({"context_turns": None})
    (2, None)
    """
    value = saved.get("context_turns")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def checkpoint_settings(model: str) -> dict:
    """The ``reasoner`` settings saved in checkpoint folder ``model``; ``{}`` for a model that is not one.

    Raises:
        ModelError: an ``emollm_config.json`` that cannot be read.
    """
    from emollm.modeling.checkpoint import is_checkpoint, read_checkpoint_config

    return dict(read_checkpoint_config(model).get("reasoner") or {}) if is_checkpoint(model) else {}


def run_problems(config) -> list[str]:
    """The checks every run over a corpus shares (``evaluate``, ``faithfulness``).

    The corpus option; the bounds of ``context``, ``limit``, ``batch_size``, ``workers`` and
    ``max_new_tokens``; and the normaliser.
    """
    problems = [p for p in [corpus_problem("data", config.data)] if p]
    for name, low in (("context", 0), ("limit", 1), ("batch_size", 1), ("workers", 1), ("max_new_tokens", 1)):
        value = getattr(config, name)
        if value is not None and value < low:
            problems.append(f"{name} is {value}; it must be >= {low}")
    if not isinstance(config.normalizer, str) or (
        config.normalizer not in NORMALIZERS and not Path(config.normalizer).is_file()
    ):
        problems.append(
            f"normalizer is {config.normalizer!r}; accepted: speaker, none or the path of a normaliser JSON"
        )
    return problems


def evaluate(config: EvalConfig, *, lm=None, overwrite: bool = False, progress: bool = True) -> EvalResult:
    """Run (or resume) one evaluation and write its output folder.

    Args:
        config: The run's settings.
        lm: A ready :class:`~emollm.modeling.EmotionLM` (not changed); default: load ``config.model``.
        overwrite: Replace the predictions of an earlier run in the output folder (once this run has made
            its first batch) instead of resuming them.
        progress: Show progress bars.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ConfigError: bad settings, an output folder made with other settings, or one another evaluation
            is using.
        DataError: a corpus that cannot be read or has no labelled utterances, or a ``normalizer`` file that
            is not a normaliser.
    """
    from tqdm.auto import tqdm

    from emollm.api import EmotionReasoner
    from emollm.modeling.emotion_lm import EmotionLM

    temperature, temperature_source = 1.0, "none"  # generate mode has no probabilities to scale
    if config.mode == "score":  # read before any work, so a wrong source fails at once
        temperature, temperature_source = load_temperature(config.temperature_scaling, config.model)

    # 1. Which utterances, scored on which labels
    label_set, utterances = select_utterances(
        config.data,
        config.split,
        labels=config.label_set(),
        limit=config.limit,
        seed=config.seed,
        data_root=config.data_root,
        context_turns=config.context,
    )
    gold_dists = {u.id: gold_distribution(u, label_set) for u in utterances}  # annotator votes, if any

    # 2. The model and how it is asked
    if lm is None:
        import torch

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm = EmotionLM.from_pretrained(config.model, dtype=getattr(torch, config.dtype), device=device)
    saved = checkpoint_settings(config.model)  # what no option sets (the options took the rest at parse time)
    reasoner = EmotionReasoner(
        lm,
        **{name: saved[name] for name in PASSED_ON if name in saved},
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
    trained_on = _labels_of(saved.get("labels"))
    if trained_on is not None and trained_on != list(label_set.labels):  # another set, or another order
        logger.warning(
            "the checkpoint %s was trained on the labels %s; this run offers %s (--labels chooses)",
            config.model, ", ".join(trained_on), ", ".join(label_set.labels),
        )  # fmt: skip
    if reasoner.prosody or lm.adapter_keys:  # the audio the prompts need, checked before any work
        check_audio_files(utterances)
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
    normalizer = config.normalizer
    if reasoner.prosody and normalizer not in NORMALIZERS:  # a wrong file is refused before any work
        from emollm.prosody.normalize import ProsodyNormalizer

        normalizer = ProsodyNormalizer.load(normalizer)
    refit = config.frame_normalizer == "speaker"
    # statistics fitted on every evaluated clip shape each prompt: then every clip is an input of each
    fitted_on_all = bool(
        reasoner.prosody and config.normalizer == "speaker" and any(u.has_audio for u in utterances)
    ) or (refit and _normalizes_frames(lm))
    digests = input_digests(utterances, config.context, fitted_on_all=fitted_on_all)

    # The folder is held from here on; nothing in it changes until there is a first batch to write
    with hold_run_folder(out):
        expected = {u.id: (digests[u.id], u.label) for u in utterances}
        resume = plan_resume(out, settings, expected, overwrite=overwrite)
        todo = [u for u in utterances if u.id not in resume.rows]

        # 3. What the model is shown: descriptions and frames, with statistics fitted on every evaluated clip
        start = time.perf_counter()
        descriptions: dict[str, str | None] = {}
        notes: dict[str, list[str]] = {}
        if reasoner.prosody and todo:
            descriptions, notes, _ = describe_utterances(
                utterances,
                todo=todo,
                normalizer=normalizer,
                style=reasoner.prosody_style,
                max_vowels=reasoner.max_vowels,
                max_words=reasoner.max_words,
                workers=config.workers,
                progress=progress,
            )
        frames = {}
        if getattr(lm, "modalities", ()) and todo:
            frames, _ = encode_utterances(lm, utterances, todo=todo, refit=refit, progress=progress)

        # 4. Predict batch by batch, each batch on disk before the next (an interruption loses at most one)
        predictions_path = out / "predictions.jsonl"
        chunk = max(1, config.batch_size)
        seen: dict = {}  # prompt -> result across batches (predict_batch uses it only when that is exact)
        bar = tqdm(
            total=len(utterances), initial=len(utterances) - len(todo), disable=not progress, unit="utt"
        )
        bar.set_description(f"{Path(config.strategy).stem}/{config.mode}")
        started = False
        for begin in range(0, len(todo), chunk):
            batch = todo[begin : begin + chunk]
            extra = {"frames": [frames_of(frames, u.id) for u in batch]} if frames else {}
            descs = [descriptions.get(u.id) for u in batch]
            preds = reasoner.predict_batch(batch, prosody=descs, cache=seen, **extra)
            rows = []
            for utt, pred in zip(batch, preds):
                row = {"id": utt.id, "gold": utt.label, "input_sha256": digests[utt.id], **pred.to_dict()}
                row["notes"] = [*notes.get(utt.id, []), *row["notes"]]
                if gold_dists.get(utt.id):  # for `emollm compare`; scoring reads the utterances' own
                    row["gold_distribution"] = gold_dists[utt.id]
                rows.append(row)
            if not started:  # only now may an earlier run's predictions go (--overwrite, stale rows)
                start_run(out, settings, resume)
                started = True
            append_predictions(predictions_path, rows)
            bar.update(len(batch))
        bar.close()
        if not started:
            start_run(out, settings, resume)
        seconds = time.perf_counter() - start

        # 5. Scores over every utterance of the run (resumed rows included)
        rows = read_predictions(predictions_path)
        ordered = [rows[u.id] for u in utterances]
        metrics, baseline, summary = score_rows(
            ordered,
            label_set,
            _train_labels(config, label_set),
            config.mode,
            gold_distributions=gold_dists,
            temperature=temperature,
            temperature_source=temperature_source,
        )
        if config.save_temperature:
            fitted = summary["calibration"]["fitted_temperature"]
            saved = save_temperature(
                config.model, fitted, data=config.data, split=config.split, n=len(ordered), run=str(out)
            )
            summary["calibration"]["saved_to"] = str(saved)
            logger.info(
                "saved temperature %.4g, fitted on %s %s, to %s", fitted, config.data, config.split, saved
            )
        summary.update(
            {
                "settings": settings,
                "n": len(ordered),
                "predicted_this_run": len(todo),
                "seconds_this_run": round(seconds, 2),
                "utterances_per_second_this_run": round(len(todo) / seconds, 3)
                if todo and seconds > 0
                else None,
            }
        )
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
        write_text_atomic(out / "report.md", report_markdown(summary, metrics, baseline, label_set))
        from emollm.evaluation.metrics import plot_confusion_matrix

        strategy = Path(config.strategy).stem
        title = f"{config.data} {config.split}: {strategy}, {config.mode}, context {config.context}"
        plot_confusion_matrix(metrics, label_set, out / "confusion.png", title=title)
        if summary["calibration"] is not None:
            from emollm.evaluation.calibration import plot_reliability_diagram

            scaled = f", T={temperature:.3g}" if temperature != 1 else ""
            plot_reliability_diagram(
                summary["calibration"]["bins"], out / "reliability.png", title=title + scaled
            )
    return EvalResult(metrics, baseline, out, len(todo), summary)


def _output_problem(folder: Path) -> str | None:
    """Why the output folder cannot be written (a file in its place, a read-only parent...), or None."""
    import os

    if folder.exists() and not folder.is_dir():
        return f"output {str(folder)!r} is a file, not a folder"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"output {str(folder)!r} cannot be made: {str(existing)!r} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"output {str(folder)!r} cannot be written: {str(existing)!r} is not writable"
    return None


def _train_labels(config: EvalConfig, label_set) -> list[str] | None:
    """Gold labels of the corpus's training split, for an honest majority baseline (None if unavailable)."""
    from emollm.data import load_corpus
    from emollm.errors import DataError

    if config.split in ("train", "all") or config.data.startswith("manifest:"):
        return None
    try:
        train = load_corpus(config.data, "train", data_root=config.data_root, labels=label_set)
    except (DataError, ConfigError, OSError):
        return None
    labels = [u.label for u in train if u.label is not None]
    return labels or None


def _is_checkpoint(model: str) -> bool:
    from emollm.modeling.checkpoint import is_checkpoint

    return is_checkpoint(model)


def _labels_of(saved) -> list[str] | None:
    """The labels of a checkpoint's saved label set (a name or a list), None when it has none we know."""
    from emollm.labels import get_label_set

    try:
        return None if saved is None else list(get_label_set(saved).labels)
    except ConfigError:
        return None


def _dtype_name(lm) -> str | None:
    """The dtype the model computes in (``"float32"``, ...), None for a model without parameters."""
    parameter = next(iter(lm.model.parameters()), None) if hasattr(lm, "model") else None
    return None if parameter is None else str(parameter.dtype).removeprefix("torch.")


def _normalizes_frames(lm) -> bool:
    return (
        any(lm.normalizes(m) for m in getattr(lm, "modalities", ())) if hasattr(lm, "normalizes") else False
    )
