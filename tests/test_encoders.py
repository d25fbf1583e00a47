"""Frozen modality encoders: prosody frames, tiny random HF audio and vision models built in-process, the cache."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from emollm.errors import AudioError, ConfigError, DataError
from emollm.modeling import encoders
from emollm.modeling.encoders import (
    ENCODERS,
    FEATURE_NAMES,
    FEATURE_SCALING,
    build_encoder,
    encode_cached,
    pad_frames,
    sample_indices,
)

SR = 16_000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine thread hand-offs cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with noise: enough structure for the speech models, no synthesiser needed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 1.5 * t)) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    return (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def assert_frozen(encoder):
    assert sum(p.numel() for p in encoder.parameters() if p.requires_grad) == 0
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())


def assert_rebuilds(encoder, inputs):
    settings = encoder.settings()
    assert json.loads(json.dumps(settings)) == settings
    twin = build_encoder(encoder.name, **settings)
    assert twin.settings() == settings and twin.output_dim == encoder.output_dim
    for a, b in zip(encoder.encode(inputs), twin.encode(inputs)):
        torch.testing.assert_close(a, b)


# -- registry and helpers ------------------------------------------------------------------------------------


def test_registry_lists_valid_names_on_unknown_name():
    assert set(ENCODERS) == {"prosody_frames", "prosody_functionals", "hf_audio", "vision_frames"}
    with pytest.raises(ConfigError, match="prosody_frames, prosody_functionals, hf_audio, vision_frames"):
        build_encoder("wav2vec")
    with pytest.raises(ConfigError, match="bad settings"):
        build_encoder("prosody_frames", frames_per_second=25)


@pytest.mark.parametrize("name", ["hf_audio", "vision_frames"])
def test_missing_model_folder_says_config_json_is_needed(tmp_path, name):
    with pytest.raises(ConfigError, match="local folder with config.json"):
        build_encoder(name, path=tmp_path / "nowhere")


def test_pad_frames_masks_padding_and_survives_empty_inputs():
    batch, mask = pad_frames([torch.ones(3, 2), torch.full((1, 2), 2.0), torch.zeros(0, 2)])
    assert batch.shape == (3, 3, 2) and mask.dtype == torch.bool
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert batch[1, 0].tolist() == [2.0, 2.0] and batch[1, 1:].abs().sum() == 0
    empty, empty_mask = pad_frames([torch.zeros(0, 4)])
    assert empty.shape == (1, 1, 4) and not empty_mask.any()
    with pytest.raises(ConfigError, match="one frame size"):
        pad_frames([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(ConfigError, match="at least one"):
        pad_frames([])


def test_sample_indices_spread_uniformly():
    assert sample_indices(12, 4) == [1, 4, 7, 10]
    assert sample_indices(100, 8) == sorted(set(sample_indices(100, 8)))
    assert sample_indices(3, 8) == [0, 1, 2]


# -- prosody_frames ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prosody():
    return build_encoder("prosody_frames")


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_prosody_frames_shape_scale_and_frozen(prosody):
    assert prosody.output_dim == len(FEATURE_NAMES) == 22 and set(FEATURE_SCALING) == set(FEATURE_NAMES)
    one, two = prosody.encode([speechlike(1.0), speechlike(2.0)])
    assert one.shape == (25, 22) and two.shape == (50, 22)
    assert one.dtype == torch.float32 and one.device.type == "cpu"
    assert torch.isfinite(two).all() and two.abs().max() <= 5.0
    assert_frozen(prosody)


def test_prosody_pure_tone_gives_a_constant_correct_f0(prosody):
    low, high = prosody.encode([tone(200.0), tone(300.0)])
    inner = slice(3, -3)  # Praat's pitch window leaves the edges unvoiced
    assert (low[inner, column("voiced")] == 1).all()
    level = low[inner, column("f0_level")]
    assert torch.allclose(level, torch.full_like(level, (12 * np.log2(200 / 100) - 8) / 6), atol=0.02)
    assert low[inner, column("f0_rel")].abs().max() < 0.02  # the median is the tone itself
    step = high[inner, column("f0_level")].mean() - level.mean()
    assert step == pytest.approx(12 * np.log2(1.5) / 6, abs=0.02)


def test_prosody_noise_is_unvoiced_and_finite(prosody):
    noise = (0.01 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    out = prosody.encode([noise])[0]
    assert torch.isfinite(out).all()
    assert (out[:, column("voiced")] == 0).all()
    assert (out[:, [column("f0_rel"), column("f0_level")]] == 0).all()


def test_prosody_follows_the_synthesiser_pitch(prosody):
    from emollm.prosody.synth import synthesize

    text = "Kids are talking by the door"
    normal, raised = (prosody.encode([synthesize(text, pitch=p)[0]])[0] for p in (1.0, 1.5))

    def voiced_level(out):
        voiced = out[:, column("voiced")] > 0.5
        return float(out[voiced, column("f0_level")].mean())

    # eSpeak's pitch 1.5 is about +5.5 semitones: +0.9 in f0_level units (6 semitones)
    assert voiced_level(raised) - voiced_level(normal) > 0.5
    assert_rebuilds(prosody, [speechlike(0.5)])


def test_prosody_reads_paths_like_arrays_and_validates_like_load_audio(prosody, tmp_path):
    import soundfile as sf

    wave = speechlike(1.0)
    sf.write(tmp_path / "clip.wav", wave, SR, subtype="FLOAT")
    from_path, from_array = prosody.encode([tmp_path / "clip.wav", wave])
    torch.testing.assert_close(from_path, from_array)
    with pytest.raises(AudioError, match="silent"):
        prosody.encode([np.zeros(SR, dtype=np.float32)])
    with pytest.raises(ConfigError, match="sequence of inputs"):
        prosody.encode(wave)


def test_prosody_settings_are_validated():
    assert build_encoder("prosody_frames", frame_rate=50).encode([tone(200.0)])[0].shape == (50, 22)
    with pytest.raises(ConfigError, match="frame_rate"):
        build_encoder("prosody_frames", frame_rate=0)
    with pytest.raises(ConfigError, match="pitch_floor"):
        build_encoder("prosody_frames", pitch_floor=300.0, pitch_ceiling=200.0)


# -- hf_audio ------------------------------------------------------------------------------------------------

TINY_SPEECH = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


@pytest.fixture(scope="module")
def speech_models(tmp_path_factory):
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    folders = {}
    torch.manual_seed(0)
    for kind, config_class, model_class in [
        ("wav2vec2", Wav2Vec2Config, Wav2Vec2Model),
        ("hubert", HubertConfig, HubertModel),
        ("wavlm", WavLMConfig, WavLMModel),
    ]:
        folders[kind] = tmp_path_factory.mktemp(kind)
        model_class(config_class(**TINY_SPEECH)).save_pretrained(folders[kind])
        Wav2Vec2FeatureExtractor().save_pretrained(folders[kind])
    whisper = WhisperConfig(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        vocab_size=64,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    folders["whisper"] = tmp_path_factory.mktemp("whisper")
    WhisperModel(whisper).save_pretrained(folders["whisper"])
    WhisperFeatureExtractor().save_pretrained(folders["whisper"])
    return folders


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_hf_audio_ssl_models_give_20ms_frames(speech_models, kind):
    encoder = build_encoder("hf_audio", path=str(speech_models[kind]))
    assert encoder.output_dim == 16
    one, two = encoder.encode([speechlike(1.0), speechlike(2.0)])
    assert one.shape == (49, 16) and two.shape == (99, 16)  # the conv stack's 320-sample stride
    assert one.dtype == torch.float32 and torch.isfinite(two).all()
    assert_frozen(encoder)
    assert_rebuilds(encoder, [speechlike(0.5, seed=1)])


def test_hf_audio_layer_selects_a_hidden_state(speech_models):
    path = str(speech_models["wav2vec2"])
    wave = [speechlike(0.5)]
    last, embeddings = (build_encoder("hf_audio", path=path, layer=n).encode(wave)[0] for n in (-1, 0))
    assert last.shape == embeddings.shape and not torch.allclose(last, embeddings)
    torch.testing.assert_close(build_encoder("hf_audio", path=path, layer=2).encode(wave)[0], last)
    with pytest.raises(ConfigError, match="layer must be an integer in"):
        build_encoder("hf_audio", path=path, layer=3)
    with pytest.raises(ConfigError, match="dtype"):
        build_encoder("hf_audio", path=path, dtype="float8")


def test_hf_audio_whisper_is_trimmed_to_the_audio(speech_models):
    encoder = build_encoder("hf_audio", path=str(speech_models["whisper"]))
    assert encoder.output_dim == 16 and encoder.is_whisper
    assert not any("decoder" in name for name, _ in encoder.named_parameters())
    one, two = encoder.encode([speechlike(1.0), speechlike(2.0)])
    assert one.shape == (50, 16) and two.shape == (100, 16)  # 20 ms frames, not Whisper's padded 30 s
    torch.testing.assert_close(one[:40], two[:40], atol=1e-4, rtol=1e-4)  # same start, same padding
    assert_frozen(encoder)
    long = encoder.encode([speechlike(31.0)])[0]  # beyond Whisper's 30 s window: two windows, concatenated
    assert long.shape == (1500 + 50, 16)


# -- vision_frames -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    tiny = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    folders = {"vit": tmp_path_factory.mktemp("vit"), "clip": tmp_path_factory.mktemp("clip")}
    ViTModel(ViTConfig(image_size=32, patch_size=8, **tiny)).save_pretrained(folders["vit"])
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folders["vit"])
    clip = CLIPConfig(
        text_config=dict(vocab_size=64, max_position_embeddings=16, **tiny),
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        projection_dim=8,
    )
    CLIPModel(clip).save_pretrained(folders["clip"])
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folders["clip"]
    )
    return folders


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_vision_frames_one_embedding_per_sampled_frame(vision_models, face_folder, kind):
    encoder = build_encoder("vision_frames", path=str(vision_models[kind]), num_frames=4)
    assert encoder.output_dim == 16
    out = encoder.encode([face_folder])[0]
    assert out.shape == (4, 16) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert_frozen(encoder)
    assert_rebuilds(encoder, [face_folder])


def test_vision_frames_loads_only_the_clip_vision_tower(vision_models):
    encoder = build_encoder("vision_frames", path=str(vision_models["clip"]))
    assert type(encoder.model).__name__ == "CLIPVisionModel"


def test_vision_frames_sample_the_folder_in_natural_order(vision_models, face_folder):
    from PIL import Image

    encoder = build_encoder("vision_frames", path=str(vision_models["vit"]), num_frames=8)
    names = [f"frame{i}.png" for i in sample_indices(12, 8)]
    frames = [Image.open(face_folder / name).convert("RGB") for name in names]
    arrays = [np.asarray(frame) for frame in frames]
    from_folder, from_images, from_arrays, few = encoder.encode([face_folder, frames, arrays, arrays[:3]])
    assert from_folder.shape == (8, 16) and few.shape == (3, 16)
    torch.testing.assert_close(from_folder, from_images)
    torch.testing.assert_close(from_folder, from_arrays)
    torch.testing.assert_close(few, from_folder[:3])


def test_vision_frames_bad_inputs(vision_models, tmp_path, monkeypatch):
    encoder = build_encoder("vision_frames", path=str(vision_models["vit"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        encoder.encode([tmp_path / "empty"])
    with pytest.raises(DataError, match="uint8"):
        encoder.encode([[np.zeros((8, 8, 3), dtype=np.float32)]])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ConfigError, match="pip install av"):
        encoder.encode([video])
    with pytest.raises(ConfigError, match="num_frames"):
        build_encoder("vision_frames", path=str(vision_models["vit"]), num_frames=0)


# -- the cache -----------------------------------------------------------------------------------------------


def test_encode_cached_reuses_files_and_misses_on_changed_settings(prosody, tmp_path, monkeypatch):
    waves = [tone(200.0), speechlike(1.0)]
    first = encode_cached(prosody, waves, tmp_path)
    files = sorted((tmp_path / "prosody_frames").glob("*.safetensors"))
    assert len(files) == 2 and not list(tmp_path.rglob("*.tmp*"))

    def refuse(self, inputs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(encoders.ProsodyFrameEncoder, "encode", refuse)
    again = encode_cached(prosody, waves, tmp_path, progress=False)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="cache"):
        encode_cached(build_encoder("prosody_frames", frame_rate=50), waves, tmp_path)
    with pytest.raises(AssertionError, match="cache"):  # new content, same encoder
        encode_cached(prosody, [tone(210.0)], tmp_path)
    monkeypatch.undo()

    files[0].write_bytes(b"not safetensors")  # a damaged file is encoded again and replaced
    assert [torch.equal(a, b) for a, b in zip(first, encode_cached(prosody, waves, tmp_path))] == [True, True]


def test_encode_cached_with_keys_and_without_cache_dir(prosody, tmp_path):
    wave = tone(200.0)
    plain = encode_cached(prosody, [wave])[0]
    keyed = encode_cached(prosody, [wave], tmp_path, keys=["utt-1"])[0]
    assert torch.equal(plain, keyed)
    name = encoders.frames_cache_key(prosody, key="utt-1")
    assert (tmp_path / "prosody_frames" / f"{name}.safetensors").is_file()
    with pytest.raises(ConfigError, match="one key per input"):
        encode_cached(prosody, [wave], tmp_path, keys=["a", "b"])
