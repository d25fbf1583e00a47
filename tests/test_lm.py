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
