"""Shared fixtures: a tiny random Llama with a byte-level ChatML tokenizer, built in-process (no network),
and for the recipe tests a saved tiny model folder and a small manifest of Praat-synthesised speech.

The builders are plain functions too, so tests/test_distributed.py, run as a script under
``accelerate launch`` (its folder is then first on ``sys.path``), imports them from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer with no merges: every byte is a token, plus ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = vocab_size - 1
    model.generation_config.pad_token_id = vocab_size - 3
    return model.eval()


# -- recipes: a saved tiny model and synthesised speech ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sft.py"  # the script accelerate launches
CONFIGS = sorted((REPO / "recipes" / "configs").glob("**/sft*.yaml"))  # the SFT recipe's
GRPO_CONFIGS = sorted((REPO / "recipes" / "configs").glob("**/grpo*.yaml"))  # the GRPO recipe's
CPU_2PROC = REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"

# (transcript, label, Praat pitch multiplier, words per minute): 2-3 words, a few pitches and rates
UTTERANCES = [
    ("what a day", "happy", 1.6, 220),
    ("leave me", "angry", 1.3, 260),
    ("it is over", "sad", 0.8, 120),
    ("the door", "neutral", 1.0, 175),
    ("so much fun", "happy", 1.8, 240),
    ("stop it now", "angry", 1.4, 280),
    ("all alone", "sad", 0.7, 110),
    ("it is noon", "neutral", 1.0, 170),
    ("we did it", "happy", 1.7, 230),
    ("get out", "angry", 1.5, 270),
    ("miss you", "sad", 0.75, 115),
    ("a table", "neutral", 1.05, 180),
    ("yes we won", "happy", 1.9, 250),
    ("not again", "angry", 1.35, 290),
    ("so tired", "sad", 0.85, 100),
    ("on the left", "neutral", 0.95, 185),
]
SPEAKERS = ("spk1", "spk2", "spk3")
SPLITS = ("train", "dev", "train", "test", "train", "dev", "dev", "test")  # cycled: 6 train, 6 dev, 4 test


def save_tiny_model(folder: Path) -> Path:
    """The tiny random Llama and its byte-level tokenizer, saved so ``load_base_model(folder)`` loads them."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def write_speech_manifest(folder: Path) -> Path:
    """16 Praat-synthesised utterances as WAVs and a JSONL manifest with a ``split`` column.

    Labels are ravdess8 words; three speakers, each with rows in train (where the per-speaker prosody
    normaliser is fitted); 6 train, 6 dev and 4 test rows, so ``--eval_limit 4`` draws from dev.
    """
    from emollm.audio import save_audio
    from emollm.prosody.synth import synthesize

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (text, label, pitch, wpm) in enumerate(UTTERANCES):
        audio, _ = synthesize(text, pitch=pitch, words_per_minute=wpm)
        wav = save_audio(audio, folder / f"u{i:02d}.wav")
        rows.append(
            {
                "id": f"u{i:02d}",
                "audio_path": wav.name,
                "transcript": text,
                "label": label,
                "speaker": SPEAKERS[i % len(SPEAKERS)],
                "split": SPLITS[i % len(SPLITS)],
            }
        )
    manifest = folder / "speech.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def smoke_overrides(manifest: Path, model: Path, output_dir: Path, max_steps: int = 2) -> list[str]:
    """Command-line overrides that shrink any recipe config to a few steps on the tiny model."""
    return [
        "--dataset", f"manifest:{manifest}",
        "--labels", "ravdess8",
        "--model_name_or_path", str(model),
        "--output_dir", str(output_dir),
        "--max_steps", str(max_steps),
        "--per_device_train_batch_size", "2",
        "--save_steps", "1",
        "--eval_limit", "4",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def recipe_cache(tmp_path_factory):
    """One emollm cache per test module, so prosody and frames are computed once and never in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("emollm_cache")
        patch.setenv("EMOLLM_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """:func:`save_tiny_model` once per session."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def speech_manifest(tmp_path_factory):
    """:func:`write_speech_manifest` once per session."""
    return write_speech_manifest(tmp_path_factory.mktemp("speech"))


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_tiny_llama(len(tiny_tokenizer))


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, tiny_model, tiny_tokenizer):
    """Stand the tiny model in for the built-in model's GGUF conversion; count how often it runs."""
    from emollm.modeling import base

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    calls = []

    def load(path):
        calls.append(path)
        return tiny_model, tiny_tokenizer

    monkeypatch.setattr(base, "find_builtin_gguf", lambda name: gguf)
    monkeypatch.setattr(base, "_load_gguf", load)
    return calls


@pytest.fixture
def emollm_cache(tmp_path, monkeypatch):
    """An empty emollm cache for one test."""
    monkeypatch.setenv("EMOLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
