import json

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
