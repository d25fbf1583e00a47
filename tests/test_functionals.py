"""The prosody_functionals encoder: one vector of utterance and vowel measures per clip, z-scored per
speaker without labels, feeding a projector like any frame encoder."""

from __future__ import annotations

import math

import pytest
import torch

from emollm.errors import ConfigError
from emollm.modeling.encoders import build_encoder, encode_cached, frames_cache_key, functional_names
from emollm.modeling.frame_norm import FrameNormalizer
from emollm.prosody.synth import synthesize

KIDS = "Kids are talking by the door"


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("prosody_functionals")


def column(vector, name):
    return float(vector[0, functional_names().index(name)])


def test_one_vector_of_the_pipeline_measures_per_clip(encoder):
    from emollm.prosody.pipeline import extract_prosody

    low, _ = synthesize(KIDS, pitch=0.8)
    high, _ = synthesize(KIDS, pitch=1.6)
    slow, fast = (synthesize(KIDS, words_per_minute=wpm)[0] for wpm in (120, 260))
    vectors = encoder.encode([{"audio": a, "transcript": KIDS} for a in (low, high, slow, fast)])
    assert all(tuple(v.shape) == (1, 52) and v.dtype == torch.float32 for v in vectors)
    assert column(vectors[0], "utt_n_vowels") == 7.0  # the transcript's vowels, aligned
    expected = extract_prosody(low, KIDS).flat()
    for name in ("utt_f0_mean_st", "vowel_duration_mean", "utt_speech_rate"):
        assert column(vectors[0], name) == pytest.approx(expected[name], rel=1e-6)
    assert column(vectors[1], "utt_f0_mean_st") > column(vectors[0], "utt_f0_mean_st") + 6  # ~12 st apart
    assert column(vectors[3], "utt_speech_rate") > 1.5 * column(vectors[2], "utt_speech_rate")
    (no_words,) = encoder.encode([low])  # without a transcript: syllable nuclei, same columns
    assert tuple(no_words.shape) == (1, 52) and not torch.equal(no_words, vectors[0])
    with pytest.raises(ConfigError, match="needs 'audio'"):
        encoder.encode([{"transcript": KIDS}])


def test_the_cache_keys_on_audio_and_words(encoder, tmp_path):
    audio, _ = synthesize(KIDS)
    key = frames_cache_key(encoder, {"audio": audio, "transcript": KIDS})
    assert key == frames_cache_key(encoder, {"transcript": KIDS, "audio": audio})
    assert key != frames_cache_key(encoder, {"audio": audio, "transcript": "Kids are talking"})
    first = encode_cached(encoder, [{"audio": audio, "transcript": KIDS}], tmp_path)
    again = encode_cached(encoder, [{"audio": audio, "transcript": KIDS}], tmp_path)
    assert torch.equal(first[0], again[0]) and len(list((tmp_path / encoder.name).iterdir())) == 1


def test_the_frame_normaliser_skips_undefined_values_and_is_unchanged_otherwise():
    torch.manual_seed(0)
    clips = [torch.randn(1, 3) + i for i in range(12)]
    speakers = ["a"] * 6 + ["b"] * 6
    plain = FrameNormalizer.fit(clips, speakers)
    stacked = torch.cat(clips[:6]).double()
    assert plain.speakers["a"][0] == pytest.approx(stacked.mean(0).tolist())
    assert plain.speakers["a"][1] == pytest.approx(stacked.std(0).tolist())  # as before NaN-awareness
    holes = [c.clone() for c in clips]
    holes[0][0, 1] = float("nan")
    fitted = FrameNormalizer.fit(holes, speakers)
    assert all(math.isfinite(x) for x in fitted.speakers["a"][0] + fitted.speakers["a"][1])
    assert fitted.speakers["a"][0][1] == pytest.approx(stacked[1:, 1].mean().item())  # 5 finite values
    assert fitted.speakers["a"][0][0] == plain.speakers["a"][0][0]
    assert torch.isnan(fitted(holes[0], "a")[0, 1])  # stays undefined; projectors read it as 0


def test_functionals_feed_a_projector_z_scored_per_speaker_without_labels(
    tiny_tokenizer, tmp_path, emollm_cache
):
    from conftest import build_tiny_llama

    from emollm.data import Utterance
    from emollm.inputs import encode_utterances
    from emollm.modeling import AdapterSpec, EmotionLM
    from emollm.modeling.adapters import build_adapters

    model = build_tiny_llama(len(tiny_tokenizer))
    spec = AdapterSpec("audio", "prosody_functionals", "mlp", num_tokens=2, normalize="speaker")
    encoders, projectors = build_adapters([spec], model.get_input_embeddings().embedding_dim)
    lm = EmotionLM(model, tiny_tokenizer, encoders=encoders, projectors=projectors, adapters=[spec])
    utterances = []
    for i, (speaker, pitch) in enumerate(
        [("low", p) for p in (0.7, 0.75, 0.8, 0.85, 0.9)] + [("high", p) for p in (1.5, 1.55, 1.6, 1.65, 1.7)]
    ):
        path = tmp_path / f"u{i}.wav"
        from emollm.audio import save_audio

        save_audio(synthesize(KIDS, pitch=pitch)[0], path)
        utterances.append(
            Utterance(id=f"u{i}", transcript=KIDS, speaker=speaker, audio_path=str(path))
        )  # no labels
    frames, normalizers = encode_utterances(lm, utterances, progress=False)
    f0 = functional_names().index("utt_f0_mean_st")
    by_speaker = {
        s: torch.cat([frames["audio"][u.id] for u in utterances if u.speaker == s]) for s in ("low", "high")
    }
    for rows in by_speaker.values():  # each speaker's own mean and spread: z-scores around 0
        assert abs(float(rows[:, f0].mean())) < 1e-4 and float(rows[:, f0].std()) == pytest.approx(
            1.0, rel=0.15
        )
    assert set(normalizers["audio"].speakers) == {"low", "high"}
    prompt = lm.tokenizer.apply_chat_template([{"role": "user", "content": "How? <|audio|>"}], tokenize=False)
    scores = lm.score([prompt], ["sad", "happy"], frames=[{"audio": frames["audio"]["u0"]}])
    assert torch.isfinite(scores).all() and lm.num_tokens == {"audio": 2}
