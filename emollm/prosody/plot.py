"""See the prosody: waveform, pitch and intensity of one utterance, with its vowels marked.

One figure, three panels sharing the time axis. Vowel spans are shaded on every panel; the top panel names
each vowel (ARPAbet with its stress digit, ``"AO1"``, or ``"NUC"`` for a syllable nucleus) and, below, the
words. Drawn on matplotlib's Agg canvas directly: no pyplot, no display, no global backend change.

>>> from emollm.prosody.synth import synthesize
>>> audio, alignment = synthesize("Kids are talking by the door")
>>> fig = plot_prosody(audio, alignment)  # with a path ("prosody.png", .pdf, .svg) it is also saved
>>> [ax.get_ylabel() for ax in fig.axes]
['amplitude', 'pitch (Hz)', 'intensity (dB)']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emollm.audio import Audio
from emollm.errors import AudioError, ConfigError
from emollm.io import atomic_path
from emollm.prosody.alignment import Alignment, Phone

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = (".png", ".pdf", ".svg")
PITCH_FLOOR = 75.0
PITCH_CEILING = 500.0
DPI = 120
VOWEL_COLOUR = "tab:orange"


def plot_prosody(
    audio: Audio,
    alignment: Alignment,
    path: str | os.PathLike | None = None,
    *,
    pitch_floor: float | None = None,
    pitch_ceiling: float | None = None,
    title: str | None = None,
) -> Figure:
    """Plot the waveform, pitch contour and intensity contour of ``audio`` with its vowels shaded.

    Pitch comes from Praat's autocorrelation method (``Sound.to_pitch``); unvoiced frames are gaps (NaN),
    not 0 Hz. Intensity is Praat's ``Sound.to_intensity`` with the pitch floor as its minimum pitch.

    Args:
        audio: The utterance.
        alignment: Its word and phone intervals (any method; nuclei are labelled ``"NUC"``).
        path: Where to save the figure (``.png``, ``.pdf`` or ``.svg``); written to a temporary file in the
            same folder and moved into place. Missing parent folders are created. None: not saved.
        pitch_floor: Lowest pitch searched, in Hz (default 75).
        pitch_ceiling: Highest pitch searched, in Hz (default 500).
        title: Figure title; by default the audio's source and the alignment method.

    Returns:
        The :class:`matplotlib.figure.Figure`, with axes ``[waveform, pitch, intensity]``.

    Raises:
        ConfigError: an unsupported file extension, or a pitch floor and ceiling that are not
            ``0 < floor < ceiling``.
        AudioError: audio too short for Praat to measure pitch at this floor.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if path is not None and Path(path).suffix.lower() not in FORMATS:
        raise ConfigError(
            f"cannot save a plot as {str(path)!r}: extension {Path(path).suffix!r} is not one of "
            f"{', '.join(FORMATS)}"
        )
    floor = PITCH_FLOOR if pitch_floor is None else float(pitch_floor)
    ceiling = PITCH_CEILING if pitch_ceiling is None else float(pitch_ceiling)
    if not 0 < floor < ceiling:
        raise ConfigError(
            f"need 0 < pitch_floor < pitch_ceiling, got pitch_floor={floor}, pitch_ceiling={ceiling}"
        )
    (pitch_t, f0), (intensity_t, db) = _contours(audio, floor, ceiling)

    fig = Figure(figsize=(10, 6.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    wave_ax, pitch_ax, intensity_ax = fig.subplots(3, 1, sharex=True, height_ratios=(1.2, 1, 1))
    times = np.arange(len(audio.samples)) / audio.sample_rate
    wave_ax.plot(times, audio.samples, color="0.3", linewidth=0.5)
    wave_ax.set_ylabel("amplitude")
    pitch_ax.plot(pitch_t, f0, color="tab:blue", linewidth=1.5, marker=".", markersize=2)
    pitch_ax.set_ylabel("pitch (Hz)")
    voiced = f0[np.isfinite(f0)]
    if voiced.size:  # zoom on the contour, within the searched range
        pad = max(10.0, 0.1 * float(voiced.max() - voiced.min()))
        pitch_ax.set_ylim(max(floor, float(voiced.min()) - pad), min(ceiling, float(voiced.max()) + pad))
    else:
        pitch_ax.set_ylim(floor, ceiling)
    intensity_ax.plot(intensity_t, db, color="tab:green", linewidth=1.2)
    intensity_ax.set_ylabel("intensity (dB)")
    intensity_ax.set_xlabel("time (s)")
    intensity_ax.set_xlim(0.0, audio.duration)

    for vowel in alignment.vowels:
        for ax in (wave_ax, pitch_ax, intensity_ax):
            ax.axvspan(vowel.start, vowel.end, color=VOWEL_COLOUR, alpha=0.25, linewidth=0)
        middle = (vowel.start + vowel.end) / 2
        wave_ax.text(
            middle,
            0.97,
            _vowel_label(vowel),
            transform=wave_ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            fontweight="bold",
        )
    for word in alignment.words:
        wave_ax.text(
            (word.start + word.end) / 2,
            0.03,
            word.text,
            transform=wave_ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            style="italic",
        )
    fig.suptitle(
        title if title is not None else f"{audio.source} (alignment: {alignment.method})", fontsize=10
    )

    if path is not None:
        _save_atomically(fig, Path(path))
    return fig


def _vowel_label(vowel: Phone) -> str:
    return vowel.phone if vowel.stress is None else f"{vowel.phone}{vowel.stress}"


def _contours(audio: Audio, floor: float, ceiling: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Pitch (Hz, NaN where unvoiced) and intensity (dB) contours with their frame times."""
    import parselmouth

    sound = parselmouth.Sound(
        np.asarray(audio.samples, dtype=np.float64), sampling_frequency=audio.sample_rate
    )
    try:
        pitch = sound.to_pitch(pitch_floor=floor, pitch_ceiling=ceiling)
        intensity = sound.to_intensity(minimum_pitch=floor)
    except parselmouth.PraatError as exc:
        raise AudioError(
            f"audio {audio.source} ({audio.duration:.3f} s) is too short to measure pitch and intensity with "
            f"pitch_floor={floor} Hz (Praat needs about {6.4 / floor:.3f} s): {exc}"
        ) from exc
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=float)
    f0[f0 <= 0] = np.nan  # Praat writes unvoiced frames as 0 Hz
    return (np.asarray(pitch.xs()), f0), (np.asarray(intensity.xs()), np.asarray(intensity.values[0]))


def _save_atomically(fig: Figure, path: Path) -> None:
    """Write ``fig`` to a temporary file next to ``path``, then move it into place (see emollm.io)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=DPI)
