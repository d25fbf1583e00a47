import torch

from emollm.modeling import generate, score_labels

LABELS = ["neutral", "happy", "sad", "fearful"]  # 7, 5, 3 and 7 byte tokens: different lengths


def brute_force_logprob(model, tokenizer, prompt, label):
    """log p(label | prompt), one label at a time, token by token, with no batching or padding."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    total = 0.0
    for token in tokenizer(label, add_special_tokens=False)["input_ids"]:
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        total += torch.log_softmax(logits, -1)[token].item()
        ids = ids + [token]
    return total


def test_score_equals_brute_force(tiny_model, tiny_tokenizer):
    prompts = [
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "short",
        "a much longer prompt here",
    ]
    scores = score_labels(tiny_model, tiny_tokenizer, prompts, LABELS, batch_size=2)
    assert scores.shape == (3, 4)
    for i, prompt in enumerate(prompts):
        for j, label in enumerate(LABELS):
            expected = brute_force_logprob(tiny_model, tiny_tokenizer, prompt, label)
            assert abs(scores[i, j].item() - expected) < 1e-4


def test_length_normalised_score_is_mean_token_logprob(tiny_model, tiny_tokenizer):
    summed = score_labels(tiny_model, tiny_tokenizer, ["x"], LABELS)
    mean = score_labels(tiny_model, tiny_tokenizer, ["x"], LABELS, length_normalize=True)
    lengths = torch.tensor([len(tiny_tokenizer(label)["input_ids"]) for label in LABELS], dtype=torch.float)
    assert torch.allclose(mean[0], summed[0] / lengths, atol=1e-5)


def test_batched_generation_equals_one_by_one(tiny_model, tiny_tokenizer):
    prompts = ["a", "a longer prompt", "mid length"]
    batched = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=8, batch_size=3)
    single = [generate(tiny_model, tiny_tokenizer, [p], max_new_tokens=8)[0] for p in prompts]
    assert batched == single
    assert all(len(c) > 0 for c in batched)


def test_empty_prompt_is_refused(tiny_model, tiny_tokenizer):
    import pytest

    from emollm.errors import ConfigError

    with pytest.raises(ConfigError, match="non-empty prompts"):
        score_labels(tiny_model, tiny_tokenizer, [""], LABELS)


# Prompts of very different lengths (1, 26 and ~400 byte tokens) and labels of 1, 3 and 7 byte tokens.
RAGGED_PROMPTS = [
    "x",
    "<|im_start|>assistant\nhi ",
    "<|im_start|>user\n" + "a long rambling utterance, " * 14 + "<|im_end|>\n<|im_start|>assistant\n",
]
RAGGED_LABELS = ["a", "sad", "fearful"]


def test_batched_scores_equal_one_by_one_and_brute_force(tiny_model, tiny_tokenizer):
    lengths = [len(tiny_tokenizer(p, add_special_tokens=False)["input_ids"]) for p in RAGGED_PROMPTS]
    assert lengths[0] == 1 and lengths[2] > 300  # the batch really mixes very different lengths
    one = score_labels(tiny_model, tiny_tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, batch_size=1)
    three = score_labels(tiny_model, tiny_tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, batch_size=3)
    assert three.shape == (3, 3)
    assert torch.allclose(one, three, atol=1e-4)
    for i, prompt in enumerate(RAGGED_PROMPTS):
        for j, label in enumerate(RAGGED_LABELS):
            expected = brute_force_logprob(tiny_model, tiny_tokenizer, prompt, label)
            assert abs(three[i, j].item() - expected) < 1e-4, (prompt[:20], label)
    # Scores differ between prompts and labels: a bug that ignored either could not pass the checks above.
    assert three.std(dim=0).min() > 1e-3 and three.std(dim=1).min() > 1e-3


def test_length_normalised_scores_equal_brute_force_mean(tiny_model, tiny_tokenizer):
    scores = score_labels(
        tiny_model, tiny_tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, length_normalize=True, batch_size=3
    )
    for i, prompt in enumerate(RAGGED_PROMPTS):
        for j, label in enumerate(RAGGED_LABELS):
            n_tokens = len(tiny_tokenizer(label, add_special_tokens=False)["input_ids"])
            expected = brute_force_logprob(tiny_model, tiny_tokenizer, prompt, label) / n_tokens
            assert abs(scores[i, j].item() - expected) < 1e-4, (prompt[:20], label)


def test_single_token_labels_equal_brute_force(tiny_model, tiny_tokenizer):
    labels = ["a", "b", "z"]  # no label pass at all: everything comes from the prompt pass
    scores = score_labels(tiny_model, tiny_tokenizer, RAGGED_PROMPTS, labels, batch_size=2)
    for i, prompt in enumerate(RAGGED_PROMPTS):
        for j, label in enumerate(labels):
            expected = brute_force_logprob(tiny_model, tiny_tokenizer, prompt, label)
            assert abs(scores[i, j].item() - expected) < 1e-4


def test_tokenizer_without_pad_token(tiny_model):
    from conftest import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    scores = score_labels(tiny_model, tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, batch_size=3)
    for i, prompt in enumerate(RAGGED_PROMPTS):
        for j, label in enumerate(RAGGED_LABELS):
            expected = brute_force_logprob(tiny_model, tokenizer, prompt, label)
            assert abs(scores[i, j].item() - expected) < 1e-4


def test_sliding_window_model_equals_brute_force(tiny_tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(1)
    config = MistralConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        sliding_window=6,  # shorter than most prompts: the cache keeps only the window
    )
    model = MistralForCausalLM(config).eval()
    scores = score_labels(model, tiny_tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, batch_size=3)
    for i, prompt in enumerate(RAGGED_PROMPTS):
        for j, label in enumerate(RAGGED_LABELS):
            expected = brute_force_logprob(model, tiny_tokenizer, prompt, label)
            assert abs(scores[i, j].item() - expected) < 1e-4, (prompt[:20], label)


def test_bad_batch_size_is_refused(tiny_model, tiny_tokenizer):
    import pytest

    from emollm.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        score_labels(tiny_model, tiny_tokenizer, ["x"], LABELS, batch_size=0)


def test_min_new_tokens_suppresses_early_stop(tiny_model, tiny_tokenizer, monkeypatch):
    new_tokens = []
    original = tiny_model.generate

    def spy(**kwargs):
        out = original(**kwargs)
        new_tokens.append(out[0, kwargs["input_ids"].shape[1] :].tolist())
        return out

    monkeypatch.setattr(tiny_model, "generate", spy)
    generate(tiny_model, tiny_tokenizer, ["a longer prompt"], max_new_tokens=6)
    greedy = new_tokens.pop()
    # Make a greedy token the EOS: plain generation now stops early, min_new_tokens must not.
    stop = greedy[2]
    monkeypatch.setattr(tiny_model.generation_config, "eos_token_id", stop)
    generate(tiny_model, tiny_tokenizer, ["a longer prompt"], max_new_tokens=6)
    assert len(new_tokens.pop()) == greedy.index(stop) + 1 < 6
    generate(tiny_model, tiny_tokenizer, ["a longer prompt"], max_new_tokens=6, min_new_tokens=6)
    forced = new_tokens.pop()
    assert len(forced) == 6 and stop not in forced
