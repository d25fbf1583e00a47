"""Supervised fine-tuning pieces: targets, examples, the model to train and the trainer.

The recipe (:mod:`emollm.recipes.sft`, ``emollm sft``) reads top to bottom; the logic it uses lives here:

- :func:`make_completion` / :func:`template_rationale`: the target text of an example. ``target="label"``
  trains the label alone (wrapped in ``<answer>`` tags when the template asks for them, which is where score
  mode reads it). ``target="reasoning"`` trains ``<think>rationale</think><answer>label</answer>``; corpora
  have no written rationales, so the rationale is *template-made* from what the model is shown: the words
  and, when there is one, the prosody description, followed by the gold label ("The words are "...". The
  voice: <description>. Together these cues fit <label>."). It teaches the output format and to restate the
  cues before answering (a cold start for GRPO), not real reasoning. ``target="evidence"`` trains
  ``<think>evidence rationale</think><answer>label</answer>``: the 2-4 measured cues that most support the
  gold label for this speaker and what they mean (:mod:`emollm.training.evidence`); every claim in it
  verifies against the measures.
- :func:`generation_budget`: the ``max_new_tokens`` a model trained to write rationales is saved with, so
  that generation has room to finish the longest rationale it learnt (and a longer one on new audio).
- :func:`build_examples`: prompt (rendered by an :class:`~emollm.inputs.PromptBuilder`, placeholders
  included, exactly as at inference) + completion + encoder frames per utterance.
- :func:`prepare_for_training`: LoRA on the LLM via PEFT; the projectors stay trainable, the encoders and
  base weights frozen.
- :class:`EmotionSFTTrainer`: TRL's ``SFTTrainer`` that builds ``inputs_embeds`` with the pseudo-tokens
  inside the loss and saves emollm checkpoints (LoRA adapter + projector weights + ``emollm_config.json``)
  at every save, so a resumed run restores the projectors too (and, given ``files``, more files beside them,
  such as the evidence model).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from trl import SFTTrainer

from emollm.errors import ConfigError
from emollm.inputs import TAGGED_TOKENS
from emollm.io import write_text_atomic
from emollm.modeling.adapters import build_inputs_embeds, get_projectors, unwrap_model
from emollm.training.optim import ProjectorLearningRateMixin
from emollm.training.resume import EmollmCheckpointMixin

TARGETS = ("label", "reasoning", "evidence")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")


def generation_budget(longest_completion: int, floor: int = TAGGED_TOKENS) -> int:
    """``max_new_tokens`` for a model trained on completions of up to ``longest_completion`` tokens.

    A quarter more than the longest training completion (a description of new audio may run longer than any
    in training), and never below ``floor``. Without it, the text route's template rationale, which restates
    the whole description, is cut before its answer in 45% of RAVDESS dev clips at the default 128.

    >>> generation_budget(60)
    128
    >>> generation_budget(181)
    227
    """
    if longest_completion < 0 or floor < 1:
        raise ConfigError(f"need longest_completion >= 0 and floor >= 1, got {longest_completion}, {floor}")
    return max(floor, math.ceil(1.25 * longest_completion))


def class_weights(labels: Sequence[str], scheme: str = "balanced") -> dict[str, float]:
    """Loss weight per class, from the training labels: rarer classes weigh more (UA matters).

    ``balanced`` is scikit-learn's ``n / (classes x n_c)``; ``sqrt`` its square root, rescaled, a gentler
    push that keeps more of the majority class's recall. Either way the weights average 1 over the training
    examples, so the loss keeps its scale and the learning rate its meaning. ``none`` gives 1 to every class.

    >>> class_weights(["a", "a", "a", "b"])
    {'a': 0.6666666666666666, 'b': 2.0}
    >>> {c: round(w, 3) for c, w in class_weights(["a", "a", "a", "b"], "sqrt").items()}
    {'a': 0.845, 'b': 1.464}

    Raises:
        ConfigError: an unknown scheme, or no labels.
    """
    if scheme not in CLASS_WEIGHTS:
        raise ConfigError(f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}; got {scheme!r}")
    if not labels:
        raise ConfigError("class weights need the training labels; none were given")
    counts = {c: labels.count(c) for c in sorted(set(labels), key=labels.index)}
    power = {"none": 0.0, "balanced": 1.0, "sqrt": 0.5}[scheme]
    raw = {c: (len(labels) / (len(counts) * n)) ** power for c, n in counts.items()}
    mean = sum(raw[c] * n for c, n in counts.items()) / len(labels)
    return {c: w / mean for c, w in raw.items()}


def template_rationale(label: str, transcript: str | None, prosody: str | None) -> str:
    """A rationale made from the shown cues and the gold label (a format-teaching cold start).

    >>> template_rationale("angry", "Leave me alone.", "Loud, high pitch, fast.")
    'The words are "Leave me alone.". The voice: Loud, high pitch, fast. Together these cues fit angry.'
    >>> template_rationale("sad", None, None)
    'The words are unknown. Together these cues fit sad.'
    """
    words = (
        f'The words are "{transcript.strip()}".'
        if transcript and transcript.strip()
        else "The words are unknown."
    )
    voice = f" The voice: {prosody.strip()}" if prosody and prosody.strip() else ""
    return f"{words}{voice} Together these cues fit {label}."


def make_completion(
    label: str,
    *,
    reasons: bool,
    target: str = "label",
    transcript: str | None = None,
    prosody: str | None = None,
    rationale: str | None = None,
) -> str:
    """The training target for one example.

    Args:
        label: The gold label.
        reasons: Whether the prompt template asks for ``<think>``/``<answer>`` tags.
        target: ``"label"``, ``"reasoning"`` or ``"evidence"`` (the last two need a template that asks for
            tags).
        transcript: Shown words (for the template-made rationale).
        prosody: Shown prosody description (for the template-made rationale).
        rationale: The evidence rationale (``target="evidence"``,
            :meth:`emollm.training.evidence.EvidenceModel.rationale`).

    >>> make_completion("happy", reasons=False)
    'happy'
    >>> make_completion("happy", reasons=True)
    '<answer>happy</answer>'
    >>> make_completion("sad", reasons=True, target="evidence", rationale="Slow speech. It fits sad.")
    '<think>Slow speech. It fits sad.</think><answer>sad</answer>'
    """
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {TARGETS}, got {target!r}")
    if not reasons:
        if target != "label":
            raise ConfigError(
                f"target={target!r} needs a template that asks for <think>/<answer> (acoustic or cot); "
                "the chosen template asks for the label only"
            )
        return label
    if target == "label":
        return f"<answer>{label}</answer>"
    if target == "evidence":
        if rationale is None:
            raise ConfigError("target='evidence' needs the utterance's evidence rationale; none was given")
        return f"<think>{rationale}</think><answer>{label}</answer>"
    return f"<think>{template_rationale(label, transcript, prosody)}</think><answer>{label}</answer>"


def build_examples(
    utterances: Sequence,
    prompts,
    *,
    target: str = "label",
    prosody: Mapping[str, str | None] | None = None,
    frames: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    rationales: Mapping[str, str] | None = None,
) -> list[dict]:
    """SFT examples: ``{"id", "prompt", "completion", "label", "<modality>_frames"...}`` per utterance.

    Args:
        utterances: Labelled :class:`~emollm.data.Utterance` objects.
        prompts: The :class:`~emollm.inputs.PromptBuilder` (label set, strategy, context window, system
            prompt, the model's placeholders) that renders each prompt exactly as at inference.
        target: See :func:`make_completion`.
        prosody: utterance id -> prosody description (None or missing: none shown).
        frames: adapter key -> (utterance id -> encoder frames), for a model with adapters
            (:func:`emollm.inputs.encode_utterances`); each becomes the example's ``<key>_frames``.
        rationales: utterance id -> evidence rationale, for ``target="evidence"``
            (:func:`emollm.training.evidence.build_evidence`).

    Raises:
        ConfigError: an utterance without a label, or without frames for an adapter, or adapters for a
            prompt without a placeholder (or the reverse), or an evidence target without its rationale.
    """
    reasons = prompts.asks_for_tags
    if prompts.modalities and not frames:
        first = utterances[0].id if utterances else "any utterance"
        raise ConfigError(
            f"no {'/'.join(prompts.modalities)} frames for {first}; the prompt's placeholder needs the "
            f"frames of the model's adapters (encode_utterances)"
        )
    if frames and not prompts.modalities:
        raise ConfigError(
            f"frames for adapters {sorted(frames)} but the prompt has no placeholder: build the "
            f"PromptBuilder with the model's placeholders"
        )
    prosody, rationales = prosody or {}, rationales or {}
    examples = []
    for utt in utterances:
        if utt.label is None:
            raise ConfigError(f"utterance {utt.id} has no label; SFT needs labelled data")
        description = prosody.get(utt.id)
        example = {
            "id": utt.id,
            "prompt": prompts.for_utterance(utt, description),
            "completion": make_completion(
                utt.label,
                reasons=reasons,
                target=target,
                transcript=utt.transcript,
                prosody=description,
                rationale=rationales.get(utt.id),
            ),  # fmt: skip
            "label": utt.label,
        }
        for key, by_id in (frames or {}).items():
            clip = by_id.get(utt.id)
            if clip is None:
                raise ConfigError(f"no {key} frames for {utt.id}; the model's {key} adapter needs them")
            example[f"{key}_frames"] = clip.tolist()
        examples.append(example)
    return examples


def prepare_for_training(model, peft_config=None, *, gradient_checkpointing: bool = False):
    """Wrap ``model`` with LoRA (if ``peft_config``) and set what trains: LoRA weights and projectors.

    Everything else (base weights, embeddings) is frozen. For a 4-bit model (QLoRA) PEFT's
    ``prepare_model_for_kbit_training`` runs first.

    Returns:
        The model to hand to :class:`EmotionSFTTrainer` (a ``PeftModel`` when ``peft_config`` is given).
    """
    projectors = get_projectors(model)
    if peft_config is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        model = get_peft_model(model, peft_config)
    else:
        model.requires_grad_(False)
    if projectors is not None:
        projectors.requires_grad_(True)
        projectors.float()  # trained in float32 even when the LLM is bf16/4-bit; cast at injection
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ConfigError("nothing to train: give a LoRA config (use_peft) and/or adapters")
    return model


def count_parameters(model) -> dict[str, int]:
    """Trainable parameters split into LoRA, projector and other, plus the total (trainable or not)."""
    counts = {"lora": 0, "projector": 0, "other_trainable": 0, "total": 0}
    for name, param in model.named_parameters():
        counts["total"] += param.numel()
        if not param.requires_grad:
            continue
        if "emollm_projectors" in name:
            counts["projector"] += param.numel()
        elif "lora_" in name:
            counts["lora"] += param.numel()
        else:
            counts["other_trainable"] += param.numel()
    counts["trainable"] = counts["lora"] + counts["projector"] + counts["other_trainable"]
    return counts


def label_log_probs(model, inputs: Mapping, autocast=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Log-probabilities of the label tokens, ``(B, L - 1)`` and zero elsewhere, with their mask.

    What ``model(**inputs, fused_lm_head=True)`` returns as ``log_probs`` and ``label_mask`` (TRL's fused LM
    head), computed by running the decoder and then the LM head, in float32, on the positions that predict a
    label token only. None for a model whose logits are scaled or soft-capped (the fused head knows how).

    Args:
        model: The causal LM, PEFT-wrapped or not.
        inputs: ``inputs_embeds``, ``attention_mask`` and ``labels`` (-100 where nothing is scored).
        autocast: The context the decoder runs in (the trainer's ``accelerator.autocast()``, which the
            wrapped model's own forward would have entered); none by default.
    """
    causal = unwrap_model(model)
    config = causal.config.get_text_config()
    scaled = (
        "final_logit_softcapping",
        "logit_scale",
        "output_multiplier",
        "lm_head_multiplier",
        "logits_scaling",
    )
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in scaled):
        return None
    head = causal.get_output_embeddings()
    decoder = getattr(causal, causal.base_model_prefix)
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    with autocast if autocast is not None else contextlib.nullcontext():
        hidden = decoder(**kwargs, use_cache=False).last_hidden_state
    labels = inputs["labels"][:, 1:]  # position t predicts token t + 1
    mask = labels != -100
    with torch.autocast(hidden.device.type, enabled=False):
        bias = None if head.bias is None else head.bias.float()
        logits = torch.nn.functional.linear(hidden[:, :-1][mask].float(), head.weight.float(), bias)
        picked = logits.log_softmax(-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    log_probs = torch.zeros(labels.shape, dtype=picked.dtype, device=picked.device)
    log_probs[mask] = picked
    return log_probs, mask


class EmotionSFTTrainer(EmollmCheckpointMixin, ProjectorLearningRateMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` with pseudo-token injection and emollm checkpoints.

    Pass the batches of :class:`~emollm.training.collators.MultimodalCollator`, a model from
    :func:`prepare_for_training`, and ``SFTConfig(remove_unused_columns=False,
    dataset_kwargs={"skip_prepare_dataset": True})`` (the collator tokenises).

    Args:
        base_model: Name or path of the base LLM, recorded in the checkpoint.
        adapters: The :class:`~emollm.modeling.emotion_lm.AdapterSpec` list, recorded in the checkpoint.
        reasoner_settings: EmotionReasoner settings recorded in the checkpoint (labels, strategy, prosody...).
        frame_normalizers: Per-speaker frame statistics of the training clips, recorded in the checkpoint.
        projector_learning_rate: The projectors' own peak learning rate (None: ``args.learning_rate``).
        training_record: How the run trains (class weights...), recorded in the checkpoint.
        files: More files written into every checkpoint and ``save_model`` folder, name -> text (atomically,
            after emollm's own): the recipe's evidence model (``emollm_evidence.json``).
        *args, **kwargs: As for ``SFTTrainer``.

    A batch with ``loss_weights`` (one per example: the collator's class weights) is trained on the
    weighted token loss, normalised like TRL's own (by the batch's token count, so the weights' mean of 1
    keeps the loss's scale, gradient accumulation included); without it the loss is TRL's.
    """

    def __init__(self, *args, files: Mapping[str, str] | None = None, **kwargs):
        self.extra_files = dict(files or {})
        super().__init__(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict=state_dict)
        folder = output_dir if output_dir is not None else self.args.output_dir
        for name, text in self.extra_files.items():
            write_text_atomic(Path(folder) / name, text)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Swap ``input_ids`` for ``inputs_embeds`` (projector vectors at the slots), then TRL's loss."""
        inputs = dict(inputs)
        projectors = get_projectors(model) or {}
        frames = {m: (inputs.pop(f"{m}_frames"), inputs.pop(f"{m}_mask")) for m in projectors}
        text_mask = inputs.pop("text_mask")
        input_ids = inputs.pop("input_ids")
        weights = inputs.pop("loss_weights", None)
        inputs["inputs_embeds"] = build_inputs_embeds(model, input_ids, frames or None, text_mask)
        if weights is None or return_outputs or not model.training:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        # log-probabilities of the label tokens only (zero elsewhere), never the full logits: TRL's fused head
        # on CUDA; elsewhere that kernel projects every position (its tile shapes stay fixed), ~20x the label
        # positions of a label-only target, so only the label positions go through the head
        compact = None
        if inputs["inputs_embeds"].device.type != "cuda":
            compact = label_log_probs(model, inputs, self.accelerator.autocast())
        if compact is None:
            outputs = model(**inputs, use_cache=False, fused_lm_head=True)
            compact = outputs.log_probs, outputs.label_mask
        log_probs, label_mask = compact
        per_token = -log_probs * weights.to(log_probs.dtype)[:, None]
        count = label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token.sum() / torch.as_tensor(count, device=per_token.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL: DDP averages
        return loss
