import numpy as np
import pytest
import soundfile as sf

from emollm.audio import TARGET_SR, Audio, load_audio
from emollm.errors import AudioError


def tone(freq=220.0, seconds=1.0, sr=16000, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: Audio) -> float:
    spectrum = np.abs(np.fft.rfft(audio.samples))
    return float(np.fft.rfftfreq(len(audio.samples), 1 / audio.sample_rate)[spectrum.argmax()])


def test_stereo_flac_becomes_mono_16k(tmp_path):
    left, right = tone(220, sr=44100), tone(220, sr=44100, amp=0.1)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    audio = load_audio(path)
    assert audio.sample_rate == TARGET_SR and audio.original_sample_rate == 44100
    assert audio.original_channels == 2 and audio.samples.ndim == 1
    assert abs(audio.duration - 1.0) < 1e-3
    assert abs(np.abs(audio.samples).max() - 0.2) < 0.01  # the mean of 0.3 and 0.1 amplitude
    assert abs(peak_hz(audio) - 220) <= 1


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stereo_arrays_either_way_round(layout):
    stereo = np.stack([tone(), tone()])
    audio = load_audio(stereo if layout == "channels_first" else stereo.T, sample_rate=16000)
    assert audio.original_channels == 2 and len(audio.samples) == 16000


def test_8khz_is_upsampled_with_a_warning():
    with pytest.warns(UserWarning, match="8000 Hz"):
        audio = load_audio(tone(300, sr=8000), sample_rate=8000)
    assert audio.sample_rate == 16000 and len(audio.samples) == 16000
    assert abs(peak_hz(audio) - 300) <= 1
    assert any("8000 Hz" in note for note in audio.notes)


def test_int16_is_scaled():
    audio = load_audio((tone(amp=0.5) * 32767).astype(np.int16), sample_rate=16000)
    assert abs(np.abs(audio.samples).max() - 0.5) < 0.01


def test_clipping_is_reported_not_rejected():
    clipped = np.clip(tone(amp=3.0), -1, 1)
    with pytest.warns(UserWarning, match="clipped"):
        audio = load_audio(clipped, sample_rate=16000)
    assert audio.clipped_fraction > 0.5


@pytest.mark.parametrize(
    ("samples", "sr", "message"),
    [
        (np.zeros(16000, dtype=np.float32), 16000, "silent"),
        (np.full(16000, 0.3, dtype=np.float32), 16000, r"silent: a constant level \(DC offset 0.3\)"),
        (np.full(16000, -0.5, dtype=np.float32) + 1e-6 * np.sin(np.arange(16000)), 16000, "DC offset -0.5"),
        (np.full(16000, np.nan, dtype=np.float32), 16000, "non-finite"),
        (tone(seconds=0.1), 16000, "lasts 0.100 s"),
        (tone(seconds=600, sr=1000), 1000, "at most 120.0 s"),
        (np.zeros(0, dtype=np.float32), 16000, "empty"),
        (tone(), None, "needs a positive sample_rate"),
        (np.zeros((2, 2, 2), dtype=np.float32), 16000, "1 or 2 dimensions"),
        (np.array(["a", "b"]), 16000, "dtype"),
    ],
)
def test_unusable_audio_raises_a_clear_error(samples, sr, message):
    with pytest.raises(AudioError, match=message):
        load_audio(samples, sample_rate=sr)


def test_a_tone_on_a_dc_offset_is_sound():
    audio = load_audio(tone() + 0.4, sample_rate=16000)
    assert audio.duration == 1.0


def test_bad_files(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="is a folder, not a file"):
        load_audio(tmp_path)
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio")
    with pytest.raises(AudioError, match="could not read audio file"):
        load_audio(fake)


def test_save_audio_refuses_a_folder(tmp_path):
    from emollm.audio import save_audio

    (tmp_path / "out.wav").mkdir()
    with pytest.raises(AudioError, match="is a folder"):
        save_audio(load_audio(tone(), sample_rate=16000), tmp_path / "out.wav")
