"""``prosody_frames``: Praat pitch and intensity plus librosa spectral features, 22 columns, no weights."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from emollm.audio import TARGET_SR, Audio
from emollm.errors import AudioError, ConfigError
from emollm.modeling.encoders.common import _as_audio, _as_list

HOP = 160  # samples: the 10 ms analysis step at 16 kHz
N_FFT, WIN_LENGTH, N_MELS, N_MFCC = 512, 400, 40, 13
FEATURE_NAMES = (
    "f0_rel",
    "f0_level",
    "voiced",
    "intensity",
    "spectral_centroid",
    "spectral_flatness",
    "spectral_rolloff",
    "zero_crossing_rate",
    "rms",
    *(f"mfcc{i}" for i in range(N_MFCC)),
)
"""The columns of :class:`ProsodyFrameEncoder`'s output, in order (see its docstring)."""

FEATURE_SCALING = {
    "f0_rel": (0.0, 4.0),  # semitones re the utterance's voiced median
    "f0_level": (8.0, 6.0),  # semitones re 100 Hz; 8 st is about 160 Hz
    "voiced": (0.0, 1.0),
    "intensity": (60.0, 15.0),  # Praat dB (re 2e-5 Pa; a full-scale sine is about 91 dB)
    "spectral_centroid": (2000.0, 1500.0),  # Hz
    "spectral_flatness": (-2.0, 1.0),  # log10 of the flatness (0-1)
    "spectral_rolloff": (3000.0, 2000.0),  # Hz below which 85 % of the energy lies
    "zero_crossing_rate": (0.15, 0.15),  # crossings per sample
    "rms": (-40.0, 15.0),  # dBFS, 20 * log10(rms + 1e-5)
    "mfcc0": (-250.0, 100.0),
    **{f"mfcc{i}": (0.0, 30.0) for i in range(1, N_MFCC)},
}
"""``name -> (centre, scale)``: each column is ``clip((raw - centre) / scale, -5, 5)``; fixed, not fitted."""

FEATURE_CLIP = 5.0
F0_COLUMNS = 2  # f0_rel and f0_level are averaged over voiced frames only


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=TARGET_SR, n_fft=N_FFT, n_mels=N_MELS)


def _frame_count(num_samples: int) -> int:
    return max(1, num_samples // HOP)


def _pool(frames: np.ndarray, frame_rate: float) -> np.ndarray:
    """Average 10 ms frames into ``frame_rate`` frames per second; F0 columns over voiced frames only."""
    index = np.floor(np.arange(len(frames)) * frame_rate / 100.0 + 1e-9).astype(int)
    count = int(index[-1]) + 1
    sums = np.zeros((count, frames.shape[1]))
    np.add.at(sums, index, frames)
    sizes = np.bincount(index, minlength=count)[:, None]
    pooled = sums / sizes
    voiced = frames[:, 2:3]
    f0_sums = np.zeros((count, F0_COLUMNS))
    np.add.at(f0_sums, index, frames[:, :F0_COLUMNS] * voiced)
    voiced_counts = np.bincount(index, weights=voiced[:, 0], minlength=count)[:, None]
    pooled[:, :F0_COLUMNS] = f0_sums / np.maximum(voiced_counts, 1.0)
    return pooled


class ProsodyFrameEncoder(torch.nn.Module):
    """Frame-level prosodic and spectral features, scaled with fixed constants; no weights.

    Every 10 ms (frame ``k`` centred at ``k * 10`` ms) it measures, then average-pools to ``frame_rate``
    frames per second and scales each column as ``clip((raw - centre) / scale, -5, 5)`` with the constants
    of :data:`FEATURE_SCALING` (no dataset statistics). The 22 columns (:data:`FEATURE_NAMES`):

    - ``f0_rel``: F0 in semitones relative to the utterance's median voiced F0, / 4.
    - ``f0_level``: absolute F0 level, ``(12 * log2(F0 / 100 Hz) - 8) / 6`` (0 is about 160 Hz).
    - ``voiced``: 1 for a voiced 10 ms frame, 0 otherwise; after pooling, the voiced share of the frame.
    - ``intensity``: Praat intensity, ``(dB - 60) / 15``; undefined (zero-energy) frames count as 0 dB.
    - ``spectral_centroid``: ``(Hz - 2000) / 1500``.
    - ``spectral_flatness``: ``log10(flatness) + 2``.
    - ``spectral_rolloff``: 85 % roll-off frequency, ``(Hz - 3000) / 2000``.
    - ``zero_crossing_rate``: ``(rate - 0.15) / 0.15``.
    - ``rms``: ``(20 * log10(rms + 1e-5) + 40) / 15``.
    - ``mfcc0`` ... ``mfcc12``: MFCCs of a 40-band log-mel spectrogram; ``(c0 + 250) / 100``, others ``/ 30``.

    F0 comes from Praat's autocorrelation pitch with the speaker-adaptive floor and ceiling of
    :func:`emollm.prosody.measure.pitch_range_for`. Unvoiced frames (Praat's 0 Hz) have ``voiced = 0`` and
    both F0 columns 0; the F0 columns of a pooled frame average its voiced 10 ms frames only. Every value is
    finite. Spectra use a 25 ms Hann window (512-point FFT). About 15-30 ms per 3 s clip on one CPU core.

    Args:
        frame_rate: Output frames per second (0 < rate <= 100); 25 gives 40 ms frames (wav2vec 2.0: 20 ms).
        pitch_floor: Lowest F0 searched, Hz; None estimates it per utterance.
        pitch_ceiling: Highest F0 searched, Hz; None estimates it per utterance.

    Raises:
        ConfigError: a setting is out of range.

    >>> import numpy as np
    >>> encoder = ProsodyFrameEncoder(frame_rate=10)
    >>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000)
    >>> out = encoder.encode([tone])[0]
    >>> tuple(out.shape), FEATURE_NAMES[1], round(float(out[10, 1]), 2)  # (12 * log2(2) - 8) / 6
    ((20, 22), 'f0_level', 0.67)
    """

    name = "prosody_frames"
    feature_names = FEATURE_NAMES

    def __init__(
        self, frame_rate: float = 25.0, pitch_floor: float | None = None, pitch_ceiling: float | None = None
    ):
        super().__init__()
        from emollm.prosody.measure import MeasureConfig

        if (
            isinstance(frame_rate, bool)
            or not isinstance(frame_rate, (int, float))
            or not 0 < frame_rate <= 100
        ):
            raise ConfigError(
                f"frame_rate must be a number in (0, 100] frames per second, got {frame_rate!r}"
            )
        self.frame_rate = float(frame_rate)
        self.pitch_floor = pitch_floor
        self.pitch_ceiling = pitch_ceiling
        self._measure_config = MeasureConfig(pitch_floor=pitch_floor, pitch_ceiling=pitch_ceiling)
        self.output_dim = len(FEATURE_NAMES)
        centre, scale = zip(*(FEATURE_SCALING[n] for n in FEATURE_NAMES))
        self._centres, self._scales = np.array(centre), np.array(scale)
        self.eval()

    def train(self, mode: bool = True) -> ProsodyFrameEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this encoder with :func:`build_encoder`."""
        return {
            "frame_rate": self.frame_rate,
            "pitch_floor": self.pitch_floor,
            "pitch_ceiling": self.pitch_ceiling,
        }

    def _praat(self, audio: Audio, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F0 (Hz, NaN when unvoiced) and intensity (dB) at ``times``."""
        import parselmouth

        from emollm.prosody.measure import pitch_range_for

        floor, ceiling = pitch_range_for(audio, self._measure_config)
        try:
            sound = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=float(TARGET_SR))
            pitch = sound.to_pitch_ac(time_step=HOP / TARGET_SR, pitch_floor=floor, pitch_ceiling=ceiling)
            intensity = sound.to_intensity(minimum_pitch=floor, time_step=HOP / TARGET_SR)
        except parselmouth.PraatError as exc:
            raise AudioError(
                f"Praat could not analyse audio {audio.source} ({audio.duration:.3f} s): "
                f"{' '.join(str(exc).split())}"
            ) from exc
        f0 = np.full(len(times), np.nan)
        hz = pitch.selected_array["frequency"]
        if len(hz):
            index = np.rint((times - pitch.x1) / pitch.dx).astype(int)
            inside = (index >= 0) & (index < len(hz))
            f0[inside] = hz[index[inside]]
        f0[~(f0 > 0) | ~np.isfinite(f0)] = np.nan  # Praat's 0 Hz is "unvoiced"
        db = np.array(intensity.values[0], dtype=float)
        db = np.clip(np.where(np.isfinite(db), db, 0.0), 0.0, 120.0)  # -300 dB (zero energy) -> 0 dB
        db = np.interp(times, intensity.xs(), db) if len(db) else np.zeros(len(times))
        return f0, db

    def _spectral(self, samples: np.ndarray, count: int) -> np.ndarray:
        import librosa

        spec = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP, win_length=WIN_LENGTH, center=True))
        spec = spec[:, :count]
        power = spec**2
        centroid = librosa.feature.spectral_centroid(S=spec, sr=TARGET_SR)[0]
        flatness = np.log10(np.maximum(librosa.feature.spectral_flatness(S=spec)[0], 1e-6))
        rolloff = librosa.feature.spectral_rolloff(S=spec, sr=TARGET_SR, roll_percent=0.85)[0]
        rms_db = 20 * np.log10(librosa.feature.rms(S=spec, frame_length=N_FFT)[0] + 1e-5)
        padded = np.pad(samples, WIN_LENGTH // 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, WIN_LENGTH)[::HOP][:count]
        zcr = np.mean(np.abs(np.diff(np.signbit(windows), axis=1)), axis=1)
        # einsum, not a BLAS matmul: a multithreaded BLAS stalls for milliseconds on a busy machine
        mel = np.einsum("mf,ft->mt", _mel_basis(), power)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
        return np.column_stack([centroid, flatness, rolloff, zcr, rms_db, mfcc.T])

    def features_10ms(self, audio) -> np.ndarray:
        """Unscaled 10 ms features, ``(frames, 22)`` (F0 columns in semitones, NaN-free), for inspection."""
        audio = _as_audio(audio)
        count = _frame_count(len(audio.samples))
        times = np.arange(count) * HOP / TARGET_SR
        f0, db = self._praat(audio, times)
        voiced = np.isfinite(f0)
        semitones = np.zeros(count)
        semitones[voiced] = 12 * np.log2(f0[voiced] / 100.0)
        relative = np.zeros(count)
        if voiced.any():
            relative[voiced] = semitones[voiced] - np.median(semitones[voiced])
        spectral = self._spectral(audio.samples, count)
        raw = np.column_stack([relative, semitones, voiced.astype(float), db, spectral])
        return np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        scaled = (raw - self._centres) / self._scales
        voiced = raw[:, 2:3] > 0
        scaled[:, :F0_COLUMNS] = np.where(voiced, scaled[:, :F0_COLUMNS], 0.0)  # unvoiced F0 is 0, scaled too
        return np.clip(scaled, -FEATURE_CLIP, FEATURE_CLIP)

    @torch.no_grad()
    def encode(self, inputs: Sequence) -> list[torch.Tensor]:
        """One float32 ``(frames, 22)`` tensor per input (paths, 16 kHz arrays or :class:`Audio`).

        Raises:
            AudioError: an input cannot be loaded (see :func:`emollm.audio.load_audio`) or analysed.
        """
        out = []
        for item in _as_list(inputs):
            pooled = _pool(self._scale(self.features_10ms(item)), self.frame_rate)
            out.append(torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32)))
        return out
