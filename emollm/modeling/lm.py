"""Two ways to ask a causal LM for an emotion: generate text, or score each label.

``score_labels`` runs no generation: it computes log p(label tokens | prompt) for every label and so gives a
full distribution over the label set. Each batch of prompts costs two forward passes whatever the number of
labels: one over the left-padded prompts, and one over all the labels' remaining tokens at once, packed
into one row per prompt on top of the prompts' KV cache. ``generate`` produces free text (rationale +
answer) with left padding.

Shared prefix: the shipped templates put the fixed instructions (system prompt, task, label list) first, so
the prompts of one call usually share a long common token prefix and differ only in the utterance.
``score_labels`` then runs that prefix once (batch 1) and, per batch, only the left-padded suffixes on top
of a copy of its KV cache repeated to the batch size. The padding then sits between prefix and suffix:
it is masked, and position ids count real tokens only, so every prompt is computed as if it stood alone.

Prompts may also be token-id lists holding :data:`~emollm.modeling.injection.PSEUDO_TOKEN_ID` slots; such
batches go through ``inputs_embeds`` with the projector's vectors written at the slots
(:func:`~emollm.modeling.injection.embed_with_pseudo_tokens`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from emollm.errors import ConfigError
from emollm.labels import LabelSet, get_label_set
from emollm.modeling.injection import PSEUDO_TOKEN_ID, embed_with_pseudo_tokens
from emollm.prompting import prompt_token_ids

MIN_SHARED_PREFIX = 4
"""Shortest common prefix (in tokens) worth a pass of its own."""

Prompt = str | Sequence[int]
"""A prompt: text (tokenised here) or token ids (used as given, may hold pseudo-token slots)."""


def _prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: strings are encoded (BOS as the model expects), id sequences taken as given."""
    if isinstance(prompt, str):
        return prompt_token_ids(tokenizer, prompt)
    return [int(token) for token in prompt]


def _pseudo_rows(pseudo_embeds, n_prompts: int):
    """Check ``pseudo_embeds`` has one entry per prompt; returns it as a list (or None)."""
    if pseudo_embeds is None:
        return None
    rows = list(pseudo_embeds)
    if len(rows) != n_prompts:
        raise ConfigError(
            f"pseudo_embeds has {len(rows)} entries but there are {n_prompts} prompts; give one "
            "(slots, hidden) tensor or None per prompt"
        )
    return rows


def _model_inputs(model, input_ids: torch.Tensor, rows) -> dict[str, torch.Tensor]:
    """``{"input_ids": ...}``, or ``{"inputs_embeds": ...}`` when a row has pseudo-token slots or vectors.

    Raises:
        ConfigError: (from :func:`embed_with_pseudo_tokens`) a row's vector count differs from its slots.
    """
    has_vectors = rows is not None and any(row is not None for row in rows)
    if not has_vectors and not bool((input_ids == PSEUDO_TOKEN_ID).any()):
        return {"input_ids": input_ids}
    if rows is not None:
        rows = [None if row is None else row.to(input_ids.device) for row in rows]
    return {"inputs_embeds": embed_with_pseudo_tokens(model.get_input_embeddings(), input_ids, rows)}


def _pad_id(tokenizer) -> int:
    """Id written into padded slots (always masked out, so any valid id does)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``(len(sequences), longest)``, real tokens at the right."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            input_ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention[i, width - len(seq) :] = 1
    return input_ids, attention


def _common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``sequences``, cut before any pseudo-token slot.

    At least one token of every sequence is left after it.

    >>> _common_prefix_length([[1, 2, 3, 4], [1, 2, 3], [1, 2, 5]])
    2
    >>> _common_prefix_length([[1, PSEUDO_TOKEN_ID, 2], [1, PSEUDO_TOKEN_ID, 3]])
    1
    """
    # The common prefix of a set is that of its lexicographic extremes.
    low, high = min(sequences), max(sequences)
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and low[n] == high[n] and low[n] != PSEUDO_TOKEN_ID:
        n += 1
    return n


def _prompt_pass(
    model,
    attention_mask: torch.Tensor,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    past_key_values=None,
):
    """One forward pass over a left-padded batch of prompts (token ids or embeddings), maybe after a cache.

    ``attention_mask`` covers the cached tokens (if ``past_key_values`` is given) and then the new ones.
    Positions count real tokens only (``cumsum(mask) - 1``, 0 on padding), so a prompt gets the same
    positions however much padding its batch adds, wherever the padding sits. Only the last position's
    logits are computed.

    Returns:
        ``(logprobs, cache)``: float32 next-token log-probs at each prompt's end, shape ``(batch, vocab)``,
        and the KV cache of the prompts (``past_key_values`` itself, extended, when one is given).
    """
    new = (input_ids if input_ids is not None else inputs_embeds).shape[1]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -new:]
    out = model(
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=past_key_values,
        use_cache=True,
        logits_to_keep=1,
    )
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1), out.past_key_values


def _can_repeat(cache) -> bool:
    """Whether every layer of ``cache`` can be repeated along the batch (attention KV caches can)."""
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(cache, "is_linear", ())):  # recurrent states: not handled
        return False
    return all(hasattr(layer, "batch_repeat_interleave") for layer in layers)


def _can_share(cache) -> bool:
    """Whether a prefix ``cache`` can be continued by left-padded suffixes.

    Sliding-window layers cannot: their masks measure the window in cache slots, and the padding between
    prefix and suffix would count as tokens.
    """
    return _can_repeat(cache) and not any(getattr(cache, "is_sliding", ()))


def _repeated(cache, batch: int):
    """A copy of ``cache`` repeated ``batch`` times along the batch; ``cache`` itself is left untouched."""
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(batch)
    return out


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[..., targets]`` without materialising the full log-softmax."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _label_pass(
    model, cache, prompt_mask: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Sum of log p(label token t | prompt, label tokens < t) over t >= 1, for every prompt and label.

    ``cache`` holds the prompts (it is extended in place); ``prompt_mask`` is its attention mask (shared
    prefix included); ``inputs``, ``targets`` and ``mask`` are ``(labels, width)``: each label's tokens but
    the last, those but the first, and which slots are real. Returns ``(prompts, labels)``.

    The labels are *packed*: one row per prompt holds every label's tokens one after the other, and a 4D
    attention mask lets each token see the prompt and the earlier tokens of its own label only, with
    positions that continue the prompt. One pass, no copy of the cache. Sliding-window caches, whose
    window a custom mask would bypass, take :func:`_label_pass_repeated` instead.
    """
    if any(getattr(cache, "is_sliding", ())):
        return _label_pass_repeated(model, cache, prompt_mask, inputs, targets, mask)
    batch, n_labels = prompt_mask.shape[0], inputs.shape[0]
    real = mask.bool()
    label_of = torch.arange(n_labels, device=inputs.device)[:, None].expand_as(inputs)[real]
    offset = torch.arange(inputs.shape[1], device=inputs.device).expand_as(inputs)[real]
    n = label_of.numel()
    own = (label_of[:, None] == label_of[None, :]) & (offset[:, None] >= offset[None, :])  # (n, n)
    allowed = torch.cat(
        [prompt_mask.bool()[:, None, :].expand(batch, n, -1), own.expand(batch, n, n)], dim=-1
    )
    dtype = model.get_input_embeddings().weight.dtype
    additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    additive = additive.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]  # (batch, 1, n, prompt + n)
    logits = model(
        input_ids=inputs[real].expand(batch, n),
        attention_mask=additive,
        position_ids=prompt_mask.sum(-1)[:, None] + offset[None, :],  # continue each prompt
        past_key_values=cache,
        use_cache=True,
    ).logits
    token_lp = _token_logprobs(logits, targets[real].expand(batch, n))
    return torch.zeros(batch, n_labels, device=token_lp.device).index_add_(1, label_of, token_lp)


def _label_pass_repeated(
    model, cache, prompt_mask: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """:func:`_label_pass` by repeating the cache once per label (row ``b * labels + j``) and padding."""
    if not _can_repeat(cache):
        raise ConfigError(
            f"score_labels cannot reuse a {type(cache).__name__} across labels: its layers cannot be "
            "repeated along the batch"
        )
    batch, n_labels, width = prompt_mask.shape[0], inputs.shape[0], inputs.shape[1]
    cache.batch_repeat_interleave(n_labels)  # row b * n_labels + j: prompt b, label j
    prompt_len = prompt_mask.sum(-1).repeat_interleave(n_labels)
    logits = model(
        input_ids=inputs.repeat(batch, 1),
        attention_mask=torch.cat(
            [prompt_mask.repeat_interleave(n_labels, dim=0), mask.repeat(batch, 1)], dim=1
        ),
        position_ids=prompt_len[:, None] + torch.arange(width, device=inputs.device),  # continue each prompt
        past_key_values=cache,
        use_cache=True,
    ).logits
    token_lp = _token_logprobs(logits, targets.repeat(batch, 1))
    return (token_lp * mask.repeat(batch, 1)).sum(-1).view(batch, n_labels)


@torch.no_grad()
def score_labels(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    labels: str | LabelSet | Sequence[str],
    *,
    length_normalize: bool = False,
    batch_size: int = 8,
    pseudo_embeds: Sequence[torch.Tensor | None] | None = None,
    share_prefix: bool = True,
) -> torch.Tensor:
    """Log-probability of each label's token sequence after each prompt.

    Per batch of prompts: one forward pass over the left-padded prompts (``use_cache=True``), whose last
    position gives every label's first token, and one more pass on top of that cache runs the remaining
    tokens of every label of 2+ tokens, packed into one row per prompt (see :func:`_label_pass`; skipped if
    no label has 2+).
    With ``share_prefix`` and 2+ prompts, the longest common token prefix of them all (up to the first slot,
    leaving every prompt at least one token) is run once, if it has at least
    :data:`MIN_SHARED_PREFIX` tokens and the model's cache allows it (not for sliding-window attention),
    and each batch's prompt pass runs only the rest of its prompts. Scores are the same either way.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer (it needs no pad token).
        prompts: Prompts ending where the answer starts (e.g. from :func:`emollm.prompting.render_prompt`):
            strings, or token-id lists (used as given) that may hold ``PSEUDO_TOKEN_ID`` slots.
        labels: The label set; each label is scored as spelled.
        length_normalize: Divide each sum of token log-probs by the label's token count.
        batch_size: Prompts per forward pass (the label pass has up to ``batch_size * len(labels)`` rows).
        pseudo_embeds: None, or one entry per prompt: a ``(slots, hidden)`` tensor of the vectors for that
            prompt's pseudo-token slots, in order, or None for a prompt with no slots.
        share_prefix: Run the prompts' common prefix once (see above).

    Returns:
        Tensor of shape ``(len(prompts), len(labels))``: summed (or mean) token log-probs. ``softmax`` over
        the last dimension gives a distribution over the label set.

    Raises:
        ConfigError: a bad ``batch_size``, an empty prompt, a label with no tokens, ``pseudo_embeds`` of the
            wrong length, or a prompt whose slot count differs from its number of vectors.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    label_set = get_label_set(labels)
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in label_set.labels]
    if any(len(ids) == 0 for ids in label_ids):
        raise ConfigError(f"a label tokenises to nothing: {dict(zip(label_set.labels, label_ids))}")
    encoded = [_prompt_ids(tokenizer, p) for p in prompts]
    if any(len(ids) == 0 for ids in encoded):
        raise ConfigError("score_labels needs non-empty prompts: a prompt tokenised to no tokens")
    rows = _pseudo_rows(pseudo_embeds, len(encoded))
    pad_id = _pad_id(tokenizer)
    device = next(model.parameters()).device
    n_labels = len(label_ids)
    lengths = torch.tensor([len(ids) for ids in label_ids], dtype=torch.float32)
    first_ids = torch.tensor([ids[0] for ids in label_ids], device=device)
    # The label pass runs only the labels of 2+ tokens, each fed all but its last token, right-padded: its
    # outputs predict tokens 1..n-1 of the label.
    multi = [j for j, ids in enumerate(label_ids) if len(ids) > 1]
    rest_width = max((len(label_ids[j]) - 1 for j in multi), default=0)
    rest_inputs = torch.full((len(multi), rest_width), pad_id, dtype=torch.long)
    rest_targets = torch.zeros((len(multi), rest_width), dtype=torch.long)
    rest_mask = torch.zeros((len(multi), rest_width), dtype=torch.long)
    for row, j in enumerate(multi):
        ids = label_ids[j]
        rest_inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1], dtype=torch.long)
        rest_targets[row, : len(ids) - 1] = torch.tensor(ids[1:], dtype=torch.long)
        rest_mask[row, : len(ids) - 1] = 1
    rest = (rest_inputs.to(device), rest_targets.to(device), rest_mask.to(device))
    multi_index = torch.tensor(multi, dtype=torch.long, device=device)

    # The shared prefix, run once; its cache is only ever copied, never extended.
    prefix_len, prefix_cache = 0, None
    if share_prefix and len(encoded) > 1:
        n = _common_prefix_length(encoded)
        if n >= MIN_SHARED_PREFIX:
            _, cache = _prompt_pass(
                model,
                torch.ones((1, n), dtype=torch.long, device=device),
                input_ids=torch.tensor([encoded[0][:n]], dtype=torch.long, device=device),
            )
            if _can_share(cache):
                prefix_len, prefix_cache = n, cache

    out: list[torch.Tensor] = []
    for start in range(0, len(encoded), batch_size):
        chunk = [ids[prefix_len:] for ids in encoded[start : start + batch_size]]
        input_ids, attention = _left_pad(chunk, pad_id)
        input_ids, attention = input_ids.to(device), attention.to(device)
        inputs = _model_inputs(model, input_ids, None if rows is None else rows[start : start + batch_size])
        cache = None
        if prefix_cache is not None:
            cache = _repeated(prefix_cache, len(chunk))
            attention = torch.cat([attention.new_ones(len(chunk), prefix_len), attention], dim=1)
        first_lp, cache = _prompt_pass(model, attention, past_key_values=cache, **inputs)
        scores = first_lp[:, first_ids]  # (batch, labels): log p(first label token | prompt)
        if multi:
            scores[:, multi_index] += _label_pass(model, cache, attention, *rest)
        del cache
        scores = scores.cpu()
        out.append(scores / lengths if length_normalize else scores)
    return torch.cat(out) if out else torch.empty(0, n_labels)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 8,
    min_new_tokens: int | None = None,
    pseudo_embeds: Sequence[torch.Tensor | None] | None = None,
) -> list[str]:
    """Generate a completion for each prompt (left-padded batches, stop at EOS).

    Args:
        prompts: Strings, or token-id lists (used as given) that may hold ``PSEUDO_TOKEN_ID`` slots.
        min_new_tokens: If given, EOS is suppressed until this many tokens are generated (benchmarks use
            ``min_new_tokens == max_new_tokens`` to force a fixed length).
        pseudo_embeds: None, or one ``(slots, hidden)`` tensor (or None) per prompt, as in
            :func:`score_labels`; batches with slots are generated from ``inputs_embeds``.

    Returns:
        The decoded completions (prompt removed, special tokens skipped), in prompt order.

    Raises:
        ConfigError: bad lengths, ``do_sample`` with a temperature that is not > 0, ``pseudo_embeds`` of the
            wrong length, or a prompt whose slot count differs from its number of vectors.
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ConfigError(
            f"temperature must be a number > 0 when do_sample=True, got {temperature!r}; for greedy decoding "
            "use do_sample=False"
        )
    if min_new_tokens is not None and not 0 <= min_new_tokens <= max_new_tokens:
        raise ConfigError(
            f"min_new_tokens must be in [0, max_new_tokens={max_new_tokens}], got {min_new_tokens}"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = _pseudo_rows(pseudo_embeds, len(prompts))
    device = next(model.parameters()).device
    kwargs = {
        "do_sample": do_sample,
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if min_new_tokens is not None:
        kwargs["min_new_tokens"] = min_new_tokens
    if do_sample:
        kwargs["temperature"] = temperature
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [_prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
        input_ids, attention = _left_pad(encoded, tokenizer.pad_token_id)
        input_ids, attention = input_ids.to(device), attention.to(device)
        inputs = _model_inputs(model, input_ids, None if rows is None else rows[start : start + batch_size])
        generated = model.generate(**inputs, attention_mask=attention, **kwargs)
        # From input_ids, generate returns prompt + new tokens; from inputs_embeds, only the new ones.
        new_tokens = generated[:, input_ids.shape[1] :] if "input_ids" in inputs else generated
        out.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return out
