"""Faithfulness: does the model use the voice? Counterfactual swaps of voice inputs between utterances.

Each *recipient* utterance is paired with a *donor* of another gold label (:func:`pair_utterances`: the same
speaker and sentence where the corpus has them, as RAVDESS's actors say two fixed statements in every
emotion; else the same speaker; else any). The model predicts the recipient twice: with its own voice
inputs, and with the donor's (its prosody description and/or its encoder frames, :data:`SWAPS`), while the
words, the context and the speaker stay the recipient's. If the voice is used, the prediction moves to the
donor's label; if the words or the prompt's prior decide, it stays.

One run writes one folder, resumable like the harness's (:mod:`emollm.evaluation.runs`; the same lock,
settings check and digests, a row per pair keyed by the recipient's id):

=====================  ===================================================================================
``config.json``        the settings (what decides the predictions) and the emollm version
``predictions.jsonl``  one row per pair: recipient ``id``, ``gold``, ``donor``, ``pairing`` tier,
                       ``swapped_inputs``, ``original`` and ``swapped`` predictions (label, distribution or
                       completion and rationale, the prompt, the description shown; in generate mode the
                       rationale's claims checked against the recipient's and the donor's measures)
``metrics.json``       :func:`swap_metrics` of the rows, plus the settings and timing
``report.md``          the same as Markdown tables
=====================  ===================================================================================

>>> from emollm.data import Utterance
>>> utts = [Utterance(id=f"u{i}", transcript=t, label=lab, speaker=s) for i, (t, lab, s) in
...         enumerate([("Kids", "sad", "a"), ("Kids", "angry", "a"), ("Dogs", "happy", "a")])]
>>> [(p.recipient.id, p.donor.id, p.tier) for p in pair_utterances(utts)[0]]
[('u0', 'u1', 'speaker+transcript'), ('u1', 'u0', 'speaker+transcript'), ('u2', 'u0', 'speaker')]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emollm.errors import ConfigError, DataError, ModelError, check_config
from emollm.evaluation.harness import checkpoint_settings, run_problems, saved_context_turns
from emollm.evaluation.runs import (
    append_predictions,
    hold_run_folder,
    input_digests,
    plan_resume,
    read_predictions,
    start_run,
)
from emollm.inputs import describe_utterances, encode_utterances, frames_of, select_utterances
from emollm.io import write_text_atomic
from emollm.labels import parse_label_option
from emollm.modeling.base import DEFAULT_MODEL

logger = logging.getLogger(__name__)

__all__ = ["SWAPS", "TIERS", "FaithfulnessConfig", "Pair", "faithfulness", "pair_utterances", "swap_metrics"]

SWAPS = ("all", "description", "frames")
"""What is swapped: every voice input the model has, or only the prosody description, or only the frames."""
TIERS = ("speaker+transcript", "speaker", "any")
"""Donor preference, best first: same speaker and sentence, same speaker, anyone (always another label)."""


# -- pairing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A recipient, the donor whose voice inputs it gets, and how alike they are (one of :data:`TIERS`)."""

    recipient: object
    donor: object
    tier: str


def pair_utterances(utterances: Sequence, *, seed: int = 0) -> tuple[list[Pair], list]:
    """A donor of another gold label for every labelled utterance, drawn with ``seed``.

    Each utterance is a recipient once, in corpus order. Its donor comes from the first non-empty tier of
    :data:`TIERS` (the same speaker and transcript, compared case- and space-insensitively; the same speaker;
    any), drawn at random among the candidates used least as donors so far, so donors spread evenly.

    Returns:
        ``(pairs, unpaired)``: the pairs, and the utterances no other label could donate to.
    """
    labelled = [u for u in utterances if u.label is not None]
    by_sentence: dict[tuple, list] = {}
    by_speaker: dict[str, list] = {}
    for u in labelled:
        if u.speaker is not None:
            by_speaker.setdefault(u.speaker, []).append(u)
            if u.transcript:
                by_sentence.setdefault((u.speaker, _sentence(u.transcript)), []).append(u)
    rng = random.Random(seed)
    uses: Counter = Counter()
    pairs, unpaired = [], []
    for u in labelled:
        tiers = (
            by_sentence.get((u.speaker, _sentence(u.transcript or "")), []) if u.transcript else [],
            by_speaker.get(u.speaker, []) if u.speaker is not None else [],
            labelled,
        )
        for tier, pool in zip(TIERS, tiers):
            candidates = [d for d in pool if d.label != u.label]
            if candidates:
                fewest = min(uses[d.id] for d in candidates)
                donor = rng.choice([d for d in candidates if uses[d.id] == fewest])
                uses[donor.id] += 1
                pairs.append(Pair(u, donor, tier))
                break
        else:
            unpaired.append(u)
    return pairs, unpaired


def _sentence(text: str) -> str:
    return " ".join(text.casefold().split())


# -- settings -----------------------------------------------------------------------------------------------


@dataclass
class FaithfulnessConfig:
    """Settings of one swap run (the ``emollm faithfulness`` options)."""

    data: str = field(metadata={"help": "corpus: ravdess, meld, iemocap or manifest:PATH", "required": True})
    split: str = field(default="dev", metadata={"help": "split of the corpus (e.g. train, dev, test, all)"})
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "built-in model name ('default' for the default), local folder, hub id or checkpoint"
        },
    )
    mode: str = field(
        default="score",
        metadata={
            "help": "score (label distributions: total variation under the swap) or generate (rationales: "
            "claim precision and coverage)",
            "choices": ["score", "generate"],
        },
    )
    strategy: str | None = field(
        default=None,
        metadata={
            "help": "prompt template (default: a checkpoint's own, else acoustic, which shows prosody)"
        },
    )
    swap: str = field(
        default="all",
        metadata={
            "help": "voice inputs swapped: all the model has, only the prosody description, or only the "
            "encoder frames (pseudo-tokens)",
            "choices": list(SWAPS),
        },
    )
    prosody: bool | None = field(
        default=None,
        metadata={
            "help": "describe the voice in the prompt (default: a checkpoint's own, else the template's)",
            "nargs": "?",
            "const": True,
        },
    )
    prosody_style: str | None = field(
        default=None,
        metadata={
            "help": "vowel, utterance or measures (default: a checkpoint's own, else vowel)",
            "choices": ["vowel", "utterance", "measures"],
        },
    )
    context: int | None = field(
        default=None,
        metadata={
            "help": "earlier conversation turns shown, the recipient's (default: a checkpoint's own, else 0)"
        },
    )
    labels: str | None = field(default=None, metadata={"help": "label set (default: the corpus's own)"})
    limit: int | None = field(default=None, metadata={"help": "N pairs drawn with --seed (default: all)"})
    seed: int = field(default=0, metadata={"help": "seed of the donor draw and of the --limit draw"})
    data_root: str = field(default="../shared/data", metadata={"help": "folder holding the corpora"})
    normalizer: str = field(
        default="speaker",
        metadata={"help": "speaker (fit on the paired clips, no labels), none, or a normaliser JSON path"},
    )
    frame_normalizer: str = field(
        default="speaker",
        metadata={
            "help": "adapters with normalize=speaker: speaker (refit) or checkpoint",
            "choices": ["speaker", "checkpoint"],
        },
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "generation length (default: a checkpoint's own, else 16 or 128)"}
    )
    batch_size: int = field(default=8, metadata={"help": "pairs per step (two prompts each)"})
    dtype: str = field(
        default="float32", metadata={"help": "weights' dtype", "choices": ["float32", "bfloat16", "float16"]}
    )
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)"}
    )
    workers: int = field(default=1, metadata={"help": "processes for prosody extraction"})
    output: str | None = field(
        default=None,
        metadata={"help": "output folder (default runs/faithfulness/<data>-<split>-<model>-<mode>)"},
    )

    def __post_init__(self):
        if self.model == "default":
            self.model = DEFAULT_MODEL
        problems = []
        if self.context is None:  # as the checkpoint was trained (the harness's rule), else none
            try:
                saved = saved_context_turns(checkpoint_settings(self.model))
            except ModelError as exc:  # an unreadable emollm_config.json
                saved = None
                problems.append(str(exc))
            self.context = 0 if saved is None else saved
        problems += run_problems(self)
        if self.device is not None:
            from emollm.api import device_problem

            problems.append(device_problem(self.device))
        out = self.output_dir()
        existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problems.append(
                f"output {str(out)!r} cannot be written ({str(existing)!r} is not a writable folder)"
            )
        try:
            parse_label_option(self.labels)
        except ConfigError as exc:
            problems.append(str(exc))
        check_config(self, [p for p in problems if p])

    def output_dir(self) -> Path:
        """The output folder, named after the run when not given."""
        if self.output:
            return Path(self.output)
        data = self.data.replace("manifest:", "manifest-").replace("/", "_")
        return Path("runs") / "faithfulness" / f"{data}-{self.split}-{Path(self.model).name}-{self.mode}"


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class FaithfulnessResult:
    """What :func:`faithfulness` produced: ``summary`` is ``metrics.json``; ``predicted`` pairs this call."""

    summary: dict
    output_dir: Path
    predicted: int


def faithfulness(
    config: FaithfulnessConfig, *, lm=None, overwrite: bool = False, progress: bool = True
) -> FaithfulnessResult:
    """Run (or resume) one swap evaluation and write its folder.

    Args:
        config: The run's settings.
        lm: A ready :class:`~emollm.modeling.EmotionLM` (not changed); default: load ``config.model``.
        overwrite: Start the folder again instead of resuming it.
        progress: Show progress bars.

    Raises:
        ConfigError: nothing to swap (a model shown no voice: no description, no adapter), a ``swap`` the
            model has no input for, or a folder made with other settings or held by another run.
        DataError: no labelled utterance with audio, or no two labels to pair.
    """
    from tqdm.auto import tqdm

    from emollm.api import EmotionReasoner

    # 1. The utterances and their donors (pairs drawn over the whole split, then --limit of them)
    label_set, utterances = select_utterances(
        config.data,
        config.split,
        labels=parse_label_option(config.labels),
        data_root=config.data_root,
        context_turns=config.context,
    )
    audible = [u for u in utterances if u.has_audio]
    if not audible:
        raise DataError(f"nothing to swap: no labelled utterance of {config.data} {config.split} has audio")
    pairs, unpaired = pair_utterances(audible, seed=config.seed)
    if not pairs:
        raise DataError(f"nothing to swap: every utterance with audio has the label {audible[0].label!r}")
    if config.limit is not None and config.limit < len(pairs):
        pairs = [pairs[i] for i in sorted(random.Random(config.seed).sample(range(len(pairs)), config.limit))]

    # 2. The model, asked as its checkpoint was trained (unless told otherwise), and what it can be swapped
    loaded = lm is None
    if loaded:
        import torch

        from emollm.modeling.emotion_lm import EmotionLM

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm = EmotionLM.from_pretrained(config.model, dtype=getattr(torch, config.dtype), device=device)
    saved = dict(getattr(lm, "checkpoint_config", {}).get("reasoner", {}))
    for name in ("calibrate", "length_normalize") if config.mode == "generate" else ():
        saved.pop(name, None)  # a saved score-mode setting does not apply to generation
    given = {"strategy": config.strategy, "prosody": config.prosody, "prosody_style": config.prosody_style}
    reasoner = EmotionReasoner(
        lm,
        **{
            **{"strategy": "acoustic", **saved},
            **{k: v for k, v in given.items() if v is not None},
            "labels": label_set,
            "mode": config.mode,
            "context_turns": config.context,
            "batch_size": config.batch_size,
            **({"max_new_tokens": config.max_new_tokens} if config.max_new_tokens is not None else {}),
        },
    )
    swapped_inputs = _swapped_inputs(reasoner, lm, config.swap)
    frame_refit = config.frame_normalizer == "speaker"
    normalizes = any(lm.normalizes(k) for k in lm.adapter_keys) if lm.adapter_keys else False
    settings = {
        **reasoner.settings(),
        "model": config.model if loaded else lm.name,
        "data": config.data,
        "split": config.split,
        "limit": config.limit,
        "seed": config.seed,
        "swap": list(swapped_inputs),
        "pairing": "speaker+transcript > speaker > any, least-used donor, seeded",
        "normalizer": config.normalizer,
        "frame_normalizer": config.frame_normalizer if normalizes else None,
        "dtype": _dtype_name(lm),
    }

    involved = list({u.id: u for p in pairs for u in (p.recipient, p.donor)}.values())
    measured = reasoner.prosody or config.mode == "generate"  # descriptions, or measures to check claims by
    digests = input_digests(
        involved,
        config.context,
        fitted_on_all=(measured and config.normalizer == "speaker") or (frame_refit and normalizes),
    )
    pair_digest = {
        p.recipient.id: _digest([digests[p.recipient.id], p.donor.id, digests[p.donor.id]]) for p in pairs
    }
    out = config.output_dir()
    with hold_run_folder(out):
        resume = plan_resume(
            out, settings, {p.recipient.id: (pair_digest[p.recipient.id], p.recipient.label) for p in pairs},
            overwrite=overwrite,
        )  # fmt: skip
        todo = [p for p in pairs if p.recipient.id not in resume.rows]

        # 3. Voice inputs of every clip involved (statistics fitted on all of them, as the harness does)
        start = time.perf_counter()
        descriptions, notes, features, normalizer = {}, {}, {}, None
        if measured and todo:
            descriptions, notes, normalizer = describe_utterances(
                involved,
                normalizer=config.normalizer,
                style=reasoner.prosody_style,
                max_vowels=reasoner.max_vowels,
                max_words=reasoner.max_words,
                workers=config.workers,
                progress=progress,
            )
            if config.mode == "generate":
                features = _features(involved, config.workers, progress)
        frames = {}
        if lm.adapter_keys and todo:
            frames, _ = encode_utterances(lm, involved, refit=frame_refit, progress=progress)

        # 4. Each pair: the recipient with its own inputs, then with the donor's, in one call
        seen: dict = {}
        bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), disable=not progress, unit="pair")
        started = False
        for begin in range(0, len(todo), config.batch_size):
            batch = todo[begin : begin + config.batch_size]
            own = [(p.recipient, p.recipient) for p in batch]
            swapped = [
                (p.donor if "description" in swapped_inputs else p.recipient,
                 p.donor if "frames" in swapped_inputs else p.recipient)
                for p in batch
            ]  # fmt: skip
            described = [descriptions.get(d.id) if reasoner.prosody else None for d, _ in own + swapped]
            extra = {"frames": [frames_of(frames, f.id) for _, f in own + swapped]} if frames else {}
            items = [p.recipient for p in batch] * 2
            preds = reasoner.predict_batch(items, prosody=described, cache=seen, **extra)
            rows = []
            for k, p in enumerate(batch):
                row = {
                    "id": p.recipient.id,
                    "gold": p.recipient.label,
                    "input_sha256": pair_digest[p.recipient.id],
                    "donor": p.donor.id,
                    "donor_gold": p.donor.label,
                    "pairing": p.tier,
                    "swapped_inputs": list(swapped_inputs),
                    "original": _prediction(preds[k], notes.get(p.recipient.id)),
                    "swapped": _prediction(preds[len(batch) + k], notes.get(swapped[k][0].id)),
                }
                if reasoner.prosody and "description" in swapped_inputs:
                    missing = [u.id for u in (p.recipient, p.donor) if descriptions.get(u.id) is None]
                    row["incomplete"] = f"no prosody description of {', '.join(missing)}" if missing else None
                if config.mode == "generate":
                    for which in ("original", "swapped"):
                        row[which]["claims"] = {
                            who: _check(row[which]["rationale"], features.get(u.id), normalizer, u.speaker)
                            for who, u in (("recipient", p.recipient), ("donor", p.donor))
                        }
                rows.append(row)
            if not started:
                start_run(out, settings, resume)
                started = True
            append_predictions(out / "predictions.jsonl", rows)
            bar.update(len(batch))
        bar.close()
        if not started:
            start_run(out, settings, resume)
        seconds = time.perf_counter() - start

        # 5. Scores over every pair of the run (resumed rows included; donors' gold labels as they are now)
        stored = read_predictions(out / "predictions.jsonl")
        rows = [{**stored[p.recipient.id], "donor_gold": p.donor.label} for p in pairs]
        summary = {
            **swap_metrics(rows, config.mode),
            "unpaired": len(unpaired),
            "without_audio": len(utterances) - len(audible),
            "settings": settings,
            "predicted_this_run": len(todo),
            "seconds_this_run": round(seconds, 2),
        }
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
        write_text_atomic(out / "report.md", report_markdown(summary))
    return FaithfulnessResult(summary, out, len(todo))


def _swapped_inputs(reasoner, lm, swap: str) -> tuple[str, ...]:
    """The voice inputs a swap replaces; refuses a model shown no voice, or a swap it has no input for."""
    has = (("description",) if reasoner.prosody else ()) + (("frames",) if lm.adapter_keys else ())
    if not has:
        raise ConfigError(
            f"nothing to swap: model {lm.name!r} with strategy {Path(reasoner.strategy).stem!r} is shown no "
            "voice (no prosody description, no audio adapter); use --strategy acoustic or --prosody, or a "
            "checkpoint with an audio adapter"
        )
    wanted = has if swap == "all" else (swap,)
    if wanted[0] not in has:
        raise ConfigError(
            f"swap is {swap!r}, but the model is shown no {wanted[0]} (it has: {', '.join(has)}); "
            "use --swap all"
        )
    return wanted


def _prediction(pred, extraction_notes) -> dict:
    """The parts of a prediction the report reads and a reader checks (the prompt shown among them)."""
    keep = ("label", "distribution", "completion", "rationale", "generated_label", "format_ok", "prosody")
    row = {k: getattr(pred, k) for k in keep}
    row["prompt"] = pred.prompt
    row["notes"] = [*(extraction_notes or []), *pred.notes]
    return row


def _features(utterances, workers: int, progress: bool) -> dict:
    """Measured prosody by utterance id (the cache :func:`describe_utterances` filled), for claim checks."""
    from emollm.modeling.base import cache_dir
    from emollm.prosody.pipeline import extract_many

    batch = extract_many(utterances, cache_dir=cache_dir() / "prosody", workers=workers, progress=progress)
    return {u.id: f for u, f in zip(utterances, batch.features) if f is not None}


def _check(rationale: str, features, normalizer, speaker) -> dict | None:
    """Counts, precision and coverage of a rationale's claims against one utterance's measures."""
    if features is None:
        return None
    from emollm.prosody.normalize import normalize_features
    from emollm.reasoning import verify_rationale

    check = verify_rationale(rationale or "", features, normalize_features(features, normalizer, speaker))
    return {
        "n_true": check.n_true,
        "n_false": check.n_false,
        "n_unverifiable": check.n_unverifiable,
        "precision": check.precision,
        "coverage": check.coverage,
        "n_salient": len(check.salient),
        "n_covered": len(check.covered),
    }


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _dtype_name(lm) -> str | None:
    parameter = next(iter(lm.model.parameters()), None) if hasattr(lm, "model") else None
    return None if parameter is None else str(parameter.dtype).removeprefix("torch.")


# -- scores -------------------------------------------------------------------------------------------------


def swap_metrics(rows: Sequence[dict], mode: str) -> dict:
    """The swap scores of pair rows (``gold``, ``donor_gold``, ``original``/``swapped`` with ``label``...).

    Rows with an ``incomplete`` reason (a description that could not be made) are counted, not scored.

    Returns:
        ``n_pairs``; ``stayed`` (the swapped label equals the original one), ``moved_to_donor`` (it changed,
        to the donor's gold label), ``moved_elsewhere`` (changed to another label or to none); ``changed`` =
        1 - stayed, each with a 95% Wilson interval in ``ci95``; ``accuracy`` and ``donor_label_rate`` (the
        share predicting the recipient's, the donor's gold label) of the original and swapped predictions;
        ``by_pairing`` (n, changed and moved_to_donor per tier). Score mode: ``mean_tv``, the mean total
        variation ``0.5 * sum_c |p_c - q_c|`` between the original and swapped distributions, and
        ``donor_probability_gain``, the mean of ``q(donor label) - p(donor label)``. Generate mode:
        ``claims[original|swapped][recipient|donor]``: the rationales' claims checked against the recipient's
        or the donor's measures, pooled over rationales: ``precision`` = true / (true + false), ``coverage``
        = covered / salient cues, the counts, and ``rationales`` (with a verifiable claim).

    >>> row = {"gold": "sad", "donor_gold": "angry", "original": {"label": "sad"}}
    >>> rows = [{**row, "swapped": {"label": "angry"}}, {**row, "swapped": {"label": "sad"}}]
    >>> m = swap_metrics(rows, "generate")
    >>> m["changed"], m["moved_to_donor"], m["stayed"]
    (0.5, 0.5, 0.5)
    """
    from scipy.stats import binomtest

    complete = [r for r in rows if not r.get("incomplete")]
    n = len(complete)
    out: dict = {"n_pairs": n, "incomplete": len(rows) - n, "mode": mode}
    if not n:
        return out
    stayed = [r["swapped"]["label"] == r["original"]["label"] for r in complete]
    moved = [not s and r["swapped"]["label"] == r["donor_gold"] for s, r in zip(stayed, complete)]
    counts = {
        "changed": n - sum(stayed),
        "moved_to_donor": sum(moved),
        "moved_elsewhere": n - sum(stayed) - sum(moved),
        "stayed": sum(stayed),
    }
    out.update({name: k / n for name, k in counts.items()})
    out["ci95"] = {
        name: list(map(float, binomtest(k, n).proportion_ci(method="wilson"))) for name, k in counts.items()
    }
    out["accuracy"] = {
        w: _share(complete, lambda r, w=w: r[w]["label"] == r["gold"]) for w in ("original", "swapped")
    }
    out["donor_label_rate"] = {
        w: _share(complete, lambda r, w=w: r[w]["label"] == r["donor_gold"]) for w in ("original", "swapped")
    }
    out["by_pairing"] = {}
    for tier in TIERS:
        group = [(s, m) for s, m, r in zip(stayed, moved, complete) if r.get("pairing") == tier]
        if group:
            out["by_pairing"][tier] = {
                "n": len(group),
                "changed": sum(not s for s, _ in group) / len(group),
                "moved_to_donor": sum(m for _, m in group) / len(group),
            }
    if mode == "score":
        tv, gain = [], []
        for r in complete:
            p, q = r["original"]["distribution"], r["swapped"]["distribution"]
            if p is None or q is None:  # an item the model could not be given (a note says why)
                continue
            tv.append(0.5 * sum(abs(q[c] - p[c]) for c in p))
            gain.append(q.get(r["donor_gold"], 0.0) - p.get(r["donor_gold"], 0.0))
        out["mean_tv"] = sum(tv) / len(tv) if tv else None
        out["donor_probability_gain"] = sum(gain) / len(gain) if gain else None
    else:
        out["claims"] = {
            which: {
                who: _pooled([(r[which].get("claims") or {}).get(who) for r in complete])
                for who in ("recipient", "donor")
            }
            for which in ("original", "swapped")
        }
    return out


def _share(rows, predicate) -> float:
    return sum(bool(predicate(r)) for r in rows) / len(rows)


def _pooled(checks: Sequence[dict | None]) -> dict:
    checks = [c for c in checks if c is not None]
    total = {
        k: sum(c[k] for c in checks)
        for k in ("n_true", "n_false", "n_unverifiable", "n_salient", "n_covered")
    }
    verifiable = total["n_true"] + total["n_false"]
    return {
        "precision": total["n_true"] / verifiable if verifiable else None,
        "coverage": total["n_covered"] / total["n_salient"] if total["n_salient"] else None,
        "rationales": sum(c["n_true"] + c["n_false"] > 0 for c in checks),
        "checked": len(checks),
        **total,
    }


def report_markdown(summary: dict) -> str:
    """``report.md``: the swap scores, per pairing tier, the claim checks (generate) and the settings."""
    s = summary["settings"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"# Faithfulness: {s['data']} {s['split']}, {Path(s['strategy']).stem} prompt, {s['mode']} mode",
        "",
        f"Model `{s['model']}`; swapped: {', '.join(s['swap'])} (the words and context stay the "
        f"recipient's). {summary['n_pairs']} pairs; {summary.get('incomplete', 0)} incomplete, "
        f"{summary.get('unpaired', 0)} utterances without a donor of another label, "
        f"{summary.get('without_audio', 0)} without audio.",
        "",
    ]
    if not summary["n_pairs"]:
        return "\n".join(lines)
    lines += ["| share of pairs | % | 95% interval |", "|---|---:|---|"]
    for name in ("changed", "moved_to_donor", "moved_elsewhere", "stayed"):
        low, high = summary["ci95"][name]
        lines.append(f"| {name.replace('_', ' ')} | {pct(summary[name])} | {pct(low)}-{pct(high)} |")
    lines += [
        "",
        "| predictions | accuracy (recipient's label) % | donor's label % |",
        "|---|---:|---:|",
        *(
            f"| {w} | {pct(summary['accuracy'][w])} | {pct(summary['donor_label_rate'][w])} |"
            for w in ("original", "swapped")
        ),
        "",
    ]
    if summary.get("mean_tv") is not None:
        lines += [
            f"Mean total variation between the original and swapped distributions: {summary['mean_tv']:.4f}; "
            f"mean gain of the donor label's probability: {summary['donor_probability_gain']:+.4f}.",
            "",
        ]
    lines += ["| pairing | n | changed % | moved to donor % |", "|---|---:|---:|---:|"]
    for tier, g in summary["by_pairing"].items():
        lines.append(f"| {tier} | {g['n']} | {pct(g['changed'])} | {pct(g['moved_to_donor'])} |")
    if "claims" in summary:
        lines += [
            "",
            "Rationale claims checked against each clip's measures (pooled over rationales):",
            "",
            "| rationale | measures of | precision % | coverage % | true / false / unverifiable | "
            "with a verifiable claim |",
            "|---|---|---:|---:|---|---:|",
        ]
        for which in ("original", "swapped"):
            for who in ("recipient", "donor"):
                c = summary["claims"][which][who]
                lines.append(
                    f"| {which} | {who} | {pct(c['precision'])} | {pct(c['coverage'])} | "
                    f"{c['n_true']} / {c['n_false']} / {c['n_unverifiable']} | "
                    f"{c['rationales']} of {c['checked']} |"
                )
    lines += ["", "Settings:", "", "```json", json.dumps(s, indent=2), "```", ""]
    return "\n".join(lines)
