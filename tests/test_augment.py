"""Training-time augmentation: what each kind does to duration, F0 and SNR; the cache; spec parsing."""

from __future__ import annotations

import copy

import numpy as np
import parselmouth
import pytest

from emollm import augment
from emollm.audio import load_audio, save_audio
from emollm.augment import (
    Augmentation,
    add_noise,
    augment_utterances,
    parse_augmentation,
    parse_augmentations,
    pitch_shift,
    speed_perturb,
)
from emollm.data.schema import Turn, Utterance
from emollm.errors import AudioError, ConfigError

SR = 16_000


def harmonic_tone(f0: float = 150.0, seconds: float = 1.0, peak: float = 0.5) -> np.ndarray:
    """A voiced-like tone: 20 harmonics of ``f0`` with 1/k amplitudes."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 21))
    return (peak * x / np.max(np.abs(x))).astype(np.float32)


def median_f0(audio: np.ndarray) -> float:
    f0 = (
        parselmouth.Sound(audio.astype(np.float64), sampling_frequency=SR)
        .to_pitch()
        .selected_array["frequency"]
    )
    return float(np.median(f0[f0 > 0]))


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean, noisy = clean.astype(np.float64), noisy.astype(np.float64)
    gain = np.dot(noisy, clean) / np.dot(clean, clean)  # undo a whole-clip rescale, if any
    return float(10 * np.log10(np.mean(clean**2) / np.mean((noisy / gain - clean) ** 2)))


@pytest.fixture(scope="module")
def speech():
    from emollm.prosody.synth import synthesize

    audio, _ = synthesize("we were away all year", words_per_minute=160)
    return audio.samples


# -- signal functions --------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch_together(factor):
    tone = harmonic_tone()
    out = speed_perturb(tone, SR, factor)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(len(tone) / factor, abs=2)
    assert median_f0(out) / median_f0(tone) == pytest.approx(factor, rel=0.03)


@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_keeps_duration_and_moves_f0(semitones):
    tone = harmonic_tone()
    out = pitch_shift(tone, SR, semitones)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(len(tone), rel=0.01)
    assert median_f0(out) / median_f0(tone) == pytest.approx(2 ** (semitones / 12), rel=0.03)


def test_pitch_shift_on_synthesised_speech(speech):
    out = pitch_shift(speech, SR, 2.0)
    assert len(out) == len(speech)
    assert median_f0(out) / median_f0(speech) == pytest.approx(2 ** (2 / 12), rel=0.03)


@pytest.mark.parametrize("target", [15.0, 20.0, 30.0])
def test_noise_hits_the_requested_snr(speech, target):
    assert snr_db(speech, add_noise(speech, target, seed=0)) == pytest.approx(target, abs=0.5)


def test_noise_on_a_loud_clip_is_rescaled_not_clipped():
    loud = harmonic_tone(peak=0.999)
    out = add_noise(loud, 0.0, seed=0)
    assert np.max(np.abs(out)) == pytest.approx(0.99)  # scaled down as a whole
    assert snr_db(loud, out) == pytest.approx(0.0, abs=0.5)


def test_noise_is_seeded():
    tone = harmonic_tone()
    np.testing.assert_array_equal(add_noise(tone, 20, seed=5), add_noise(tone, 20, seed=5))
    assert not np.array_equal(add_noise(tone, 20, seed=5), add_noise(tone, 20, seed=6))


def test_noise_refuses_silence():
    with pytest.raises(AudioError, match="silent"):
        add_noise(np.zeros(SR, dtype=np.float32), 20)


# -- spec parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value", "name"),
    [
        ("speed0.9", "speed", 0.9, "speed0.9"),
        ("speed1.10", "speed", 1.1, "speed1.1"),
        ("pitch+2", "pitch", 2.0, "pitch+2"),
        ("pitch2", "pitch", 2.0, "pitch+2"),
        ("PITCH-2.5", "pitch", -2.5, "pitch-2.5"),
        (" noise20 ", "noise", 20.0, "noise20"),
    ],
)
def test_parse_augmentation(text, kind, value, name):
    parsed = parse_augmentation(text)
    assert (parsed.kind, parsed.value, parsed.name) == (kind, value, name)
    assert parse_augmentation(parsed.name) == parsed


@pytest.mark.parametrize(
    "text",
    ["speed", "speed2", "speed1", "speed0.5", "speed+0.9", "pitch0", "pitch+7", "noise-5", "noise61",
     "reverb20", "20noise", "noise20dB", ""],
)  # fmt: skip
def test_parse_augmentation_errors(text):
    with pytest.raises(ConfigError) as caught:
        parse_augmentation(text)
    message = str(caught.value)
    assert repr(text) in message and "<" in message  # the value seen and the accepted syntax


def test_parse_augmentations():
    assert [a.name for a in parse_augmentations("speed0.9,speed1.1,pitch+2,noise20,speed0.9")] == [
        "speed0.9",
        "speed1.1",
        "pitch+2",
        "noise20",
    ]
    assert parse_augmentations("") == parse_augmentations("none") == parse_augmentations(None) == []
    assert parse_augmentations(["noise20", Augmentation("noise", 20)]) == [Augmentation("noise", 20)]
    with pytest.raises(ConfigError, match="'pitch9'"):
        parse_augmentations("speed0.9,pitch9")


# -- augment_utterances ------------------------------------------------------------------------------------


@pytest.fixture
def utterances(tmp_path, speech):
    wav = save_audio(load_audio(speech, SR), tmp_path / "src" / "a.wav")
    return [
        Utterance(
            id="a",
            transcript="we were away all year",
            label="happy",
            audio_path=str(wav),
            speaker="spk1",
            context=[Turn("spk2", "hello")],
            meta={"session": 1},
        ),
        Utterance(id="b", label="sad", audio=harmonic_tone(), sample_rate=SR, speaker="spk2"),
    ]


def test_copies_have_new_ids_speakers_and_meta(utterances, tmp_path):
    before = copy.deepcopy(utterances)
    copies = augment_utterances(utterances, "speed1.1,noise20", seed=0, cache_dir=tmp_path / "cache")
    assert [(c.id, c.speaker) for c in copies] == [
        ("a~speed1.1", "spk1~speed1.1"),
        ("a~noise20", "spk1~noise20"),
        ("b~speed1.1", "spk2~speed1.1"),
        ("b~noise20", "spk2~noise20"),
    ]
    first = copies[0]
    assert first.meta == {"session": 1, "augmentation": "speed1.1", "source_id": "a"}
    assert (first.label, first.transcript, first.context) == (
        "happy",
        "we were away all year",
        [Turn("spk2", "hello")],
    )
    assert first.audio is None and first.audio_path.startswith(str(tmp_path / "cache"))
    assert load_audio(copies[2].audio_path).duration == pytest.approx(1.0 / 1.1, abs=0.002)
    for original, kept in zip(utterances, before):  # the inputs are untouched
        assert original.to_dict() == kept.to_dict()


def test_each_file_is_written_once(utterances, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    copies = augment_utterances(utterances, ["pitch-2", "noise20"], seed=3, cache_dir=cache)
    files = sorted(cache.iterdir())
    assert len(files) == 4
    stamps = {f: f.stat().st_mtime_ns for f in files}

    def refuse(*args, **kwargs):
        raise AssertionError("a cached copy was computed again")

    monkeypatch.setattr(augment, "apply_augmentation", refuse)
    again = augment_utterances(utterances, ["pitch-2", "noise20"], seed=3, cache_dir=cache)
    assert [c.audio_path for c in again] == [c.audio_path for c in copies]
    assert {f: f.stat().st_mtime_ns for f in sorted(cache.iterdir())} == stamps
    with pytest.raises(AssertionError, match="computed again"):  # a new seed means new noise
        augment_utterances(utterances, ["noise20"], seed=4, cache_dir=cache)
    augment_utterances(utterances, ["pitch-2"], seed=4, cache_dir=cache)  # but the same pitch shift


def test_noise_is_deterministic_per_seed_and_utterance(tmp_path):
    tone = harmonic_tone()
    twins = [Utterance(id=i, audio=tone, sample_rate=SR) for i in ("x", "y")]

    def noise(seed, folder):
        copies = augment_utterances(twins, "noise20", seed=seed, cache_dir=tmp_path / folder)
        return [load_audio(c.audio_path).samples - tone for c in copies]

    first, repeat, other = noise(0, "one"), noise(0, "two"), noise(1, "three")
    np.testing.assert_array_equal(first[0], repeat[0])
    assert not np.allclose(first[0], other[0], atol=1e-3)
    assert not np.allclose(first[0], first[1], atol=1e-3)  # same audio, other id: other noise


def test_utterances_without_audio_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no_audio"):
        augment_utterances([Utterance(id="no_audio", transcript="hi")], "noise20", cache_dir=tmp_path)


def test_default_cache_dir_follows_emollm_cache(emollm_cache):
    assert augment.default_cache_dir() == emollm_cache / "augment"
