import json

import pytest

from emollm.cli import main
from emollm.modeling import base


def test_models_json(emollm_cache, capsys):
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cache_dir"] == str(emollm_cache)
    assert out["models"][0]["name"] == "smollm2-135m-instruct" and out["models"][0]["default"]
    assert out["models"][0]["cached"] is False


def test_demo_on_a_local_model_folder(tmp_path, tiny_model, tiny_tokenizer, capsys):
    folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    assert main(["demo", "--model", str(folder), "--json", "--max-new-tokens", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] == max(out["distribution"], key=out["distribution"].get)
    assert abs(sum(out["distribution"].values()) - 1) < 1e-4
    assert set(out["distribution"]) == {"neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"}


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emollm demo: error: model folder") and "Traceback" not in err


def test_predict_keeps_a_checkpoints_mode_unless_told(tmp_path, tiny_model, tiny_tokenizer, capsys):
    from emollm.modeling.checkpoint import save_checkpoint

    base_folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    reasoner = {"labels": ["happy", "sad"], "strategy": "minimal", "mode": "generate"}  # as GRPO saves it
    checkpoint = save_checkpoint(
        tiny_model, tmp_path / "ckpt", base_model=str(base_folder), reasoner=reasoner, save_lora=False
    )
    command = ["predict", "--model", str(checkpoint), "--transcript", "hi", "--json", "--max-new-tokens", "4"]
    assert main(command) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["distribution"] is None and out["completion"] is not None  # generated, not scored
    assert main([*command, "--mode", "score"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["distribution"]) == {"happy", "sad"} and out["completion"] is None


def test_predict_text_output_and_calibrate_override(tmp_path, tiny_model, tiny_tokenizer, capsys):
    from emollm.modeling.checkpoint import save_checkpoint

    base_folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    reasoner = {"labels": "iemocap4", "strategy": "minimal", "mode": "score", "calibrate": True}
    checkpoint = save_checkpoint(
        tiny_model, tmp_path / "ckpt", base_model=str(base_folder), reasoner=reasoner, save_lora=False
    )
    command = ["predict", "--model", str(checkpoint), "--transcript", "hi"]
    assert main(command) == 0
    lines = capsys.readouterr().out.splitlines()
    bars = {line.split()[0]: float(line.split()[1]) for line in lines[2:6]}
    assert lines[0] == f"label: {max(bars, key=bars.get)}" and lines[1] == "distribution:"
    assert set(bars) == {"neutral", "happy", "sad", "angry"} and list(bars.values()) == sorted(
        bars.values(), reverse=True
    )
    assert "note: text only: no audio was given" in lines

    distributions = {}
    for flag in ("--calibrate", "--no-calibrate"):
        assert main([*command, "--json", flag]) == 0
        distributions[flag] = json.loads(capsys.readouterr().out)["distribution"]
    assert distributions["--calibrate"] == pytest.approx(bars, abs=1e-3)  # the checkpoint calibrates
    assert distributions["--no-calibrate"] != pytest.approx(distributions["--calibrate"], abs=1e-3)
    assert main(["predict", "--model", str(base_folder), "--transcript", "hi", "--json",
                 "--labels", "iemocap4", "--strategy", "minimal"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["distribution"] == pytest.approx(
        distributions["--no-calibrate"]
    )


def test_evaluate_options_keep_their_spellings():
    from emollm.cli import evaluate_parser

    def parsed(*extra):
        return evaluate_parser().parse_args(["--data", "ravdess", *extra])

    args = parsed(
        "--batch-size", "4", "--max_new_tokens", "9", "--length-normalize", "--frame-normalizer", "checkpoint"
    )
    assert (args.batch_size, args.max_new_tokens, args.length_normalize, args.frame_normalizer) == (
        4, 9, True, "checkpoint",
    )  # fmt: skip
    assert [parsed(*flag).prosody for flag in (["--prosody"], ["--no-prosody"], ["--prosody", "false"], [])] == [
        True, False, False, None,
    ]  # fmt: skip


def test_every_bad_evaluate_option_is_one_line_at_once(capsys):
    from emollm.cli import main

    assert main(["evaluate", "--data", "nope", "--context", "-1", "--strategy", "fancy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("emollm evaluate: error: EvalConfig: ")
    assert "data is 'nope'" in err and "context is -1" in err and "unknown prompt strategy 'fancy'" in err


def test_recipe_commands_fail_in_one_line_and_the_cheap_commands_do_not_import_transformers(tmp_path, capsys):
    import subprocess
    import sys

    from emollm.cli import main

    assert main(["sft", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"emollm sft: error: --config {tmp_path / 'missing.yaml'}: no such file"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: ravdess\nbf16: false\nno_such_option: 3\n")
    assert main(["grpo", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emollm grpo: error: ") and "no_such_option" in err and "\n" not in err
    import torch

    if not torch.cuda.is_available():
        bad.write_text("dataset: ravdess\nbf16: true\n")  # TrainingArguments' own check, on a CPU
        assert main(["grpo", "--config", str(bad)]) == 2
        assert "\n" not in capsys.readouterr().err.strip()
    code = (
        "import sys; from emollm.cli import make_parser; make_parser(); print('transformers' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
