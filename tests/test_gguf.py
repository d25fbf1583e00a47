"""Any local ``.gguf`` file works wherever a model name is accepted (issue 21, item 5).

The GGUF files are real: :func:`write_gguf` writes the tiny random Llama of conftest.py with ``gguf``'s own
``GGUFWriter``, as llama.cpp's converter lays it out (tensor names, q/k rows permuted, a byte-level BPE
vocabulary), and transformers reads it back. The weights coming back equal is what proves the dequantising
conversion; then the cache (keyed by content), and the errors for files it cannot load.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama

from emollm.cli import main
from emollm.errors import ModelError
from emollm.modeling import cache
from emollm.modeling import gguf as emollm_gguf
from emollm.modeling.base import list_models, load_base_model
from emollm.modeling.cache import CACHE_MARKER, check_cache
from emollm.modeling.gguf import GGUF_INDEX, convert_gguf, gguf_architecture, gguf_cache_path

gguf = pytest.importorskip("gguf")  # installed with transformers' GGUF support


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows (convert_hf_to_gguf.py), which transformers undoes on load."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def write_gguf(path, model, tokenizer, architecture: str = "llama", tokenizer_model: str = "gpt2"):
    """``model`` (a LlamaForCausalLM) and ``tokenizer`` as llama.cpp writes them: F32 tensors, GGUF v3."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    tokens = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))  # no merges: transformers derives them (none here)
    writer.add_token_types([3 if t in tokenizer.all_special_tokens else 1 for t in tokens])  # 3: control
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp writes no output.weight, and transformers ties it back
        module, kind = name.rsplit(".", 1)
        gguf_name = f"{names.get_name(module)}.{kind}"
        weights = tensor.float().numpy()
        if ".attn_q." in gguf_name:
            weights = _permute(weights, config.num_attention_heads)
        elif ".attn_k." in gguf_name:
            weights = _permute(weights, config.num_key_value_heads)
        writer.add_tensor(gguf_name, np.ascontiguousarray(weights))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def assert_same_weights(loaded, source):
    expected = source.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


@pytest.fixture
def conversions(monkeypatch):
    """Count the real GGUF conversions (transformers' loads of the file)."""
    calls = []
    real = emollm_gguf._load_gguf

    def spy(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(emollm_gguf, "_load_gguf", spy)
    return calls


@pytest.fixture
def tiny_gguf(tmp_path, tiny_model, tiny_tokenizer):
    return write_gguf(tmp_path / "tiny-llama.Q0.gguf", tiny_model, tiny_tokenizer)


# -- a real round trip -------------------------------------------------------------------------------------


def test_a_gguf_file_loads_with_the_weights_it_was_written_from(
    emollm_cache, tiny_gguf, tiny_model, tiny_tokenizer, conversions
):
    model, tokenizer = load_base_model(str(tiny_gguf))

    assert type(model).__name__ == "LlamaForCausalLM"
    assert_same_weights(model, tiny_model)
    text = "what a day<|im_end|>"
    assert tokenizer(text).input_ids == tiny_tokenizer(text).input_ids
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"
    with torch.no_grad():
        ids = torch.tensor([tiny_tokenizer("so much fun").input_ids])
        torch.testing.assert_close(model(ids).logits, tiny_model(ids).logits)
    assert len(conversions) == 1


def test_the_cache_entry_is_keyed_by_content_and_records_its_source(emollm_cache, tiny_gguf, conversions):
    load_base_model(str(tiny_gguf))

    sha = cache._sha256(tiny_gguf)
    entry = emollm_cache / "models" / f"gguf-{sha[:16]}"
    assert gguf_cache_path(tiny_gguf) == entry
    marker = json.loads((entry / CACHE_MARKER).read_text())
    assert marker["source"] == str(tiny_gguf.resolve())
    assert marker["source_bytes"] == tiny_gguf.stat().st_size
    assert marker["source_sha256"] == sha
    assert marker["architecture"] == "llama"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(marker["files"])
    assert check_cache(entry, hashes=True) == ("cached", [])
    assert not [p for p in (emollm_cache / "models").iterdir() if p.name.startswith(".")]  # no temporaries
    config = json.loads((entry / "config.json").read_text())
    assert "quantization_config" not in config  # saved as a plain float model, trainable like any other


def test_a_second_load_and_a_copy_elsewhere_reuse_the_conversion(
    emollm_cache, tiny_gguf, tiny_model, conversions, tmp_path
):
    load_base_model(str(tiny_gguf))
    model, _ = load_base_model(str(tiny_gguf))
    copy = tmp_path / "elsewhere" / "renamed.GGUF"  # the suffix in any case
    copy.parent.mkdir()
    shutil.copy(tiny_gguf, copy)
    load_base_model(str(copy))

    assert len(conversions) == 1
    assert_same_weights(model, tiny_model)
    assert len(list((emollm_cache / "models").glob("gguf-*"))) == 1


def test_an_ollama_blob_without_a_suffix_is_known_by_its_magic(emollm_cache, tiny_gguf, tiny_model, tmp_path):
    blob = tmp_path / "blobs" / f"sha256-{cache._sha256(tiny_gguf)}"  # how Ollama keeps a model
    blob.parent.mkdir()
    shutil.copy(tiny_gguf, blob)

    model, _ = load_base_model(str(blob))

    assert_same_weights(model, tiny_model)
    assert emollm_gguf.is_gguf_path(str(blob)) and not emollm_gguf.is_gguf_path(str(blob.parent))


def test_a_changed_file_converts_again_into_a_new_entry(
    emollm_cache, tiny_gguf, tiny_model, tiny_tokenizer, conversions
):
    first = convert_gguf(tiny_gguf)
    other = build_tiny_llama(len(tiny_tokenizer), seed=1)
    write_gguf(tiny_gguf, other, tiny_tokenizer)  # same path, same size, new weights

    model, _ = load_base_model(str(tiny_gguf))

    assert len(conversions) == 2
    second = gguf_cache_path(tiny_gguf)
    assert second != first and first.is_dir()
    assert_same_weights(model, other)


def test_an_unchanged_settled_file_is_not_hashed_again(emollm_cache, tiny_gguf, conversions, monkeypatch):
    old = tiny_gguf.stat().st_mtime_ns - 3_600 * 10**9  # an hour old: settled, its hash may be remembered
    os.utime(tiny_gguf, ns=(old, old))
    entry = convert_gguf(tiny_gguf)
    index = json.loads((emollm_cache / "models" / GGUF_INDEX).read_text())
    assert index[str(tiny_gguf.resolve())]["sha256"] == cache._sha256(tiny_gguf)

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again")

    with monkeypatch.context() as patch:
        patch.setattr(emollm_gguf, "_sha256", no_hashing)  # where _gguf_sha256 looks it up
        assert convert_gguf(tiny_gguf) == entry
    assert len(conversions) == 1

    data = bytearray(tiny_gguf.read_bytes())
    data[-1] ^= 0xFF  # same size, new content, new mtime: hashed again, a new key
    tiny_gguf.write_bytes(bytes(data))
    assert gguf_cache_path(tiny_gguf) != entry


def test_a_freshly_written_file_is_hashed_every_time(emollm_cache, tiny_gguf):
    convert_gguf(tiny_gguf)  # written a moment ago: it may change again within the same mtime tick

    assert not (emollm_cache / "models" / GGUF_INDEX).exists()


def test_emotion_reasoner_loads_a_gguf(emollm_cache, tiny_gguf, tiny_model, conversions):
    from emollm.api import EmotionReasoner

    reasoner = EmotionReasoner.from_pretrained(str(tiny_gguf), labels="iemocap4")

    assert_same_weights(reasoner.lm.model, tiny_model)
    assert len(conversions) == 1


def test_emollm_models_converts_and_lists_a_gguf(emollm_cache, tiny_gguf, conversions, capsys):
    assert main(["models", "--convert", str(tiny_gguf)]) == 0
    out = capsys.readouterr().out
    assert str(tiny_gguf.resolve()) in out and "llama GGUF" in out
    assert main(["models", "--json"]) == 0
    row = [r for r in json.loads(capsys.readouterr().out)["models"] if r["name"] == str(tiny_gguf.resolve())]
    assert row and row[0]["state"] == "cached" and row[0]["architecture"] == "llama"
    assert row[0]["cache_path"] == str(gguf_cache_path(tiny_gguf))
    assert len(conversions) == 1


def test_a_damaged_gguf_entry_names_the_command_that_rebuilds_it(
    emollm_cache, tiny_gguf, tiny_model, conversions, capsys
):
    entry = convert_gguf(tiny_gguf)
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    with pytest.raises(ModelError, match="damaged") as info:
        load_base_model(str(tiny_gguf))
    assert f"emollm models --convert {tiny_gguf} --force" in str(info.value)

    row = [r for r in list_models() if r["name"] == str(tiny_gguf.resolve())][0]
    assert row["state"] == "damaged" and row["repair"].endswith("--force")
    assert main(["models", "--convert", str(tiny_gguf), "--force"]) == 0
    model, _ = load_base_model(str(tiny_gguf))
    assert_same_weights(model, tiny_model)
    assert len(conversions) == 2


# -- what cannot be loaded -----------------------------------------------------------------------------------


def test_an_unsupported_architecture_is_named_before_any_conversion(emollm_cache, tmp_path, conversions):
    path = tmp_path / "state-space.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    assert gguf_architecture(path) == "mamba2"
    with pytest.raises(ModelError, match="architecture 'mamba2'") as info:
        load_base_model(str(path))
    message = str(info.value)
    assert "Supported architectures:" in message and "llama" in message and "general" not in message
    assert conversions == []
    assert not (emollm_cache / "models").exists() or not list((emollm_cache / "models").iterdir())


def test_a_file_that_is_not_gguf_says_so(emollm_cache, tmp_path, conversions):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(100))  # a zip, say

    with pytest.raises(ModelError, match=r"is not a GGUF file: it starts with b'PK\\x03\\x04'"):
        load_base_model(str(path))
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        load_base_model(str(path))
    assert conversions == []


def test_a_truncated_header_is_a_damaged_gguf(tmp_path, tiny_gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:30])  # inside the first key

    with pytest.raises(ModelError, match="damaged GGUF file"):
        gguf_architecture(cut)


def test_a_missing_gguf_path_is_named(emollm_cache, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model.Q4_K_M.gguf"

    with pytest.raises(ModelError, match="does not exist") as info:
        load_base_model(str(missing))
    assert str(missing) in str(info.value)
    assert main(["models", "--convert", str(missing)]) != 0
    assert str(missing) in capsys.readouterr().err


def test_a_conversion_that_fails_in_transformers_gives_its_reason_and_leaves_no_cache(
    emollm_cache, tmp_path, tiny_model, tiny_tokenizer, conversions
):
    path = write_gguf(tmp_path / "odd.gguf", tiny_model, tiny_tokenizer, tokenizer_model="no-such-tokenizer")

    with pytest.raises(ModelError, match="transformers could not convert") as info:
        load_base_model(str(path))
    assert "no-such-tokenizer" in str(info.value)
    assert len(conversions) == 1
    assert list((emollm_cache / "models").iterdir()) == []  # no entry, no temporary folder


def test_a_failed_write_leaves_nothing_half_written(emollm_cache, tiny_gguf, monkeypatch):
    def disk_full(folder):
        raise OSError(28, "No space left on device")

    # after the weights were written, before the marker
    monkeypatch.setattr(cache, "_file_records", disk_full)

    with pytest.raises(ModelError, match="No space left on device"):
        load_base_model(str(tiny_gguf))
    assert list((emollm_cache / "models").iterdir()) == []


def test_unknown_names_for_models_convert_still_list_the_choices(emollm_cache, capsys):
    with pytest.raises(SystemExit):
        main(["models", "--convert", "telepathy"])
    err = capsys.readouterr().err
    assert "invalid choice: 'telepathy'" in err and "smollm2-135m-instruct" in err and ".gguf" in err
