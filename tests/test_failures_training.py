"""Checkpoints cut while saving: a rerun resumes from the newest complete one, or refuses with the reason.

transformers' ``Trainer`` writes a ``checkpoint-N`` folder file by file (weights, optimizer, scheduler, RNG
state, ``trainer_state.json`` last); a run killed in between leaves a folder that must not be resumed from:
without ``trainer_state.json`` it cannot be, and without ``optimizer.pt`` it would train on with a fresh
optimizer (other weights than the uninterrupted run), silently. Most tests build the folders by hand; one
trains the tiny model, damages its last checkpoint and runs again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO, smoke_overrides

from emollm.errors import EmollmError, ModelError
from emollm.training.resume import checkpoint_problems, last_checkpoint, train_or_resume

COMPLETE = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "README.md",
)
TOKENS = [{"name": None, "encoder": "prosody_frames", "projector": "mlp", "num_tokens": 4}]


def make_checkpoint(out: Path, step: int, *, drop=(), only=None, adapters=(), max_steps=8) -> Path:
    """A ``checkpoint-<step>`` folder as Trainer + emollm leave it (files touched, not real tensors)."""
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    files = {name: "" for name in COMPLETE}
    files["trainer_state.json"] = json.dumps({"global_step": step, "max_steps": max_steps})
    files["emollm_config.json"] = json.dumps(
        {"format_version": 1, "base_model": "tiny", "lora": True, "adapters": list(adapters)}
    )
    if adapters:
        files["projectors.safetensors"] = ""
    for name, text in files.items():
        if (only is None or name in only) and name not in drop:
            (folder / name).write_text(text)
    return folder


def test_a_checkpoint_cut_while_saving_is_skipped_for_the_last_complete_one(tmp_path, caplog):
    complete = make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 8, only={"README.md"})
    assert checkpoint_problems(complete) == []
    with caplog.at_level(logging.WARNING, logger="emollm.training.resume"):
        assert last_checkpoint(tmp_path) == str(complete)
    message = caplog.text
    assert "checkpoint-8" in message and "no trainer_state.json" in message and "cut while saving" in message
    assert (
        "newest complete checkpoint is" in message and "checkpoint-4" in message and "may delete" in message
    )
    assert (tmp_path / "checkpoint-8").is_dir()  # skipped, not deleted


def test_a_checkpoint_without_optimizer_state_is_not_resumed_from(tmp_path, caplog):
    complete = make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 8, drop={"optimizer.pt"})
    with caplog.at_level(logging.WARNING, logger="emollm.training.resume"):
        assert last_checkpoint(tmp_path) == str(complete)
    assert "checkpoint-8" in caplog.text and "no optimizer state (optimizer.pt)" in caplog.text


def test_a_run_whose_only_checkpoint_lacks_optimizer_state_is_refused_with_the_reason(tmp_path):
    make_checkpoint(tmp_path, 4, drop={"optimizer.pt"})
    with pytest.raises(ModelError) as caught:
        last_checkpoint(tmp_path)
    message = str(caught.value)
    assert "no complete checkpoint" in message and "checkpoint-4" in message
    assert "no optimizer state (optimizer.pt)" in message and "fresh optimizer" in message
    assert "--save_only_model" in message
    assert "delete" in message and "--output_dir" in message  # the fix


@pytest.mark.parametrize(
    "damage, reason",
    [
        ({"only": {"README.md"}}, "no trainer_state.json"),
        ({"drop": {"scheduler.pt"}}, "no scheduler state (scheduler.pt)"),
        ({"drop": {"adapter_model.safetensors"}}, "no LoRA weights (adapter_model.safetensors)"),
        ({"drop": {"emollm_config.json"}}, "emollm_config.json"),
        ({"drop": {"projectors.safetensors"}, "adapters": TOKENS}, "no projector weights"),
    ],
)
def test_no_complete_checkpoint_is_a_clear_error(tmp_path, damage, reason):
    make_checkpoint(tmp_path, 4, **damage)
    with pytest.raises(ModelError, match="no complete checkpoint") as caught:
        last_checkpoint(tmp_path)
    assert reason in str(caught.value) and str(tmp_path / "checkpoint-4") in str(caught.value)


def test_a_truncated_trainer_state_is_incomplete(tmp_path):
    folder = make_checkpoint(tmp_path, 4)
    (folder / "trainer_state.json").write_text('{"global_step": 4, "best_')
    assert any("trainer_state.json is unreadable" in p for p in checkpoint_problems(folder))


def test_no_checkpoint_is_none(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint-N folder
    (tmp_path / "checkpoint-3.bak").write_text("")
    assert last_checkpoint(tmp_path) is None


def test_train_or_resume_refuses_a_checkpoint_without_optimizer_state(tmp_path):
    folder = make_checkpoint(tmp_path, 4, drop={"optimizer.pt"})

    class Trainer:
        def train(self, resume_from_checkpoint=None):
            raise AssertionError("must not train from an incomplete checkpoint")

    with pytest.raises(EmollmError, match="cannot resume from .*checkpoint-4: no optimizer state"):
        train_or_resume(Trainer(), str(folder), max_steps=8)


# -- a real run, cut at its last save ------------------------------------------------------------------------


@pytest.mark.usefixtures("recipe_cache")
def test_a_rerun_after_a_cut_save_resumes_from_the_last_complete_checkpoint(
    tiny_model_dir, speech_manifest, tmp_path, monkeypatch, caplog
):
    import emollm.recipes.sft as recipe
    from emollm.training import EmotionSFTTrainer

    config = CONFIGS[
        [str(p.relative_to(REPO / "recipes" / "configs")) for p in CONFIGS].index("ravdess/sft_text.yaml")
    ]
    out = tmp_path / "run"
    args = ["--config", str(config), *smoke_overrides(speech_manifest, tiny_model_dir, out)]
    args += ["--max_length", "2048", "--eval_split", "none"]
    recipe.main(*recipe.make_parser().parse_args_and_config(args=args))
    (out / "checkpoint-2" / "optimizer.pt").unlink()  # killed while saving step 2's optimizer

    steps = []
    real = EmotionSFTTrainer.training_step

    def counted(self, *a, **kw):
        steps.append(self.state.global_step)
        return real(self, *a, **kw)

    monkeypatch.setattr(EmotionSFTTrainer, "training_step", counted)
    with caplog.at_level(logging.WARNING):
        recipe.main(*recipe.make_parser().parse_args_and_config(args=args))
    assert steps == [1]  # resumed after step 1: step 2 again, not a finished run with a fresh optimizer
    assert "resuming from" in caplog.text and str(out / "checkpoint-1") in caplog.text
    assert "checkpoint-2" in caplog.text and "no optimizer state" in caplog.text
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "checkpoint-2" / "optimizer.pt").is_file()
    assert checkpoint_problems(out / "checkpoint-2") == []
