"""A damaged model cache, missing model files, a cache path that is a file, an unreachable hub: each gives
a one-line ``EmollmError`` naming what is wrong and the fix, at once, never a traceback from safetensors.

The built-in model's GGUF conversion is stood in for by the tiny random Llama, so the cache entry these tests
damage is written by the real ``save_to_cache`` in a few hundred milliseconds.
"""

import hashlib
import json
import time

import pytest
import torch

from emollm.cli import main
from emollm.errors import ConfigError, ModelError
from emollm.modeling import base
from emollm.modeling.base import CACHE_MARKER, is_cached, list_models, load_base_model

DEFAULT = base.DEFAULT_MODEL
REBUILD = f"emollm models --convert {DEFAULT} --force"


@pytest.fixture
def cached(emollm_cache, fake_gguf):
    """The built-in model's cache entry, converted (from the tiny model) into the test's cache."""
    return base.convert_builtin(DEFAULT)


def truncate(path) -> int:
    """Cut ``path`` to half its length, as an interrupted copy would; return the full length."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_marker_records_every_files_size_and_sha256(cached):
    files = json.loads((cached / CACHE_MARKER).read_text())["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    weights = (cached / "model.safetensors").read_bytes()
    assert files["model.safetensors"] == {
        "bytes": len(weights),
        "sha256": hashlib.sha256(weights).hexdigest(),
    }


def test_truncated_weights_are_damaged_and_loading_says_how_to_rebuild(cached, fake_gguf, capsys):
    full = truncate(cached / "model.safetensors")
    with pytest.raises(ModelError) as err:
        load_base_model()
    message = str(err.value)
    assert message.startswith(f"the cached model in {cached} is damaged: ")
    assert f"model.safetensors is {full // 2} bytes, expected {full}" in message and REBUILD in message
    assert len(fake_gguf) == 1  # not silently converted again
    assert not is_cached(DEFAULT)
    row = list_models()[0]
    assert (row["state"], row["cached"], row["repair"]) == ("damaged", False, REBUILD)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT} (default): damaged" in out and f"rebuild with: {REBUILD}" in out


def test_convert_force_rebuilds_a_damaged_cache_in_place(cached, fake_gguf, tiny_model, capsys):
    truncate(cached / "model.safetensors")
    assert main(["models", "--convert", "--force"]) == 0  # --convert alone names the default model
    assert f"{DEFAULT} (default): cached" in capsys.readouterr().out
    assert len(fake_gguf) == 2 and is_cached(DEFAULT)
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary or parked folder left
    model, _ = load_base_model()
    assert same_weights(model, tiny_model)
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["state"] == "cached"


def test_convert_without_force_rebuilds_only_a_damaged_cache(cached, fake_gguf, capsys):
    assert main(["models", "--convert", DEFAULT]) == 0
    assert len(fake_gguf) == 1  # intact: nothing to do
    (cached / "tokenizer.json").unlink()
    assert main(["models", "--convert", DEFAULT]) == 0
    assert "rebuilding the damaged cache" in capsys.readouterr().err
    assert len(fake_gguf) == 2 and is_cached(DEFAULT)


def test_force_without_convert_is_a_one_line_error(emollm_cache, capsys):
    assert main(["models", "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        "emollm models: error: --force rebuilds a cache entry and needs --convert [NAME]"
    )


def test_a_flipped_byte_is_found_by_emollm_models(cached):
    weights = cached / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size: loads check sizes only; `emollm models` checks the hashes too
    weights.write_bytes(bytes(data))
    row = list_models()[0]
    assert row["state"] == "damaged"
    assert row["problems"] == ["model.safetensors does not match the sha256 recorded when it was written"]


def test_a_cache_without_tokenizer_json_names_the_file_not_sentencepiece(cached):
    (cached / "tokenizer.json").unlink()
    with pytest.raises(ModelError) as err:
        load_base_model()
    assert "tokenizer.json is missing" in str(err.value) and REBUILD in str(err.value)
    assert "sentencepiece" not in str(err.value)


def test_a_model_folder_without_a_tokenizer_vocabulary(tmp_path, tiny_model, tiny_tokenizer):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="has no tokenizer vocabulary") as err:
        load_base_model(str(folder))
    assert "tokenizer.save_pretrained(folder)" in str(err.value) and "sentencepiece" not in str(err.value)


def test_truncated_weights_in_a_model_folder(tmp_path, tiny_model, tiny_tokenizer):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    full = truncate(folder / "model.safetensors")
    with pytest.raises(ModelError) as err:
        load_base_model(str(folder))
    assert str(folder) in str(err.value)
    assert f"model.safetensors is {full // 2} bytes, expected {full} (from its header)" in str(err.value)


def test_an_old_marker_without_sizes_is_unverified_but_used(cached, fake_gguf, tiny_model):
    marker = cached / CACHE_MARKER
    old = {k: v for k, v in json.loads(marker.read_text()).items() if k != "files"}  # as emollm <= 0.x wrote
    marker.write_text(json.dumps(old))
    row = list_models()[0]
    assert (row["state"], row["cached"], row["repair"]) == ("unverified", True, REBUILD)
    model, _ = load_base_model()
    assert same_weights(model, tiny_model) and len(fake_gguf) == 1
    full = truncate(cached / "model.safetensors")  # the safetensors header still tells the right length
    with pytest.raises(ModelError, match=f"model.safetensors is {full // 2} bytes, expected {full}"):
        load_base_model()


def test_cache_env_naming_a_file_fails_before_converting(tmp_path, monkeypatch, fake_gguf, capsys):
    file = tmp_path / "cache.txt"
    file.write_text("not a folder")
    monkeypatch.setenv("EMOLLM_CACHE", str(file))
    with pytest.raises(ConfigError, match=r"\$EMOLLM_CACHE is .*cache.txt', which is a file"):
        load_base_model()
    assert fake_gguf == []  # failed before the (20 s) conversion
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emollm models: error: $EMOLLM_CACHE") and "\n" not in err
    monkeypatch.setenv("EMOLLM_CACHE", str(file / "below"))
    with pytest.raises(ConfigError, match=f"lies under the file {file}"):
        load_base_model()
    assert fake_gguf == []


def test_unknown_hub_id_fails_at_once_with_hf_hub_offline(emollm_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"hub cannot be reached \(HF_HUB_OFFLINE is set\)"):
        load_base_model("emollm-tests/no-such-model")
    assert time.perf_counter() - start < 5


def test_unknown_hub_id_fails_at_once_without_network(emollm_cache, monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.setattr(base, "_HUB_REACHABLE", {})
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"no connection to http://127.0.0.1:9"):
        load_base_model("emollm-tests/no-such-model")
    assert time.perf_counter() - start < 5  # transformers alone retries for 20-50 s


def test_a_checkpoint_without_its_lora_files_is_refused_before_anything_loads(tmp_path, monkeypatch):
    from emollm.modeling.checkpoint import CONFIG_NAME
    from emollm.modeling.emotion_lm import load_checkpoint

    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = {"format_version": 1, "base_model": "tiny", "lora": True, "adapters": [], "reasoner": {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    loads = []
    monkeypatch.setattr(base, "load_base_model", lambda *a, **k: loads.append(a))
    with pytest.raises(ModelError, match="lacks adapter_config.json and adapter_model.safetensors"):
        load_checkpoint(folder)
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"lacks adapter_model.safetensors, its LoRA weights"):
        load_checkpoint(folder)
    assert loads == []  # neither the base model nor PEFT (which would try the hub) was reached


def test_torch_threads_are_capped_at_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(base.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert base.available_cpus() == 1 and base.limit_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's choice wins
        torch.set_num_threads(4)
        assert base.limit_threads() == 4
    finally:
        torch.set_num_threads(before)
