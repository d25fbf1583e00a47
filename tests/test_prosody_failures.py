"""Malformed input through the whole prosody pipeline: a clear EmollmError or a documented degraded result.

One case per row of the issue: silence, NaN, clipped, 8 kHz, stereo, 0.1 s, 10 min, empty transcript,
words missing from the dictionary, a TextGrid that does not match the audio; then the inputs that used to
give a confident alignment of nonsense: a wrong transcript, a truncated file, very quiet speech.
"""

from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf

from emollm.errors import AlignmentError, AudioError, EmollmError
from emollm.prosody import describe_prosody, extract_prosody
from emollm.prosody.synth import synthesize
from emollm.prosody.textgrid import write_textgrid

KIDS = "Kids are talking by the door"


@pytest.fixture(scope="module")
def speech():
    audio, truth = synthesize(KIDS)
    return audio, truth


def test_silence(speech):
    with pytest.raises(AudioError, match="silent"):
        extract_prosody(np.zeros(16000, dtype=np.float32), KIDS, sample_rate=16000)


def test_nan(speech):
    samples = speech[0].samples.copy()
    samples[100] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        extract_prosody(samples, KIDS, sample_rate=16000)


def test_clipped_speech_is_measured_with_a_note(speech):
    loud = np.clip(speech[0].samples * 20, -1, 1)
    with pytest.warns(UserWarning, match="clipped"):
        features = extract_prosody(loud, KIDS, sample_rate=16000)
    assert features.alignment.method == "pocketsphinx"
    assert any("clipped" in note for note in features.notes)
    assert len(features.vowels) == 7


def test_8khz_is_upsampled_and_still_aligned(speech, tmp_path):
    audio, truth = synthesize(KIDS, sample_rate=8000)
    path = tmp_path / "narrow.wav"
    sf.write(path, audio.samples, 8000)
    with pytest.warns(UserWarning, match="8000 Hz"):
        features = extract_prosody(path, KIDS)
    assert features.alignment.method == "pocketsphinx"
    assert [v.phone for v in features.vowels] == [v.phone for v in truth.vowels]
    assert any("8000 Hz" in note for note in features.notes)


def test_stereo_file_is_mixed_down(speech, tmp_path):
    samples = speech[0].samples
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([samples, 0.5 * samples], axis=1), 16000)
    features = extract_prosody(path, KIDS)
    mono = extract_prosody(samples * 0.75, KIDS, sample_rate=16000)
    assert [v.phone for v in features.vowels] == [v.phone for v in mono.vowels]
    assert features.utterance.f0_mean_hz == pytest.approx(mono.utterance.f0_mean_hz, rel=0.01)


def test_too_short(speech):
    with pytest.raises(AudioError, match="at least 0.2 s"):
        extract_prosody(speech[0].samples[:1600], KIDS, sample_rate=16000)


def test_ten_minutes_is_refused_before_any_work():
    ten_minutes = np.full(16000 * 600, 0.1, dtype=np.float32)
    with pytest.raises(AudioError, match="at most 120"):
        extract_prosody(ten_minutes, KIDS, sample_rate=16000)


def test_empty_transcript(speech):
    with pytest.raises(AlignmentError, match="transcript is empty"):
        extract_prosody(speech[0], "")


def test_words_missing_from_the_dictionary(speech):
    audio, _ = synthesize("Kids are zorblatting by the door")
    features = extract_prosody(audio, "Kids are zorblatting by the door")
    assert features.alignment.oov_words == ["zorblatting"]
    assert any("letter-to-sound" in note for note in features.notes)
    assert "zorblatting" in {v.word for v in features.vowels}


def test_textgrid_that_does_not_match(speech, tmp_path):
    long_grid = tmp_path / "long.TextGrid"  # a real alignment of a 3 s clip, given a 1.7 s clip
    words = [(0.1, 1.0, "kids"), (1.0, 2.9, "door")]
    phones = [(0.1, 0.5, "K"), (0.5, 1.0, "IH1"), (1.0, 1.5, "D"), (1.5, 2.5, "AO1"), (2.5, 2.9, "R")]
    write_textgrid(long_grid, {"words": words, "phones": phones}, 3.0)
    with pytest.raises(AlignmentError, match="does not belong to this audio"):
        extract_prosody(speech[0], textgrid=long_grid)


def test_transcript_of_other_words_degrades_to_nuclei(speech):
    features = extract_prosody(
        speech[0], KIDS + " and many other words that were never said in this clip at all"
    )
    assert features.alignment.method == "nuclei"
    assert "forced alignment failed" in features.notes[0]
    assert len(features.vowels) > 0


def test_unvoiced_whisper_has_no_pitch_but_a_description():
    rng = np.random.default_rng(0)
    envelope = np.repeat(rng.uniform(0.2, 1.0, 20), 800)
    noise = (0.05 * rng.standard_normal(16000) * envelope).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from nan-statistics on empty slices
        features = extract_prosody(noise, None, sample_rate=16000)
        text = describe_prosody(features)
    assert math.isnan(features.utterance.f0_mean_hz)
    assert "Hz" not in text


def test_every_failure_is_an_emollm_error(speech):
    for bad in (np.zeros((3, 3, 3)), np.array(["a", "b"])):
        with pytest.raises(EmollmError):
            extract_prosody(bad, KIDS, sample_rate=16000)


# -- confident nonsense: inputs that pocketsphinx aligns anyway -----------------------------------------------


def test_unrelated_transcript_falls_back_with_a_note(speech):
    features = extract_prosody(speech[0], "My money is gone")
    assert features.alignment.method == "nuclei"
    assert features.notes[0].startswith("the alignment looks implausible")
    assert "fell back to syllable nuclei" in features.notes[0]
    with pytest.raises(AlignmentError, match="implausible"):
        extract_prosody(speech[0], "My money is gone", on_failure="raise")


def test_very_quiet_speech_is_aligned_as_loud_speech_with_a_note(speech):
    audio, _ = speech
    quiet = audio.samples * (10 ** (-75 / 20) / np.max(np.abs(audio.samples)))  # peak at -75 dBFS
    features = extract_prosody(quiet, KIDS, sample_rate=16000)
    loud = extract_prosody(audio, KIDS)
    # the level depends on the synthesised speech, which varies a little with Praat's call history
    quiet_notes = [
        n for n in features.notes if n.startswith("the audio is very quiet (its loudest speech is at")
    ]
    assert quiet_notes and float(quiet_notes[0].split(" at ")[1].split(" dBFS")[0]) < -60
    assert not any("very quiet" in n for n in loud.notes)
    # pocketsphinx reads 16-bit samples, where -75 dBFS is a few steps: it is given a louder copy.
    assert features.alignment.method == "pocketsphinx"
    assert [(v.phone, v.start, v.end) for v in features.vowels] == [
        (v.phone, v.start, v.end) for v in loud.vowels
    ]


def _wav(path, samples, subtype="PCM_16"):
    sf.write(path, samples, 16000, subtype=subtype)
    return path


def test_truncated_wav_is_refused(speech, tmp_path):
    """libsndfile reads what is there without a word; the header's length says how much is missing."""
    samples = np.tile(speech[0].samples, 2)  # 3.4 s
    for subtype in ("PCM_16", "FLOAT"):
        path = _wav(tmp_path / f"cut-{subtype}.wav", samples, subtype)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
        assert sf.info(path).frames < len(samples)  # what soundfile alone reports
        with pytest.raises(
            AudioError, match=r"is truncated: its header declares 3\.\d+ s but the file holds 1\."
        ):
            extract_prosody(path, KIDS)


def test_wav_with_a_streaming_placeholder_length_is_read(speech, tmp_path):
    """Writers that cannot seek back leave 0xFFFFFFFF as the data size: unknown, not truncated."""
    path = _wav(tmp_path / "streamed.wav", speech[0].samples)
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    features = extract_prosody(path, KIDS)
    assert features.alignment.method == "pocketsphinx"
    assert features.utterance.duration == pytest.approx(speech[0].duration, abs=0.01)
