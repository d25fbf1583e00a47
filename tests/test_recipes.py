"""Every SFT config is tested: it parses to what its YAML says, opens with the command that runs it, and
trains 2 steps on the tiny model (then evaluates, saves a checkpoint that loads, and resumes).

The data is a small manifest of Praat-synthesised speech (tests/conftest.py), built once per session;
prosody and encoder caches go to a temporary EMOLLM_CACHE.
"""

from __future__ import annotations

import enum
import json

import pytest
import torch
import yaml
from conftest import CONFIGS, REPO, smoke_overrides

import emollm.recipes.sft
from emollm.errors import ConfigError
from emollm.training.arguments import ROUTES, parse_recipe_args

pytestmark = pytest.mark.usefixtures("recipe_cache")
IDS = [str(p.relative_to(REPO / "recipes" / "configs")) for p in CONFIGS]
# The tiny tokenizer is byte-level (one token per byte), so prompts are 3-4x longer than with a real one.
TINY_MAX_LENGTH = ["--max_length", "2048"]


@pytest.fixture
def recipe():
    return emollm.recipes.sft


def parse(recipe, config, *overrides):
    """The recipe's four dataclasses from ``--config config`` plus overrides (a fresh parser each time)."""
    return recipe.make_parser().parse_args_and_config(args=["--config", str(config), *map(str, overrides)])


def run(recipe, config, model, manifest, output_dir, *extra):
    args = parse(recipe, config, *smoke_overrides(manifest, model, output_dir), *TINY_MAX_LENGTH, *extra)
    recipe.main(*args)
    return args


def training_frame_statistics(manifest, encoder_name="prosody_frames"):
    """Per-speaker frame statistics of the manifest's train rows, as a checkpoint stores them."""
    from emollm.data import load_corpus
    from emollm.modeling.base import cache_dir
    from emollm.modeling.encoders import build_encoder, encode_cached
    from emollm.modeling.frame_norm import FrameNormalizer

    train = load_corpus(f"manifest:{manifest}", "train", labels="ravdess8")
    encoder = build_encoder(encoder_name)
    words = getattr(encoder, "takes_transcript", False)
    inputs = [{"audio": u.audio_path, "transcript": u.transcript} if words else u.audio_path for u in train]
    frames = encode_cached(encoder, inputs, cache_dir() / "features")
    return FrameNormalizer.fit(frames, [u.speaker for u in train]).to_dict()


# -- every config parses to what it says --------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_config_parses_to_its_yaml(recipe, config):
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    parsed = parse(recipe, config)
    for key, value in written.items():
        holders = [obj for obj in parsed if hasattr(obj, key)]
        assert holders, f"{config.name}: {key!r} is no field of the recipe's arguments"
        for obj in holders:
            got = getattr(obj, key)
            got = got.value if isinstance(got, enum.Enum) else got
            if key == "report_to" and value == "none":
                assert got in ([], "none", ["none"]), (key, got)
            else:
                assert got == value, (
                    f"{config.name}: {type(obj).__name__}.{key} is {got!r}, the YAML says {value!r}"
                )
    script, training, model, _ = parsed
    assert script.route in ROUTES
    assert script.dataset == written["dataset"] and training.output_dir == written["output_dir"]
    assert model.use_peft is True


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_config_opens_with_its_command_and_is_documented(config):
    relative = config.relative_to(REPO).as_posix()
    first = config.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# emollm sft --config {relative}"
    docs = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    assert f"`{config.relative_to(REPO / 'recipes' / 'configs').as_posix()}`" in docs


def test_the_ravdess_default_is_the_benchmarked_functionals_config_with_label_smoothing():
    # benchmarks/sft_ravdess.py measures the default as sft_functionals.yaml --label_smoothing_factor 0.1
    # (rows (n), (p), (s)); the shipped file must stay exactly that
    folder = REPO / "recipes" / "configs" / "ravdess"
    default = yaml.safe_load((folder / "sft.yaml").read_text(encoding="utf-8"))
    functionals = yaml.safe_load((folder / "sft_functionals.yaml").read_text(encoding="utf-8"))
    assert default.pop("label_smoothing_factor") == 0.1
    assert (default.pop("output_dir"), functionals.pop("output_dir")) == (
        "runs/sft/ravdess",
        "runs/sft/ravdess-functionals",
    )
    assert default == functionals


def test_none_on_the_command_line_means_none(recipe):
    script, *_ = parse(recipe, CONFIGS[0], "--eval_split", "none", "--labels", "None")
    assert script.eval_split is None and script.labels is None


def test_overrides_win_over_the_yaml(recipe):
    script, training, _, adapter = parse(
        recipe, CONFIGS[0], "--route", "text", "--max_steps", "7", "--num_tokens", "3", "--output_dir", "x"
    )
    assert (script.route, training.max_steps, adapter.num_tokens, training.output_dir) == ("text", 7, 3, "x")


def test_the_deprecated_checkpointing_flag_is_refused_not_ignored(recipe, tmp_path):
    # transformers would take gradient_checkpointing only if the YAML left activation_checkpointing unset
    config = ["--config", CONFIGS[0]]
    for flag in (["--gradient_checkpointing", "true"], ["--gradient-checkpointing=true"]):
        with pytest.raises(ConfigError, match="gradient_checkpointing: .*use activation_checkpointing"):
            parse_recipe_args(recipe.make_parser(), [*config, *flag])
    with pytest.raises(ConfigError, match="use activation_checkpointing_kwargs"):
        parse_recipe_args(recipe.make_parser(), [*config, "--gradient_checkpointing_kwargs={}"])
    own = tmp_path / "own.yaml"
    own.write_text(CONFIGS[0].read_text() + "gradient_checkpointing: true\n")
    with pytest.raises(ConfigError, match="gradient_checkpointing: "):
        parse_recipe_args(recipe.make_parser(), ["--config", own])
    args = [*config, "--activation_checkpointing", "true", "--max_steps", 3]
    _, training, _, _ = parse_recipe_args(recipe.make_parser(), args)
    assert training.activation_checkpointing and training.gradient_checkpointing and training.max_steps == 3


# -- every config trains 2 steps on the tiny model ---------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_config_trains_evaluates_and_saves(recipe, config, tiny_model_dir, speech_manifest, tmp_path):
    from emollm.api import EmotionReasoner

    out = tmp_path / "run"
    script, _, _, adapter = run(recipe, config, tiny_model_dir, speech_manifest, out)
    eval_dir = out / f"eval-{script.eval_split}"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["n"] == 4  # --eval_limit 4 (dev has 6 rows, test 4)
    tokens = script.route in ("tokens", "both")
    for folder in (out, out / "checkpoint-2"):
        files = {p.name for p in folder.iterdir()}
        assert {"emollm_config.json", "adapter_model.safetensors"} <= files, folder
        assert ("projectors.safetensors" in files) == tokens, folder
    saved = json.loads((out / "emollm_config.json").read_text())
    assert saved["base_model"] == str(tiny_model_dir)
    assert saved["reasoner"]["strategy"] == script.strategy
    assert saved["reasoner"]["prosody"] == (script.route in ("text", "both"))
    assert saved["reasoner"]["mode"] == script.eval_mode  # evaluate --model <checkpoint> decodes alike
    if tokens:
        specs = [(s["encoder"], s["projector"], s["num_tokens"], s["normalize"]) for s in saved["adapters"]]
        expected_specs = [(adapter.encoder, adapter.projector, adapter.num_tokens, adapter.normalize)]
        if adapter.second_encoder:  # two encoders at one placeholder, keyed by their names
            second = adapter.second_projector or adapter.projector
            expected_specs.append(
                (adapter.second_encoder, second, adapter.second_num_tokens, adapter.normalize)
            )
            assert [s["name"] for s in saved["adapters"]] == [adapter.encoder, adapter.second_encoder]
        assert specs == expected_specs
        if adapter.normalize == "speaker":  # the training clips' statistics, none of the evaluated clips'
            for spec in saved["adapters"]:
                expected = training_frame_statistics(speech_manifest, spec["encoder"])
                assert saved["frame_normalizers"][spec["name"] or "audio"] == expected
        else:
            assert saved["frame_normalizers"] == {}
    else:
        assert saved["adapters"] == []
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert saved["training"]["target"] == script.target
    if script.target == "evidence":
        check_evidence(out, script, speech_manifest)

    reasoner = EmotionReasoner.from_pretrained(str(out))  # the final checkpoint loads with its settings
    assert reasoner.strategy == script.strategy and reasoner.lm.modalities == (("audio",) if tokens else ())
    if script.target in ("reasoning", "evidence"):  # room to finish the rationales it learnt
        assert saved["reasoner"]["max_new_tokens"] >= 128
        assert reasoner.max_new_tokens == saved["reasoner"]["max_new_tokens"]
    else:
        assert "max_new_tokens" not in saved["reasoner"]


def check_evidence(out, script, manifest):
    """The evidence model is in every checkpoint, was fit on the training split with the descriptions'
    normaliser, and reproduces the rationales: every claim true for the utterance it explains."""
    from emollm.data import load_corpus
    from emollm.inputs import describe_utterances
    from emollm.prosody.normalize import normalize_features
    from emollm.reasoning import extract_claims, verify_rationale
    from emollm.training.evidence import EVIDENCE_NAME, EvidenceModel, build_evidence, measure_utterances

    saved = (out / EVIDENCE_NAME).read_text()
    assert (out / "checkpoint-2" / EVIDENCE_NAME).read_text() == saved
    record = json.loads((out / "emollm_config.json").read_text())["training"]["evidence"]
    assert record["file"] == EVIDENCE_NAME and record["utterances"] == 6  # the train rows, none of dev
    model = EvidenceModel.load(out)
    train = load_corpus(f"manifest:{manifest}", "train", labels="ravdess8")
    shown, _, normalizer = describe_utterances(train, style=script.prosody_style, progress=False)
    assert model.normalizer.to_dict() == normalizer.to_dict()
    said = shown if script.route in ("text", "both") else None  # a prompt with a description: its cues only
    assert record["cues"] == ("stated by the shown description" if said else "utterance measures")
    again, rationales = build_evidence(train, normalizer, shown=said, progress=False)
    assert again.to_json() == saved
    features = measure_utterances(train, progress=False)
    for utt in train:
        text = model.rationale(features[utt.id], utt.label, utt.speaker, said[utt.id] if said else None)
        assert text == rationales[utt.id] and utt.label in text
        check = verify_rationale(text, features[utt.id], normalize_features(features[utt.id], normalizer))
        assert check.n_false == check.n_unverifiable == 0, text
        if said:
            stated = {(c.quantity, c.level, c.degree, c.word, c.vowel) for c in extract_claims(said[utt.id])}
            named = {(c.quantity, c.level, c.degree, c.word, c.vowel) for c in extract_claims(text)}
            assert named <= stated, (text, said[utt.id])


def test_target_evidence_needs_the_voice_and_a_template_with_tags(recipe):
    config = CONFIGS[IDS.index("ravdess/sft_evidence.yaml")]
    with pytest.raises(ConfigError, match="target evidence names measured voice cues, but route none"):
        parse_recipe_args(recipe.make_parser(), ["--config", config, "--route", "none"])
    with pytest.raises(ConfigError, match="target evidence needs a template that asks for <think>"):
        parse_recipe_args(recipe.make_parser(), ["--config", config, "--strategy", "minimal"])
    for route in ("tokens", "both"):
        script, *_ = parse_recipe_args(recipe.make_parser(), ["--config", config, "--route", route])
        assert script.target == "evidence"


def test_running_again_resumes_from_the_last_checkpoint(
    recipe, tiny_model_dir, speech_manifest, tmp_path, monkeypatch
):
    from emollm.training import EmotionSFTTrainer

    config = CONFIGS[IDS.index("ravdess/sft_both.yaml")]
    out = tmp_path / "run"
    run(recipe, config, tiny_model_dir, speech_manifest, out)
    before = (out / "checkpoint-2" / "adapter_model.safetensors").stat().st_mtime_ns

    steps = []
    real = EmotionSFTTrainer.training_step

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EmotionSFTTrainer, "training_step", counted)
    run(recipe, config, tiny_model_dir, speech_manifest, out, "--max_steps", "3")
    assert steps == [2]  # resumed after step 2: one new step, not three from scratch
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert (out / "checkpoint-2" / "adapter_model.safetensors").stat().st_mtime_ns == before  # not redone
    assert {"emollm_config.json", "projectors.safetensors"} <= {
        p.name for p in (out / "checkpoint-3").iterdir()
    }


# -- bad input ------------------------------------------------------------------------------------------


def test_unknown_route_is_refused(recipe, capsys):
    with pytest.raises(SystemExit):
        parse(recipe, CONFIGS[0], "--route", "telepathy")
    assert "invalid choice: 'telepathy'" in capsys.readouterr().err


def test_every_bad_value_in_a_config_fails_at_parse_time_at_once(recipe, tmp_path, monkeypatch):
    import emollm.inputs

    def no_work(*args, **kwargs):
        raise AssertionError("nothing may be extracted or loaded before the config is checked")

    monkeypatch.setattr(emollm.inputs, "describe_utterances", no_work)
    monkeypatch.setattr(recipe, "load_policy", no_work)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CONFIGS[0].read_text()
        + "target: reasonning\nroute: telepathy\nprosody_style: vowels\neval_mode: scored\n"
        + "strategy: fancy\nprojector: transformer\nnormalize: speakers\ntrain_limit: 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_recipe_args(recipe.make_parser(), ["--config", bad])
    message = str(caught.value)
    for expected in (
        "target is 'reasonning'; accepted: label, reasoning, evidence",
        "route is 'telepathy'",
        "prosody_style is 'vowels'",
        "eval_mode is 'scored'",
        "unknown prompt strategy 'fancy'",
        "train_limit is 0",
    ):
        assert expected in message, message
    with pytest.raises(ConfigError, match="target reasoning needs a template that asks for <think>/<answer>"):
        parse_recipe_args(
            recipe.make_parser(), ["--config", CONFIGS[0], "--strategy", "minimal", "--target", "reasoning"]
        )
    # the adapter's dataclass is built after the script's: its own problems are reported together
    bad.write_text(CONFIGS[0].read_text() + "projector: transformer\nnormalize: speakers\nnum_tokens: 0\n")
    with pytest.raises(
        ConfigError, match=r"projector is 'transformer'.*normalize is 'speakers'.*num_tokens is 0"
    ):
        parse_recipe_args(recipe.make_parser(), ["--config", bad])


def test_emollm_sft_and_grpo_print_the_recipes_options(capsys):
    from emollm.cli import main

    for command, option in (("sft", "--target {label,reasoning,evidence}"), ("grpo", "--cue_min_claims")):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        text = capsys.readouterr().out
        assert f"usage: emollm {command}" in text and option in text and "--learning_rate" in text


def test_resuming_with_other_adapter_settings_is_refused(recipe, tiny_model_dir, speech_manifest, tmp_path):
    config = CONFIGS[IDS.index("ravdess/sft_tokens.yaml")]
    out = tmp_path / "run"
    run(recipe, config, tiny_model_dir, speech_manifest, out, "--max_steps", "1")
    saved = (out / "emollm_config.json").read_text()
    with pytest.raises(
        ConfigError, match="was trained with adapters .*'normalize': 'speaker'.* asks for .*'none'"
    ):
        run(recipe, config, tiny_model_dir, speech_manifest, out, "--normalize", "none")
    with pytest.raises(ConfigError, match="asks for none; use another --output_dir"):
        run(recipe, config, tiny_model_dir, speech_manifest, out, "--route", "text")
    assert (out / "emollm_config.json").read_text() == saved  # the finished run is untouched


def test_unknown_projector_is_refused(recipe, capsys):
    config = CONFIGS[IDS.index("ravdess/sft_tokens.yaml")]
    with pytest.raises(SystemExit):
        parse(recipe, config, "--projector", "transformer")
    assert "invalid choice: 'transformer'" in capsys.readouterr().err


def test_running_a_finished_run_again_trains_no_more(
    recipe, tiny_model_dir, speech_manifest, tmp_path, monkeypatch
):
    from emollm.training import EmotionSFTTrainer

    config = CONFIGS[IDS.index("meld/sft.yaml")]
    out = tmp_path / "run"
    run(recipe, config, tiny_model_dir, speech_manifest, out)
    steps = []
    real = EmotionSFTTrainer.training_step

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EmotionSFTTrainer, "training_step", counted)
    run(recipe, config, tiny_model_dir, speech_manifest, out)  # the same command again
    assert steps == [] and not (out / "checkpoint-3").exists()


def test_a_finished_run_saves_the_weights_of_its_last_checkpoint_again(
    recipe, tiny_model_dir, speech_manifest, tmp_path
):
    from safetensors.torch import load_file

    config = CONFIGS[IDS.index("ravdess/sft_both.yaml")]
    out = tmp_path / "run"
    run(recipe, config, tiny_model_dir, speech_manifest, out)
    names = ("adapter_model.safetensors", "projectors.safetensors")
    for name in names:
        (out / name).unlink()  # the rerun must write them from the loaded checkpoint, not keep these
    run(recipe, config, tiny_model_dir, speech_manifest, out)
    for name in names:
        saved, last = load_file(out / name), load_file(out / "checkpoint-2" / name)
        assert saved.keys() == last.keys() and all(torch.equal(saved[k], last[k]) for k in last), name
    fresh = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert any(
        k.endswith("lora_B.weight") and bool(v.abs().sum()) for k, v in fresh.items()
    )  # trained, not init


def test_loading_lora_weights_of_other_target_modules_is_refused(tiny_model, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    from emollm.errors import ModelError
    from emollm.training.resume import load_trained_weights

    qv = get_peft_model(copy.deepcopy(tiny_model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    qv.save_pretrained(tmp_path / "qv")
    qkv = get_peft_model(
        copy.deepcopy(tiny_model), LoraConfig(r=2, target_modules=["q_proj", "k_proj", "v_proj"])
    )
    with pytest.raises(ModelError, match="do not fit this model"):
        load_trained_weights(qkv, str(tmp_path / "qv"))
    wider = get_peft_model(copy.deepcopy(tiny_model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ModelError, match="do not fit this model"):
        load_trained_weights(wider, str(tmp_path / "qv"))


def test_a_prompt_longer_than_max_length_fails_before_training(
    recipe, tiny_model_dir, speech_manifest, tmp_path, monkeypatch
):
    from emollm.training import EmotionSFTTrainer

    built = []
    monkeypatch.setattr(EmotionSFTTrainer, "__init__", lambda self, *a, **k: built.append(self))
    config = CONFIGS[IDS.index("ravdess/sft_text.yaml")]
    with pytest.raises(ConfigError, match=r"a prompt \(.+\) of \d+ tokens does not fit max_length=64"):
        run(recipe, config, tiny_model_dir, speech_manifest, tmp_path / "run", "--max_length", "64")
    assert built == []  # refused while checking the examples, before a trainer (or an epoch) began


def test_projector_alignment_then_lora_the_first_stage_loads_into_the_second(
    recipe, tiny_model_dir, speech_manifest, tmp_path
):
    """Stage 1 (--use_peft false): only the projector moves; stage 2 from its checkpoint adds LoRA and goes on
    training that projector (LLaVA's two stages)."""
    from safetensors.torch import load_file

    config = CONFIGS[IDS.index("ravdess/sft_tokens.yaml")]
    stage1, stage2 = tmp_path / "align", tmp_path / "full"
    run(
        recipe,
        config,
        tiny_model_dir,
        speech_manifest,
        stage1,
        "--use_peft",
        "false",
        "--projector_learning_rate",
        "1e-2",
    )
    aligned = json.loads((stage1 / "emollm_config.json").read_text())
    assert not aligned["lora"] and not (stage1 / "adapter_model.safetensors").exists()
    first, moved = (load_file(stage1 / f"checkpoint-{n}" / "projectors.safetensors") for n in (1, 2))
    assert any(not torch.equal(first[k], moved[k]) for k in moved)  # the projector trained
    base, saved = load_file(tiny_model_dir / "model.safetensors"), load_file(stage1 / "model.safetensors")
    shared = [k for k in base if k in saved]
    assert shared and all(torch.equal(base[k], saved[k]) for k in shared)  # the LLM did not move

    run(recipe, config, stage1, speech_manifest, stage2)  # model_name_or_path: the stage-1 checkpoint
    full = json.loads((stage2 / "emollm_config.json").read_text())
    assert full["lora"] and full["base_model"] == str(tiny_model_dir)  # the base model, not the checkpoint
    assert full["frame_normalizers"] == aligned["frame_normalizers"]  # kept from stage 1
    lora = load_file(stage2 / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and bool(v.abs().sum()) for k, v in lora.items())  # LoRA moved
    continued = load_file(stage2 / "projectors.safetensors")
    for name, value in moved.items():  # stage 2 started from stage 1's projector, and trained it further
        torch.testing.assert_close(continued[name], value, atol=5e-3, rtol=0)
    assert any(not torch.equal(continued[k], moved[k]) for k in moved)


def test_augmentation_adds_train_copies_only_and_is_recorded(
    recipe, tiny_model_dir, speech_manifest, tmp_path, monkeypatch
):
    """--augment copies the training clips (new voices) and never the evaluated ones."""
    import emollm.augment
    import emollm.training
    from emollm.data import load_corpus

    seen = []

    def spy(utterances, augmentations, **kwargs):
        seen.extend(u.id for u in utterances)
        return emollm.augment.augment_utterances(utterances, augmentations, **kwargs)

    built = []

    def build_examples(utterances, *args, **kwargs):
        built.extend(utterances)
        return emollm.training.build_examples(utterances, *args, **kwargs)

    monkeypatch.setattr(recipe, "augment_utterances", spy)
    monkeypatch.setattr(recipe, "build_examples", build_examples)
    config = CONFIGS[IDS.index("ravdess/sft_tokens.yaml")]
    out = tmp_path / "run"
    run(recipe, config, tiny_model_dir, speech_manifest, out, "--augment", "speed1.1,noise20")

    train = {u.id for u in load_corpus(f"manifest:{speech_manifest}", "train", labels="ravdess8")}
    assert sorted(seen) == sorted(train)  # only the train split went to augmentation
    copies = {u.id for u in built} - train
    assert copies == {f"{i}~{a}" for i in train for a in ("speed1.1", "noise20")}
    voices = {f"{u.speaker}~{a}" for u in built if u.id in train for a in ("speed1.1", "noise20")}
    assert {u.speaker for u in built if u.id in copies} == voices
    evaluated = [json.loads(line)["id"] for line in (out / "eval-dev" / "predictions.jsonl").open()]
    assert len(evaluated) == 4 and not any("~" in i for i in evaluated)
    saved = json.loads((out / "emollm_config.json").read_text())["training"]
    assert saved["augment"] == ["speed1.1", "noise20"] and saved["train_utterances"] == 3 * len(train)


def test_a_bad_augmentation_is_refused_at_parse_time(recipe):
    config = CONFIGS[IDS.index("ravdess/sft_tokens.yaml")]
    with pytest.raises(ConfigError, match="speed"):
        parse(recipe, config, "--augment", "faster")
    with pytest.raises(ConfigError, match="route none"):
        parse(recipe, config, "--augment", "noise20", "--route", "none")
