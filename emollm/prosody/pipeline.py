"""The prosody pipeline end to end: audio (+ transcript or TextGrid) -> features -> words for a prompt.

:func:`extract_prosody` aligns and measures one utterance; :func:`describe_prosody` also normalises and
describes it; :func:`extract_many` runs a dataset through a process pool with a progress bar and an
on-disk cache keyed by the audio's content hash and the settings, so re-runs and interrupted runs skip
the files already done.

>>> from emollm.prosody.synth import synthesize
>>> audio, _ = synthesize("Kids are talking by the door")
>>> features = extract_prosody(audio, "Kids are talking by the door")
>>> features.alignment.method, len(features.vowels)
('pocketsphinx', 7)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emollm.audio import Audio, load_audio
from emollm.errors import AudioError, ConfigError, EmollmError
from emollm.io import write_text_atomic
from emollm.prosody.align import align
from emollm.prosody.features import ProsodyFeatures
from emollm.prosody.measure import MeasureConfig, measure

# Bump when a change to alignment or measurement changes results: old cache entries are then ignored.
# 4: implausible forced alignments fall back to syllable nuclei; phones carry their fit.
PIPELINE_VERSION = 4


def extract_prosody(
    audio,
    transcript: str | None = None,
    textgrid=None,
    speaker: str | None = None,
    *,
    gender: str | None = None,
    config: MeasureConfig | None = None,
    sample_rate: int | None = None,
    on_failure: str = "nuclei",
) -> ProsodyFeatures:
    """Align and measure one utterance.

    Args:
        audio: A file path, an :class:`~emollm.audio.Audio`, or an array with ``sample_rate``.
        transcript: What is said; None finds syllable nuclei instead of aligning words.
        textgrid: A TextGrid (path or parselmouth object) with word and phone tiers, trusted as is.
        speaker: Speaker id, recorded on the result (used by the normaliser).
        gender: ``"male"`` / ``"female"``: pitch range presets; overrides ``config.gender``.
        config: Measurement settings (pitch floor/ceiling, pause threshold).
        sample_rate: Sample rate when ``audio`` is an array.
        on_failure: ``"nuclei"`` (fall back to syllable nuclei when forced alignment fails or looks
            implausible, see :func:`~emollm.prosody.align.check_alignment`) or ``"raise"``.

    Returns:
        :class:`~emollm.prosody.measure.ProsodyFeatures`; ``features.alignment.method`` and
        ``features.notes`` say how the vowels were found and what was degraded.

    Raises:
        AudioError: unusable audio (a truncated WAV included). AlignmentError: empty transcript, TextGrid
            that does not fit, failed or implausible alignment with ``on_failure="raise"``.
    """
    audio = load_audio(audio, sample_rate)
    config = config or MeasureConfig()
    if gender is not None:
        config = MeasureConfig(**{**asdict(config), "gender": gender})
    alignment = align(audio, transcript, textgrid, on_failure=on_failure)
    features = measure(audio, alignment, config, speaker=speaker)
    features.notes = list(dict.fromkeys([*audio.notes, *alignment.notes, *features.notes]))
    return features


def describe_prosody(
    audio_or_features,
    transcript: str | None = None,
    textgrid=None,
    speaker: str | None = None,
    *,
    normalizer=None,
    style: str = "vowel",
    max_vowels: int | None = None,
    max_words: int | None = None,
    **extract_kwargs,
) -> str:
    """Describe an utterance's prosody in words for a prompt.

    Args:
        audio_or_features: Audio (anything :func:`extract_prosody` accepts) or ready
            :class:`~emollm.prosody.measure.ProsodyFeatures`.
        transcript: See :func:`extract_prosody`.
        textgrid: See :func:`extract_prosody`.
        speaker: Speaker id; with a fitted ``normalizer`` that knows the speaker, levels are relative to
            that speaker.
        normalizer: A fitted :class:`~emollm.prosody.normalize.ProsodyNormalizer`, or a path to its JSON.
            Without one, vowels are described relative to the utterance itself.
        style: ``"vowel"`` (utterance summary and salient vowels), ``"utterance"`` (summary only),
            ``"measures"`` (every utterance measure relative to the speaker, then every vowel) or ``"none"``
            (empty string).
        max_vowels: At most this many vowels are described (None: the style's default).
        max_words: The description never exceeds this many words (None: the style's default).
        **extract_kwargs: Passed to :func:`extract_prosody` (``gender``, ``config``, ``sample_rate``...).

    Returns:
        The description; deterministic for the same input.
    """
    from emollm.prosody.describe import describe_features

    if isinstance(audio_or_features, ProsodyFeatures):
        features = audio_or_features
    else:
        features = extract_prosody(audio_or_features, transcript, textgrid, speaker, **extract_kwargs)
    return describe_features(
        features,
        normalizer=normalizer,
        speaker=speaker,
        style=style,
        max_vowels=max_vowels,
        max_words=max_words,
    )


# -- batches -------------------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What :func:`extract_many` did.

    Attributes:
        features: One entry per input item, in input order; None where extraction failed.
        errors: Input index -> the error message, for the items that failed.
        cached: How many items were read from the cache instead of computed.
    """

    features: list[ProsodyFeatures | None]
    errors: dict[int, str] = field(default_factory=dict)
    cached: int = 0


def _item_fields(item) -> dict:
    """An Utterance, a dict or a path -> the keyword arguments of :func:`extract_prosody`."""
    if isinstance(item, (str, Path)):
        return {"audio": str(item)}
    if isinstance(item, dict):
        fields = dict(item)
    else:  # an emollm.data.Utterance, or anything with the same attributes
        fields = {
            "audio": item.audio_path if item.audio_path is not None else item.audio,
            "sample_rate": getattr(item, "sample_rate", None),
            "transcript": item.transcript,
            "speaker": item.speaker,
            "gender": getattr(item, "gender", None),
        }
    if fields.get("audio") is None:
        raise ConfigError(f"item {item!r} has no audio (a path, or an array with sample_rate)")
    return fields


def prosody_cache_key(fields: dict, config: MeasureConfig) -> str:
    """SHA-256 of the audio's content, the transcript/TextGrid, the speaker and the settings."""
    digest = hashlib.sha256()
    audio = fields["audio"]
    if isinstance(audio, Audio):
        digest.update(np.ascontiguousarray(audio.samples).tobytes())
    elif isinstance(audio, (str, Path)):
        if not Path(audio).is_file():
            raise AudioError(f"audio file {str(audio)!r} does not exist")
        with open(audio, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(np.ascontiguousarray(np.asarray(audio, dtype=np.float32)).tobytes())
    textgrid = fields.get("textgrid")
    if isinstance(textgrid, (str, Path)):
        digest.update(Path(textgrid).read_bytes())
    settings = {
        "version": PIPELINE_VERSION,
        # hnr="fast" (the default) is left out so that keys made before MeasureConfig.hnr existed still match
        "config": {k: v for k, v in asdict(config).items() if not (k == "hnr" and v == "fast")},
        **{k: fields.get(k) for k in ("transcript", "speaker", "gender", "sample_rate", "on_failure")},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _extract_one(
    fields: dict, config: MeasureConfig, cache_dir: str | None
) -> tuple[dict | None, str | None]:
    """Worker: returns ``(features as a dict, None)`` or ``(None, error message)``."""
    try:
        path = None
        if cache_dir is not None:
            key = prosody_cache_key(fields, config)
            path = Path(cache_dir).expanduser() / key[:2] / f"{key}.json"
        features = extract_prosody(config=config, **fields)
        if path is not None:
            write_text_atomic(path, features.to_json())
        return features.to_dict(), None
    except (EmollmError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def extract_many(
    items: Iterable,
    *,
    config: MeasureConfig | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> BatchResult:
    """Extract prosody for many utterances, in parallel, skipping what the cache already holds.

    Args:
        items: Audio paths, :class:`~emollm.data.Utterance` objects, or dicts of :func:`extract_prosody`
            keyword arguments (``audio``, ``transcript``, ``textgrid``, ``speaker``, ``gender``...).
        config: Measurement settings, the same for every item.
        cache_dir: Folder for cached results (one JSON per item, written atomically when it finishes).
            An interrupted run loses at most the items in flight; the next run reads the rest back.
        workers: Worker processes; 1 runs in this process.
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`BatchResult`. A bad item is recorded in ``errors`` and does not stop the batch.
    """
    from tqdm.auto import tqdm

    config = config or MeasureConfig()
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    all_fields = [_item_fields(item) for item in items]
    result = BatchResult(features=[None] * len(all_fields))
    todo: list[int] = []
    for index, fields in enumerate(all_fields):
        if cache_dir is not None:
            try:
                key = prosody_cache_key(fields, config)
            except (EmollmError, OSError) as exc:
                result.errors[index] = f"{type(exc).__name__}: {exc}"
                continue
            path = Path(cache_dir).expanduser() / key[:2] / f"{key}.json"
            if path.is_file():
                try:
                    result.features[index] = ProsodyFeatures.from_dict(json.loads(path.read_text()))
                    result.cached += 1
                    continue
                except (ValueError, TypeError, KeyError):
                    path.unlink(missing_ok=True)  # unreadable entry (older format): recompute it
        todo.append(index)

    bar = tqdm(
        total=len(all_fields), initial=result.cached, disable=not progress, desc="prosody", unit="file"
    )
    cache = str(cache_dir) if cache_dir is not None else None

    def record(index: int, outcome: tuple[dict | None, str | None]) -> None:
        data, error = outcome
        if error is not None:
            result.errors[index] = error
        else:
            result.features[index] = ProsodyFeatures.from_dict(data)
        bar.update(1)

    if workers == 1 or len(todo) <= 1:
        for index in todo:
            record(index, _extract_one(all_fields[index], config, cache))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
        with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1), mp_context=context) as pool:
            futures = {pool.submit(_extract_one, all_fields[i], config, cache): i for i in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
    bar.close()
    return result


def save_features_jsonl(
    path: str | Path, ids: Sequence[str], features: Sequence[ProsodyFeatures | None]
) -> None:
    """Write ``{"id": ..., "features": {...}}`` lines (None for failures), atomically."""
    lines = [
        json.dumps({"id": i, "features": json.loads(f.to_json()) if f is not None else None})
        for i, f in zip(ids, features)
    ]
    write_text_atomic(path, "\n".join(lines) + "\n")
