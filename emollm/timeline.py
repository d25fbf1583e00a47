"""Long recordings: find the speech, then transcribe, describe and label every segment, resumably.

:func:`run_timeline` streams the file through voice activity detection (:mod:`emollm.vad`: blocks of 30 s,
never the whole file), then reads one segment at a time and, for each, transcribes it (:mod:`emollm.asr`,
or not with ``asr="none"``), measures and describes its prosody the way
:meth:`~emollm.api.EmotionReasoner.predict` does, and predicts its label, distribution and rationale. Memory
is the model plus one segment, whatever the length of the recording.

The output folder:

=======================  ==============================================================================
``timeline.json``        the settings (input file digest, voice activity, model, reasoner, ASR, context);
                         written first, and a rerun with other settings is refused
``segments.jsonl``       one JSON line per segment, appended (one ``write`` each) as soon as it is done
``segments.csv``         the same rows as a table (one ``p_<label>`` column per label)
``timeline.png``         waveform, pitch, and each label's probability over time (one colour per label)
``timeline.TextGrid``    Praat tiers ``words``, ``phones``, ``vowels`` and ``emotion``, to open beside the
                         audio
``summary.json``         segment count, label counts, duration, speed and notes (e.g. why no speech was
                         found)
=======================  ==============================================================================

A killed run continues where it stopped when rerun with the same settings: the segments already in
``segments.jsonl`` are kept (a half-written last line is dropped and redone), nothing is written twice. The
table, the figure, the TextGrid and the summary are rewritten from ``segments.jsonl`` at the end.

>>> import numpy as np
>>> from emollm.prosody.synth import synthesize
>>> speech, _ = synthesize("Kids are talking by the door")
>>> gap = np.zeros(speech.sample_rate, dtype=np.float32)
>>> recording = np.concatenate([gap, speech.samples, gap, speech.samples, gap])
>>> segments = find_speech(recording, sample_rate=speech.sample_rate)  # voice activity alone, no model
>>> len(segments), round(segments[0][0], 1)
(2, 1.0)
>>> result = run_timeline("talk.flac", "talk_timeline", asr="none")  # doctest: +SKIP
>>> [(row["start"], row["end"], row["label"]) for row in result.segments]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emollm.errors import ConfigError
from emollm.io import atomic_path, write_text_atomic
from emollm.vad import VadConfig, find_speech, scan_speech

__all__ = ["TimelineResult", "find_speech", "prosody_tiers", "run_timeline", "write_prosody_textgrid"]

logger = logging.getLogger(__name__)

SETTINGS = "timeline.json"
SEGMENTS = "segments.jsonl"
OUTPUTS = ("segments.csv", "timeline.png", "timeline.TextGrid", "summary.json")
CONTEXT_SPEAKER = "Speaker"  # how an earlier segment is named in the prompt (who spoke is unknown)
TIERS = ("words", "phones", "vowels", "emotion")


@dataclass
class TimelineResult:
    """What :func:`run_timeline` made.

    Attributes:
        output_dir: The output folder.
        segments: One row per segment, in time order, as in ``segments.jsonl``.
        duration: Length of the recording, seconds.
        predicted: Segments predicted by this call (the others were kept from an earlier, interrupted run).
        notes: What is worth knowing about the whole recording (e.g. why no speech was found).
    """

    output_dir: Path
    segments: list[dict]
    duration: float
    predicted: int
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> dict[str, Path]:
        """Each output file by name."""
        return {name: self.output_dir / name for name in (SEGMENTS, *OUTPUTS)}


def run_timeline(
    path,
    output_dir,
    *,
    reasoner=None,
    model: str | None = None,
    asr: str = "pocketsphinx",
    min_silence: float | None = None,
    context: int = 0,
    overwrite: bool = False,
    vad: VadConfig | None = None,
    progress: bool = True,
    **reasoner_settings,
) -> TimelineResult:
    """Segment a long recording and label every segment; resumable (see the module docstring).

    Args:
        path: The recording (WAV, FLAC, OGG or MP3: formats soundfile reads in blocks).
        output_dir: The output folder (created; one run at a time holds it).
        reasoner: An :class:`~emollm.api.EmotionReasoner`; by default one is loaded from ``model``.
        model: What :meth:`~emollm.api.EmotionReasoner.from_pretrained` loads when ``reasoner`` is None
            (default: the built-in default model).
        asr: Speech recognition backend for each segment: ``"pocketsphinx"``, ``"hf:<path>"`` or ``"none"``
            (no transcript: prosody from syllable nuclei, and the prompt says the words are unknown).
        min_silence: Pauses shorter than this (seconds) do not split a segment (default: ``vad``'s, 0.3 s
            unless ``vad`` sets another).
        context: Show the transcripts of up to this many earlier segments as conversation context.
        overwrite: Discard what the folder holds and start again (else a folder made with other settings is
            refused).
        vad: Further voice activity settings (:class:`~emollm.vad.VadConfig`); ``min_silence``, when given,
            overrides its own.
        progress: Show progress bars on stderr.
        **reasoner_settings: For the reasoner loaded from ``model`` (``labels``, ``strategy``, ``mode``...).

    Returns:
        A :class:`TimelineResult`.

    Raises:
        AudioError: the recording cannot be read in blocks. ConfigError: a bad setting, an unknown ASR
            backend, or a folder made with other settings (without ``overwrite``).
    """
    from emollm.evaluation.runs import append_predictions, hold_run_folder
    from emollm.vad import open_info

    if not isinstance(context, int) or context < 0:
        raise ConfigError(f"context must be an integer >= 0 (earlier segments shown), got {context!r}")
    if reasoner is not None and (model is not None or reasoner_settings):
        raise ConfigError("give either a reasoner or model=/reasoner settings, not both")
    vad = vad or VadConfig()
    if min_silence is not None:
        vad = VadConfig(**{**vad.to_dict(), "min_silence": min_silence})
    path = Path(path).expanduser()
    open_info(path)  # an unreadable file fails before anything else
    _check_asr(asr)
    out = Path(output_dir).expanduser()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hold_run_folder(out))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("another evaluation", "another run")) from None
        if reasoner is None:
            from emollm.api import EmotionReasoner
            from emollm.modeling.base import DEFAULT_MODEL

            reasoner = EmotionReasoner.from_pretrained(model or DEFAULT_MODEL, **reasoner_settings)
        settings = {
            "input_sha256": _file_sha256(path),
            "vad": vad.to_dict(),
            "asr": asr,
            "context": context,
            "reasoner": reasoner.settings(),
        }
        done = _resume(out, settings, overwrite)
        scan = scan_speech(path, config=vad, progress=progress)
        for note in scan.notes:
            logger.warning("%s: %s", path, note)
        planned = {_segment_id(start, end): (start, end) for start, end in scan.segments}
        stray = [key for key in done if key not in planned]
        if stray:  # segments of another voice activity result (another emollm version): dropped
            logger.warning("%s: %d segment(s) no longer found by voice activity; dropped", out, len(stray))
            done = {key: row for key, row in done.items() if key in planned}
            write_text_atomic(out / SEGMENTS, "".join(_line(row) for row in done.values()))

        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(planned),
            initial=len(done),
            unit="segment",
            desc="timeline",
            file=sys.stderr,
            disable=not progress,
        )
        recent: deque[dict] = deque(maxlen=max(context, 1))  # the last segments, for context
        predicted = 0
        for index, (key, (start, end)) in enumerate(planned.items()):
            if key in done:
                recent.append(done[key])
            else:
                turns = [(CONTEXT_SPEAKER, r["transcript"]) for r in recent if r.get("transcript")]
                row = _segment_row(path, index, start, end, reasoner, asr, turns if context else [])
                append_predictions(out / SEGMENTS, [row])
                done[key] = row
                recent.append(row)
                predicted += 1
                bar.update(1)
        bar.close()
        rows = [done[key] for key in planned]
        labels = list(reasoner.labels.labels)
        _write_csv(out / "segments.csv", rows, labels)
        _write_textgrid(out / "timeline.TextGrid", rows, scan.duration)
        plot_timeline(scan, rows, labels, out / "timeline.png", title=path.name)
        seconds = time.perf_counter() - started
        summary = {
            "input": str(path),
            "duration": round(scan.duration, 3),
            "segments": len(rows),
            "speech_seconds": round(sum(r["end"] - r["start"] for r in rows), 3),
            "labels": {label: sum(r["label"] == label for r in rows) for label in labels},
            "predicted_now": predicted,
            "seconds": round(seconds, 2),
            "audio_seconds_per_second": round(scan.duration / seconds, 2) if seconds > 0 else None,
            "notes": scan.notes,
        }
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return TimelineResult(out, rows, scan.duration, predicted, list(scan.notes))


# -- settings and resuming -----------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resume(out: Path, settings: dict, overwrite: bool) -> dict[str, dict]:
    """The segments an earlier run with these settings left; writes ``timeline.json``.

    Raises:
        ConfigError: the folder holds segments made with other settings, each difference named.
    """
    import emollm
    from emollm.evaluation.runs import read_predictions

    config, segments = out / SETTINGS, out / SEGMENTS
    if overwrite:
        for name in (SEGMENTS, *OUTPUTS):
            (out / name).unlink(missing_ok=True)
    elif segments.is_file() and segments.stat().st_size:
        try:
            old = json.loads(config.read_text(encoding="utf-8"))["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{out} holds {SEGMENTS} but no readable {SETTINGS} (what made them is unknown); use another "
                "output folder, or --overwrite to start again"
            ) from None
        before, now = _flat(old), _flat(settings)
        changed = [
            f"{key}: {_short(before.get(key))} -> {_short(now.get(key))}"
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key)
        ]
        if changed:
            raise ConfigError(
                f"{out} holds segments made with other settings ({'; '.join(changed)}). Use another output "
                "folder, or --overwrite to start again."
            )
    write_text_atomic(
        config, json.dumps({"emollm": emollm.__version__, "settings": settings}, indent=2) + "\n"
    )
    return read_predictions(segments, repair=True)  # a half-written last line is dropped (and redone)


def _flat(settings: dict) -> dict:
    """``{"vad": {"pad": 0.05}}`` -> ``{"vad.pad": 0.05}``: a difference is named by its own key."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _segment_id(start: float, end: float) -> str:
    return f"{start:.2f}-{end:.2f}"


def _line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _check_asr(asr: str) -> None:
    if asr == "none":
        return
    try:
        from emollm.asr import check_backend
    except ImportError as exc:
        raise ConfigError(f"ASR backend {asr!r} is not available ({exc}); use asr='none'") from None
    problem = check_backend(asr)
    if problem:
        raise ConfigError(problem)


# -- one segment ---------------------------------------------------------------------------------------------


def _segment_row(path: Path, index: int, start: float, end: float, reasoner, asr: str, turns) -> dict:
    """Transcribe, describe and predict one segment; every failure is a note on its row, never a crash."""
    from emollm.api import ITEM_ERRORS, extract_for_prompt
    from emollm.audio import load_audio
    from emollm.vad import read_span

    row: dict = {
        "id": _segment_id(start, end),
        "index": index,
        "start": start,
        "end": end,
        "duration": round(end - start, 3),
        "transcript": None,
        "asr_confidence": None,
        "prosody": None,
        "label": None,
        "distribution": None,
        "rationale": "",
        "notes": [],
        "tiers": {"words": [], "phones": [], "vowels": []},
    }
    samples, sample_rate = read_span(path, start, end)
    try:
        audio = load_audio(samples, sample_rate)
    except ITEM_ERRORS as exc:
        row["notes"].append(f"not predicted: the segment's audio is unusable: {exc}")
        return row
    if asr != "none":
        from emollm.asr import transcribe

        try:
            transcript = transcribe(audio, asr)
        except ITEM_ERRORS as exc:
            row["notes"].append(f"speech recognition failed: {type(exc).__name__}: {exc}")
        else:
            row["transcript"] = (transcript.text or "").strip() or None
            row["asr_confidence"] = transcript.confidence
            row["notes"].extend(transcript.notes)
    description = None
    try:
        features = extract_for_prompt(audio, row["transcript"])
    except ITEM_ERRORS as exc:
        row["notes"].append(f"prosody failed: {type(exc).__name__}: {exc}")
    else:
        description = reasoner.describe_features(features) or None
        row["prosody"] = description
        row["notes"].extend(features.notes)
        row["tiers"] = {k: [[round(a + start, 4), round(b + start, 4), label] for a, b, label in v]
                        for k, v in prosody_tiers(features).items()}  # fmt: skip
    item = {"audio": audio, "transcript": row["transcript"], "context": turns}
    prediction = reasoner.predict_batch([item], prosody=[description], errors="note")[0]
    row.update(
        label=prediction.label,
        distribution=prediction.distribution,
        rationale=prediction.rationale,
        notes=list(dict.fromkeys([*row["notes"], *prediction.notes])),
    )
    if turns:
        row["context"] = len(turns)
    return row


# -- Praat TextGrid ----------------------------------------------------------------------------------------


def prosody_tiers(features) -> dict[str, list[tuple[float, float, str]]]:
    """``words``, ``phones`` and ``vowels`` tiers of measured :class:`~emollm.prosody.ProsodyFeatures`.

    Phones are ARPAbet with the stress digit (``"AO1"``; ``"NUC"`` for a syllable nucleus); each vowel is
    labelled with its phone, mean F0 and intensity (``"AO1 182 Hz 68 dB"``).

    >>> from emollm.prosody import measure, synthesize
    >>> tiers = prosody_tiers(measure(*synthesize("Hello there")))
    >>> [w for _, _, w in tiers["words"]], tiers["vowels"][0][2].split()[0]
    (['hello', 'there'], 'AH0')
    """
    alignment = features.alignment
    phones = [
        (p.start, p.end, p.phone + ("" if p.stress is None else str(p.stress))) for p in alignment.phones
    ]
    vowels = []
    for vowel in features.vowels:
        label = _phone(vowel.phone, vowel.stress)
        if math.isfinite(vowel.f0_mean_hz):
            label += f" {vowel.f0_mean_hz:.0f} Hz"
        if math.isfinite(vowel.intensity_mean_db):
            label += f" {vowel.intensity_mean_db:.0f} dB"
        vowels.append((vowel.start, vowel.end, label))
    return {"words": [(w.start, w.end, w.text) for w in alignment.words], "phones": phones, "vowels": vowels}


def _phone(phone: str, stress: int | None) -> str:
    return phone + ("" if stress is None else str(stress))


def write_prosody_textgrid(features, path) -> None:
    """Write :func:`prosody_tiers` of one utterance as a Praat TextGrid (``prosody --textgrid-out``)."""
    from emollm.prosody.textgrid import write_textgrid

    duration = features.alignment.duration
    write_textgrid(path, _tidy(prosody_tiers(features), duration), duration)


def _tidy(tiers: dict, duration: float) -> dict:
    """Intervals clipped to ``[0, duration]`` (and to their segment's span), in order, never overlapping."""
    clean = {}
    for name, intervals in tiers.items():
        kept, cursor = [], 0.0
        for start, end, label in sorted(intervals, key=lambda iv: iv[0]):
            start, end = max(start, cursor), min(end, duration)
            if end - start > 1e-4:
                kept.append((start, end, label))
                cursor = end
        clean[name] = kept
    return clean


def _write_textgrid(path: Path, rows: list[dict], duration: float) -> None:
    from emollm.prosody.textgrid import write_textgrid

    tiers: dict[str, list] = {name: [] for name in TIERS}
    for row in rows:
        for name in ("words", "phones", "vowels"):
            tiers[name] += [
                (max(a, row["start"]), min(b, row["end"]), label)
                for a, b, label in row.get("tiers", {}).get(name, [])
            ]
        tiers["emotion"].append((row["start"], row["end"], row["label"] or "?"))
    write_textgrid(path, _tidy(tiers, duration), duration)


# -- table and figure ---------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict], labels: list[str]) -> None:
    columns = ["index", "start", "end", "duration", "transcript", "label"]
    columns += [f"p_{label}" for label in labels] + ["prosody", "rationale", "asr_confidence", "notes"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        dist = row.get("distribution") or {}
        head = [row["index"], row["start"], row["end"], row["duration"], row.get("transcript") or ""]
        tail = [row.get("prosody") or "", row.get("rationale") or "", row.get("asr_confidence")]
        probabilities = [round(dist[label], 4) if label in dist else "" for label in labels]
        writer.writerow([*head, row["label"] or "", *probabilities, *tail, "; ".join(row["notes"])])
    write_text_atomic(path, buffer.getvalue())


def _columns(values: np.ndarray, width: int, reduce) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (one per 10 ms frame) reduced to at most ``width`` columns: (frame centres, values)."""
    import warnings

    step = max(1, math.ceil(len(values) / width))
    padded = np.full(math.ceil(len(values) / step) * step, np.nan, dtype=np.float32)
    padded[: len(values)] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (unvoiced) stay NaN
        reduced = reduce(padded.reshape(-1, step), axis=1)
    return (np.arange(len(reduced)) * step + step / 2) / 100, reduced


def plot_timeline(scan, rows: list[dict], labels: list[str], path=None, *, title: str | None = None):
    """Waveform, pitch and each label's probability over time, segments shaded; saved to ``path`` if given.

    Args:
        scan: The :class:`~emollm.vad.SpeechScan` of the recording (its frame numbers are drawn).
        rows: The segment rows (``start``, ``end``, ``label``, ``distribution``).
        labels: The label set, in order (one colour each).
        path: A ``.png`` (or ``.pdf``, ``.svg``) to write, atomically; None: not saved.
        title: Figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    fig = Figure(figsize=(14, 7), layout="constrained")
    wave, pitch, probs = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1, 1.4])
    width = 4000
    times, peak = _columns(scan.peak, width, np.max)
    wave.fill_between(times, -peak, peak, color="0.3", linewidth=0)
    wave.set_ylabel("amplitude")
    times, f0 = _columns(scan.f0, width, np.nanmedian)
    pitch.plot(times, f0, ".", markersize=2, color="tab:blue")
    pitch.set_ylabel("pitch (Hz)")
    for row in rows:
        colour = colours.get(row["label"], "0.7")
        for ax in (wave, pitch):
            ax.axvspan(row["start"], row["end"], color=colour, alpha=0.15, linewidth=0)
    for label in labels:
        spans = [r for r in rows if r.get("distribution") and label in r["distribution"]]
        if spans:
            probs.hlines(
                [r["distribution"][label] for r in spans],
                [r["start"] for r in spans],
                [r["end"] for r in spans],
                color=colours[label],
                linewidth=2.5,
                label=label,
            )
    probs.set_ylim(0, 1)
    probs.set_ylabel("probability")
    probs.set_xlabel("time (s)")
    probs.set_xlim(0, max(scan.duration, 1e-3))
    if rows:
        probs.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    else:
        probs.text(0.5, 0.5, "no speech found", ha="center", va="center", transform=probs.transAxes)
    fig.suptitle(title or "timeline")
    if path is not None:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lower().lstrip(".") or "png", dpi=100)
    return fig
