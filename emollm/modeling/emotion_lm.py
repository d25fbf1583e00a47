"""``EmotionLM``: one wrapper around a causal LM and its tokenizer with the two decoding modes.

- :meth:`EmotionLM.score`: no generation; the log-probability of every label after each prompt, from one
  batched pass over the prompts whose KV cache is reused for the labels
  (:func:`emollm.modeling.lm.score_labels`). Softmax over the labels gives a full distribution.
- :meth:`EmotionLM.generate`: batched greedy or sampled generation (left padding, stop at EOS).

The prompt side (templates, context, prosody) lives in :mod:`emollm.prompting`; this class only turns
prompts into numbers and text. The adapters issue extends it with audio pseudo-tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emollm.labels import LabelSet, get_label_set
from emollm.modeling.base import DEFAULT_MODEL, load_base_model, prepare_tokenizer
from emollm.modeling.lm import generate, score_labels


class EmotionLM:
    """A causal LM that scores labels and generates rationales.

    Args:
        model: A ``transformers`` causal LM (any architecture ``AutoModelForCausalLM`` loads).
        tokenizer: Its tokenizer; a pad token (EOS) and left padding are set if missing.
        name: What to call the model in reports (its name or path).
    """

    def __init__(self, model, tokenizer, name: str = "model"):
        prepare_tokenizer(tokenizer)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_MODEL, *, dtype=None, device: str | None = None):
        """Load a built-in model name, a local folder or a hub id (see :func:`load_base_model`)."""
        model, tokenizer = load_base_model(name_or_path, dtype=dtype, device=device)
        return cls(model, tokenizer, name=name_or_path)

    def score(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Log-probabilities, shape ``(len(prompts), len(labels))``; see :func:`score_labels`."""
        return score_labels(
            self.model,
            self.tokenizer,
            prompts,
            get_label_set(labels),
            length_normalize=length_normalize,
            batch_size=batch_size,
        )

    def distribution(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Probabilities over the label set (softmax of :meth:`score`); each row sums to 1."""
        scores = self.score(prompts, labels, length_normalize=length_normalize, batch_size=batch_size)
        return scores.softmax(dim=-1)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> list[str]:
        """Completions of the prompts, in order; see :func:`emollm.modeling.lm.generate`."""
        return generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            batch_size=batch_size,
        )
