"""Two ways to ask a causal LM for an emotion: generate text, or score each label.

``score_labels`` runs no generation: it computes log p(label tokens | prompt) for every label, packing all
(prompt, label) pairs of a batch into one forward pass, and so gives a full distribution over the label
set. ``generate`` produces free text (rationale + answer) with left padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emollm.errors import ConfigError
from emollm.labels import LabelSet, get_label_set


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    # A chat-formatted prompt already carries its special tokens; a plain one gets BOS etc. added.
    add_special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]


@torch.no_grad()
def score_labels(
    model,
    tokenizer,
    prompts: Sequence[str],
    labels: str | LabelSet | Sequence[str],
    *,
    length_normalize: bool = False,
    batch_size: int = 8,
) -> torch.Tensor:
    """Log-probability of each label's token sequence after each prompt.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer.
        prompts: Prompts ending where the answer starts (e.g. from :func:`emollm.prompting.render_prompt`).
        labels: The label set; each label is scored as spelled.
        length_normalize: Divide each sum of token log-probs by the label's token count.
        batch_size: Prompts per forward pass (each contributes one row per label).

    Returns:
        Tensor of shape ``(len(prompts), len(labels))``: summed (or mean) token log-probs. ``softmax`` over
        the last dimension gives a distribution over the label set.
    """
    label_set = get_label_set(labels)
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in label_set.labels]
    if any(len(ids) == 0 for ids in label_ids):
        raise ConfigError(f"a label tokenises to nothing: {dict(zip(label_set.labels, label_ids))}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    rows: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [_encode_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        if any(len(ids) == 0 for ids in chunk):
            raise ConfigError("score_labels needs non-empty prompts: a prompt tokenised to no tokens")
        seqs = [p + lab for p in chunk for lab in label_ids]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, seq in enumerate(seqs):  # right padding: real tokens keep positions 0..len-1
            input_ids[i, : len(seq)] = torch.tensor(seq)
            attention[i, : len(seq)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores = torch.empty(len(seqs))
        for i, seq in enumerate(seqs):
            prompt_len = len(chunk[i // len(label_ids)])
            target = torch.tensor(seq[prompt_len:], device=device)
            positions = torch.arange(prompt_len - 1, len(seq) - 1, device=device)
            token_lp = logprobs[i, positions, target]
            scores[i] = token_lp.mean() if length_normalize else token_lp.sum()
        rows.append(scores.view(len(chunk), len(label_ids)))
    return torch.cat(rows) if rows else torch.empty(0, len(label_ids))


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 8,
) -> list[str]:
    """Generate a completion for each prompt (left-padded batches, stop at EOS).

    Returns:
        The decoded completions (prompt removed, special tokens skipped), in prompt order.
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [_encode_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        batch = tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(device)
        kwargs = {
            "do_sample": do_sample,
            "max_new_tokens": max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if do_sample:
            kwargs["temperature"] = temperature
        generated = model.generate(**batch, **kwargs)
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        out.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return out
