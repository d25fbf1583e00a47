"""The GRPO recipe (emollm.recipes.grpo): every config parses and is documented; both routes run 2 steps on the tiny model (from a
base model and from an SFT checkpoint), evaluate before and after, in-domain and cross-domain; bad configs
fail with a clear message."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import CONFIGS, GRPO_CONFIGS, REPO, smoke_overrides

import emollm.recipes.grpo
import emollm.recipes.sft
from emollm.errors import ConfigError
from emollm.training.rewards import REWARDS

pytestmark = pytest.mark.usefixtures("recipe_cache")
IDS = [str(p.relative_to(REPO / "recipes" / "configs")) for p in GRPO_CONFIGS]
TINY = ["--num_generations", "2", "--max_completion_length", "8", "--logging_steps", "1"]


@pytest.fixture
def recipe():
    return emollm.recipes.grpo


def parse(recipe, config, *overrides):
    return recipe.make_parser().parse_args_and_config(args=["--config", str(config), *map(str, overrides)])


def config_named(name):
    return GRPO_CONFIGS[IDS.index(name)]


def test_there_is_a_config_per_route_and_dataset():
    assert {"ravdess/grpo_text.yaml", "ravdess/grpo_tokens.yaml", "meld/grpo.yaml"} <= set(IDS)


@pytest.mark.parametrize("config", GRPO_CONFIGS, ids=IDS)
def test_config_parses_to_its_yaml_and_is_documented(recipe, config):
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    parsed = parse(recipe, config)
    for key, value in written.items():
        holders = [obj for obj in parsed if hasattr(obj, key)]
        assert holders, f"{config.name}: {key!r} is no field of the recipe's arguments"
        for obj in holders:
            got = getattr(obj, key)
            got = getattr(got, "value", got)
            if key == "report_to" and value == "none":
                assert got in ([], "none", ["none"]), (key, got)
            else:
                assert got == value, (
                    f"{config.name}: {type(obj).__name__}.{key} is {got!r}, the YAML says {value!r}"
                )
    relative = config.relative_to(REPO).as_posix()
    lines = config.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# emollm grpo --config {relative}"
    start = written["model_name_or_path"]
    assert any(line.startswith("# Start: emollm sft") and start in line for line in lines)
    docs = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    assert f"`{config.relative_to(REPO / 'recipes' / 'configs').as_posix()}`" in docs


def test_unknown_reward_fails_before_anything_loads(recipe):
    with pytest.raises(ConfigError, match=r"unknown reward\(s\) \['acuracy'\]; valid names: format, label"):
        parse(
            recipe, config_named("ravdess/grpo_text.yaml"), "--rewards", "format", "acuracy"
        )  # at parse time
    args = parse(recipe, config_named("ravdess/grpo_text.yaml"), "--reward_weights", "1.0")
    with pytest.raises(ConfigError, match="reward_weights has 1 values for 2 rewards"):
        recipe.main(*args)


def test_the_cue_reward_needs_the_voice_a_rationale_and_sane_settings(recipe):
    config = config_named("ravdess/grpo_cue.yaml")
    script, *_ = parse(recipe, config)
    assert "cue" in script.rewards and script.cue_min_claims == 2
    with pytest.raises(ConfigError, match="the cue reward checks claims about the voice, but route none"):
        parse(recipe, config, "--route", "none")
    with pytest.raises(ConfigError, match="cue reward has nothing to check"):
        parse(recipe, config, "--strategy", "minimal", "--rewards", "label", "cue")
    with pytest.raises(ConfigError, match=r"cue_min_claims is 0.*cue_false_penalty is -1.0"):
        parse(recipe, config, "--cue_min_claims", "0", "--cue_false_penalty", "-1")
    with pytest.raises(ConfigError, match="unknown reward.*valid names: .*cue"):
        parse(recipe, config, "--rewards", "format", "cues")


def grpo_run(recipe, config, model, manifest, out, *extra):
    overrides = [
        *smoke_overrides(manifest, model, out),
        *TINY,
        "--cross_dataset", f"manifest:{manifest}",
        "--cross_split", "test",
        *extra,
    ]  # fmt: skip
    args = parse(recipe, config, *overrides)
    recipe.main(*args)
    return json.loads((out / "grpo_summary.json").read_text())


def test_text_route_from_a_base_model(recipe, tiny_model_dir, speech_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    summary = grpo_run(recipe, config_named("ravdess/grpo_text.yaml"), tiny_model_dir, speech_manifest, out)
    manifest = f"manifest:{speech_manifest}"
    assert set(summary["evaluations"]) == {
        f"{when}/{manifest}-{split}" for when in ("before", "after") for split in ("dev", "test")
    }
    after = summary["evaluations"][f"after/{manifest}-dev"]
    assert after["n"] == 4 and 0.0 <= after["parse_failure_rate"] <= 1.0 and after["note"] == "in-domain"
    assert summary["evaluations"][f"after/{manifest}-test"]["note"] == "cross-domain"
    before = summary["evaluations"][f"before/{manifest}-dev"]
    change = summary["after_minus_before"][f"{manifest}-dev"]["wa"]  # paired bootstrap of the two folders
    assert change["diff"] == pytest.approx(after["wa"] - before["wa"])
    assert set(summary["after_minus_before"]) == {f"{manifest}-dev", f"{manifest}-test"}
    predictions = (out / f"eval-after-{manifest}-dev" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 4
    saved = json.loads((out / "emollm_config.json").read_text())
    assert saved["adapters"] == [] and saved["reasoner"]["strategy"] == "acoustic"
    assert saved["reasoner"]["prosody"] is True
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert any("parse_failure_rate" in entry for entry in state["log_history"])
    assert any("rewards/format_reward/mean" in entry for entry in state["log_history"])
    assert "| evaluation | when |" in capsys.readouterr().out
    from emollm.api import EmotionReasoner

    reasoner = EmotionReasoner.from_pretrained(str(out))  # answers with the rationale it was trained to write
    assert (reasoner.mode, reasoner.strategy, reasoner.max_new_tokens) == ("generate", "acoustic", 8)


@pytest.mark.parametrize("config", GRPO_CONFIGS, ids=IDS)
def test_every_config_trains_two_steps_on_the_tiny_model(
    recipe, config, tiny_model_dir, speech_manifest, tmp_path
):
    """Each config as written (route, template, rewards, context window), from the tiny base model."""
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    out = tmp_path / "run"
    summary = grpo_run(recipe, config, tiny_model_dir, speech_manifest, out, "--eval_before", "false")
    assert summary["route"] == written["route"] and summary["rewards"] == written["rewards"]
    assert {key.split("/")[0] for key in summary["evaluations"]} == {"after"}
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    for name in written["rewards"]:  # each reward ran (the cue reward on the rows' measures)
        logged = f"rewards/{REWARDS[name].__name__}/mean"
        assert any(logged in entry for entry in state["log_history"]), logged
    saved = json.loads((out / "emollm_config.json").read_text())
    assert saved["reasoner"]["strategy"] == written["strategy"]
    assert saved["reasoner"]["context_turns"] == written.get("context_turns", 0)
    assert bool(saved["adapters"]) == (written["route"] in ("tokens", "both"))


def test_no_evaluation_before_means_no_comparison(recipe, tiny_model_dir, speech_manifest, tmp_path):
    out = tmp_path / "run"
    stale = out / f"eval-before-manifest:{speech_manifest}-dev"  # left over from an earlier start
    stale.mkdir(parents=True)
    config = config_named("ravdess/grpo_text.yaml")
    summary = grpo_run(recipe, config, tiny_model_dir, speech_manifest, out, "--eval_before", "false")
    assert {key.split("/")[0] for key in summary["evaluations"]} == {"after"}
    assert summary["after_minus_before"] == {}  # not compared with the stale folder


def test_tokens_route_continues_an_sft_checkpoint(recipe, tiny_model_dir, speech_manifest, tmp_path):
    from safetensors.torch import load_file

    sft = emollm.recipes.sft
    sft_config = CONFIGS[[p.name for p in CONFIGS].index("sft_tokens.yaml")]
    start = tmp_path / "sft"
    sft_args = sft.make_parser().parse_args_and_config(
        args=[
            "--config", str(sft_config),
            *smoke_overrides(speech_manifest, tiny_model_dir, start),
            "--strategy", "acoustic", "--target", "reasoning", "--max_length", "2048",
        ]
    )  # fmt: skip
    sft_args[0].eval_split = None
    sft.main(*sft_args)
    # statistics no refit could produce: GRPO must keep the ones its projector was trained with
    sft_saved = json.loads((start / "emollm_config.json").read_text())
    mean, std = sft_saved["frame_normalizers"]["audio"]["corpus"]
    sft_saved["frame_normalizers"]["audio"]["corpus"] = [[m + 1.0 for m in mean], [2.0 * d for d in std]]
    (start / "emollm_config.json").write_text(json.dumps(sft_saved))

    out = tmp_path / "grpo"
    config = config_named("ravdess/grpo_tokens.yaml")
    summary = grpo_run(recipe, config, start, speech_manifest, out, "--model_name_or_path", str(start))
    assert summary["start"] == str(start)
    assert {key.split("/")[0] for key in summary["evaluations"]} == {"before", "after"}
    saved = json.loads((out / "emollm_config.json").read_text())
    assert saved["base_model"] == str(tiny_model_dir)  # the SFT checkpoint's base, not the checkpoint
    assert saved["adapters"][0]["projector"] == "mlp"
    assert (
        saved["frame_normalizers"] == sft_saved["frame_normalizers"]
    )  # kept through training and evaluations
    trained, started = load_file(out / "projectors.safetensors"), load_file(start / "projectors.safetensors")
    assert set(trained) == set(started)
    for name, value in started.items():  # continued from the SFT projector (a fresh one would be far off)
        torch.testing.assert_close(trained[name], value, atol=1e-3, rtol=0)

    # the route must match the checkpoint
    args = parse(
        recipe, config, *smoke_overrides(speech_manifest, start, tmp_path / "x"), *TINY, "--route", "text"
    )
    with pytest.raises(ConfigError, match="does not match the checkpoint"):
        recipe.main(*args)


def test_a_template_without_tags_is_refused_with_the_format_reward(
    recipe, tiny_model_dir, speech_manifest, tmp_path
):
    with pytest.raises(ConfigError, match="does not ask for <think>/<answer>"):  # at parse time
        parse(
            recipe,
            config_named("ravdess/grpo_text.yaml"),
            *smoke_overrides(speech_manifest, tiny_model_dir, tmp_path / "run"),
            *TINY,
            "--strategy",
            "minimal",
        )
    parse(recipe, config_named("ravdess/grpo_text.yaml"), "--strategy", "minimal", "--rewards", "label")
    with pytest.raises(ConfigError, match=r"reward\(s\) \['label'\] named twice"):
        parse(recipe, config_named("ravdess/grpo_text.yaml"), "--rewards", "label", "label")


def test_a_projector_only_checkpoint_gets_a_lora_and_a_frozen_llm(
    recipe, tiny_model_dir, speech_manifest, tmp_path, monkeypatch
):
    sft = emollm.recipes.sft
    sft_config = CONFIGS[[p.name for p in CONFIGS].index("sft_tokens.yaml")]
    start = tmp_path / "sft"
    sft_args = sft.make_parser().parse_args_and_config(
        args=[
            "--config", str(sft_config), *smoke_overrides(speech_manifest, tiny_model_dir, start),
            "--strategy", "acoustic", "--max_length", "2048", "--use_peft", "false",
        ]
    )  # fmt: skip
    sft_args[0].eval_split = None
    sft.main(*sft_args)
    assert not json.loads((start / "emollm_config.json").read_text())["lora"]

    trainable = []
    real = recipe.EmotionGRPOTrainer

    class Spy(real):
        def __init__(self, *args, model, **kwargs):
            trainable.extend(n for n, p in model.named_parameters() if p.requires_grad)
            super().__init__(*args, model=model, **kwargs)

    monkeypatch.setattr(recipe, "EmotionGRPOTrainer", Spy)
    config = config_named("ravdess/grpo_tokens.yaml")
    grpo_run(recipe, config, start, speech_manifest, tmp_path / "grpo", "--model_name_or_path", str(start))
    assert any("lora_" in n for n in trainable) and any("emollm_projectors" in n for n in trainable)
    assert all("lora_" in n or "emollm_projectors" in n for n in trainable), trainable
