"""Pseudo-token injection: K projector vectors at the placeholder, and nothing else changed."""

import pytest
import torch
from conftest import build_tiny_llama

from emollm.api import EmotionReasoner
from emollm.errors import ConfigError
from emollm.modeling import EmotionLM
from emollm.modeling.adapters import AdapterSpec, build_inputs_embeds, get_projectors
from emollm.modeling.injection import PSEUDO_TOKEN_ID, embed_with_pseudo_tokens, tokenize_with_placeholders
from emollm.modeling.projectors import build_projector

K = 4
DIM = 5


@pytest.fixture
def lm(tiny_tokenizer):
    model = build_tiny_llama(len(tiny_tokenizer))
    torch.manual_seed(1)
    projectors = torch.nn.ModuleDict({"audio": build_projector("mlp", DIM, 16, num_tokens=K)})
    return EmotionLM(model, tiny_tokenizer, name="tiny", projectors=projectors, adapters=[AdapterSpec()])


def test_placeholder_becomes_exactly_k_slots(lm):
    prompt = "Utterance: hi\nAudio: <|audio|>\nEmotion:"
    (ids,) = lm.tokenize([prompt])
    slots = [i for i, t in enumerate(ids) if t == PSEUDO_TOKEN_ID]
    before = lm.tokenizer("Utterance: hi\nAudio: ", add_special_tokens=False)["input_ids"]
    after = lm.tokenizer("\nEmotion:", add_special_tokens=False)["input_ids"]
    assert slots == list(range(len(before), len(before) + K))
    assert ids == before + [PSEUDO_TOKEN_ID] * K + after


def test_logits_equal_a_manual_inputs_embeds_computation(lm):
    prompts = ["a <|audio|>\nsad or happy?", "a much longer prompt here <|audio|>\nwhich?"]
    feats = [torch.randn(7, DIM), torch.randn(3, DIM)]
    ids = lm.tokenize(prompts)
    vectors = lm.pseudo_vectors(ids, [{"audio": f} for f in feats])
    assert [v.shape for v in vectors] == [(K, 16), (K, 16)]

    # Right-padded batch through build_inputs_embeds (the training path).
    width = max(map(len, ids))
    input_ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.bool)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    frames = torch.zeros(2, 7, DIM)
    frames[0], frames[1, :3] = feats[0], feats[1]
    frame_mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    embeds = build_inputs_embeds(lm.model, input_ids, {"audio": (frames, frame_mask)}, mask)

    table = lm.model.get_input_embeddings().weight
    for i, row in enumerate(ids):
        slots = [j for j, t in enumerate(row) if t == PSEUDO_TOKEN_ID]
        torch.testing.assert_close(embeds[i, slots], vectors[i])  # exactly the K vectors, in order
        text = [j for j, t in enumerate(row) if t != PSEUDO_TOKEN_ID]
        torch.testing.assert_close(embeds[i, text], table[torch.tensor([row[j] for j in text])])

        # The model on the batch equals the model on a hand-built single sequence.
        manual = table[torch.tensor([max(t, 0) for t in row])].clone()
        manual[slots] = vectors[i]
        with torch.no_grad():
            alone = lm.model(inputs_embeds=manual[None]).logits[0]
            batched = lm.model(inputs_embeds=embeds, attention_mask=mask.long()).logits[i, : len(row)]
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_gradients_reach_the_projector_and_not_the_embedding_rows_of_slots(lm):
    (ids,) = lm.tokenize(["x <|audio|>\ny"])
    input_ids = torch.tensor([ids])
    embeds = build_inputs_embeds(
        lm.model, input_ids, {"audio": (torch.randn(1, 6, DIM), torch.ones(1, 6, dtype=torch.bool))},
        torch.ones_like(input_ids, dtype=torch.bool),
    )  # fmt: skip
    embeds.sum().backward()
    projector = get_projectors(lm.model)["audio"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projector.parameters())


def test_score_and_generate_use_the_audio(lm):
    reasoner = EmotionReasoner(lm, labels=["sad", "happy"], strategy="minimal", mode="both", max_new_tokens=4)
    prompt = reasoner.build_prompt("I see.", for_scoring=True)
    assert prompt.count("<|audio|>") == 1
    one, two = torch.randn(6, DIM), torch.randn(9, DIM) * 5
    scores = lm.score([prompt, prompt], ["sad", "happy"], frames=[{"audio": one}, {"audio": two}])
    alone = lm.score([prompt], ["sad", "happy"], frames=[{"audio": two}])
    torch.testing.assert_close(scores[1:], alone, atol=1e-5, rtol=0)  # batch = one by one
    assert not torch.equal(scores[0], scores[1])
    preds = reasoner.predict_batch(
        [{"transcript": "I see.", "audio": "a.wav"}] * 2, frames=[{"audio": one}, {"audio": two}]
    )
    assert all(p.completion is not None and set(p.distribution) == {"sad", "happy"} for p in preds)


def test_float32_frames_feed_a_bfloat16_model(lm):
    prompt = "a <|audio|>\nsad or happy?"
    frames = [{"audio": torch.randn(6, DIM)}, {"audio": torch.randn(4, DIM)}]
    full = lm.score([prompt] * 2, ["sad", "happy"], frames=frames)
    lm.model.to(torch.bfloat16)  # projectors included: they are registered on the model
    half = lm.score([prompt] * 2, ["sad", "happy"], frames=frames)
    torch.testing.assert_close(half.float(), full, atol=0.05, rtol=0)  # the same scores, at bf16 precision


def test_bad_inputs_give_clear_errors(lm, tiny_tokenizer):
    with pytest.raises(ConfigError, match="missing from the prompt"):
        lm.tokenize(["no placeholder here"])
    with pytest.raises(ConfigError, match="appears 2 times"):
        lm.tokenize(["<|audio|> and <|audio|>"])
    with pytest.raises(ConfigError, match="no video adapter"):
        lm.tokenize(["<|audio|> <|video|>"])
    with pytest.raises(ConfigError, match="in the order"):
        tokenize_with_placeholders(tiny_tokenizer, "<|video|> <|audio|>", {"audio": 1, "video": 1})
    with pytest.raises(ConfigError, match="pass frames="):
        lm.score(["<|audio|>"], ["sad"])
    with pytest.raises(ConfigError, match="expects in_dim=5"):
        lm.score(["<|audio|>"], ["sad"], frames=[{"audio": torch.randn(4, 3)}])
    with pytest.raises(ConfigError, match="no 'audio' frames"):
        lm.score(["<|audio|>"], ["sad"], frames=[{"video": torch.randn(4, DIM)}])
    with pytest.raises(ConfigError, match="3 pseudo-token slots but 2"):
        embed_with_pseudo_tokens(
            torch.nn.Embedding(5, 2), torch.tensor([[PSEUDO_TOKEN_ID] * 3]), [torch.ones(2, 2)]
        )
    text_only = EmotionLM(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer)
    with pytest.raises(ConfigError, match="no adapters"):
        text_only.score(["hi"], ["sad"], frames=[{"audio": torch.randn(4, DIM)}])
    with pytest.raises(ConfigError, match="hears audio through its adapter"):
        EmotionReasoner(lm, labels=["sad"], strategy="minimal").predict(transcript="hi")
