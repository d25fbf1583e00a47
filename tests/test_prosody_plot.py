"""plot_prosody on Praat-synthesised speech: a valid file written atomically, three panels, vowels marked."""

from __future__ import annotations

import numpy as np
import pytest

from emollm.errors import AudioError, ConfigError
from emollm.prosody.plot import PITCH_CEILING, PITCH_FLOOR, plot_prosody
from emollm.prosody.synth import synthesize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def speech():
    return synthesize("Kids are talking by the door")


@pytest.fixture(scope="module")
def figure(speech, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot")
    audio, alignment = speech
    fig = plot_prosody(audio, alignment, folder / "p.png")
    return fig, folder


def test_writes_a_png_atomically(figure):
    _, folder = figure
    assert [p.name for p in folder.iterdir()] == ["p.png"]  # no leftover temporary file
    assert (folder / "p.png").read_bytes()[:8] == PNG_MAGIC


def test_three_panels_share_time(figure, speech):
    fig, _ = figure
    audio, _ = speech
    assert len(fig.axes) == 3
    wave_ax, pitch_ax, intensity_ax = fig.axes
    shared = wave_ax.get_shared_x_axes()
    assert shared.joined(wave_ax, pitch_ax) and shared.joined(wave_ax, intensity_ax)
    assert intensity_ax.get_xlim() == pytest.approx((0.0, audio.duration))
    assert [ax.get_ylabel() for ax in fig.axes] == ["amplitude", "pitch (Hz)", "intensity (dB)"]


def test_vowels_shaded_and_labelled(figure, speech):
    fig, _ = figure
    audio, alignment = speech
    wave_ax, pitch_ax, intensity_ax = fig.axes
    for ax in fig.axes:
        assert len(ax.patches) == len(alignment.vowels) == 7
    texts = [t.get_text() for t in wave_ax.texts]
    assert "AO1" in texts and "door" in texts
    assert texts.count("AO1") == 2  # talking, door
    assert {"kids", "are", "talking", "by", "the"} <= set(texts)
    assert fig.get_suptitle() == f"{audio.source} (alignment: textgrid)"


def test_pitch_has_unvoiced_gaps_within_range(figure):
    fig, _ = figure
    f0 = np.asarray(fig.axes[1].lines[0].get_ydata(), dtype=float)
    assert np.isnan(f0).any()
    voiced = f0[np.isfinite(f0)]
    assert voiced.size > 10
    # Praat refines each frame's peak by interpolation, which can land a hair outside the search range
    # (74.996 Hz with a 75 Hz floor was seen; eSpeak's output is not bit-exact between runs).
    assert voiced.min() >= 0.99 * PITCH_FLOOR and voiced.max() <= 1.01 * PITCH_CEILING


def test_custom_pitch_range_and_title(speech):
    audio, alignment = speech
    fig = plot_prosody(audio, alignment, pitch_floor=60, pitch_ceiling=300, title="hello")
    f0 = np.asarray(fig.axes[1].lines[0].get_ydata(), dtype=float)
    voiced = f0[np.isfinite(f0)]
    assert voiced.min() >= 60 and voiced.max() <= 300
    low, high = fig.axes[1].get_ylim()
    assert 60 <= low < voiced.min() and voiced.max() < high <= 300
    assert fig.get_suptitle() == "hello"


def test_nuclei_are_labelled_v(speech):
    from emollm.prosody.alignment import Alignment, Phone

    audio, truth = speech
    nuclei = [Phone(phone="NUC", start=v.start, end=v.end) for v in truth.vowels]
    fig = plot_prosody(audio, Alignment(method="nuclei", duration=audio.duration, phones=nuclei))
    assert [t.get_text() for t in fig.axes[0].texts] == ["NUC"] * len(nuclei)
    assert len(fig.axes[1].patches) == len(nuclei)


@pytest.mark.parametrize("name", ["p.jpg", "p", "p.png.tmp"])
def test_bad_extension_raises(speech, tmp_path, name):
    audio, alignment = speech
    with pytest.raises(ConfigError, match=r"\.png, \.pdf, \.svg"):
        plot_prosody(audio, alignment, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_bad_pitch_range_raises(speech):
    audio, alignment = speech
    with pytest.raises(ConfigError, match="pitch_floor"):
        plot_prosody(audio, alignment, pitch_floor=300, pitch_ceiling=200)


def test_too_short_audio_raises_audio_error(speech):
    from emollm.audio import Audio

    audio, alignment = speech
    short = Audio(samples=audio.samples[:400], sample_rate=audio.sample_rate)
    with pytest.raises(AudioError, match="too short"):
        plot_prosody(short, alignment)


def test_svg_and_no_pyplot_figures_left(speech, tmp_path):
    import matplotlib.pyplot as plt

    audio, alignment = speech
    before = plt.get_fignums()
    plot_prosody(audio, alignment, tmp_path / "sub" / "p.svg")
    assert plt.get_fignums() == before
    assert (tmp_path / "sub" / "p.svg").read_text().lstrip().startswith("<?xml")
