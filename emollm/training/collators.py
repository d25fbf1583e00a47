"""The multimodal SFT collator: prompt + completion -> ids, loss labels and padded encoder frames.

Each example is a dict with ``prompt`` (the chat-formatted prompt, placeholders included), ``completion``
(the target text) and, per adapted modality, ``<modality>_frames`` (the encoder's frames, ``T x D``).
The collator

- tokenises the prompt with every placeholder expanded to K pseudo-token slots
  (:func:`emollm.modeling.injection.tokenize_with_placeholders`) and the completion followed by EOS;
- sets ``labels`` to -100 on the prompt, the slots and the padding, so the loss covers the completion only;
- right-pads the ids (training needs no left padding: positions start at 0 in every row);
- pads the frames of each adapter to ``<key>_frames`` ``(B, T, D)`` and ``<key>_mask`` (the key is the
  modality, or the adapter's name when a modality has several: ``frame_keys``);
- returns ``text_mask``, true at the prompt's text tokens (what ``text_guided_mixer`` pools).

>>> import torch
>>> tok = lambda s, add_special_tokens=False: {"input_ids": [ord(c) for c in s]}
>>> tok.eos_token_id, tok.pad_token_id = 0, 1
>>> batch = MultimodalCollator(tok, {"audio": 2})([
...     {"prompt": "a<|audio|>", "completion": "b", "audio_frames": [[0.5], [1.5], [2.5]]}])
>>> batch["input_ids"].tolist(), batch["labels"].tolist(), batch["audio_frames"].shape
([[97, -200, -200, 98, 0]], [[-100, -100, -100, 98, 0]], torch.Size([1, 3, 1]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from emollm.errors import ConfigError
from emollm.modeling.injection import PSEUDO_TOKEN_ID, tokenize_with_placeholders
from emollm.prompting import prompt_adds_special_tokens

IGNORE_INDEX = -100


@dataclass
class MultimodalCollator:
    """Collate prompt/completion examples (with encoder frames) for SFT with pseudo-tokens.

    Args:
        tokenizer: The LLM's tokenizer (needs ``eos_token_id``).
        num_tokens: modality -> pseudo-token slots at its placeholder (``EmotionLM.num_tokens``); empty for
            text-only SFT.
        max_length: Longest sequence allowed; a longer completion is cut at the end (:meth:`check` lists
            which, before training), a prompt that does not fit raises (raise ``max_length`` or show fewer
            context turns).
        add_special_tokens: Tokenizer special tokens (BOS) for the prompt; None (default) decides per prompt
            as at inference (:func:`emollm.prompting.prompt_adds_special_tokens`: none for a chat-formatted
            prompt, whose template wrote them).
        loss_weights: label -> weight (:func:`emollm.training.sft.class_weights`); when given, every
            example needs a ``label`` and the batch carries ``loss_weights`` ``(B,)``.
        frame_keys: The adapter keys whose ``<key>_frames`` each example carries (``EmotionLM.adapter_keys``);
            default the modalities of ``num_tokens`` (one adapter per modality).
    """

    tokenizer: object
    num_tokens: Mapping[str, int] = field(default_factory=dict)
    max_length: int | None = 1024
    add_special_tokens: bool | None = None
    loss_weights: Mapping[str, float] | None = None
    frame_keys: Sequence[str] | None = None

    def _completion_tokens(self, example: Mapping) -> list[int]:
        """The completion's ids + EOS."""
        completion = list(self.tokenizer(example["completion"], add_special_tokens=False)["input_ids"])
        return completion + [self.tokenizer.eos_token_id]

    def longest_completion(self, examples: Sequence[Mapping]) -> int:
        """Tokens in the longest completion, its EOS included: what generation must have room to write."""
        return max((len(self._completion_tokens(example)) for example in examples), default=0)

    def _tokens(self, example: Mapping) -> tuple[list[int], list[int]]:
        """The prompt's ids (slots expanded) and the completion's ids + EOS, uncut."""
        special = self.add_special_tokens
        if special is None:
            special = prompt_adds_special_tokens(self.tokenizer, example["prompt"])
        prompt = tokenize_with_placeholders(
            self.tokenizer, example["prompt"], self.num_tokens, add_special_tokens=special
        )
        completion = self._completion_tokens(example)
        if self.max_length is not None and len(prompt) >= self.max_length:
            name = f" ({example['id']})" if example.get("id") is not None else ""
            raise ConfigError(
                f"a prompt{name} of {len(prompt)} tokens does not fit max_length={self.max_length}; "
                f"raise max_length or show fewer context turns"
            )
        return prompt, completion

    def encode(self, example: Mapping) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one example."""
        prompt, completion = self._tokens(example)
        if self.max_length is not None:
            completion = completion[: self.max_length - len(prompt)]
        return prompt + completion, [IGNORE_INDEX] * len(prompt) + completion

    def check(self, examples: Sequence[Mapping]) -> list:
        """Tokenise every example once, before training: the ids of those whose completion would be cut.

        A cut completion loses its end, and the answer with it, so the caller should warn. Run before the
        first step, a prompt that cannot fit fails at once rather than hours into an epoch.

        Raises:
            ConfigError: a prompt does not fit ``max_length`` (the message names the example).
        """
        cut = []
        for index, example in enumerate(examples):
            prompt, completion = self._tokens(example)
            if self.max_length is not None and len(prompt) + len(completion) > self.max_length:
                cut.append(example.get("id", index))
        return cut

    def __call__(self, examples: list[Mapping]) -> dict[str, torch.Tensor]:
        """The padded batch: ids, attention mask, labels, text mask and each modality's frames and mask."""
        encoded = [self.encode(example) for example in examples]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, (ids, target) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(ids)] = torch.tensor(target)
            attention[i, : len(ids)] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "text_mask": attention.bool() & (labels == IGNORE_INDEX) & (input_ids != PSEUDO_TOKEN_ID),
        }
        if self.loss_weights is not None:
            unknown = sorted({str(e.get("label")) for e in examples} - set(self.loss_weights))
            if unknown:
                raise ConfigError(
                    f"no loss weight for label(s) {unknown}; weighted: {', '.join(self.loss_weights)}"
                )
            batch["loss_weights"] = torch.tensor([self.loss_weights[e["label"]] for e in examples])
        for adapter in self.num_tokens if self.frame_keys is None else self.frame_keys:
            from emollm.modeling.encoders import pad_frames

            key = f"{adapter}_frames"
            if any(key not in example for example in examples):
                raise ConfigError(f"every example needs {key!r} (the {adapter} encoder's frames)")
            frames = [torch.as_tensor(example[key], dtype=torch.float32) for example in examples]
            batch[key], batch[f"{adapter}_mask"] = pad_frames(frames)
        return batch
