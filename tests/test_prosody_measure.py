"""emollm.prosody.measure: known signals, speech from Praat's synthesiser (with its own alignment), edge cases."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from emollm.audio import Audio
from emollm.errors import AudioError, ConfigError
from emollm.prosody.alignment import Alignment, Phone, Word
from emollm.prosody.features import ProsodyFeatures, UtteranceMeasures, VowelMeasures
from emollm.prosody.harmonicity import harmonicity_cc
from emollm.prosody.measure import MeasureConfig, _undefined_to_nan, measure, pitch_range_for
from emollm.prosody.synth import synthesize

SR = 16_000
TEXT = "Kids are talking by the door"


def one_vowel(duration: float, start: float = 0.2, end: float = 0.8) -> Alignment:
    """A fake alignment: one stressed vowel 'AA' in the word 'ah'."""
    return Alignment(
        method="textgrid",
        duration=duration,
        words=[Word("ah", start, end)],
        phones=[Phone("AA", start, end, stress=1, word="ah", word_index=0)],
    )


def tone(f0_start: float, f0_end: float | None = None, amplitude: float = 0.1, seconds: float = 1.0) -> Audio:
    """A sine (or linear chirp from f0_start to f0_end Hz) as Audio."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_start + ((f0_end or f0_start) - f0_start) * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return Audio((amplitude * np.sin(phase)).astype(np.float32), SR)


def shifted(alignment: Alignment, offset: float, duration: float) -> Alignment:
    data = alignment.to_dict()
    data["duration"] = duration
    for item in data["phones"] + data["words"]:
        item["start"] += offset
        item["end"] += offset
    return Alignment.from_dict(data)


@pytest.fixture(scope="module")
def speech():
    return synthesize(TEXT)


@pytest.fixture(scope="module")
def speech_features(speech):
    return measure(*speech, speaker="synth")


# -- known signals -------------------------------------------------------------------------------------------


def test_sine_pitch_in_hz_and_semitones():
    vowel = measure(tone(200.0), one_vowel(1.0)).vowels[0]
    assert vowel.f0_mean_hz == pytest.approx(200.0, rel=0.01)
    assert vowel.f0_mean_st == pytest.approx(12 * math.log2(200 / 100), abs=0.1)
    assert vowel.f0_min_hz <= vowel.f0_mean_hz <= vowel.f0_max_hz
    assert abs(vowel.f0_slope_hz) < 1.0
    assert vowel.voiced_fraction == 1.0
    assert vowel.duration == pytest.approx(0.6)


def test_five_times_the_amplitude_is_14_db_louder():
    quiet = measure(tone(200.0, amplitude=0.1), one_vowel(1.0))
    loud = measure(tone(200.0, amplitude=0.5), one_vowel(1.0))
    expected = 20 * math.log10(5)  # 13.98 dB
    assert loud.vowels[0].intensity_mean_db - quiet.vowels[0].intensity_mean_db == pytest.approx(
        expected, abs=0.5
    )
    assert loud.utterance.intensity_mean_db - quiet.utterance.intensity_mean_db == pytest.approx(
        expected, abs=0.5
    )


@pytest.mark.parametrize(("start", "end"), [(150.0, 250.0), (250.0, 150.0)])
def test_chirp_slope_sign_and_size(start, end):
    vowel = measure(tone(start, end), one_vowel(1.0)).vowels[0]
    true_slope = end - start  # Hz per second over a 1 s chirp
    assert vowel.f0_slope_hz == pytest.approx(true_slope, rel=0.1)
    assert np.sign(vowel.f0_slope_st) == np.sign(true_slope)
    # Over 0.2-0.8 s the chirp spans 170-230 Hz.
    assert vowel.f0_min_hz == pytest.approx(170, abs=5) and vowel.f0_max_hz == pytest.approx(230, abs=5)


# -- measures follow the synthesiser -------------------------------------------------------------------------


def test_higher_synth_pitch_raises_f0_by_what_the_synth_does():
    # eSpeak's "pitch" is not a plain multiplier: measured with Praat at a fixed 40-800 Hz range, F0 scales by
    # about 0.25 + 0.75 * pitch (pitch 1.5: +5.35 st for Male1, +5.46 st for Female1, not 12 * log2(1.5) =
    # 7.02 st). measure() found +5.22 (Male1) and +5.49 (Female1) on this text.
    base = measure(*synthesize(TEXT)).utterance
    raised = measure(*synthesize(TEXT, pitch=1.5)).utterance
    expected = 12 * math.log2(0.25 + 0.75 * 1.5)  # 5.51 st
    assert raised.f0_mean_st - base.f0_mean_st == pytest.approx(expected, abs=1.0)
    assert raised.f0_mean_hz > base.f0_mean_hz


def test_slower_speech_has_longer_vowels():
    # Ground-truth alignments from the synthesiser; measured ratios 2.46-2.71 over two texts and voices.
    slow = measure(*synthesize(TEXT, words_per_minute=120))
    fast = measure(*synthesize(TEXT, words_per_minute=240))
    ratio = np.mean([v.duration for v in slow.vowels]) / np.mean([v.duration for v in fast.vowels])
    assert ratio > 2.0
    assert slow.utterance.speech_rate < fast.utterance.speech_rate
    assert slow.flat()["vowel_duration_mean"] > fast.flat()["vowel_duration_mean"]


def test_monotone_speech_has_a_smaller_f0_spread():
    # Measured f0_std_st: 0.40 (pitch_range 0) vs 2.91 (pitch_range 2).
    flat_voice = measure(*synthesize(TEXT, pitch_range=0.0)).utterance
    lively = measure(*synthesize(TEXT, pitch_range=2.0)).utterance
    assert flat_voice.f0_std_st < 1.0
    assert flat_voice.f0_std_st < 0.5 * lively.f0_std_st
    assert flat_voice.f0_range_st < lively.f0_range_st


def test_speech_features_are_sane(speech, speech_features):
    audio, truth = speech
    utterance = speech_features.utterance
    assert [v.phone for v in speech_features.vowels] == [v.phone for v in truth.vowels]
    assert utterance.n_vowels == 7 and utterance.pause_count == 0
    assert utterance.speech_rate == pytest.approx(7 / audio.duration)
    assert utterance.articulation_rate >= utterance.speech_rate
    assert 0 < utterance.speech_duration <= utterance.duration
    assert 60 < utterance.f0_mean_hz < 150 and utterance.f0_std_hz > 0
    assert 0 < utterance.jitter_local < 0.1 and 0 < utterance.shimmer_local < 0.5
    assert 0 < utterance.hnr_db < 40
    assert utterance.pitch_floor < utterance.f0_min_hz <= utterance.f0_max_hz < utterance.pitch_ceiling
    assert all(v.voiced_fraction > 0 for v in speech_features.vowels)
    assert speech_features.speaker == "synth" and speech_features.alignment is truth


def test_numbers_are_plain_python_floats(speech_features):
    for record in [speech_features.utterance, *speech_features.vowels]:
        for name, value in vars(record).items():
            if isinstance(value, (int, float)) and name not in {
                "n_vowels",
                "pause_count",
                "stress",
                "word_index",
            }:
                assert type(value) is float, name
    assert type(speech_features.utterance.pause_count) is int


# -- unvoiced and undefined ----------------------------------------------------------------------------------


def test_noise_vowel_has_nan_f0_and_no_voicing():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    features = measure(Audio(noise, SR), one_vowel(1.0))
    vowel = features.vowels[0]
    for name in ("f0_mean_hz", "f0_min_hz", "f0_max_hz", "f0_slope_hz", "f0_mean_st", "f0_slope_st"):
        assert math.isnan(getattr(vowel, name)), name
    assert vowel.voiced_fraction < 0.05
    assert math.isfinite(vowel.intensity_mean_db)
    utterance = features.utterance
    assert math.isnan(utterance.f0_mean_hz) and math.isnan(utterance.jitter_local)
    assert math.isnan(utterance.hnr_db) or -20 < utterance.hnr_db < 3  # Praat says -5.7 dB, never -200
    assert any("no voiced pitch frame" in note for note in features.notes)


def test_praat_sentinels_become_nan():
    assert np.isnan(_undefined_to_nan([0.0, 120.0, np.inf], 0.0)[[0, 2]]).all()
    assert _undefined_to_nan([-200.0, 12.5], -200.0)[1] == 12.5
    assert np.isnan(_undefined_to_nan([-200.0], -200.0)).all()


def test_harmonicity_port_matches_praat():
    import parselmouth

    audio, _ = synthesize("Dogs are sitting by the door", voice="Female1")
    sound = parselmouth.Sound(audio.samples.astype(float), SR)
    for floor in (75.0, 120.0):
        praat = sound.to_harmonicity_cc(time_step=0.01, minimum_pitch=floor).values[0]
        ours = harmonicity_cc(audio.samples, SR, floor, 0.01)
        assert ours.shape == praat.shape
        defined = praat > -200
        assert np.mean(defined == (ours > -200)) > 0.98
        both = defined & (ours > -200)
        assert np.median(np.abs(ours[both] - praat[both])) < 0.01
        assert ours[ours > -200].mean() == pytest.approx(praat[defined].mean(), abs=0.6)


@pytest.mark.parametrize(("text", "voice"), [(TEXT, "Male1"), ("Dogs are sitting by the door", "Female1")])
def test_hnr_praat_and_fast_agree(text, voice):
    audio, truth = synthesize(text, voice=voice)
    fast = measure(audio, truth, MeasureConfig(hnr="fast"))
    praat = measure(audio, truth, MeasureConfig(hnr="praat"))
    assert math.isfinite(fast.utterance.hnr_db)
    assert praat.utterance.hnr_db == pytest.approx(fast.utterance.hnr_db, abs=0.6)  # the oracle's tolerance
    assert {**asdict(praat.utterance), "hnr_db": 0} == {**asdict(fast.utterance), "hnr_db": 0}
    assert praat.vowels == fast.vowels  # HNR is utterance-level only


def test_default_hnr_keeps_prosody_cache_keys():
    """The default ``hnr="fast"`` is left out of the cache key: extractions cached before it existed still hit."""
    from emollm.prosody.pipeline import PIPELINE_VERSION, prosody_cache_key

    samples = np.full(SR, 0.1, np.float32)
    row = {"audio": samples, "transcript": "ah", "sample_rate": SR}
    config = MeasureConfig(gender="male")
    settings = {  # what prosody_cache_key hashed before MeasureConfig had an ``hnr`` field
        "version": PIPELINE_VERSION,
        "config": {k: v for k, v in asdict(config).items() if k != "hnr"},
        **{k: row.get(k) for k in ("transcript", "speaker", "gender", "sample_rate", "on_failure")},
    }
    digest = hashlib.sha256(samples.tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    assert prosody_cache_key(row, config) == digest.hexdigest()
    assert prosody_cache_key(row, MeasureConfig(gender="male", hnr="praat")) != digest.hexdigest()


# -- pauses and silence --------------------------------------------------------------------------------------


def test_a_half_second_gap_is_one_pause():
    (first, first_truth), (second, second_truth) = synthesize(TEXT), synthesize("The dog is barking loudly")
    samples = np.concatenate([first.samples, np.zeros(SR // 2, np.float32), second.samples])
    joined = Alignment(
        method="textgrid",
        duration=len(samples) / SR,
        words=first_truth.words + shifted(second_truth, first.duration + 0.5, 0).words,
        phones=first_truth.phones + shifted(second_truth, first.duration + 0.5, 0).phones,
    )
    utterance = measure(Audio(samples, SR), joined).utterance
    assert utterance.pause_count == 1
    # Measured 0.51 s; the synthesiser adds ~30 ms of its own silence around the gap.
    assert utterance.pause_ratio == pytest.approx(0.5 / utterance.duration, abs=0.08 / utterance.duration)
    assert utterance.speech_duration < utterance.duration - 0.45


def test_leading_and_trailing_silence_are_not_pauses(speech, speech_features):
    audio, truth = speech
    pad = np.zeros(int(0.7 * SR), np.float32)
    padded = Audio(np.concatenate([pad, audio.samples, pad]), SR)
    utterance = measure(padded, shifted(truth, 0.7, padded.duration)).utterance
    assert utterance.pause_count == 0 and utterance.pause_ratio == 0.0
    assert utterance.speech_duration == pytest.approx(speech_features.utterance.speech_duration, abs=0.1)
    assert utterance.speech_rate < speech_features.utterance.speech_rate
    assert utterance.articulation_rate == pytest.approx(speech_features.utterance.articulation_rate, rel=0.1)
    assert utterance.f0_mean_st == pytest.approx(speech_features.utterance.f0_mean_st, abs=0.3)


# -- pitch range ---------------------------------------------------------------------------------------------


def test_adaptive_pitch_range_follows_the_voice():
    low = pitch_range_for(synthesize(TEXT, voice="Male1", pitch=0.7)[0])  # measured (51, 124) Hz
    high = pitch_range_for(synthesize(TEXT, voice="Female1")[0])  # measured (123, 284) Hz
    assert high[0] > low[0] + 30 and high[1] > low[1] + 60
    assert low[0] < low[1] and high[0] < high[1]


def test_explicit_range_and_gender_presets_win(speech):
    audio, truth = speech
    assert pitch_range_for(audio, MeasureConfig(pitch_floor=90, pitch_ceiling=250)) == (90.0, 250.0)
    assert pitch_range_for(audio, MeasureConfig(gender="female")) == (100.0, 500.0)
    assert pitch_range_for(audio, MeasureConfig(gender="male", pitch_ceiling=200)) == (75.0, 200.0)
    floor, ceiling = pitch_range_for(audio, MeasureConfig(pitch_floor=150))
    assert floor == 150.0 and ceiling >= 300.0  # an adaptive bound keeps an octave away from a given one
    utterance = measure(audio, truth, MeasureConfig(pitch_floor=70, pitch_ceiling=300)).utterance
    assert (utterance.pitch_floor, utterance.pitch_ceiling) == (70.0, 300.0)


# -- serialisation and the flat view -------------------------------------------------------------------------


def test_json_round_trip_keeps_nans(tmp_path):
    noise = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    features = measure(Audio(noise, SR, source="noise.wav"), one_vowel(1.0), speaker="s1")
    path = tmp_path / "out" / "features.json"
    text = features.to_json(path)
    assert path.read_text() == text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert data["vowels"][0]["f0_mean_hz"] is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["features.json"]  # no temporary file left
    back = ProsodyFeatures.from_dict(data)
    assert back.to_json() == text
    assert math.isnan(back.vowels[0].f0_mean_hz) and math.isnan(back.utterance.f0_mean_hz)
    assert back.vowels[0].stress == 1 and back.speaker == "s1" and back.source == "noise.wav"
    assert isinstance(back.utterance, UtteranceMeasures) and isinstance(back.vowels[0], VowelMeasures)
    assert back.alignment.to_dict() == features.alignment.to_dict()
    assert ProsodyFeatures.from_dict(features.to_dict()).to_json() == text


def test_flat_has_a_fixed_key_set(speech_features):
    normal = speech_features.flat()
    noise = np.random.default_rng(2).standard_normal(SR).astype(np.float32) * 0.1
    unvoiced = measure(Audio(noise, SR), one_vowel(1.0)).flat()
    consonants_only = Alignment(method="textgrid", duration=1.0, phones=[Phone("S", 0.1, 0.3)])
    no_vowels = measure(tone(200.0), consonants_only).flat()
    assert set(normal) == set(unvoiced) == set(no_vowels)
    assert len(normal) == 52 and all(type(v) is float for v in normal.values())
    assert {"utt_f0_mean_st", "vowel_f0_range_max", "stressed_vowel_duration_mean"} <= set(normal)
    assert all(math.isfinite(v) for k, v in normal.items() if k.startswith(("vowel_", "stressed_")))
    assert math.isnan(unvoiced["vowel_f0_mean_st_mean"]) and unvoiced["vowel_voiced_fraction_max"] < 0.05
    assert math.isnan(no_vowels["vowel_duration_mean"]) and no_vowels["utt_n_vowels"] == 0.0
    durations = [v.duration for v in speech_features.vowels]
    assert normal["vowel_duration_max"] == pytest.approx(max(durations))
    stressed = [v.duration for v in speech_features.vowels if v.stress == 1]
    assert normal["stressed_vowel_duration_mean"] == pytest.approx(np.mean(stressed))


def test_no_vowels_gives_utterance_measures_and_a_note():
    alignment = Alignment(method="nuclei", duration=1.0)
    features = measure(tone(200.0), alignment)
    assert features.vowels == [] and features.utterance.n_vowels == 0
    assert features.utterance.f0_mean_hz == pytest.approx(200.0, rel=0.01)
    assert features.utterance.speech_rate == 0.0
    assert any("no vowels" in note for note in features.notes)


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pitch_floor": 5}, "pitch_floor"),
        ({"pitch_ceiling": 5000}, "pitch_ceiling"),
        ({"pitch_floor": 300, "pitch_ceiling": 200}, "pitch_floor"),
        ({"gender": "robot"}, "gender"),
        ({"time_step": 0}, "time_step"),
        ({"silence_threshold_db": 10}, "silence_threshold_db"),
        ({"min_pause": -1}, "min_pause"),
        ({"pitch_floor": "low"}, "pitch_floor"),
        ({"hnr": "exact"}, "hnr"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field) as error:
        MeasureConfig(**kwargs)
    assert "accepted" in str(error.value) or "below" in str(error.value)


def test_unknown_hnr_method_is_refused():
    with pytest.raises(ConfigError, match="hnr='parselmouth' \\(accepted: 'fast' or 'praat'\\)"):
        MeasureConfig(hnr="parselmouth")


def test_unusable_audio_raises_audio_error():
    with pytest.raises(AudioError, match="finite"):
        measure(Audio(np.array([0.1, np.nan, 0.2], np.float32), SR), one_vowel(1.0))
    with pytest.raises(AudioError, match="Praat could not analyse"):
        measure(tone(200.0, seconds=0.03), one_vowel(0.03, 0.0, 0.03))
