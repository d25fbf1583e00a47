"""The command line under bad input, unwritable outputs, Ctrl-C and closed pipes: one line, never a traceback.

Each error is ``emollm <command>: error: <message>`` on stderr with exit status 2, found before any long work
(no model is loaded, no speech synthesised); Ctrl-C is exit status 130, a closed pipe a quiet exit.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from emollm.cli import main


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith(f"emollm {command}: error: "), err
    return err


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    from emollm.audio import save_audio
    from emollm.prosody.synth import synthesize

    audio, _ = synthesize("Kids are talking by the door")
    return save_audio(audio, tmp_path_factory.mktemp("speech") / "kids.wav")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    from emollm.modeling import base

    return base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model or synthesising speech fails the test: the error must come before."""
    from emollm.api import EmotionReasoner

    def refuse(*args, **kwargs):
        raise AssertionError("the command did long work before refusing its arguments")

    monkeypatch.setattr(EmotionReasoner, "from_pretrained", refuse)
    monkeypatch.setattr("emollm.prosody.synth.synthesize", refuse)


# -- audio input ---------------------------------------------------------------------------------------------


def test_a_folder_is_not_reported_as_missing(tmp_path, capsys):
    assert main(["prosody", str(tmp_path)]) == 2
    assert "is a folder, not a file" in one_line_error(capsys, "prosody")


def test_a_constant_dc_signal_is_silent(tmp_path, capsys):
    sf.write(tmp_path / "dc.wav", np.full(16000, 0.3, dtype=np.float32), 16000)
    assert main(["prosody", str(tmp_path / "dc.wav")]) == 2
    assert "silent: a constant level (DC offset 0.3)" in one_line_error(capsys, "prosody")


def test_a_non_english_transcript_falls_back_to_nuclei(speech_wav, capsys):
    assert main(["prosody", str(speech_wav), "--transcript", "こんにちは", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["features"]["alignment"]["method"] == "nuclei"
    assert out["features"]["notes"][0].startswith("the transcript has no English words to align")
    assert main(["prosody", str(speech_wav), "--transcript", "こんにちは", "--on-failure", "raise"]) == 2
    err = one_line_error(capsys, "prosody")
    assert "leave out --transcript" in err and "transcript=None" not in err
    assert main(["prosody", str(speech_wav), "--transcript", " "]) == 2
    err = one_line_error(capsys, "prosody")
    assert "--transcript is empty" in err and "transcript=None" not in err


def test_predict_falls_back_to_nuclei_for_a_non_english_transcript(speech_wav, model_dir, capsys):
    command = ["predict", str(speech_wav), "--transcript", "こんにちは", "--model", str(model_dir)]
    assert main([*command, "--mode", "score", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prosody"] and out["label"] in out["distribution"]
    assert any(n.startswith("the transcript has no English words to align") for n in out["notes"])
    assert "こんにちは" in out["prompt"]  # the prompt still shows what was said


# -- arguments that used to be ignored or misread ----------------------------------------------------------


def test_max_new_tokens_zero_is_refused(no_model, capsys):
    assert main(["predict", "--transcript", "hi", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be >= 1, got 0" in one_line_error(capsys, "predict")
    assert main(["demo", "--max-new-tokens", "0"]) == 2
    one_line_error(capsys, "demo")


def test_options_of_score_mode_are_refused_in_generate_mode(no_model, capsys):
    assert main(["predict", "--transcript", "hi", "--calibrate", "--mode", "generate"]) == 2
    assert "--calibrate" in one_line_error(capsys, "predict")
    for flag in (["--calibrate"], ["--length-normalize"], ["--temperature-scaling", "1.5"]):
        assert main(["evaluate", "--data", "ravdess", "--mode", "generate", *flag]) == 2
        err = one_line_error(capsys, "evaluate")
        assert flag[0][2:].replace("-", "_") in err and "mode generate would ignore" in err


def test_evaluate_batch_size_zero_is_refused_before_the_output_folder_exists(tmp_path, capsys):
    assert (
        main(["evaluate", "--data", "ravdess", "--batch-size", "0", "--output", str(tmp_path / "run")]) == 2
    )
    assert "batch_size is 0" in one_line_error(capsys, "evaluate")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--data", "ravdess", "--device", "cuda", "--output", str(tmp_path / "r")]) == 2
    assert "device is 'cuda', but" in one_line_error(capsys, "evaluate")


@pytest.mark.parametrize(
    ("template", "message"),
    [("{{ transcript }\n", "line 1: unexpected '}'"), ("{{ transcript }} {{ nope }}", "'nope' is undefined")],
)
def test_a_broken_template_is_one_line(tmp_path, model_dir, capsys, template, message):
    path = tmp_path / "mine.jinja"
    path.write_text(template)
    assert main(["predict", "--transcript", "hi", "--strategy", str(path), "--model", str(model_dir)]) == 2
    assert message in one_line_error(capsys, "predict")
    assert main(["evaluate", "--data", "ravdess", "--strategy", str(path)]) == 2  # refused at parse time
    assert message in one_line_error(capsys, "evaluate")


# -- outputs -------------------------------------------------------------------------------------------------


def test_outputs_that_cannot_be_written_are_refused_first(tmp_path, speech_wav, no_model, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["demo", "--save-audio", str(tmp_path)], "is a folder"),
        (["demo", "--save-audio", str(a_file / "x.wav")], "is a file, not a folder"),
        (["demo", "--save-audio", str(tmp_path / "x.mp3")], "must end in .wav"),
        (["prosody", str(speech_wav), "--plot", str(tmp_path)], "is a folder"),
        (["prosody", str(speech_wav), "--plot", str(a_file / "p.png")], "is a file, not a folder"),
        (["evaluate", "--data", "ravdess", "--output", str(a_file)], "is a file, not a folder"),
    ]
    for command, message in cases:
        assert main(command) == 2, command
        assert message in one_line_error(capsys, command[0]), command


def test_a_read_only_folder_is_refused(tmp_path, speech_wav, no_model, monkeypatch, capsys):
    real_access = os.access
    read_only = tmp_path / "ro"
    read_only.mkdir()

    def access(path, mode, **kwargs):  # as for a user without write permission (tests may run as root)
        if str(path).startswith(str(read_only)) and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    for command in (
        ["demo", "--save-audio", str(read_only / "x.wav")],
        ["prosody", str(speech_wav), "--plot", str(read_only / "sub" / "p.png")],
        ["evaluate", "--data", "ravdess", "--output", str(read_only / "run")],
    ):
        assert main(command) == 2, command
        assert "not writable" in one_line_error(capsys, command[0]), command


def test_a_write_error_during_a_command_is_one_line(monkeypatch, capsys):
    def fail(argv):
        raise PermissionError(13, "Permission denied", "/somewhere/out.png")

    monkeypatch.setattr("emollm.cli._run", fail)
    assert main(["prosody", "x.wav"]) == 2
    assert (
        one_line_error(capsys, "prosody") == "emollm prosody: error: Permission denied: '/somewhere/out.png'"
    )


def test_a_recipe_output_dir_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["sft", "--dataset", "ravdess", "--bf16", "false", "--output_dir", str(a_file)]) == 2
    assert "--output_dir" in one_line_error(capsys, "sft")


# -- Ctrl-C and pipes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "resume"), [("prosody", False), ("evaluate", True)])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, command, resume):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("emollm.cli._run", interrupted)
    assert main([command, "--data", "ravdess"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"emollm {command}: interrupted") and "Traceback" not in err
    assert ("rerun the same command to resume" in err) is resume


def test_a_closed_pipe_ends_quietly():
    # `emollm models | head -0`: the reader is gone before anything is written
    code = "import sys; from emollm.cli import main; sys.exit(main(['models', '--json']))"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert err == "", err


@pytest.mark.parametrize("script", ["sft", "grpo"])
def test_the_recipe_scripts_print_a_config_error_as_one_line(script):
    """``python recipes/<script>.py`` (what accelerate launch runs) is ``emollm <script>``, errors included."""
    from conftest import REPO

    config = REPO / "recipes" / "configs" / "ravdess" / f"{script}_text.yaml"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "recipes" / f"{script}.py"),
            "--config",
            str(config),
            "--train_limit",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"emollm {script}: error: ")
    assert "train_limit is 0" in done.stderr


# -- cases found by benchmarks/hostile_inputs.py ------------------------------------------------------------


def test_a_config_that_is_not_valid_yaml_is_one_line_naming_the_line(tmp_path, capsys):
    from conftest import REPO

    config = (REPO / "recipes" / "configs" / "ravdess" / "sft_tokens.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.replace("[q_proj", "[[q_proj"))
    assert main(["sft", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"emollm sft: error: --config {bad} line ") and "not valid YAML" in err
    assert "\n" not in err


def test_lora_values_peft_would_reject_late_are_refused_at_parse_time(capsys):
    from conftest import REPO

    config = REPO / "recipes" / "configs" / "ravdess" / "sft_tokens.yaml"
    assert main(["sft", "--config", str(config), "--lora_r", "-4", "--lora_dropout", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "lora_r is -4; it must be >= 1" in err and "lora_dropout is 1.5" in err


def test_garbage_lora_weights_are_a_model_error(tmp_path, monkeypatch, tiny_tokenizer):
    from conftest import build_tiny_llama

    from emollm.errors import ModelError
    from emollm.modeling import base
    from emollm.modeling.checkpoint import CONFIG_NAME
    from emollm.modeling.emotion_lm import load_checkpoint

    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = {"format_version": 1, "base_model": "tiny", "lora": True, "adapters": [], "reasoner": {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    lora = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj"],
    }
    (folder / "adapter_config.json").write_text(json.dumps(lora))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    fresh = build_tiny_llama(len(tiny_tokenizer))  # PEFT changes the model it wraps before it fails
    monkeypatch.setattr(base, "load_base_model", lambda *a, **k: (fresh, tiny_tokenizer))
    with pytest.raises(ModelError, match=r"LoRA weights in .* cannot be loaded .*damaged"):
        load_checkpoint(folder)


def test_an_output_that_cannot_be_made_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "transcript": "hi", "label": "happy"}) + "\n")
    command = ["evaluate", "--data", f"manifest:{manifest}", "--split", "all", "--labels", "happy,sad"]
    status = main([*command, "--output", "/proc/x"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("emollm evaluate: error: ") and "/proc/x" in err


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_audio_files_that_are_missing_or_folders_are_refused_before_evaluating(
    tmp_path, capsys, kind, tiny_model_dir, emollm_cache
):
    path = tmp_path / "clip.wav"
    if kind == "folder":
        path.mkdir()
    manifest = tmp_path / "m.jsonl"
    row = {"id": "a", "audio_path": str(path), "transcript": "hi", "label": "happy"}
    manifest.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    command = ["evaluate", "--data", f"manifest:{manifest}", "--split", "all", "--labels", "happy,sad"]
    command += ["--strategy", "acoustic", "--model", str(tiny_model_dir), "--output", str(out)]
    status = main(command)
    err = capsys.readouterr().err
    what = "do not exist" if kind == "missing" else "are folders, not files"
    assert status == 2 and f"1 of 1 audio files {what}" in err and not out.exists()
