"""SFT on a tiny random Llama: targets, the collator, which weights move, and checkpoints that restore."""

import json

import pytest
import torch
from conftest import build_tiny_llama
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig

from emollm.api import EmotionReasoner
from emollm.data import Utterance
from emollm.errors import ConfigError
from emollm.modeling import EmotionLM
from emollm.modeling.adapters import AdapterSpec, build_adapters
from emollm.modeling.checkpoint import CONFIG_NAME, PROJECTORS_NAME
from emollm.modeling.emotion_lm import load_checkpoint
from emollm.modeling.injection import PSEUDO_TOKEN_ID
from emollm.training import (
    EmotionSFTTrainer,
    MultimodalCollator,
    build_examples,
    make_completion,
    prepare_for_training,
)
from emollm.training.sft import generation_budget

LABELS = ["happy", "sad"]
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
FRAME_DIM = 22  # the prosody_frames encoder's output size, so checkpoints rebuild it


def utterances(n=8):
    return [
        Utterance(
            id=f"u{i}", transcript="oh no" if i % 2 else "yay, great", label=LABELS[i % 2], speaker="s1"
        )
        for i in range(n)
    ]


def frames(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"u{i}": torch.randn(5 + i, FRAME_DIM, generator=g) for i in range(n)}


def make_lm(tokenizer, projector=None, num_tokens=3, seed=0):
    model = build_tiny_llama(len(tokenizer), seed=seed)
    if projector is None:
        return EmotionLM(model, tokenizer, name="tiny")
    from emollm.modeling.projectors import build_projector

    torch.manual_seed(seed)
    projectors = torch.nn.ModuleDict(
        {"audio": build_projector(projector, FRAME_DIM, 16, num_tokens=num_tokens)}
    )
    spec = AdapterSpec("audio", "prosody_frames", projector, num_tokens)
    return EmotionLM(model, tokenizer, name="tiny", projectors=projectors, adapters=[spec])


def sft_args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        report_to=[],
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        seed=0,
    )
    defaults.update(kw)
    return SFTConfig(**defaults)


def train(
    lm, tokenizer, tmp_path, *, lora=LORA, strategy="minimal", projector_learning_rate=None, files=None, **kw
):
    reasoner = EmotionReasoner(lm, labels=LABELS, strategy=strategy, mode="score")
    features = {"audio": frames()} if lm.modalities else None
    examples = build_examples(utterances(), reasoner.prompts, frames=features)
    model = prepare_for_training(lm.model, LoraConfig(**lora) if lora else None)
    trainer = EmotionSFTTrainer(
        model=model,
        args=sft_args(tmp_path, **kw),
        train_dataset=Dataset.from_list(examples),
        data_collator=MultimodalCollator(tokenizer, lm.num_tokens),
        processing_class=tokenizer,
        base_model="tiny",
        adapters=lm.adapters,
        reasoner_settings={"labels": LABELS, "strategy": strategy},
        projector_learning_rate=projector_learning_rate,
        files=files,
    )
    return trainer, model


# -- targets and the collator --------------------------------------------------------------------------


def test_completion_targets():
    assert make_completion("sad", reasons=False) == "sad"
    assert make_completion("sad", reasons=True) == "<answer>sad</answer>"
    reasoning = make_completion(
        "sad", reasons=True, target="reasoning", transcript="oh no", prosody="Slow, low."
    )
    assert reasoning.startswith("<think>") and reasoning.endswith("</think><answer>sad</answer>")
    assert '"oh no"' in reasoning and "Slow, low." in reasoning
    with pytest.raises(ConfigError, match="needs a template that asks"):
        make_completion("sad", reasons=False, target="reasoning")
    with pytest.raises(ConfigError, match="target must be one of"):
        make_completion("sad", reasons=True, target="rationale")
    evidence = make_completion("sad", reasons=True, target="evidence", rationale="Slow speech.")
    assert evidence == "<think>Slow speech.</think><answer>sad</answer>"
    with pytest.raises(ConfigError, match="evidence rationale"):
        make_completion("sad", reasons=True, target="evidence")
    with pytest.raises(ConfigError, match="target='evidence' needs a template that asks"):
        make_completion("sad", reasons=False, target="evidence", rationale="Slow speech.")


def test_evidence_examples_take_each_utterance_s_own_rationale(tiny_tokenizer):
    reasoner = EmotionReasoner(make_lm(tiny_tokenizer), labels=LABELS, strategy="acoustic", mode="generate")
    rationales = {"u0": "Fast speech. It fits happy.", "u1": "Slow speech. It fits sad."}
    examples = build_examples(utterances(2), reasoner.prompts, target="evidence", rationales=rationales)
    assert [e["completion"] for e in examples] == [
        "<think>Fast speech. It fits happy.</think><answer>happy</answer>",
        "<think>Slow speech. It fits sad.</think><answer>sad</answer>",
    ]
    with pytest.raises(ConfigError, match="evidence rationale"):
        build_examples(utterances(3), reasoner.prompts, target="evidence", rationales=rationales)


def test_collator_masks_prompt_and_slots_and_pads_right(tiny_tokenizer):
    collator = MultimodalCollator(tiny_tokenizer, {"audio": 3})
    examples = [
        {"prompt": "ab <|audio|>\n", "completion": "sad", "audio_frames": torch.ones(4, 2).tolist()},
        {"prompt": "a longer prompt <|audio|>\n", "completion": "happy", "audio_frames": [[1.0, 2.0]]},
    ]
    batch = collator(examples)
    eos = tiny_tokenizer.eos_token_id
    for row, example in enumerate(examples):
        ids, labels, attention = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        n = int(attention.sum())
        assert attention[:n].all() and not attention[n:].any()  # right padding
        assert int((ids == PSEUDO_TOKEN_ID).sum()) == 3
        target = tiny_tokenizer(example["completion"], add_special_tokens=False)["input_ids"] + [eos]
        assert labels[n - len(target) : n].tolist() == target  # loss on the completion and EOS only
        assert (labels[: n - len(target)] == -100).all() and (labels[n:] == -100).all()
        text = batch["text_mask"][row]
        assert not text[ids == PSEUDO_TOKEN_ID].any() and not text[n - len(target) :].any()
    assert batch["audio_frames"].shape == (2, 4, 2)
    assert batch["audio_mask"].tolist() == [[True] * 4, [True, False, False, False]]


def test_collator_refuses_a_prompt_longer_than_max_length(tiny_tokenizer):
    collator = MultimodalCollator(tiny_tokenizer, {}, max_length=10)
    with pytest.raises(ConfigError, match="does not fit max_length=10"):
        collator([{"prompt": "x" * 20, "completion": "sad"}])
    cut = collator([{"prompt": "x" * 5, "completion": "a long completion"}])
    assert cut["input_ids"].shape == (1, 10)


def test_a_rationale_model_is_given_room_for_its_longest_completion(tiny_tokenizer):
    examples = [
        {"prompt": "xx", "completion": "<think>short</think><answer>sad</answer>"},
        {
            "prompt": "xx",
            "completion": "<think>" + "a much longer rationale " * 9 + "</think><answer>sad</answer>",
        },
    ]
    longest = len(tiny_tokenizer(examples[1]["completion"], add_special_tokens=False)["input_ids"]) + 1
    assert MultimodalCollator(tiny_tokenizer, {}).longest_completion(examples) == longest  # EOS counted
    assert MultimodalCollator(tiny_tokenizer, {}).longest_completion([]) == 0
    assert generation_budget(longest) == max(128, -(-5 * longest // 4))
    assert (
        generation_budget(300) == 375
        and generation_budget(10) == 128
        and generation_budget(10, floor=8) == 13
    )
    with pytest.raises(ConfigError, match="longest_completion >= 0"):
        generation_budget(-1)


def test_collator_check_lists_cut_completions_before_training(tiny_tokenizer):
    examples = [
        {"id": "fits", "prompt": "xx", "completion": "ab"},  # 2 + 2 + EOS = 5 tokens
        {"id": "long", "prompt": "xx", "completion": "a long completion"},
        {"id": "exact", "prompt": "xx", "completion": "abcdefg"},  # 2 + 7 + EOS = 10: fits exactly
    ]
    prompt = len(tiny_tokenizer("xx", add_special_tokens=False)["input_ids"])
    completion = len(tiny_tokenizer("abcdefg", add_special_tokens=False)["input_ids"])
    collator = MultimodalCollator(tiny_tokenizer, {}, max_length=prompt + completion + 1)
    assert collator.check(examples) == ["long"]
    assert MultimodalCollator(tiny_tokenizer, {}, max_length=None).check(examples) == []
    with pytest.raises(ConfigError, match=r"a prompt \(too-long\) of \d+ tokens does not fit"):
        collator.check([*examples, {"id": "too-long", "prompt": "x" * 40, "completion": "a"}])


def test_examples_need_labels_and_frames(tiny_tokenizer):
    lm = make_lm(tiny_tokenizer, "linear")
    reasoner = EmotionReasoner(lm, labels=LABELS, strategy="minimal", mode="score")
    with pytest.raises(ConfigError, match="no audio frames for u0"):
        build_examples(utterances(2), reasoner.prompts)
    with pytest.raises(ConfigError, match="has no label"):
        build_examples([Utterance(id="x", transcript="hm")], reasoner.prompts, frames={"audio": frames(1)})
    example = build_examples(utterances(2), reasoner.prompts, frames={"audio": frames(2)})[0]
    assert example["prompt"].count("<|audio|>") == 1 and example["completion"] == "happy"


# -- training: which weights move ------------------------------------------------------------------------


def test_two_steps_move_lora_and_projector_only(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer, "mlp")
    trainer, model = train(lm, tiny_tokenizer, tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    lora = {n for n in before if "lora_" in n}
    projector = {n for n in before if "emollm_projectors" in n}
    assert lora and projector
    assert moved == lora | projector  # base weights, embeddings and norms untouched


def test_the_projector_learns_at_its_own_rate(tiny_tokenizer, tmp_path):
    # rate 0 for the projector: it stays where it was while LoRA moves at the trainer's rate
    lm = make_lm(tiny_tokenizer, "mlp")
    trainer, model = train(lm, tiny_tokenizer, tmp_path, projector_learning_rate=0.0, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved == {n for n in before if "lora_" in n}

    # every trainable parameter in exactly one group; the projector's at their rate, through the scheduler
    lm = make_lm(tiny_tokenizer, "mlp")
    trainer, model = train(
        lm, tiny_tokenizer, tmp_path / "b", projector_learning_rate=3e-3, learning_rate=1e-4
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    projector = {id(p) for n, p in model.named_parameters() if "emollm_projectors" in n}
    rates = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    count = sum(len(g["params"]) for g in trainer.optimizer.param_groups)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert count == len(rates) and set(rates) == trainable
    assert {rates[i] for i in projector} == {3e-3} and {rates[i] for i in trainable - projector} == {1e-4}
    assert sorted(set(trainer.lr_scheduler.base_lrs)) == [1e-4, 3e-3]


def test_text_only_sft_lowers_the_loss_on_a_toy_task(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer)
    with torch.no_grad():  # random init gives near-zero logits that the final norm keeps near-uniform
        lm.model.get_input_embeddings().weight.mul_(25.0)
    every_linear = {**LORA, "target_modules": "all-linear"}
    trainer, _ = train(lm, tiny_tokenizer, tmp_path, lora=every_linear, max_steps=16, logging_steps=1)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < losses[0] * 0.8


def test_checkpoint_restores_identical_predictions(tiny_tokenizer, tmp_path, monkeypatch):
    lm = make_lm(tiny_tokenizer, "resampler")
    trainer, model = train(lm, tiny_tokenizer, tmp_path)
    trainer.train()
    out = tmp_path / "ckpt"
    trainer.save_model(str(out))
    assert {CONFIG_NAME, PROJECTORS_NAME, "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["base_model"] == "tiny" and config["adapters"][0]["projector"] == "resampler"

    lm.model = model.eval()
    prompts = [
        EmotionReasoner(lm, labels=LABELS, strategy="minimal").build_prompt(t, for_scoring=True)
        for t in ("yay", "oh no")
    ]
    feats = [{"audio": frames()["u0"]}, {"audio": frames()["u1"]}]
    expected = lm.score(prompts, LABELS, frames=feats)

    # The base model is rebuilt from its name: point the loader at the same random weights.
    def fake_base(name, dtype=None, device=None, quantization_config=None):
        assert name == "tiny"
        return build_tiny_llama(len(tiny_tokenizer), seed=0), tiny_tokenizer

    monkeypatch.setattr("emollm.modeling.base.load_base_model", fake_base)
    for merge in (True, False):
        restored = load_checkpoint(out, merge=merge)
        assert restored.modalities == ("audio",) and restored.num_tokens == {"audio": 3}
        torch.testing.assert_close(restored.score(prompts, LABELS, frames=feats), expected, atol=1e-5, rtol=0)
    other = [{"audio": frames(seed=1)["u0"]}, {"audio": frames(seed=1)["u1"]}]
    changed = restored.score(prompts, LABELS, frames=other)
    assert (changed - expected).abs().max() > 1e-5  # the audio reaches the prediction (noise is ~1e-7)


def test_extra_files_are_saved_in_every_checkpoint(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer)
    files = {"emollm_evidence.json": '{"x": 1}\n'}  # as the recipe passes the evidence model
    trainer, _ = train(lm, tiny_tokenizer, tmp_path, files=files, save_strategy="steps", save_steps=1)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    for folder in (tmp_path / "out" / "checkpoint-1", tmp_path / "out" / "checkpoint-2", tmp_path / "final"):
        assert (folder / "emollm_evidence.json").read_text() == '{"x": 1}\n'
        assert (folder / CONFIG_NAME).is_file()


def test_checkpoint_restores_the_reasoner_settings(tiny_tokenizer, tmp_path, monkeypatch):
    lm = make_lm(tiny_tokenizer)
    trainer, _ = train(lm, tiny_tokenizer, tmp_path)
    trainer.train()
    trainer.save_model(str(tmp_path / "ckpt"))
    monkeypatch.setattr(
        "emollm.modeling.base.load_base_model",
        lambda *a, **k: (build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer),
    )
    reasoner = EmotionReasoner.from_pretrained(str(tmp_path / "ckpt"), mode="score")
    assert list(reasoner.labels.labels) == LABELS and reasoner.strategy == "minimal"
    assert reasoner.predict(transcript="yay").label in LABELS


def test_build_adapters_rejects_bad_specs():
    with pytest.raises(ConfigError, match="unknown modality"):
        AdapterSpec(modality="smell")
    with pytest.raises(ConfigError, match="num_tokens must be >= 1"):
        AdapterSpec(num_tokens=0)
    with pytest.raises(ConfigError, match="share the key 'audio'"):
        build_adapters([AdapterSpec(), AdapterSpec()], 16)
    with pytest.raises(ConfigError, match="one after another"):
        build_adapters(
            [AdapterSpec(name="a"), AdapterSpec("video", "vision_frames"), AdapterSpec(name="b")], 16
        )
    with pytest.raises(ConfigError, match="letters, digits"):
        AdapterSpec(name="prosody-frames")
    with pytest.raises(ConfigError, match="unknown"):
        build_adapters([AdapterSpec(projector="transformer")], 16)
    with pytest.raises(ConfigError, match="unknown"):
        build_adapters([AdapterSpec(encoder="emotion2vec")], 16)


# -- several adapters at one placeholder --------------------------------------------------------------------


def two_adapter_lm(tokenizer, seed=0):
    """Functionals-like (one vector, K1=2) and frames-like (K2=3) adapters, both at <|audio|>."""
    from emollm.modeling.projectors import build_projector

    torch.manual_seed(seed)
    specs = [
        AdapterSpec("audio", "prosody_frames", "linear", 2, name="first"),
        AdapterSpec("audio", "prosody_frames", "mlp", 3, name="second"),
    ]
    projectors = torch.nn.ModuleDict(
        {s.key: build_projector(s.projector, FRAME_DIM, 16, num_tokens=s.num_tokens) for s in specs}
    )
    model = build_tiny_llama(len(tokenizer), seed=seed)
    return EmotionLM(model, tokenizer, name="tiny", projectors=projectors, adapters=specs)


def test_two_adapters_fill_one_placeholder_with_k1_plus_k2_vectors_in_order(tiny_tokenizer):
    lm = two_adapter_lm(tiny_tokenizer)
    assert lm.adapter_keys == ("first", "second") and lm.modalities == ("audio",)
    assert lm.num_tokens == {"audio": 5} and lm.placeholders == {"audio": "<|audio|>"}
    prompt = EmotionReasoner(lm, labels=LABELS, strategy="minimal").build_prompt("yay", for_scoring=True)
    (ids,) = lm.tokenize([prompt])
    assert ids.count(PSEUDO_TOKEN_ID) == 5 and prompt.count("<|audio|>") == 1
    first, second = frames(2)["u0"], frames(2, seed=1)["u1"]
    (vectors,) = lm.pseudo_vectors([ids], [{"first": first, "second": second}])
    ones = torch.ones(1, len(first), dtype=torch.bool), torch.ones(1, len(second), dtype=torch.bool)
    with torch.no_grad():
        expected_first = lm.projectors["first"](first[None], ones[0])[0]
        expected_second = lm.projectors["second"](second[None], ones[1])[0]
    assert vectors.shape == (5, 16)
    torch.testing.assert_close(vectors[:2], expected_first)
    torch.testing.assert_close(vectors[2:], expected_second)
    with pytest.raises(ConfigError, match="no 'second' frames"):
        lm.pseudo_vectors([ids], [{"first": first}])


def test_two_adapters_train_save_and_restore(tiny_tokenizer, tmp_path, monkeypatch):
    lm = two_adapter_lm(tiny_tokenizer)
    reasoner = EmotionReasoner(lm, labels=LABELS, strategy="minimal", mode="score")
    features = {"first": frames(), "second": frames(seed=1)}
    examples = build_examples(utterances(), reasoner.prompts, frames=features)
    assert {"first_frames", "second_frames"} <= set(examples[0]) and "audio_frames" not in examples[0]
    model = prepare_for_training(lm.model, LoraConfig(**LORA))
    collator = MultimodalCollator(tiny_tokenizer, lm.num_tokens, frame_keys=lm.adapter_keys)
    batch = collator(examples[:2])
    assert (batch["input_ids"] == PSEUDO_TOKEN_ID).sum(1).tolist() == [5, 5]
    assert batch["first_frames"].shape[:2] == (2, 6) and batch["second_frames"].shape[:2] == (2, 6)
    trainer = EmotionSFTTrainer(
        model=model,
        args=sft_args(tmp_path),
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        processing_class=tiny_tokenizer,
        base_model="tiny",
        adapters=lm.adapters,
        reasoner_settings={"labels": LABELS, "strategy": "minimal"},
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(".first." in n for n in moved) and any(".second." in n for n in moved)
    assert moved == {n for n in before if "lora_" in n or "emollm_projectors" in n}

    trainer.save_model(str(tmp_path / "ckpt"))
    monkeypatch.setattr(
        "emollm.modeling.base.load_base_model",
        lambda name, **kw: (build_tiny_llama(len(tiny_tokenizer), seed=0), tiny_tokenizer),
    )
    restored = load_checkpoint(tmp_path / "ckpt")
    assert restored.adapter_keys == ("first", "second") and restored.num_tokens == {"audio": 5}
    for key in ("first", "second"):
        for name, weight in restored.projectors[key].state_dict().items():
            torch.testing.assert_close(weight, lm.projectors[key].state_dict()[name])


# -- class weights -------------------------------------------------------------------------------------------


def test_class_weights_average_one_over_the_examples_and_favour_rare_classes():
    from emollm.training.sft import class_weights

    labels = ["a"] * 6 + ["b"] * 3 + ["c"]
    for scheme in ("balanced", "sqrt"):
        weights = class_weights(labels, scheme)
        assert sum(weights[y] for y in labels) / len(labels) == pytest.approx(1.0)
        assert weights["a"] < weights["b"] < weights["c"]
    assert class_weights(labels, "balanced")["c"] / class_weights(labels, "balanced")["a"] == pytest.approx(6)
    assert class_weights(labels, "sqrt")["c"] / class_weights(labels, "sqrt")["a"] == pytest.approx(6**0.5)
    assert set(class_weights(labels, "none").values()) == {1.0}
    with pytest.raises(ConfigError, match="balanced, sqrt"):
        class_weights(labels, "inverse")


def trainer_and_examples(tokenizer, tmp_path):
    """A trainer on the tiny model with LoRA, its model in train mode, and four labelled examples."""
    lm = make_lm(tokenizer)
    trainer, model = train(lm, tokenizer, tmp_path)
    model.train()
    examples = build_examples(
        utterances(4), EmotionReasoner(lm, labels=LABELS, strategy="minimal").prompts, frames=None
    )
    return trainer, model, examples


def test_weighted_loss_equals_trl_loss_at_weight_one_and_weights_each_example(tiny_tokenizer, tmp_path):
    trainer, model, examples = trainer_and_examples(tiny_tokenizer, tmp_path)
    collator = MultimodalCollator(tiny_tokenizer, {}, loss_weights={"happy": 1.0, "sad": 1.0})
    batch = collator(examples)
    assert batch["loss_weights"].tolist() == [1.0, 1.0, 1.0, 1.0]
    plain = {k: v for k, v in batch.items() if k != "loss_weights"}
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, batch), trainer.compute_loss(model, plain))
        # weight 0 on "sad" (odd rows): the loss is the happy rows' token loss over all label tokens
        happy_only = collator.__class__(tiny_tokenizer, {}, loss_weights={"happy": 1.0, "sad": 0.0})
        zeroed = trainer.compute_loss(model, happy_only(examples))
        happy_rows = {k: v[::2] for k, v in plain.items()}
        tokens_all = (plain["labels"] != -100).sum()
        tokens_happy = (happy_rows["labels"] != -100).sum()
        expected = trainer.compute_loss(model, happy_rows) * tokens_happy / tokens_all
        torch.testing.assert_close(zeroed, expected)
    with pytest.raises(ConfigError, match="no loss weight for label"):
        MultimodalCollator(tiny_tokenizer, {}, loss_weights={"happy": 1.0})(examples)


def test_label_positions_only_give_the_fused_heads_log_probs_and_gradients(tiny_tokenizer, tmp_path):
    from emollm.modeling.adapters import build_inputs_embeds
    from emollm.training.sft import label_log_probs

    _, model, examples = trainer_and_examples(tiny_tokenizer, tmp_path)
    batch = MultimodalCollator(tiny_tokenizer, {})(examples)
    inputs = {
        "inputs_embeds": build_inputs_embeds(model, batch["input_ids"], None, batch["text_mask"]),
        "attention_mask": batch["attention_mask"],
        "labels": batch["labels"],
    }
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def scored(fused: bool):
        model.zero_grad()
        if fused:
            out = model(**inputs, use_cache=False, fused_lm_head=True)
            log_probs, mask = out.log_probs, out.label_mask
        else:
            log_probs, mask = label_log_probs(model, inputs)
        log_probs.sum().backward(retain_graph=True)
        return log_probs.detach(), mask, {n: p.grad.clone() for n, p in lora.items()}

    fused, compact = scored(True), scored(False)
    assert compact[1].sum() == (batch["labels"] != -100).sum()  # the label tokens, no others
    torch.testing.assert_close(compact[1], fused[1])
    torch.testing.assert_close(compact[0], fused[0])
    assert (compact[0][~compact[1]] == 0).all() and (compact[0][compact[1]] < 0).all()
    for name in lora:
        torch.testing.assert_close(compact[2][name], fused[2][name], msg=name)
    assert any(g.abs().sum() > 0 for g in compact[2].values())  # the LoRA weights get a gradient
    # under bf16 autocast (the CPU recipe's) the decoder runs in bf16, the head in float32
    with torch.no_grad():
        low, _ = label_log_probs(model, inputs, torch.autocast("cpu", dtype=torch.bfloat16))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, fused[0], atol=0.1, rtol=0.05)
    assert not torch.equal(low, fused[0])  # bf16 really ran
