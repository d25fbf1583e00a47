"""GRPO: reward functions on hand-written completions, and the trainer on a tiny random Llama."""

import pytest
import torch
from conftest import build_tiny_llama
from datasets import Dataset
from peft import LoraConfig
from test_sft import FRAME_DIM, LORA, frames, make_lm, utterances
from trl import GRPOConfig, GRPOTrainer

from emollm.api import EmotionReasoner
from emollm.data import Utterance
from emollm.errors import ConfigError
from emollm.modeling.checkpoint import PROJECTORS_NAME
from emollm.modeling.emotion_lm import load_checkpoint
from emollm.modeling.injection import PSEUDO_TOKEN_ID
from emollm.training import prepare_for_training
from emollm.training.grpo import EmotionGRPOTrainer, build_grpo_examples
from emollm.training.rewards import (
    cue_reward,
    format_reward,
    get_reward_funcs,
    label_reward,
    length_penalty,
    soft_label_reward,
)

# -- rewards ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>Loud and fast.</think><answer>angry</answer>", 1.0),
        ("  <THINK>a</THINK>\n<Answer>sad</Answer>\n", 1.0),  # case and surrounding whitespace are fine
        ("<think></think><answer>sad</answer>", 1.0),  # an empty rationale still has the format
        ("<answer>sad</answer>", 0.0),  # no think block
        ("<answer>sad</answer><think>a</think>", 0.0),  # wrong order
        ("<think>a</think><answer>sad</answer><answer>happy</answer>", 0.0),  # two answers
        ("<think>a</think><think>b</think><answer>sad</answer>", 0.0),  # two thinks
        ("<think>a <answer>x</answer></think><answer>sad</answer>", 0.0),  # tags nested in the rationale
        ("I think: <think>a</think><answer>sad</answer>", 0.0),  # text before
        ("<think>a</think><answer>sad</answer> because", 0.0),  # text after
        ("<think>a</think><answer>  </answer>", 0.0),  # empty answer
        ("<think>a</think><answer>sad", 0.0),  # cut off
        ([{"role": "assistant", "content": "<think>a</think><answer>sad</answer>"}], 1.0),  # conversational
    ],
)
def test_format_reward(completion, expected):
    assert format_reward([completion]) == [expected]


def test_label_reward_tolerates_case_inflection_and_synonyms():
    completions = [
        "<think>.</think><answer>ANGRY</answer>",
        "<think>.</think><answer>anger</answer>",
        "<think>.</think><answer>Joy</answer>",  # joy is ravdess8's happy
        "The speaker sounds furious.",  # no tags: the first label named
        "<think>Not happy at all.</think><answer>sad</answer>",  # the answer counts, not the rationale
        "<think>.</think><answer>not happy</answer>",  # a negated label names nothing
        "<think>.</think><answer>calm</answer>",
        "",
    ]
    golds = ["angry", "angry", "happy", "angry", "sad", "happy", "neutral", "sad"]
    expected = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert label_reward(completions, label=golds, label_set=["ravdess8"] * 8) == expected
    # the label set matters: "calm" is not in meld7, and joy == happy only through the concept
    assert label_reward(["<answer>calm</answer>"], label=["neutral"], label_set=["meld7"]) == [0.0]
    assert label_reward(["<answer>happiness</answer>"], label=["joy"], label_set=["meld7"]) == [1.0]
    assert label_reward(["<answer>happiness</answer>"], label=["joy"]) == [1.0]  # no set: concepts


def test_soft_label_reward_pays_the_annotators_share():
    votes = {"angry": 0.6, "frustrated": 0.0, "sad": 0.4}
    completions = ["<answer>angry</answer>", "<answer>sadness</answer>", "<answer>happy</answer>", "?"]
    rewards = soft_label_reward(completions, label=["angry"] * 4, label_distribution=[votes] * 4)
    assert rewards == pytest.approx([0.6, 0.4, 0.0, 0.0])
    # rows without votes fall back to the hard label
    assert soft_label_reward(["<answer>sad</answer>", "<answer>sad</answer>"], label=["sad", "happy"]) == [
        1.0,
        0.0,
    ]
    with pytest.raises(ConfigError, match="label_distribution or a label"):
        soft_label_reward(["<answer>sad</answer>"])


def test_length_penalty_starts_past_max_words():
    think = lambda n: "<think>" + "w " * n + "</think><answer>sad</answer>"  # noqa: E731 (n + 1 words)
    assert length_penalty([think(9), think(10), think(14), think(40)], max_words=10) == [
        0.0,
        -0.1,
        -0.5,
        -1.0,
    ]
    padded_answer = "<think>a</think><answer>" + "sad " * 30 + "</answer>"
    assert length_penalty([padded_answer], max_words=10) == [-1.0]  # padding cannot hide in the answer
    with pytest.raises(ConfigError, match="max_words"):
        length_penalty(["a"], max_words=0)


def test_label_reward_ignores_a_cut_off_rationale_and_keeps_merges():
    cut_off = "<think>The voice sounds angry because"
    assert label_reward([cut_off, "<think>x</think> angry"], label=["angry", "angry"]) == [0.0, 1.0]
    # iemocap4 folds excited into happy: by name, the set keeps its merges
    assert label_reward(["<answer>excited</answer>"], label=["happy"], label_set=["iemocap4"]) == [1.0]
    # one list of labels for all rows (a direct call), not one set name per row
    two = ["<answer>sad</answer>", "<answer>sad</answer>"]
    assert label_reward(two, label=["sad", "happy"], label_set=["happy", "sad"]) == [1.0, 0.0]


def test_unknown_reward_name_lists_the_valid_ones():
    valid = "valid names: format, label, soft_label, length, cue"
    with pytest.raises(ConfigError, match=rf"unknown reward\(s\) \['acuracy'\]; {valid}$"):
        get_reward_funcs(["format", "acuracy"])
    with pytest.raises(ConfigError, match=rf"unknown reward\(s\) \['cues'\]; {valid}$"):
        get_reward_funcs(["cues"], {"cue": {"min_claims": 3}})
    with pytest.raises(ConfigError, match="named twice"):
        get_reward_funcs(["label", "label"])
    with pytest.raises(ConfigError, match="at least one"):
        get_reward_funcs([])


def test_reward_settings_are_bound_by_name_and_logged_under_the_function_name():
    from trl.trainer.utils import get_callable_name

    fmt, cue = get_reward_funcs(["format", "cue"], {"cue": {"min_claims": 3, "false_penalty": 0.5}})
    assert fmt is format_reward and cue.func is cue_reward
    assert cue.keywords == {"min_claims": 3, "false_penalty": 0.5}
    assert get_callable_name(cue) == "cue_reward"  # TRL logs rewards/cue_reward/mean
    assert get_reward_funcs(["cue"], {"cue": {}}) == [cue_reward]


# -- the trainer -----------------------------------------------------------------------------------------


def n_letters(completions, **kwargs):
    """A test reward with spread on a random model: how many letters the completion has."""
    return [float(sum(c.isalpha() for c in text)) for text in completions]


def grpo_args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        learning_rate=5e-2,
        beta=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )
    defaults.update(kw)
    return GRPOConfig(**defaults)


def grpo_trainer(
    lm,
    tokenizer,
    tmp_path,
    *,
    reward_funcs=(n_letters,),
    cls=EmotionGRPOTrainer,
    projector_lr=None,
    measured=None,
    **kw,
):
    reasoner = EmotionReasoner(lm, labels=["happy", "sad"], strategy="acoustic", mode="generate")
    features = {"audio": frames()} if lm.modalities else None
    rows = build_grpo_examples(utterances(), reasoner.prompts, frames=features, measured=measured)
    model = prepare_for_training(lm.model, LoraConfig(**LORA))
    extra = dict(base_model="tiny", adapters=lm.adapters, reasoner_settings={"labels": ["happy", "sad"]})
    extra["projector_learning_rate"] = projector_lr
    return cls(
        model=model,
        reward_funcs=list(reward_funcs),
        args=grpo_args(tmp_path, **kw),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        **(extra if cls is EmotionGRPOTrainer else {}),
    )


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def moved(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("projector", [None, "mlp"], ids=["text", "tokens"])
def test_one_grpo_step_moves_lora_and_projector_only(tiny_tokenizer, tmp_path, projector):
    lm = make_lm(tiny_tokenizer, projector=projector)
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path)
    before = snapshot(trainer.model)
    trainer.train()
    changed = moved(before, trainer.model)
    assert any("lora_B" in n for n in changed)
    assert all("lora_" in n or "emollm_projectors" in n for n in changed), changed
    if projector:
        assert any("emollm_projectors" in n for n in changed)  # the pseudo-tokens were in the graph
    logged = trainer.state.log_history[0]
    assert "rewards/n_letters/mean" in logged and 0.0 <= logged["parse_failure_rate"] <= 1.0


@pytest.fixture(scope="module")
def measured():
    """utterance id -> prosody record of synthesised speech (the cue reward's column), for utterances()."""
    from emollm.prosody.measure import measure
    from emollm.prosody.normalize import utterance_relative
    from emollm.prosody.synth import synthesize
    from emollm.training.evidence import prosody_record

    clips = [measure(*synthesize(t, pitch=p)) for t, p in (("yay, great", 1.5), ("oh no", 0.8))]
    records = [prosody_record(f, utterance_relative(f), None) for f in clips]
    return {f"u{i}": records[i % 2] for i in range(8)}


@pytest.mark.parametrize("projector", [None, "mlp"], ids=["text", "tokens"])
def test_one_grpo_step_with_the_cue_reward_moves_lora_and_projector_only(
    tiny_tokenizer, tmp_path, projector, measured
):
    """The cue reward runs in the step, each completion with its own row's measures (a random model says
    nothing verifiable, so n_letters gives the spread that makes the step move)."""
    seen = []

    def rows_seen(completions, id, prosody, **kwargs):  # noqa: A002 (TRL passes the dataset's columns)
        seen.extend(zip(id, prosody, strict=True))
        return [0.0] * len(completions)

    cue = get_reward_funcs(["cue"], {"cue": {"min_claims": 1}})[0]
    lm = make_lm(tiny_tokenizer, projector=projector)
    trainer = grpo_trainer(
        lm, tiny_tokenizer, tmp_path, reward_funcs=(n_letters, rows_seen, cue), measured=measured
    )
    before = snapshot(trainer.model)
    trainer.train()
    changed = moved(before, trainer.model)
    assert any("lora_B" in n for n in changed)
    assert all("lora_" in n or "emollm_projectors" in n for n in changed), changed
    assert seen and all(record == measured[row] for row, record in seen)
    logged = trainer.state.log_history[0]
    assert 0.0 <= logged["rewards/cue_reward/mean"] <= 1.0


def test_rows_carry_their_measures_for_the_cue_reward(tiny_tokenizer, measured):
    lm = make_lm(tiny_tokenizer)
    reasoner = EmotionReasoner(lm, labels=["happy", "sad"], strategy="acoustic", mode="generate")
    rows = build_grpo_examples(utterances(3), reasoner.prompts, measured={"u0": measured["u0"]})
    assert set(rows[0]) == {"id", "prompt", "label", "label_set", "prosody"}
    assert rows[0]["prosody"] == measured["u0"] and rows[1]["prosody"] is None  # no measures: cue reward 0
    assert Dataset.from_list(rows)[0]["prosody"] == measured["u0"]  # a string: Arrow keeps it as written
    completion = "<think>The pitch is high.</think><answer>happy</answer>"
    assert (
        cue_reward([completion] * 2, prosody=[rows[0]["prosody"], rows[1]["prosody"]], min_claims=1)[1] == 0
    )


def test_a_projector_rate_of_zero_keeps_the_projector_while_lora_moves(tiny_tokenizer, tmp_path):
    trainer = grpo_trainer(
        make_lm(tiny_tokenizer, projector="mlp"), tiny_tokenizer, tmp_path, projector_lr=0.0
    )
    before = snapshot(trainer.model)
    trainer.train()
    changed = moved(before, trainer.model)
    assert any("lora_B" in n for n in changed) and not any("emollm_projectors" in n for n in changed)


def test_rows_carry_prompt_label_set_and_frames(tiny_tokenizer):
    lm = make_lm(tiny_tokenizer, projector="linear")
    reasoner = EmotionReasoner(lm, labels=["happy", "sad"], strategy="acoustic", mode="generate")
    rows = build_grpo_examples(utterances(2), reasoner.prompts, frames={"audio": frames(2)})
    assert set(rows[0]) == {"id", "prompt", "label", "label_set", "audio_frames"}
    assert "<|audio|>" in rows[0]["prompt"] and rows[1]["label"] == "sad"
    assert rows[0]["label_set"] == ["happy", "sad"] and len(rows[1]["audio_frames"]) == 6
    named = EmotionReasoner(lm, labels="iemocap4", strategy="acoustic", mode="generate")
    one = build_grpo_examples(utterances(1), named.prompts, frames={"audio": frames(1)})
    assert one[0]["label_set"] == "iemocap4"  # a registered set by name: the rewards keep its merges
    voted = utterances(2)
    voted[0].label_distribution = {"happy": 0.5, "sad": 0.5}
    rows = build_grpo_examples(voted, reasoner.prompts, frames={"audio": frames(2)})
    assert [r["label_distribution"] for r in rows] == [{"happy": 0.5, "sad": 0.5}, {"happy": 0.0, "sad": 1.0}]


def loss_inputs(tokenizer, seed=0, batch=4):
    """A hand-made GRPO batch: left-padded prompts, right-padded completions, random advantages."""
    g = torch.Generator().manual_seed(seed)
    prompts = [
        tokenizer(f"<|im_start|>user\nhow {'is ' * i}this?<|im_end|>\n")["input_ids"] for i in range(batch)
    ]
    width = max(map(len, prompts))
    prompt_ids = torch.full((batch, width), tokenizer.pad_token_id)
    prompt_mask = torch.zeros(batch, width, dtype=torch.long)
    for i, ids in enumerate(prompts):
        prompt_ids[i, width - len(ids) :], prompt_mask[i, width - len(ids) :] = torch.tensor(ids), 1
    completion_ids = torch.randint(0, 200, (batch, 6), generator=g)
    completion_mask = torch.ones(batch, 6, dtype=torch.long)
    completion_mask[0, 4:] = 0
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(batch, generator=g),
        "num_items_in_batch": completion_mask.sum(),
    }


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_without_audio_the_loss_and_gradients_equal_grpotrainer(tiny_tokenizer, tmp_path, beta):
    losses, grads = [], []
    for cls in (GRPOTrainer, EmotionGRPOTrainer):
        lm = make_lm(tiny_tokenizer)  # same seed: same weights
        trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path / cls.__name__, cls=cls, beta=beta)
        inputs = loss_inputs(tiny_tokenizer)
        if beta:
            with torch.no_grad():  # the reference log-probs, from the same (untrained) weights
                ref, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
                    trainer,
                    trainer.model,
                    torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
                    torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1),
                    6,
                )
            inputs["ref_per_token_logps"] = ref + 0.05  # a non-zero KL
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by train(); the loss reads it
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    assert losses[0] != 0
    torch.testing.assert_close(losses[1], losses[0])
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name])


def test_without_audio_greedy_generation_equals_grpotrainer(tiny_tokenizer, tmp_path):
    prompts = [
        tiny_tokenizer(f"<|im_start|>user\nsay {w}<|im_end|>\n")["input_ids"] for w in ("a", "bcd", "ef")
    ]
    outputs = []
    for cls in (GRPOTrainer, EmotionGRPOTrainer):
        lm = make_lm(tiny_tokenizer)
        trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path / cls.__name__, cls=cls)
        trainer.generation_config.do_sample = False
        outputs.append(trainer._generate_single_turn(prompts, None, {}, 1)[0])
    assert outputs[1] == outputs[0]
    assert all(len(c) >= 1 for c in outputs[0])


def test_audio_frames_condition_the_policy(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer, projector="mlp")
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path)
    prompt = tiny_tokenizer("<|im_start|>user\nhear: ")["input_ids"] + [PSEUDO_TOKEN_ID] * 3
    inputs = {
        "prompt_ids": torch.tensor([prompt, prompt]),
        "prompt_mask": torch.ones(2, len(prompt), dtype=torch.long),
        "completion_ids": torch.tensor([[5, 6, 7], [5, 6, 7]]),
        "completion_mask": torch.ones(2, 3, dtype=torch.long),
        "advantages": torch.tensor([1.0, 1.0]),
        "num_items_in_batch": torch.tensor(6),
        "audio_mask": torch.ones(2, 4, dtype=torch.bool),
    }
    g = torch.Generator().manual_seed(1)
    same = torch.randn(1, 4, FRAME_DIM, generator=g).repeat(2, 1, 1)
    other = torch.cat([same[:1], torch.randn(1, 4, FRAME_DIM, generator=g)])
    logps = []
    for audio in (same, other):
        trainer._frames = {"audio_frames": audio, "audio_mask": inputs["audio_mask"]}
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        with torch.no_grad():
            logps.append(trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 3)[0])
    assert torch.equal(logps[0][0], logps[0][1])  # same frames, same log-probs
    assert not torch.allclose(logps[1][0], logps[1][1])  # other frames, other log-probs
    trainer._frames = None
    with pytest.raises(RuntimeError, match="without their frames"):
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 3)
    inputs.update(audio_frames=other)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    trainer._compute_loss(trainer.model, inputs).backward()
    projector_grads = [p.grad for n, p in trainer.model.named_parameters() if "emollm_projectors" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in projector_grads)


def test_checkpoints_restore_the_trained_lora_and_projector(tiny_tokenizer, tmp_path, monkeypatch):
    lm = make_lm(tiny_tokenizer, projector="linear")
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    start = snapshot(trainer.model)
    trainer.train()
    assert (tmp_path / "out" / "checkpoint-2" / PROJECTORS_NAME).is_file()
    trainer.save_model(str(tmp_path / "final"))

    def fake_base(name, dtype=None, device=None, quantization_config=None):  # the same random weights
        return build_tiny_llama(len(tiny_tokenizer), seed=0), tiny_tokenizer

    monkeypatch.setattr("emollm.modeling.base.load_base_model", fake_base)
    restored = load_checkpoint(tmp_path / "final", trainable=True)  # e.g. GRPO continued from here
    trained = dict(trainer.model.named_parameters())
    names = [n for n in trained if "lora_" in n or "emollm_projectors" in n]
    assert any(not torch.equal(start[n], trained[n]) for n in names)
    compared = 0
    for name, param in restored.model.named_parameters():
        if name in names:
            torch.testing.assert_close(param, trained[name])
            assert param.requires_grad
            compared += 1
    assert compared == len(names)  # every LoRA and projector tensor was found under the same name


def test_each_row_meets_its_own_frames_through_buffering(tiny_tokenizer, tmp_path, monkeypatch):
    """Frames filled with their utterance's number must reach the model next to that utterance's prompt,
    in sampling and in the loss, through TRL's shuffling and splitting (2 steps per generation)."""
    import emollm.training.grpo as grpo

    lm = make_lm(tiny_tokenizer, projector="linear")
    reasoner = EmotionReasoner(lm, labels=["happy", "sad"], strategy="acoustic", mode="generate")
    utts = [Utterance(id=f"u{i}", transcript=f"number {i}", label="happy") for i in range(8)]
    feats = {"audio": {f"u{i}": torch.full((3 + i, FRAME_DIM), float(i)) for i in range(8)}}
    rows = build_grpo_examples(utts, reasoner.prompts, frames=feats)
    seen = []
    real = grpo.build_inputs_embeds

    def spy(model, input_ids, features, text_mask):
        frames_, mask = features["audio"]
        for ids, f, m in zip(input_ids, frames_, mask, strict=True):
            text = tiny_tokenizer.decode([t for t in ids.tolist() if t >= 0], skip_special_tokens=True)
            number = int(text.split("number ")[1][0])
            seen.append((number, f[m].unique().tolist(), int(m.sum())))
        return real(model, input_ids, features, text_mask)

    monkeypatch.setattr(grpo, "build_inputs_embeds", spy)
    args = grpo_args(
        tmp_path, max_steps=2, per_device_train_batch_size=4, num_generations=2, steps_per_generation=2
    )
    trainer = EmotionGRPOTrainer(
        model=prepare_for_training(lm.model, LoraConfig(**LORA)),
        reward_funcs=[n_letters],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny_tokenizer,
        base_model="tiny",
        adapters=lm.adapters,
    )
    trainer.train()
    assert len(seen) >= 16  # 8 rows sampled once, then 2 loss batches of 4
    for number, values, length in seen:
        assert values == [float(number)] and length == 3 + number


def test_sampling_stops_at_eos_like_grpotrainer(tiny_tokenizer, tmp_path):
    prompts = [tiny_tokenizer(f"<|im_start|>user\nsay {w}<|im_end|>\n")["input_ids"] for w in ("a", "bcd")]
    free = grpo_trainer(make_lm(tiny_tokenizer), tiny_tokenizer, tmp_path / "free", cls=GRPOTrainer)
    free.generation_config.do_sample = False
    eos = free._generate_single_turn(prompts, None, {}, 1)[0][0][2]  # make row 0's third token the EOS
    outputs = []
    for cls in (GRPOTrainer, EmotionGRPOTrainer):
        trainer = grpo_trainer(make_lm(tiny_tokenizer), tiny_tokenizer, tmp_path / cls.__name__, cls=cls)
        trainer.generation_config.do_sample = False
        trainer.generation_config.eos_token_id = eos
        trainer.eos_token_ids = [eos]
        outputs.append(trainer._generate_single_turn(prompts, None, {}, 1)[0])
    assert outputs[1] == outputs[0]
    assert len(outputs[0][0]) <= 3 and outputs[0][0][-1] == eos  # cut at (and keeping) the first EOS


def test_a_kl_term_with_pseudo_tokens_trains_and_is_logged(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer, projector="mlp")
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path, beta=0.1)
    trainer.train()
    assert "kl" in trainer.state.log_history[0]
