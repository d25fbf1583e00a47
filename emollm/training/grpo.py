"""GRPO with verifiable emotion rewards, for prosody-as-text and for audio pseudo-tokens.

The recipe (:mod:`emollm.recipes.grpo`, ``emollm grpo``) reads top to bottom; the pieces it uses live here:

- :func:`build_grpo_examples`: one row per utterance: ``prompt`` (rendered exactly as at inference,
  placeholders included), ``label`` and ``label_set`` (read by :mod:`emollm.training.rewards`),
  ``label_distribution`` when the corpus has annotator votes, the encoder frames of each adapted modality,
  and for the cue reward the utterance's measured prosody (``prosody``, a JSON string of
  :func:`emollm.training.evidence.prosody_record`).
- :class:`EmotionGRPOTrainer`: TRL's ``GRPOTrainer`` where the policy always reads ``inputs_embeds`` built
  by :func:`~emollm.modeling.emotion_lm.build_inputs_embeds`, in generation and in the log-probabilities of
  the loss, so the projector's pseudo-tokens condition the policy and the projector keeps training. The
  override surface is six methods of ``GRPOTrainer`` (see the class), all on the same injection path as
  SFT and inference. Without adapters the embeddings are the token embeddings, and the loss equals
  ``GRPOTrainer``'s (``tests/test_grpo.py`` checks it).

Not supported with adapters: vLLM and continuous-batching generation (they take token ids only), tool calls
and image inputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from emollm.errors import ConfigError
from emollm.modeling.adapters import build_inputs_embeds, slot_counts
from emollm.modeling.adapters import unwrap_model as unwrap
from emollm.modeling.encoders import pad_frames
from emollm.modeling.injection import PSEUDO_TOKEN_ID, tokenize_with_placeholders
from emollm.parsing import parse_completion
from emollm.prompting import prompt_adds_special_tokens
from emollm.training.optim import ProjectorLearningRateMixin
from emollm.training.resume import EmollmCheckpointMixin
from emollm.training.rewards import completion_text
from emollm.training.sft import build_examples, make_completion


def build_grpo_examples(
    utterances: Sequence,
    prompts,
    *,
    prosody: Mapping[str, str | None] | None = None,
    frames: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    measured: Mapping[str, str | None] | None = None,
) -> list[dict]:
    """GRPO rows: ``{"id", "prompt", "label", "label_set", ["label_distribution"], "<key>_frames"...}``.

    Args:
        utterances: Labelled :class:`~emollm.data.Utterance` objects.
        prompts: The :class:`~emollm.inputs.PromptBuilder` whose label set, strategy and placeholders shape
            the prompt (use a template that asks for ``<think>``/``<answer>``, e.g. ``acoustic`` or ``cot``,
            so the format reward can be earned).
        prosody: utterance id -> prosody description (None or missing: none shown).
        frames: adapter key -> (utterance id -> encoder frames), for a model with adapters.
        measured: utterance id -> its :func:`~emollm.training.evidence.prosody_record` (None where it has no
            measures), for :func:`~emollm.training.rewards.cue_reward`; given, every row gets a ``prosody``
            column (None where missing), whatever the route shows the model.

    Raises:
        ConfigError: an utterance without a label, or without frames for an adapted modality.
    """
    from emollm.inputs import label_spec

    rows = build_examples(utterances, prompts, target="label", prosody=prosody, frames=frames)
    labels = prompts.labels
    label_set = label_spec(labels)  # a registered set by name keeps its merges in the rewards
    votes = any(getattr(u, "label_distribution", None) for u in utterances)
    for row, utt in zip(rows, utterances, strict=True):
        del row["completion"]  # GRPO samples its own
        row["label_set"] = label_set
        if votes:
            # a fixed key set per row (Arrow stores dicts as structs): the label set, 0.0 where no vote
            given = utt.label_distribution or {utt.label: 1.0}
            row["label_distribution"] = {label: float(given.get(label, 0.0)) for label in labels.labels}
        if measured is not None:
            row["prosody"] = measured.get(utt.id)
    return rows


def completion_logps(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float, compute_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probabilities (and entropies) of the completion, as TRL's fused LM head gives them.

    Args:
        logits: ``(B, C + 1, V)``, the last C + 1 positions (position t predicts token t + 1).
        labels: ``(B, C)`` completion ids, -100 at padding (whose values come out 0).
        temperature: The sampling temperature the logits are divided by.
        compute_entropy: Also return the entropy of each position's distribution.

    >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
    >>> logps, entropy = completion_logps(logits, torch.tensor([[2, -100]]), 1.0, True)
    >>> [round(x, 4) for x in logps[0].tolist()], [round(x, 4) for x in entropy[0].tolist()]
    ([-1.3863, 0.0], [1.3863, 0.0])
    """
    log_probs = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    valid = labels != -100
    token_logps = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(~valid, 0.0)
    if not compute_entropy:
        return token_logps, None
    entropy = (-(log_probs.exp() * log_probs).sum(-1)).masked_fill(~valid, 0.0)
    return token_logps, entropy


class EmotionGRPOTrainer(EmollmCheckpointMixin, ProjectorLearningRateMixin, GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose policy reads ``inputs_embeds`` with audio pseudo-tokens.

    Use it like ``GRPOTrainer`` with a model from :func:`~emollm.training.sft.prepare_for_training` or
    :func:`~emollm.modeling.emotion_lm.load_checkpoint` (``trainable=True``) and rows from
    :func:`build_grpo_examples`. The overrides:

    - ``_tokenize_prompts``: each placeholder becomes K slots of ``PSEUDO_TOKEN_ID`` (as in SFT);
    - ``_generate_single_turn``: samples from ``inputs_embeds`` (projector vectors at the slots);
    - ``_get_per_token_logps_and_entropies``: the same for the policy's and reference's log-probabilities
      (on CUDA through TRL's fused LM head; elsewhere, where that kernel scores every prompt position too,
      from the completion's logits only, see :func:`completion_logps`);
    - ``_generate_and_score_completions`` / ``_compute_loss``: carry each row's encoder frames with it
      through TRL's shuffling and splitting, so the right frames meet the right completions;
    - ``_calculate_rewards``: also logs ``parse_failure_rate`` (completions that name no label);
      ``_generate_single_turn`` logs ``generate_seconds``.

    Args:
        base_model: Name or path of the base LLM, recorded in checkpoints.
        adapters: The :class:`~emollm.modeling.emotion_lm.AdapterSpec` list (empty for prosody-as-text).
        reasoner_settings: EmotionReasoner settings recorded in checkpoints.
        frame_normalizers: Per-speaker frame statistics of the training clips, recorded in checkpoints.
        projector_learning_rate: The projectors' own peak learning rate (None: ``args.learning_rate``).
        *args, **kwargs: As for ``GRPOTrainer``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_tokens = slot_counts(self.adapter_specs)  # modality -> slots at its placeholder
        self.frame_keys = [spec.key for spec in self.adapter_specs]  # what each row's frames are keyed by
        if self.num_tokens and (self.use_vllm or self.use_transformers_continuous_batching):
            raise ConfigError(
                "audio pseudo-tokens need generation from inputs_embeds: set use_vllm and "
                "use_transformers_continuous_batching to false (or train the text route)"
            )
        if self.num_tokens and self.ref_model is not None:
            raise ConfigError(
                "audio pseudo-tokens with beta > 0 need a LoRA model: the reference is then the model with "
                "its starting adapter (and the shared projector); a separate reference model has no projector"
            )
        self._frames: dict[str, torch.Tensor] | None = None  # the frames of the rows being processed

    # -- prompts -> ids with slots ------------------------------------------------------------------------
    def _tokenize_prompts(self, prompts: list):
        if not prompts or not isinstance(prompts[0], str):
            raise ConfigError("EmotionGRPOTrainer takes chat-formatted string prompts (build_grpo_examples)")
        ids = [  # special tokens (BOS) as at inference
            tokenize_with_placeholders(
                self._tokenizer,
                p,
                self.num_tokens,
                add_special_tokens=prompt_adds_special_tokens(self._tokenizer, p),
            )
            for p in prompts
        ]
        return ids, None, {}

    # -- frames travel with their rows --------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        device = self.accelerator.device
        self._frames = {}
        for adapter in self.frame_keys:
            key = f"{adapter}_frames"
            if any(key not in row for row in inputs):
                raise ConfigError(f"every row needs {key!r} (the {adapter} encoder's frames)")
            frames, mask = pad_frames([torch.as_tensor(row[key], dtype=torch.float32) for row in inputs])
            self._frames[key], self._frames[f"{adapter}_mask"] = frames.to(device), mask.to(device)
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            frames, self._frames = self._frames, None
        output.update(frames)  # shuffled and split with the rest of the batch
        return output

    def _compute_loss(self, model, inputs):
        self._frames = {key: inputs[key] for a in self.frame_keys for key in (f"{a}_frames", f"{a}_mask")}
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._frames = None

    def _frames_of(self, rows: slice) -> dict | None:
        if not self.num_tokens:
            return None
        if not self._frames:
            raise RuntimeError("pseudo-token rows reached the model without their frames")
        return {
            a: (self._frames[f"{a}_frames"][rows], self._frames[f"{a}_mask"][rows]) for a in self.frame_keys
        }

    # -- the model reads inputs_embeds ----------------------------------------------------------------------
    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        if self.use_vllm or self.use_transformers_continuous_batching:  # text route only (checked at init)
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        device = self.accelerator.device
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self._tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for i, ids in enumerate(prompt_ids):  # left padding: generation continues from the last column
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention_mask[i, width - len(ids) :] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        text_mask = attention_mask.bool() & (input_ids != PSEUDO_TOKEN_ID)
        start = time.perf_counter()
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            embeds = build_inputs_embeds(unwrapped_model, input_ids, self._frames_of(slice(None)), text_mask)
            # Sample in eval mode: no dropout calls (TRL's disable_dropout, on by default, zeroes them
            # anyway; on a CPU the calls cost ~8% of a step). From inputs_embeds, generate returns new tokens.
            was_training = unwrapped_model.training
            unwrapped_model.eval()
            try:
                completion_ids = unwrapped_model.generate(
                    inputs_embeds=embeds,
                    attention_mask=attention_mask,
                    generation_config=self.generation_config,
                )
            finally:
                unwrapped_model.train(was_training)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["generate_seconds"].append(time.perf_counter() - start)
        # keep each completion up to and including its first EOS
        completions = []
        eos = set(self.eos_token_ids)
        for row in completion_ids.cpu().tolist():
            end = next((i for i, token in enumerate(row) if token in eos), len(row) - 1)
            completions.append(row[: end + 1])
        return completions, None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        if any(value is not None for value in multimodal.values()):
            raise ConfigError("EmotionGRPOTrainer does not take image inputs; use TRL's GRPOTrainer for VLMs")
        batch_size = batch_size or input_ids.size(0)
        prompt_width = input_ids.size(1) - logits_to_keep
        logps, entropies, aux_losses = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            rows = slice(start, start + batch_size)
            ids, mask = input_ids[rows], attention_mask[rows]
            text_mask = mask.bool() & (ids != PSEUDO_TOKEN_ID)
            text_mask[:, prompt_width:] = False  # the prompt's words, as in SFT and inference
            embeds = build_inputs_embeds(model, ids, self._frames_of(rows), text_mask)
            labels = ids.masked_fill(mask == 0, -100)  # only the completion tokens are scored
            labels[:, :-logits_to_keep] = -100
            extra = {"output_router_logits": True} if compute_aux_loss else {}
            with self.accelerator.autocast():
                if embeds.device.type == "cuda":  # TRL's chunked LM-head kernel scores the completion only
                    outputs = model(
                        inputs_embeds=embeds, attention_mask=mask, labels=labels, fused_lm_head=True, **extra
                    )
                    logps.append(outputs.log_probs[:, -logits_to_keep:])
                    entropy = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
                else:  # elsewhere that kernel scores every prompt position too: ~5x the head's work here
                    outputs = model(
                        inputs_embeds=embeds, attention_mask=mask, logits_to_keep=logits_to_keep + 1, **extra
                    )
                    logits = outputs.logits[:, -(logits_to_keep + 1) :]
                    if logits.size(1) != logits_to_keep + 1:
                        raise ConfigError(
                            f"{type(unwrap(model)).__name__} returned {logits.size(1)} logit positions for "
                            f"logits_to_keep={logits_to_keep + 1}; it needs a forward with logits_to_keep"
                        )
                    token_logps, entropy = completion_logps(
                        logits, labels[:, -logits_to_keep:], self.temperature, compute_entropy
                    )
                    logps.append(token_logps)
            if compute_entropy:
                entropies.append(entropy)
            if compute_aux_loss:
                aux_losses.append(outputs.aux_loss)
        return (
            torch.cat(logps, dim=0),
            torch.cat(entropies, dim=0) if compute_entropy else None,
            torch.stack(aux_losses).mean() if compute_aux_loss else None,
        )

    # -- one more metric ------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        failures = [
            parse_completion(completion_text(c), row.get("label_set")).label is None
            for c, row in zip(completions, inputs, strict=True)
        ]
        self._log_metric("parse_failure_rate", sum(failures) / max(len(failures), 1))
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)


def rationale_length_warning(tokenizer, utterances: Sequence, prosody: Mapping, max_completion_length: int):
    """A warning when template rationales (what a reasoning-SFT cold start writes) do not fit the budget.

    A completion cut before ``<answer>`` earns no reward at all; returns None when every one fits.
    """
    lengths = sorted(
        len(tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        for completion in (
            make_completion(u.label, reasons=True, target="reasoning", transcript=u.transcript,
                            prosody=prosody.get(u.id))
            for u in utterances
        )
    )  # fmt: skip
    too_long = sum(n > max_completion_length for n in lengths)
    if not too_long:
        return None
    return (
        f"{too_long} of {len(lengths)} template rationales (what a reasoning-SFT start writes; median "
        f"{lengths[len(lengths) // 2]}, longest {lengths[-1]} tokens) do not fit max_completion_length="
        f"{max_completion_length}: those completions end before <answer> and earn no reward. Raise "
        f"--max_completion_length to at least {lengths[-1] + 16}"
    )
