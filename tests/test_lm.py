from contextlib import contextmanager

import pytest
import torch

from emollm.errors import ConfigError
from emollm.modeling import generate, score_labels
from emollm.modeling.injection import PSEUDO_TOKEN_ID

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


def build_tiny_mistral(vocab_size: int, sliding_window: int = 6):
    """A tiny random Mistral whose sliding window is shorter than most prompts: the cache keeps only it."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(1)
    config = MistralConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        sliding_window=sliding_window,
    )
    return MistralForCausalLM(config).eval()


def test_sliding_window_model_equals_brute_force(tiny_tokenizer):
    model = build_tiny_mistral(len(tiny_tokenizer))
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


# --- Shared prefix ----------------------------------------------------------------------------------------

# Prompts as the shipped templates build them: fixed instructions first, then utterances of different
# lengths (whose first characters differ, so the common prefix is exactly INSTRUCTIONS). They end with the
# utterance, so that the short ones put the window of the sliding-window model across prefix and suffix.
INSTRUCTIONS = (
    "<|im_start|>system\nYou are an emotion classifier.<|im_end|>\n<|im_start|>user\n"
    "Classify the emotion of the utterance as one of: neutral, happy, sad, fearful.\nUtterance: "
)
UTTERANCES = ["ok", "I lost my keys again today, and the bus left without me", "yay!", "what was that?"]
SHARED_PROMPTS = [INSTRUCTIONS + u for u in UTTERANCES]


def sharpen(model, scale=10.0):
    """Scales the attention queries and keys: the tiny random models attend almost uniformly, so that a
    wrong position or mask changes their scores by less than the tolerance; sharpened, by ~1e-3 or more."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(scale)
            layer.self_attn.k_proj.weight.mul_(scale)
    return model


@pytest.fixture(scope="module")
def sharp_model(tiny_tokenizer):
    from conftest import build_tiny_llama

    return sharpen(build_tiny_llama(len(tiny_tokenizer)))


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@contextmanager
def prompt_passes(model):
    """Records ``(batch, new tokens)`` of every prompt pass (the calls with ``logits_to_keep=1``)."""
    calls = []

    def hook(module, args, kwargs):
        if kwargs.get("logits_to_keep") == 1:
            given = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
            calls.append(tuple(given.shape[:2]))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ["llama", "mistral-sliding"])
def test_shared_prefix_equals_no_sharing_and_brute_force(sharp_model, tiny_tokenizer, arch):
    model = sharp_model if arch == "llama" else sharpen(build_tiny_mistral(len(tiny_tokenizer)))
    alone = score_labels(model, tiny_tokenizer, SHARED_PROMPTS, LABELS, batch_size=3, share_prefix=False)
    for batch_size in (1, 3):  # 3: the suffixes are left-padded, so padding sits between prefix and suffix
        shared = score_labels(model, tiny_tokenizer, SHARED_PROMPTS, LABELS, batch_size=batch_size)
        torch.testing.assert_close(shared, alone, atol=1e-5, rtol=0)
    for i, prompt in enumerate(SHARED_PROMPTS):
        for j, label in enumerate(LABELS):
            expected = brute_force_logprob(model, tiny_tokenizer, prompt, label)
            assert abs(shared[i, j].item() - expected) < 1e-4, (arch, i, label)
    assert (shared[1:] - shared[0]).abs().amax(dim=1).min() > 1e-3  # the suffixes change the scores


def test_shared_prefix_is_run_once(sharp_model, tiny_tokenizer):
    prefix = len(ids_of(tiny_tokenizer, INSTRUCTIONS))
    suffixes = [len(ids_of(tiny_tokenizer, p)) - prefix for p in SHARED_PROMPTS]
    with prompt_passes(sharp_model) as calls:
        shared = score_labels(sharp_model, tiny_tokenizer, SHARED_PROMPTS, LABELS, batch_size=2)
    # The prefix once at batch 1, then each batch runs only its left-padded suffixes.
    assert calls == [(1, prefix), (2, max(suffixes[:2])), (2, max(suffixes[2:]))]
    with prompt_passes(sharp_model) as calls:
        alone = score_labels(
            sharp_model, tiny_tokenizer, SHARED_PROMPTS, LABELS, batch_size=2, share_prefix=False
        )
    assert calls == [(2, prefix + max(suffixes[:2])), (2, prefix + max(suffixes[2:]))]
    torch.testing.assert_close(shared, alone, atol=1e-5, rtol=0)


def test_prefix_is_not_shared_when_too_short_or_single_prompt(sharp_model, tiny_tokenizer):
    with prompt_passes(sharp_model) as calls:
        score_labels(sharp_model, tiny_tokenizer, ["ab x", "ab yy"], LABELS)  # 3 common tokens: too few
        score_labels(sharp_model, tiny_tokenizer, SHARED_PROMPTS[:1], LABELS)
    n = [len(ids_of(tiny_tokenizer, p)) for p in ("ab yy", SHARED_PROMPTS[0])]
    assert calls == [(2, n[0]), (1, n[1])]


def test_id_prompts_equal_string_prompts(sharp_model, tiny_tokenizer):
    as_text = score_labels(sharp_model, tiny_tokenizer, RAGGED_PROMPTS, RAGGED_LABELS, batch_size=3)
    ids = [ids_of(tiny_tokenizer, p) for p in RAGGED_PROMPTS]
    as_ids = score_labels(sharp_model, tiny_tokenizer, ids, RAGGED_LABELS, batch_size=3)
    mixed = score_labels(sharp_model, tiny_tokenizer, [ids[0], RAGGED_PROMPTS[1], ids[2]], RAGGED_LABELS)
    assert torch.allclose(as_ids, as_text, atol=1e-6) and torch.allclose(mixed, as_text, atol=1e-6)
    texts = generate(sharp_model, tiny_tokenizer, RAGGED_PROMPTS[:2], max_new_tokens=6)
    assert generate(sharp_model, tiny_tokenizer, ids[:2], max_new_tokens=6) == texts


# --- Pseudo-tokens ----------------------------------------------------------------------------------------

AUDIO_HEAD = "<|im_start|>user\nWhat emotion is in this audio? Audio: "
# (slots, text after them): different numbers of slots and of text tokens, so the batch is left-padded.
AUDIO_PROMPTS = [(3, "hi"), (3, " The speaker says: a much longer utterance here"), (2, " so-so")]


def audio_prompts(tokenizer, seed=0):
    """Id prompts with pseudo-token slots after a common head, and random vectors for the slots."""
    generator = torch.Generator().manual_seed(seed)
    prompts, vectors = [], []
    for k, text in AUDIO_PROMPTS:
        tail = ids_of(tokenizer, text + "<|im_end|>\n<|im_start|>assistant\n")
        prompts.append(ids_of(tokenizer, AUDIO_HEAD) + [PSEUDO_TOKEN_ID] * k + tail)
        vectors.append(torch.randn(k, 16, generator=generator))
    return prompts, vectors


@torch.no_grad()
def brute_force_embeds_logprob(model, ids, vectors, label_ids):
    """log p(label | prompt) from one full-sequence pass over hand-built embeddings (vectors at the slots)."""
    full = ids + label_ids
    embeds = model.get_input_embeddings().weight[[0 if t == PSEUDO_TOKEN_ID else t for t in full]].clone()
    embeds[[i for i, t in enumerate(full) if t == PSEUDO_TOKEN_ID]] = vectors
    logprobs = torch.log_softmax(model(inputs_embeds=embeds[None]).logits[0].float(), dim=-1)
    return sum(logprobs[len(ids) - 1 + t, token].item() for t, token in enumerate(label_ids))


@pytest.mark.parametrize("share_prefix", [True, False])
def test_pseudo_token_scores_equal_brute_force(sharp_model, tiny_tokenizer, share_prefix):
    prompts, vectors = audio_prompts(tiny_tokenizer)
    with prompt_passes(sharp_model) as calls:
        three = score_labels(
            sharp_model,
            tiny_tokenizer,
            prompts,
            LABELS,
            batch_size=3,
            pseudo_embeds=vectors,
            share_prefix=share_prefix,
        )
    head = len(ids_of(tiny_tokenizer, AUDIO_HEAD))  # the shared prefix stops at the first slot
    assert calls[0] == ((1, head) if share_prefix else (3, max(len(p) for p in prompts)))
    one = score_labels(sharp_model, tiny_tokenizer, prompts, LABELS, batch_size=1, pseudo_embeds=vectors)
    torch.testing.assert_close(three, one, atol=1e-5, rtol=0)
    for i, (ids, vecs) in enumerate(zip(prompts, vectors)):
        for j, label in enumerate(LABELS):
            expected = brute_force_embeds_logprob(sharp_model, ids, vecs, ids_of(tiny_tokenizer, label))
            assert abs(three[i, j].item() - expected) < 1e-4, (i, label)
    # The vectors are really used: other vectors give other scores.
    other = score_labels(
        sharp_model, tiny_tokenizer, prompts, LABELS, pseudo_embeds=audio_prompts(tiny_tokenizer, 1)[1]
    )
    assert (other - three).abs().amax(dim=1).min() > 1e-3


def test_slots_filled_with_token_embeddings_equal_text_prompt(sharp_model, tiny_tokenizer):
    """Slots holding the embeddings of the text they replace give the text's scores and completions."""
    prompts = ["<|im_start|>user\nhello there<|im_end|>\n", "<|im_start|>user\nhi<|im_end|>\n"]
    hidden = ids_of(tiny_tokenizer, "hello")
    with_slots = [ids_of(tiny_tokenizer, "<|im_start|>user\n") + [PSEUDO_TOKEN_ID] * len(hidden)]
    with_slots[0] += ids_of(tiny_tokenizer, " there<|im_end|>\n")
    with_slots.append(ids_of(tiny_tokenizer, prompts[1]))
    vectors = [sharp_model.get_input_embeddings().weight[hidden].detach(), None]
    expected = score_labels(sharp_model, tiny_tokenizer, prompts, LABELS)
    got = score_labels(sharp_model, tiny_tokenizer, with_slots, LABELS, pseudo_embeds=vectors)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    texts = generate(sharp_model, tiny_tokenizer, prompts, max_new_tokens=8)
    # generate from inputs_embeds returns only new tokens: nothing of the prompt leaks in, nothing is cut.
    assert generate(sharp_model, tiny_tokenizer, with_slots, max_new_tokens=8, pseudo_embeds=vectors) == texts


def test_generate_with_pseudo_embeds_batched_equals_one_by_one(sharp_model, tiny_tokenizer):
    prompts, vectors = audio_prompts(tiny_tokenizer, seed=3)
    batched = generate(
        sharp_model, tiny_tokenizer, prompts, max_new_tokens=8, batch_size=3, pseudo_embeds=vectors
    )
    single = [
        generate(sharp_model, tiny_tokenizer, [p], max_new_tokens=8, pseudo_embeds=[v])[0]
        for p, v in zip(prompts, vectors)
    ]
    assert batched == single
    assert all(len(c) > 0 for c in batched)


def test_wrong_number_of_pseudo_vectors_is_refused(sharp_model, tiny_tokenizer):
    prompts, vectors = audio_prompts(tiny_tokenizer)
    short = [vectors[0][:2], vectors[1], vectors[2]]
    with pytest.raises(ConfigError, match="row 0 has 3 pseudo-token slots but 2 projector vectors"):
        score_labels(sharp_model, tiny_tokenizer, prompts, LABELS, pseudo_embeds=short)
    with pytest.raises(ConfigError, match="row 0 has 3 pseudo-token slots but 2 projector vectors"):
        score_labels(sharp_model, tiny_tokenizer, prompts, LABELS, pseudo_embeds=short, share_prefix=False)
    with pytest.raises(ConfigError, match="has 3 pseudo-token slots but 0 projector vectors"):
        score_labels(sharp_model, tiny_tokenizer, prompts, LABELS)  # slots but no vectors
    with pytest.raises(ConfigError, match="has 0 pseudo-token slots but 3 projector vectors"):
        score_labels(sharp_model, tiny_tokenizer, ["a text prompt"], LABELS, pseudo_embeds=vectors[:1])
    with pytest.raises(ConfigError, match="pseudo_embeds has 2 entries but there are 3 prompts"):
        score_labels(sharp_model, tiny_tokenizer, prompts, LABELS, pseudo_embeds=vectors[:2])
    with pytest.raises(ConfigError, match="row 0 has 3 pseudo-token slots but 2 projector vectors"):
        generate(sharp_model, tiny_tokenizer, prompts, max_new_tokens=2, pseudo_embeds=short)
