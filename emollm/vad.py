"""Voice activity in long recordings: where the speech is, read in blocks, never the whole file at once.

:func:`scan_speech` streams a file (or an array) in blocks of :data:`BLOCK_SECONDS`, mixes each to mono and
resamples it to 16 kHz with soxr's streaming resampler (the quality :func:`emollm.audio.load_audio` uses),
and keeps a few numbers per 10 ms frame: level (dBFS of a 25 ms frame), voicing and F0 (normalised
autocorrelation of a 40 ms frame, Boersma's method), spectral flatness and peak amplitude. Memory is the
block plus those numbers (about 20 bytes per frame: 14 MB for 2 hours).

A frame is *speech* when it is voiced, and at least ``threshold_db`` above the background (a running
minimum of the smoothed level over ``floor_seconds``) and above ``min_level_db``. Speech runs closer than
``min_silence`` are merged; a run keeps up to ``tail`` of loud frames that are not noise-like on each side
(a fading, breathy or creaky voice), then up to ``hangover`` of any loud frames (fricatives, bursts), is
dropped below ``min_speech``, padded by ``pad`` and split at its quietest frame when longer than
``max_segment``. A run whose voicing is a steady tone (its F0 barely moves and its level never dips, as in
sustained music) is not speech; neither is loud sound that is not voiced (noise). When nothing is left,
:attr:`SpeechScan.notes` says what the file holds instead.

>>> import numpy as np
>>> sr = 16000
>>> t = np.arange(sr) / sr
>>> tone = 0.2 * np.sin(2 * np.pi * 220 * t)  # 1 s of a steady 220 Hz tone between 1 s silences
>>> scan = scan_speech(np.concatenate([np.zeros(sr), tone, np.zeros(sr)]), sample_rate=sr)
>>> scan.segments, scan.notes[0].split(":")[0]
([], 'no speech found in 3.0 s')
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emollm.audio import TARGET_SR, Audio
from emollm.errors import AudioError, ConfigError

BLOCK_SECONDS = 30.0
"""Seconds of audio read from the file at a time (the reader's memory)."""
HOP = TARGET_SR // 100  # 10 ms frames
ENERGY_WINDOW = 400  # 25 ms
PITCH_WINDOW = 640  # 40 ms: two periods of 50 Hz
LAG_MIN, LAG_MAX = TARGET_SR // 500, TARGET_SR // 60  # F0 searched in 60-500 Hz
NFFT = 1024  # >= PITCH_WINDOW + LAG_MAX: the autocorrelation does not wrap
FLOOR_DB = -100.0  # digital silence is clamped here
FRAME_CHUNK = 512  # frames analysed at once (float32: about 5 MB of FFT buffers)


@dataclass
class VadConfig:
    """Settings of :func:`scan_speech`; every length is in seconds.

    Attributes:
        min_silence: Speech runs separated by less than this are one segment.
        min_speech: Shorter runs are dropped (a cough, a click).
        pad: Each segment is widened by this much on both sides (never into the next one).
        max_segment: Longer segments are split at their quietest frame.
        threshold_db: A speech frame is this many dB above the background level.
        min_level_db: A speech frame is louder than this (dBFS of a 25 ms frame), whatever the background.
        voicing: A frame is voiced when its normalised autocorrelation peak (60-500 Hz) reaches this.
        tail: Loud frames that are not noise-like (spectral flatness under 0.3: breathy or creaky voice,
            a fading vowel) kept at each end of a voiced run, at most this long.
        hangover: Then any loud frames kept at each end, at most this long (s, f, t and k sounds).
        floor_seconds: The background level is the lowest smoothed level within this window.
    """

    min_silence: float = 0.3
    min_speech: float = 0.25
    pad: float = 0.05
    max_segment: float = 20.0
    threshold_db: float = 10.0
    min_level_db: float = -70.0
    voicing: float = 0.6
    tail: float = 0.5
    hangover: float = 0.1
    floor_seconds: float = 10.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 0, got {getattr(self, name)!r}"
            for name in ("min_silence", "min_speech", "pad", "tail", "hangover")
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0)
        ]
        if not (isinstance(self.max_segment, (int, float)) and 1.0 <= self.max_segment <= 120.0):
            problems.append(f"max_segment must be in [1, 120] s, got {self.max_segment!r}")
        problems += [
            f"{name} must be a number (dB), got {getattr(self, name)!r}"
            for name in ("threshold_db", "min_level_db")
            if not isinstance(getattr(self, name), (int, float))
        ]
        if not (isinstance(self.voicing, (int, float)) and 0 < self.voicing < 1):
            problems.append(f"voicing must be in (0, 1), got {self.voicing!r}")
        if not (isinstance(self.floor_seconds, (int, float)) and self.floor_seconds >= 1):
            problems.append(f"floor_seconds must be >= 1, got {self.floor_seconds!r}")
        if problems:
            raise ConfigError("voice activity settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """The settings as a plain dict."""
        return asdict(self)


@dataclass
class SpeechScan:
    """What :func:`scan_speech` found.

    Attributes:
        segments: ``(start, end)`` of each speech segment in seconds, in time order.
        duration: Length of the recording, seconds.
        sample_rate: The file's own sample rate (before resampling to 16 kHz).
        channels: The file's channel count.
        level_db: Level of each 10 ms frame, dBFS, shape ``(n_frames,)``; frame ``i`` is centred at
            ``i / 100`` s (:meth:`times`).
        voicing: Normalised autocorrelation peak of each frame (0-1).
        f0: F0 of each voiced frame in Hz, NaN elsewhere.
        flatness: Spectral flatness of each frame (0 tonal - 1 white noise).
        peak: Largest absolute sample of each frame's hop (for drawing the waveform).
        notes: What was found instead of speech, or degraded (non-finite samples).
        max_block: The most samples read from the file at once.
    """

    segments: list[tuple[float, float]]
    duration: float
    sample_rate: int
    channels: int
    level_db: np.ndarray = field(repr=False)
    voicing: np.ndarray = field(repr=False)
    f0: np.ndarray = field(repr=False)
    flatness: np.ndarray = field(repr=False)
    peak: np.ndarray = field(repr=False)
    notes: list[str] = field(default_factory=list)
    max_block: int = 0

    def times(self) -> np.ndarray:
        """Centre time of each frame, seconds."""
        return np.arange(len(self.level_db)) * HOP / TARGET_SR


# -- reading in blocks -----------------------------------------------------------------------------------


def open_info(path: str | Path) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` of a file soundfile can stream.

    Raises:
        AudioError: a missing file, a folder, or a format soundfile cannot read (naming what it can).
    """
    import soundfile as sf

    path = Path(path).expanduser()
    if path.is_dir():
        raise AudioError(f"audio file {str(path)!r} is a folder, not a file; give one audio file in it")
    if not path.is_file():
        raise AudioError(f"audio file {str(path)!r} does not exist")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - soundfile raises its own LibsndfileError / RuntimeError
        raise AudioError(
            f"cannot stream audio file {str(path)!r}: {exc}. Long recordings are read in blocks with "
            "soundfile, which reads WAV, FLAC, OGG and MP3; convert other formats first (e.g. ffmpeg -i "
            "in.m4a out.flac)"
        ) from None
    if info.frames <= 0:
        raise AudioError(f"audio file {str(path)!r} is empty (0 samples)")
    from emollm.audio import _check_complete

    _check_complete(path, info.frames, info.samplerate)  # a truncated WAV is refused, as load_audio does
    return int(info.frames), int(info.samplerate), int(info.channels)


def read_blocks(source, sample_rate: int | None = None, *, stats: dict | None = None) -> Iterator[np.ndarray]:
    """Yield the recording as consecutive mono 16 kHz float32 blocks of about :data:`BLOCK_SECONDS`.

    Args:
        source: A file path (read :data:`BLOCK_SECONDS` at a time), an :class:`~emollm.audio.Audio` or an
            array (with ``sample_rate``; already in memory, cut into blocks all the same).
        sample_rate: Sample rate of an array source.
        stats: If given, ``stats["max_block"]`` is set to the most source samples held at once.
    """
    import soxr

    stats = stats if stats is not None else {}
    stats["max_block"] = 0
    if isinstance(source, (str, Path)):
        import soundfile as sf

        frames, sr, _ = open_info(source)
        block = max(1, int(BLOCK_SECONDS * sr))
        resampler = soxr.ResampleStream(sr, TARGET_SR, 1, dtype="float32") if sr != TARGET_SR else None
        with sf.SoundFile(str(Path(source).expanduser())) as handle:
            while True:
                data = handle.read(block, dtype="float32", always_2d=True)
                stats["max_block"] = max(stats["max_block"], len(data))
                last = len(data) < block
                mono = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
                del data
                yield resampler.resample_chunk(mono, last=last) if resampler else mono
                if last:
                    return
    audio = _as_audio(source, sample_rate)
    step = int(BLOCK_SECONDS * TARGET_SR)
    for start in range(0, len(audio.samples), step):
        stats["max_block"] = max(stats["max_block"], min(step, len(audio.samples) - start))
        yield audio.samples[start : start + step]


def _as_audio(source, sample_rate: int | None) -> Audio:
    from emollm.audio import load_audio

    if isinstance(source, Audio):
        if source.sample_rate != TARGET_SR:
            raise AudioError(f"an Audio must be at {TARGET_SR} Hz (load_audio makes it so)")
        return source
    return load_audio(source, sample_rate, max_seconds=math.inf)


def read_span(path: str | Path, start: float, end: float) -> tuple[np.ndarray, int]:
    """The samples of ``path`` between ``start`` and ``end`` seconds, mono, at the file's own rate."""
    import soundfile as sf

    with sf.SoundFile(str(Path(path).expanduser())) as handle:
        sr = handle.samplerate
        first = max(0, int(round(start * sr)))
        handle.seek(min(first, handle.frames))
        data = handle.read(max(0, int(round(end * sr)) - first), dtype="float32", always_2d=True)
    return (data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]), sr


# -- frame features ----------------------------------------------------------------------------------------


def _frame_features(frames: np.ndarray) -> tuple[np.ndarray, ...]:
    """Level, voicing, F0, flatness and peak of frames of shape ``(n, PITCH_WINDOW)`` at 16 kHz."""
    frames = frames.astype(np.float32)
    middle = (PITCH_WINDOW - ENERGY_WINDOW) // 2
    core = frames[:, middle : middle + ENERGY_WINDOW]
    rms = np.sqrt(np.mean(core**2, axis=1))
    level = np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), FLOOR_DB)
    hop_start = (PITCH_WINDOW - HOP) // 2
    peak = np.max(np.abs(frames[:, hop_start : hop_start + HOP]), axis=1)

    window = np.hanning(PITCH_WINDOW).astype(np.float32)
    centred = (frames - frames.mean(axis=1, keepdims=True)) * window
    spectrum = np.fft.rfft(centred, NFFT, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    auto = np.fft.irfft(power, NFFT, axis=1)[:, : LAG_MAX + 2]
    window_auto = np.fft.irfft(np.abs(np.fft.rfft(window, NFFT)) ** 2, NFFT)[: LAG_MAX + 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = auto / np.maximum(auto[:, :1], 1e-20) / (window_auto / window_auto[0])
    search = normalised[:, LAG_MIN : LAG_MAX + 1]
    best = np.argmax(search, axis=1)
    voicing = np.clip(search[np.arange(len(best)), best], 0.0, 1.0)
    voicing[auto[:, 0] <= 1e-20] = 0.0
    voicing[(best == 0) | (best == search.shape[1] - 1)] = 0.0  # a peak at the search's edge is no period
    lag = best + LAG_MIN
    # parabolic interpolation around the peak
    left = normalised[np.arange(len(lag)), lag - 1]
    mid = normalised[np.arange(len(lag)), lag]
    right = normalised[np.arange(len(lag)), np.minimum(lag + 1, LAG_MAX + 1)]
    denominator = left - 2 * mid + right
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(np.abs(denominator) > 1e-12, 0.5 * (left - right) / denominator, 0.0)
    f0 = TARGET_SR / (lag + np.clip(shift, -0.5, 0.5))

    band = power[:, int(100 * NFFT / TARGET_SR) : int(4000 * NFFT / TARGET_SR)] + 1e-20
    flatness = np.exp(np.mean(np.log(band), axis=1)) / np.mean(band, axis=1)
    return level, voicing, f0, flatness, peak


def _features(source, sample_rate: int | None, stats: dict, bar=None) -> tuple[np.ndarray, ...]:
    from numpy.lib.stride_tricks import sliding_window_view

    parts: list[tuple[np.ndarray, ...]] = []
    carry = np.zeros(PITCH_WINDOW // 2, dtype=np.float32)  # frame 0 is centred on the first sample
    total = 0
    bad = 0
    for block in read_blocks(source, sample_rate, stats=stats):
        total += len(block)
        if bar is not None:
            bar.update(len(block) / TARGET_SR)
        finite = np.isfinite(block)
        if not finite.all():
            bad += int(np.count_nonzero(~finite))
            block = np.where(finite, block, 0.0).astype(np.float32)
        buffer = np.concatenate([carry, block])
        n = (len(buffer) - PITCH_WINDOW) // HOP + 1 if len(buffer) >= PITCH_WINDOW else 0
        if n > 0:
            view = sliding_window_view(buffer, PITCH_WINDOW)[: n * HOP : HOP]
            for lo in range(0, n, FRAME_CHUNK):
                parts.append(_frame_features(view[lo : lo + FRAME_CHUNK]))
        carry = buffer[n * HOP :]
    # the last frames, centred up to the end of the audio
    tail = np.concatenate([carry, np.zeros(PITCH_WINDOW // 2, dtype=np.float32)])
    n = (len(tail) - PITCH_WINDOW) // HOP + 1 if len(tail) >= PITCH_WINDOW else 0
    expected = math.ceil(total / HOP)
    if n > 0 and sum(len(p[0]) for p in parts) < expected:
        parts.append(_frame_features(sliding_window_view(tail, PITCH_WINDOW)[: n * HOP : HOP]))
    stats["samples"], stats["non_finite"] = total, bad
    if not parts:
        empty = np.zeros(0)
        return empty, empty, empty, empty, empty
    return tuple(np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(5))


# -- deciding ----------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last + 1), ...]`` of the True runs of a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _background(level: np.ndarray, config: VadConfig) -> np.ndarray:
    """The background level of each frame: the lowest 200 ms mean level within ``floor_seconds``."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    smooth = uniform_filter1d(level.astype(np.float64), size=21, mode="nearest")
    return minimum_filter1d(smooth, size=max(1, int(config.floor_seconds * 100)), mode="nearest")


def _is_steady_tone(f0: np.ndarray, level: np.ndarray, voiced: np.ndarray) -> bool:
    """Whether a run is a sustained tone, not syllables.

    Its level never dips 10 dB below its loud frames, or its voiced frames hold one pitch (most within 0.05
    semitone of the next).
    """
    if float(np.mean(level < np.percentile(level, 90) - 10)) < 0.02:
        return True
    semitones = 12 * np.log2(f0[voiced] / 100.0)
    return len(semitones) >= 10 and float(np.mean(np.abs(np.diff(semitones)) < 0.05)) > 0.6


def _split(start: int, end: int, level: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` at its quietest frames until no piece is longer than ``longest`` frames."""
    if end - start <= longest:
        return [(start, end)]
    quarter = (end - start) // 4
    lo, hi = start + quarter, end - quarter  # the cut is not near an end
    lo, hi = max(lo, end - longest), min(hi, start + longest)
    if hi <= lo:  # over twice ``longest``: cut off a piece of half to all of ``longest``, then go on
        lo, hi = start + longest // 2, start + longest
    cut = lo + int(np.argmin(level[lo:hi]))
    return _split(start, cut, level, longest) + _split(cut, end, level, longest)


def _decide(
    level: np.ndarray, voicing: np.ndarray, f0: np.ndarray, flatness: np.ndarray, config: VadConfig
) -> tuple[list[tuple[int, int]], dict]:
    """Frame spans of speech, and counts of what was rejected."""
    loud = (level > _background(level, config) + config.threshold_db) & (level > config.min_level_db)
    voiced = loud & (voicing >= config.voicing) & (flatness < 0.3)
    gap = int(round(config.min_silence * 100))
    runs: list[list[int]] = []
    for first, stop in _runs(voiced):
        if runs and first - runs[-1][1] < gap:
            runs[-1][1] = stop
        else:
            runs.append([first, stop])
    rejected = {"tone": 0, "unvoiced": 0, "short": 0}
    spans: list[tuple[int, int]] = []
    hang, tail = int(round(config.hangover * 100)), int(round(config.tail * 100))
    voiceish = loud & (flatness < 0.3)
    for first, stop in runs:
        inside = slice(first, stop)
        if np.count_nonzero(voiced[inside]) < 0.3 * max(1, np.count_nonzero(loud[inside])):
            rejected["unvoiced"] += 1  # scattered voiced frames in a loud stretch: not syllables
            continue
        if _is_steady_tone(f0[inside], level[inside], voiced[inside]):
            rejected["tone"] += 1
            continue
        previous = spans[-1][1] if spans else 0
        floor = max(first - tail, previous)  # first loud frames that are not noise (breathy or creaky voice)
        while first > floor and voiceish[first - 1]:
            first -= 1
        floor = max(first - hang, previous)  # then any loud frames (fricatives, bursts)
        while first > floor and loud[first - 1]:
            first -= 1
        ceiling = min(stop + tail, len(loud))
        while stop < ceiling and voiceish[stop]:
            stop += 1
        ceiling = min(stop + hang, len(loud))
        while stop < ceiling and loud[stop]:
            stop += 1
        if stop - first < config.min_speech * 100:
            rejected["short"] += 1
            continue
        spans.append((first, stop))
    pad = int(round(config.pad * 100))
    padded: list[tuple[int, int]] = []
    for i, (first, stop) in enumerate(spans):
        lo = max(0, first - pad, padded[-1][1] if padded else 0)
        hi = min(len(level), stop + pad, spans[i + 1][0] if i + 1 < len(spans) else len(level))
        padded.extend(_split(lo, hi, level, int(config.max_segment * 100)))
    return padded, rejected


def scan_speech(
    source,
    *,
    sample_rate: int | None = None,
    config: VadConfig | None = None,
    progress: bool = False,
    **settings,
) -> SpeechScan:
    """Find the speech in a recording of any length, reading it in blocks.

    Args:
        source: A file path (streamed: WAV, FLAC, OGG, MP3), an :class:`~emollm.audio.Audio` or an array
            with ``sample_rate``.
        sample_rate: Sample rate of an array source.
        config: The settings; or give them one by one as keyword arguments (``min_silence=0.5``...).
        progress: Show a progress bar (seconds of audio read) on stderr.

    Returns:
        A :class:`SpeechScan`: the segments, the frame numbers behind them and notes.

    Raises:
        AudioError: a missing or unreadable file, a format soundfile cannot stream, a truncated WAV.
        ConfigError: a setting out of range.
    """
    if config is None:
        config = VadConfig(**settings)
    elif settings:
        config = VadConfig(**{**config.to_dict(), **settings})
    import sys

    from tqdm.auto import tqdm

    if isinstance(source, (str, Path)):
        frames, native_rate, channels = open_info(source)
        total = frames / native_rate
    else:
        native_rate, channels, total = TARGET_SR, 1, None
    stats: dict = {}
    with tqdm(
        total=None if total is None else round(total, 1),
        unit="s",
        desc="voice activity",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    ) as bar:
        level, voicing, f0, flatness, peak = _features(source, sample_rate, stats, bar)
    duration = stats["samples"] / TARGET_SR
    notes: list[str] = []
    if stats["non_finite"]:
        notes.append(f"{stats['non_finite']} non-finite samples (NaN or inf) were read as silence")
    spans, rejected = _decide(level, voicing, f0, flatness, config) if len(level) else ([], {})
    segments = [(round(a / 100, 2), round(min(b / 100, duration), 2)) for a, b in spans]
    segments = [(a, b) for a, b in segments if b > a]
    voiced_f0 = np.where((voicing >= config.voicing) & (level > config.min_level_db), f0, np.nan)
    if not segments:
        notes.insert(0, _nothing_found(level, voicing, flatness, rejected, config, duration))
    return SpeechScan(
        segments=segments,
        duration=duration,
        sample_rate=native_rate,
        channels=channels,
        level_db=level,
        voicing=voicing,
        f0=voiced_f0.astype(np.float32),
        flatness=flatness,
        peak=peak,
        notes=notes,
        max_block=stats["max_block"],
    )


def find_speech(source, *, sample_rate: int | None = None, **settings) -> list[tuple[float, float]]:
    """``(start, end)`` in seconds of each speech segment of a recording (see :func:`scan_speech`).

    >>> import numpy as np
    >>> from emollm.prosody.synth import synthesize
    >>> speech, _ = synthesize("Kids are talking by the door")
    >>> silence = np.zeros(speech.sample_rate)
    >>> audio = np.concatenate([silence, speech.samples, silence])
    >>> [round(start) for start, end in find_speech(audio, sample_rate=speech.sample_rate)]
    [1]
    """
    return scan_speech(source, sample_rate=sample_rate, **settings).segments


def _nothing_found(level, voicing, flatness, rejected: dict, config: VadConfig, duration: float) -> str:
    """Why there is no segment (silence, noise, steady or tonal sound), in one line."""
    head = f"no speech found in {duration:.1f} s"
    if not len(level) or float(np.max(level)) <= config.min_level_db:
        return f"{head}: the recording is silent (below {config.min_level_db:g} dBFS throughout)"
    sound = level > config.min_level_db
    flat = float(np.median(flatness[sound]))
    voiced_share = float(np.mean(voicing[sound] >= config.voicing))
    kind = (
        f"noise (spectral flatness {flat:.2f})"
        if flat > 0.3
        else f"tonal (spectral flatness {flat:.2f}; voiced in {voiced_share:.0%} of frames): music or tones?"
    )
    found = f"{head}: the sound (median {float(np.median(level[sound])):.0f} dBFS) is {kind}"
    why = []
    if rejected.get("tone"):
        why.append(f"{rejected['tone']} stretch(es) of steady sound without syllables")
    if rejected.get("unvoiced"):
        why.append(f"{rejected['unvoiced']} loud stretch(es) not voiced like speech")
    if rejected.get("short"):
        why.append(f"{rejected['short']} burst(s) shorter than min_speech={config.min_speech} s")
    if why:
        return f"{found}; not counted as speech: {', '.join(why)}"
    return (
        f"{found}; nothing voiced rises {config.threshold_db:g} dB above the background (quiet speech would "
        "need a lower threshold_db)"
    )
