"""Pseudo-token injection: placeholders in a prompt become K projector vectors in ``inputs_embeds``.

A prompt names each modality with a placeholder string (``<|audio|>``, ``<|video|>``). Tokenising it with
:func:`tokenize_with_placeholders` replaces each placeholder by K copies of :data:`PSEUDO_TOKEN_ID`, a
negative id that no vocabulary uses (LLaVA's convention), so the ids, the attention mask, the position ids
and the loss labels keep one slot per pseudo-token and stay aligned through padding and batching. The
vocabulary and the embedding matrix are never touched: :func:`embed_with_pseudo_tokens` looks up the real
tokens and writes the projector's vectors into the slots, in order.

>>> import torch
>>> emb = torch.nn.Embedding(10, 2)
>>> ids = torch.tensor([[3, PSEUDO_TOKEN_ID, PSEUDO_TOKEN_ID, 4]])
>>> out = embed_with_pseudo_tokens(emb, ids, [torch.ones(2, 2)])
>>> out[0, 1:3].tolist(), bool((out[0, 0] == emb.weight[3]).all())
([[1.0, 1.0], [1.0, 1.0]], True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from emollm.errors import ConfigError

PSEUDO_TOKEN_ID = -200
"""Id of a pseudo-token slot in ``input_ids``; never looked up in the embedding matrix."""

PLACEHOLDERS = {"audio": "<|audio|>", "video": "<|video|>"}
"""The placeholder string of each modality, as written in prompts."""


def placeholder(modality: str) -> str:
    """The placeholder string for ``modality`` (``"audio"`` -> ``"<|audio|>"``).

    Raises:
        ConfigError: for an unknown modality, listing the accepted ones.
    """
    if modality not in PLACEHOLDERS:
        raise ConfigError(f"unknown modality {modality!r}; accepted: {sorted(PLACEHOLDERS)}")
    return PLACEHOLDERS[modality]


def tokenize_with_placeholders(
    tokenizer, text: str, num_tokens: Mapping[str, int], *, add_special_tokens: bool = False
) -> list[int]:
    """Token ids of ``text`` with each modality's placeholder expanded to ``num_tokens[modality]`` slots.

    Every modality in ``num_tokens`` must appear exactly once in ``text``, in the order of ``num_tokens``
    (slots are filled in that order), and no other placeholder may appear. The text between placeholders
    is tokenised piece by piece (placeholders follow ``": "`` and end their line in the shipped templates,
    so the pieces tokenise as the whole would).

    Args:
        tokenizer: A Hugging Face tokenizer.
        text: The full prompt (already chat-formatted, usually).
        num_tokens: Modality -> number of pseudo-tokens its projector outputs (K).
        add_special_tokens: Passed to the tokenizer for the first piece only.

    Returns:
        Token ids, with :data:`PSEUDO_TOKEN_ID` at the pseudo-token slots.

    Raises:
        ConfigError: a placeholder is missing, repeated, out of order, or belongs to a modality with no
            adapter.

    >>> from types import SimpleNamespace
    >>> tok = lambda s, add_special_tokens=False: {"input_ids": [ord(c) for c in s]}
    >>> tokenize_with_placeholders(tok, "a<|audio|>b", {"audio": 2})
    [97, -200, -200, 98]
    """
    for modality in num_tokens:
        count = text.count(placeholder(modality))
        if count != 1:
            problem = "is missing from" if count == 0 else f"appears {count} times in"
            raise ConfigError(
                f"the {modality} placeholder {placeholder(modality)!r} {problem} the prompt; it must appear "
                f"exactly once (the prompt template must render the '{modality}' variable)"
            )
    for modality, mark in PLACEHOLDERS.items():
        if modality not in num_tokens and mark in text:
            raise ConfigError(
                f"the prompt contains {mark!r} but no {modality} adapter is configured; configured: "
                f"{sorted(num_tokens) or 'none'}"
            )
    positions = [text.index(placeholder(m)) for m in num_tokens]
    if positions != sorted(positions):
        raise ConfigError(
            f"the placeholders must appear in the order {[placeholder(m) for m in num_tokens]} (the order "
            f"the adapters are configured in)"
        )
    marks = {PLACEHOLDERS[m]: k for m, k in num_tokens.items()}
    if not marks:
        return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
    pattern = "(" + "|".join(re.escape(m) for m in marks) + ")"
    ids: list[int] = []
    for i, piece in enumerate(re.split(pattern, text)):
        if piece in marks:
            ids.extend([PSEUDO_TOKEN_ID] * marks[piece])
        elif piece:
            ids.extend(tokenizer(piece, add_special_tokens=add_special_tokens and i == 0)["input_ids"])
    return ids


def count_pseudo_tokens(input_ids: torch.Tensor) -> torch.Tensor:
    """Number of pseudo-token slots in each row of ``input_ids`` (shape ``(batch,)``)."""
    return (input_ids == PSEUDO_TOKEN_ID).sum(dim=-1)


def embed_with_pseudo_tokens(
    embedding: torch.nn.Module,
    input_ids: torch.Tensor,
    pseudo_embeds: torch.Tensor | Sequence[torch.Tensor | None] | None,
) -> torch.Tensor:
    """Embeddings of ``input_ids`` with row b's pseudo-token slots filled by ``pseudo_embeds[b]``, in order.

    Args:
        embedding: The LLM's input embedding layer (``model.get_input_embeddings()``).
        input_ids: ``(batch, seq)`` ids; :data:`PSEUDO_TOKEN_ID` marks a slot.
        pseudo_embeds: Per row, a ``(slots_b, hidden)`` tensor (None or an empty tensor for a row with no
            slots), or one ``(batch, K, hidden)`` tensor when every row has K slots; None when no row has
            slots.

    Returns:
        ``(batch, seq, hidden)`` embeddings in the embedding layer's dtype. Gradients flow into
        ``pseudo_embeds`` (the projector is trained through them).

    Raises:
        ConfigError: when the number of vectors given for a row differs from its number of slots.
    """
    slots = input_ids == PSEUDO_TOKEN_ID
    embeds = embedding(input_ids.masked_fill(slots, 0))
    counts = slots.sum(dim=-1).tolist()
    if pseudo_embeds is None:
        rows: list[torch.Tensor | None] = [None] * len(counts)
    else:
        rows = list(pseudo_embeds)
    if len(rows) != len(counts):
        raise ConfigError(f"got pseudo-token vectors for {len(rows)} rows but the batch has {len(counts)}")
    filled = []
    for b, (count, vectors) in enumerate(zip(counts, rows, strict=True)):
        given = 0 if vectors is None else int(vectors.shape[0])
        if given != count:
            raise ConfigError(
                f"row {b} has {count} pseudo-token slots but {given} projector vectors were given "
                f"(check the placeholder count and the projector's num_tokens)"
            )
        if count:
            if vectors.shape[-1] != embeds.shape[-1]:
                raise ConfigError(
                    f"projector vectors have size {vectors.shape[-1]} but the LLM's hidden size is "
                    f"{embeds.shape[-1]}"
                )
            filled.append(vectors.to(embeds.dtype))
    if not filled:
        return embeds
    return embeds.masked_scatter(slots.unsqueeze(-1), torch.cat(filled))
