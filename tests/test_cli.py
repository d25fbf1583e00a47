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
