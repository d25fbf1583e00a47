"""The audio boundary: load any file or array, make it mono 16 kHz float32, and validate it.

Everything downstream (alignment, Praat measures, encoders) takes an :class:`Audio`. Problems that make the
audio unusable raise :class:`~emollm.errors.AudioError` saying what was wrong; problems that only degrade it
(clipping, a low original sample rate) are recorded on the result and reported with ``warnings.warn``.

>>> import warnings
>>> import numpy as np
>>> tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(8000) / 8000)  # 1 s of 220 Hz at 8 kHz
>>> with warnings.catch_warnings(record=True) as caught:  # a low sample rate is reported, not refused
...     warnings.simplefilter("always")
...     audio = load_audio(tone, sample_rate=8000)
>>> audio.sample_rate, round(audio.duration, 2), audio.original_sample_rate
(16000, 1.0, 8000)
>>> audio.notes, len(caught)
(['recorded at 8000 Hz: nothing above 4000 Hz; spectral measures are degraded'], 1)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emollm.errors import AudioError

TARGET_SR = 16_000
MIN_SECONDS = 0.2
MAX_SECONDS = 120.0
SILENCE_PEAK = 1e-4  # a peak below this (about -80 dBFS) is silence
CLIP_LEVEL = 0.999
CLIP_WARN_FRACTION = 0.01
LOW_SR_WARN = 16_000
TRUNCATION_TOLERANCE = 0.05  # seconds a WAV may hold less than its header declares before it is refused


@dataclass
class Audio:
    """A validated mono waveform.

    Attributes:
        samples: float32 samples in [-1, 1], shape ``(num_samples,)``.
        sample_rate: Always :data:`TARGET_SR` (16 kHz) after :func:`load_audio`.
        source: The file it came from, or ``"<array>"``.
        original_sample_rate: Rate before resampling.
        original_channels: Channel count before mixing to mono.
        clipped_fraction: Share of samples at full scale (clipping); measures of a clipped file are less
            reliable (intensity ceiling, jitter and shimmer).
        notes: Human-readable notes on degradations found while loading.
    """

    samples: np.ndarray = field(repr=False)
    sample_rate: int
    source: str = "<array>"
    original_sample_rate: int | None = None
    original_channels: int = 1
    clipped_fraction: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data.T, int(sr)  # (channels, samples)
    except Exception as sf_error:  # noqa: BLE001 - fall back to librosa/audioread for other formats
        try:
            import librosa

            with warnings.catch_warnings():  # librosa's own "PySoundFile failed" and deprecation notes
                warnings.simplefilter("ignore")
                data, sr = librosa.load(str(path), sr=None, mono=False)
        except Exception as exc:  # noqa: BLE001
            raise AudioError(
                f"could not read audio file {str(path)!r}: {sf_error}; {exc}. Accepted: any format "
                f"soundfile (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1) or librosa/audioread reads."
            ) from exc
        data = np.atleast_2d(np.asarray(data, dtype=np.float32))
        return data, int(sr)


def _declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header says its ``data`` chunk holds; None for other files and unknown lengths.

    libsndfile quietly reads what is there when a WAV is cut short, so the header is read here. Writers
    that stream (and cannot go back to fill in the size) leave 0 or a value near 4 GiB: unknown, not short.
    """
    import struct

    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                fmt = handle.read(size + size % 2)
                if len(fmt) < 14:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
            elif name == b"data":
                if not block_align or size == 0 or size >= 0x7FFF0000:
                    return None
                return size // block_align
            else:
                handle.seek(size + size % 2, 1)


def _check_complete(path: Path, frames: int, sample_rate: int) -> None:
    declared = _declared_wav_frames(path)
    if declared is not None and declared - frames > TRUNCATION_TOLERANCE * sample_rate:
        raise AudioError(
            f"audio file {str(path)!r} is truncated: its header declares {declared / sample_rate:.2f} s but "
            f"the file holds {frames / sample_rate:.2f} s (an interrupted copy or download?); copy or "
            f"export it again"
        )


def _as_channels_first(array: np.ndarray) -> np.ndarray:
    if array.ndim == 1:
        return array[None, :]
    if array.ndim == 2:
        # Channels are the short axis: (2, n) and (n, 2) are both stereo.
        return array if array.shape[0] <= array.shape[1] else array.T
    raise AudioError(
        f"audio array must have 1 or 2 dimensions (samples or channels x samples), got {array.shape}"
    )


def _to_float(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return (array.astype(np.float64) / max(abs(info.min), info.max)).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"audio array must hold integers or floats, got dtype {array.dtype}")
    return array.astype(np.float32)


def load_audio(
    source: str | Path | np.ndarray | Audio,
    sample_rate: int | None = None,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> Audio:
    """Load and validate audio as mono 16 kHz float32.

    Args:
        source: A file path, an array (``(samples,)``, ``(channels, samples)`` or ``(samples, channels)``;
            integer arrays are scaled to [-1, 1]), or an :class:`Audio` (returned as is).
        sample_rate: Sample rate of an array source (required for arrays, ignored for files).
        min_seconds: Shorter audio is rejected (too short to measure pitch and vowels).
        max_seconds: Longer audio is rejected: emollm works on utterances; segment long recordings first.

    Returns:
        The validated :class:`Audio`.

    Raises:
        AudioError: missing or unreadable file (or a folder), a WAV file that holds less audio than its
            header declares (truncated), missing sample rate, empty, non-finite samples, silence (a
            constant DC level included), too short or too long.
    """
    if isinstance(source, Audio):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            raise AudioError(f"audio file {str(path)!r} is a folder, not a file; give one audio file in it")
        if not path.is_file():
            raise AudioError(f"audio file {str(path)!r} does not exist")
        channels, sr = _read_file(path)
        _check_complete(path, channels.shape[1], sr)
        name = str(path)
    else:
        if sample_rate is None or sample_rate <= 0:
            raise AudioError(f"an audio array needs a positive sample_rate in Hz, got {sample_rate!r}")
        channels, sr, name = _as_channels_first(_to_float(np.asarray(source))), int(sample_rate), "<array>"

    if channels.size == 0:
        raise AudioError(f"audio {name} is empty (0 samples)")
    bad = int(np.count_nonzero(~np.isfinite(channels)))
    if bad:
        raise AudioError(f"audio {name} has {bad} non-finite samples (NaN or inf) of {channels.size}")
    mono = channels.mean(axis=0) if channels.shape[0] > 1 else channels[0]
    duration = len(mono) / sr
    if duration < min_seconds:
        raise AudioError(f"audio {name} lasts {duration:.3f} s; at least {min_seconds} s is needed")
    if duration > max_seconds:
        raise AudioError(
            f"audio {name} lasts {duration:.1f} s; at most {max_seconds} s is accepted (one utterance). "
            f"Segment long recordings first, or raise max_seconds."
        )
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"audio {name} is silent (peak amplitude {peak:.2e}, below {SILENCE_PEAK:.0e})")
    offset = float(np.mean(mono, dtype=np.float64))
    swing = float(np.max(np.abs(mono - offset)))
    if swing < SILENCE_PEAK:  # a constant (DC) level with nothing on top of it carries no sound
        raise AudioError(
            f"audio {name} is silent: a constant level (DC offset {offset:.3g}) with no sound on it (it "
            f"varies by {swing:.1e}, below {SILENCE_PEAK:.0e})"
        )
    if peak > 1.0:  # float data beyond full scale: scale down, keeping the shape
        mono = mono / peak

    notes: list[str] = []
    clipped = float(np.mean(np.abs(channels) >= CLIP_LEVEL))
    if clipped >= CLIP_WARN_FRACTION:
        notes.append(f"{clipped:.1%} of samples are clipped; intensity, jitter and shimmer are less reliable")
    if sr < LOW_SR_WARN:
        notes.append(f"recorded at {sr} Hz: nothing above {sr // 2} Hz; spectral measures are degraded")
    for note in notes:
        warnings.warn(f"audio {name}: {note}", stacklevel=2)

    if sr != TARGET_SR:
        import librosa

        mono = librosa.resample(mono, orig_sr=sr, target_sr=TARGET_SR, res_type="soxr_hq")
    return Audio(
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=TARGET_SR,
        source=name,
        original_sample_rate=sr,
        original_channels=int(channels.shape[0]),
        clipped_fraction=clipped,
        notes=notes,
    )


def save_audio(audio: Audio, path: str | Path) -> Path:
    """Write ``audio`` to ``path`` (WAV, FLAC or OGG by the suffix), atomically.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> tone = load_audio(0.1 * np.sin(np.arange(8000) / 5), 16000)
    >>> path = save_audio(tone, Path(folder.name) / "tone.wav")
    >>> path.name, load_audio(path).duration
    ('tone.wav', 0.5)
    >>> folder.cleanup()
    """
    import soundfile as sf

    from emollm.io import atomic_path

    path = Path(path)
    if path.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise AudioError(f"save_audio writes .wav, .flac or .ogg files, got {path.name!r}")
    if path.is_dir():
        raise AudioError(f"cannot write audio to {str(path)!r}: it is a folder; give a file name")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.samples, audio.sample_rate)
    return path
