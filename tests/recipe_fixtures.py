"""Builders shared by the recipe tests: a tiny model folder and a small synthesised-speech manifest.

Plain functions (not fixtures) so that tests/test_recipes.py, tests/test_distributed.py and the scripts
they launch in subprocesses can all use them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import build_tiny_llama, build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sft.py"
CONFIGS = sorted((REPO / "recipes" / "configs").glob("**/sft*.yaml"))  # recipes/sft.py's
GRPO_CONFIGS = sorted((REPO / "recipes" / "configs").glob("**/grpo*.yaml"))  # recipes/grpo.py's
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


def load_recipe(script: str = "sft"):
    """``recipes/<script>.py`` imported as a module (it is a script, not part of the package)."""
    name = f"emollm_recipe_{script}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "recipes" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


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
