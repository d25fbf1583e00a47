"""Per-speaker normalisation of encoder frames: statistics, the adapter switch, checkpoints and the harness."""

import json

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama

from emollm.api import EmotionReasoner
from emollm.audio import load_audio, save_audio
from emollm.data import Utterance
from emollm.errors import ConfigError
from emollm.inputs import encode_utterances
from emollm.modeling import EmotionLM
from emollm.modeling.adapters import AdapterSpec, build_adapters
from emollm.modeling.checkpoint import CONFIG_NAME, save_checkpoint
from emollm.modeling.emotion_lm import load_checkpoint
from emollm.modeling.encoders import build_encoder
from emollm.modeling.frame_norm import FrameNormalizer


def clips(seed=0):
    """Two speakers whose frames differ in level and spread: a (mean 3, std 2), b (mean -1, std 0.5)."""
    g = torch.Generator().manual_seed(seed)
    a = [3 + 2 * torch.randn(40 + i, 4, generator=g) for i in range(3)]
    b = [-1 + 0.5 * torch.randn(30 + i, 4, generator=g) for i in range(2)]
    return a + b, ["a"] * 3 + ["b"] * 2


def test_each_speaker_comes_out_zero_mean_unit_variance():
    frames, speakers = clips()
    norm = FrameNormalizer.fit(frames, speakers, min_clips=2)
    for who in ("a", "b"):
        own = torch.cat([norm(f, s) for f, s in zip(frames, speakers) if s == who]).double()
        assert torch.allclose(own.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(own.std(0), torch.ones(4, dtype=torch.float64), atol=1e-5)
    # the raw levels differed by 4: after normalisation the two speakers' frames overlap
    raw_gap = frames[0].mean() - frames[3].mean()
    assert raw_gap > 3 and abs(norm(frames[0], "a").mean() - norm(frames[3], "b").mean()) < 0.5


def test_unknown_and_missing_speakers_use_the_corpus_statistics():
    frames, speakers = clips()
    norm = FrameNormalizer.fit(frames, speakers, min_clips=2)
    pooled = torch.cat(frames).double()
    expected = (frames[0].double() - pooled.mean(0)) / pooled.std(0)
    for who in ("nobody", None):
        assert torch.allclose(norm(frames[0], who).double(), expected, atol=1e-5)
    assert not torch.allclose(norm(frames[0], "a").double(), expected, atol=1e-2)


def test_a_flat_column_stays_finite():
    frames = [torch.cat([torch.ones(10, 1), torch.randn(10, 1)], 1), torch.randn(10, 2) * 3]
    norm = FrameNormalizer.fit(frames, ["flat", "other"], min_clips=1)
    out = norm(frames[0], "flat")
    assert torch.isfinite(out).all() and torch.allclose(out[:, 0], torch.zeros(10))


def test_speakers_with_too_few_clips_or_frames_use_the_corpus_statistics():
    frames, speakers = clips()  # a has 3 clips, b has 2
    frames, speakers = frames + [torch.zeros(0, 4), torch.zeros(0, 4)], speakers + ["silent", "silent"]
    norm = FrameNormalizer.fit(frames, speakers, min_clips=3)
    assert sorted(norm.speakers) == ["a"]  # b: 2 clips; silent: 2 clips without a frame
    assert torch.equal(norm(frames[3], "b"), norm(frames[3], None))
    assert torch.isfinite(norm(frames[3], "silent")).all()
    # one clip normalised by itself would come out flat at mean 0, std 1 in every column: it is not
    lone = FrameNormalizer.fit([frames[0], frames[3]], ["a", "b"])  # the default asks for 5 clips
    assert lone.speakers == {} and abs(float(lone(frames[0], "a").mean())) > 0.5


def test_dict_round_trip_is_exact_and_bad_dicts_are_refused():
    frames, speakers = clips()
    norm = FrameNormalizer.fit(frames, speakers)
    again = FrameNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert torch.equal(again(frames[4], "b"), norm(frames[4], "b"))
    with pytest.raises(ConfigError, match="needs 'speakers' and 'corpus'"):
        FrameNormalizer.from_dict({"speakers": {}})


@pytest.mark.parametrize(
    "frames, speakers, message",
    [
        ([], [], "no clips"),
        ([torch.zeros(3, 2)], ["a", "b"], "2 speakers for 1 clips"),
        ([torch.zeros(3, 2), torch.zeros(3, 5)], ["a", "b"], r"different feature widths \[2, 5\]"),
        ([torch.zeros(3)], ["a"], r"\(frames, features\)"),
        ([torch.zeros(1, 2)], ["a"], "fewer than 2 frames"),
    ],
)
def test_bad_fits_say_what_was_wrong(frames, speakers, message):
    with pytest.raises(ConfigError, match=message):
        FrameNormalizer.fit(frames, speakers)


def test_frames_of_another_width_are_refused():
    frames, speakers = clips()
    with pytest.raises(ConfigError, match="frames have 3 features; the normaliser was fitted on 4"):
        FrameNormalizer.fit(frames, speakers)(torch.zeros(2, 3), "a")


def test_adapter_spec_lists_the_accepted_normalisations():
    with pytest.raises(ConfigError, match="unknown normalize 'gender'; accepted: none, speaker"):
        AdapterSpec(normalize="gender")
    assert AdapterSpec(
        **{k: v for k, v in AdapterSpec().to_dict().items() if k != "normalize"}
    ).normalize == ("none")  # checkpoints saved before the field load as before


# -- through the model, checkpoints and the harness ----------------------------------------------------------


def tone(f0, seconds=0.6, level=0.3):
    t = np.arange(int(16000 * seconds)) / 16000
    return (level * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def adapted_lm(tokenizer, normalize):
    spec = AdapterSpec("audio", "prosody_frames", "linear", 2, normalize=normalize)
    model = build_tiny_llama(len(tokenizer))
    encoders, projectors = build_adapters([spec], model.get_input_embeddings().embedding_dim)
    return EmotionLM(model, tokenizer, "tiny", encoders=encoders, projectors=projectors, adapters=[spec])


# five clips per speaker: the default minimum for a speaker's own statistics
LOW, HIGH = [110, 120, 130, 140, 150], [220, 235, 250, 265, 280]


def test_encode_applies_the_speakers_statistics_only_when_the_adapter_asks(tiny_tokenizer):
    audio = [tone(f0) for f0 in LOW + HIGH]
    speakers = ["low"] * 5 + ["high"] * 5
    plain, normed = adapted_lm(tiny_tokenizer, "none"), adapted_lm(tiny_tokenizer, "speaker")
    raw = plain.encode("audio", audio, speakers)
    with pytest.raises(ConfigError, match="no statistics are fitted; call fit_frame_normalizers"):
        normed.encode("audio", audio, speakers)
    normed.fit_frame_normalizers({"audio": raw}, speakers)
    plain.fit_frame_normalizers({"audio": raw}, speakers)
    assert plain.frame_normalizers == {}  # "none" fits nothing and changes nothing
    assert all(torch.equal(a, b) for a, b in zip(plain.encode("audio", audio, speakers), raw))
    assert sorted(normed.frame_normalizers["audio"].speakers) == ["high", "low"]
    out = normed.encode("audio", audio, speakers)
    expected = FrameNormalizer.fit(raw, speakers)
    assert all(torch.allclose(o, expected(r, s)) for o, r, s in zip(out, raw, speakers))
    with pytest.raises(ConfigError, match="got 1 speakers for 10 inputs"):
        normed.encode("audio", audio, ["low"])


def saved_checkpoint(tokenizer, folder):
    """A checkpoint whose adapter normalises per speaker, with statistics of ann (low) and bob (high)."""
    lm = adapted_lm(tokenizer, "speaker")
    raw = lm.encoders["audio"].encode([tone(f0) for f0 in LOW + HIGH])
    lm.fit_frame_normalizers({"audio": raw}, ["ann"] * 5 + ["bob"] * 5)
    tokenizer.save_pretrained(str(folder / "base"))
    lm.model.save_pretrained(str(folder / "base"))
    save_checkpoint(
        lm.model, folder / "ckpt", base_model=str(folder / "base"), adapters=lm.adapters,
        reasoner={"labels": ["happy", "sad"]}, frame_normalizers=lm.frame_normalizers,
    )  # fmt: skip
    return lm, folder / "ckpt"


def test_checkpoint_keeps_the_training_statistics_for_prediction(tiny_tokenizer, tmp_path):
    lm, checkpoint = saved_checkpoint(tiny_tokenizer, tmp_path)
    saved = json.loads((checkpoint / CONFIG_NAME).read_text())
    assert sorted(saved["frame_normalizers"]["audio"]["speakers"]) == ["ann", "bob"]
    assert load_checkpoint(checkpoint).frame_normalizers["audio"] == lm.frame_normalizers["audio"]

    reasoner = EmotionReasoner.from_pretrained(str(checkpoint))
    new = tone(180)
    (known,) = reasoner.encode([{"audio": new, "speaker": "bob"}])
    (unknown,) = reasoner.encode([{"audio": new, "speaker": "carl"}])
    (new_raw,) = lm.encoders["audio"].encode([new])
    stats = lm.frame_normalizers["audio"]
    assert torch.allclose(known["audio"], stats(new_raw, "bob"))
    assert torch.allclose(unknown["audio"], stats(new_raw, None))
    assert not torch.allclose(known["audio"], unknown["audio"])


def speech(tmp_path):
    """Ten clips on disk: speaker m low and quiet-to-loud, speaker f high."""
    utts = []
    for i, (f0, who) in enumerate([(f, "m") for f in LOW] + [(f, "f") for f in HIGH]):
        path = save_audio(load_audio(tone(f0, level=0.05 + 0.03 * i), 16000), tmp_path / f"c{i}.wav")
        utts.append(Utterance(id=f"c{i}", audio_path=str(path), speaker=who, label="happy"))
    return utts


def test_harness_refits_on_every_utterance_so_a_resumed_run_sees_the_same_frames(
    tiny_tokenizer, tmp_path, emollm_cache
):
    utts = speech(tmp_path)
    lm = adapted_lm(tiny_tokenizer, "speaker")
    full, fitted = encode_utterances(lm, utts, progress=False)
    assert lm.frame_normalizers == {}  # the statistics are returned, the model is left as it was
    resumed, _ = encode_utterances(adapted_lm(tiny_tokenizer, "speaker"), utts, todo=utts[8:], progress=False)
    resumed, full = resumed["audio"], full["audio"]
    assert sorted(resumed) == ["c8", "c9"]
    assert all(torch.equal(resumed[k], full[k]) for k in resumed)
    raw = build_encoder("prosody_frames").encode([u.audio_path for u in utts])
    expected = FrameNormalizer.fit(raw, [u.speaker for u in utts])
    assert fitted["audio"].to_dict() == expected.to_dict()
    assert torch.allclose(full["c8"], expected(raw[8], "f"))
    # fitted on the speaker's own clips only, not everyone's
    assert not torch.allclose(full["c8"], FrameNormalizer.fit(raw, [None] * 10)(raw[8]), atol=1e-3)


def test_evaluation_refits_or_uses_the_checkpoints_statistics_and_leaves_the_model_as_it_was(
    tiny_tokenizer, tmp_path, emollm_cache, monkeypatch
):
    from emollm.evaluation import harness

    lm, _ = saved_checkpoint(tiny_tokenizer, tmp_path)
    trained = lm.frame_normalizers["audio"]
    utts = speech(tmp_path)
    seen = {}

    def keep_features(self, items, **kwargs):  # record what the harness feeds the model
        seen.update({item.id: f["audio"] for item, f in zip(items, kwargs["frames"])})
        return real(self, items, **kwargs)

    real = EmotionReasoner.predict_batch
    monkeypatch.setattr(EmotionReasoner, "predict_batch", keep_features)
    manifest = tmp_path / "speech.jsonl"
    rows = [{"id": u.id, "audio_path": u.audio_path, "label": u.label, "speaker": u.speaker} for u in utts]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = build_encoder("prosody_frames").encode([u.audio_path for u in utts])
    refit = FrameNormalizer.fit(raw, [u.speaker for u in utts])
    for mode, stats, speaker in (("speaker", refit, "f"), ("checkpoint", trained, None)):
        config = harness.EvalConfig(
            data=f"manifest:{manifest}",
            split="all",
            model="tiny",
            labels="ravdess8",
            frame_normalizer=mode,
            output=str(tmp_path / mode),
        )
        harness.evaluate(config, lm=lm, progress=False)
        assert torch.allclose(seen["c8"], stats(raw[8], speaker))  # f is unknown to the checkpoint: corpus
        settings = json.loads((tmp_path / mode / "config.json").read_text())["settings"]
        assert settings["frame_normalizer"] == mode
        assert lm.frame_normalizers["audio"] is trained  # the caller's model keeps its statistics
    with pytest.raises(ConfigError, match="frame_normalizer is 'utterance'; accepted: speaker, checkpoint"):
        harness.EvalConfig(data="ravdess", frame_normalizer="utterance")
