"""``EmotionLM``: a causal LM, its tokenizer and, optionally, modality adapters, with two decoding modes.

- :meth:`EmotionLM.score`: no generation; the log-probability of every label after each prompt, from one
  batched pass over the prompts whose KV cache is reused for the labels
  (:func:`emollm.modeling.lm.score_labels`). Softmax over the labels gives a full distribution.
- :meth:`EmotionLM.generate`: batched greedy or sampled generation (left padding, stop at EOS).

Adapters (the pseudo-token route): for each modality an :class:`AdapterSpec` names a frozen encoder
(:mod:`emollm.modeling.encoders`) and a learnable projector (:mod:`emollm.modeling.projectors`). The
projector maps the encoder's frames to K vectors of the LLM's hidden size, which replace the modality's
placeholder (``<|audio|>``) in the prompt's embeddings (:mod:`emollm.modeling.injection`). The projectors
are registered on the LLM itself (attribute ``emollm_projectors`` of the base model), so ``.to(device)``,
``.parameters()``, optimisers and DDP see them with the LoRA weights. Scoring, generation and training
all build ``inputs_embeds`` through :func:`build_inputs_embeds` / :meth:`EmotionLM.pseudo_vectors`.

The prompt side (templates, context, prosody) lives in :mod:`emollm.prompting`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from emollm.errors import ConfigError
from emollm.labels import LabelSet, get_label_set
from emollm.modeling.base import DEFAULT_MODEL, load_base_model, prepare_tokenizer
from emollm.modeling.injection import (
    PLACEHOLDERS,
    PSEUDO_TOKEN_ID,
    embed_with_pseudo_tokens,
    tokenize_with_placeholders,
)
from emollm.modeling.lm import _encode_prompt, generate, score_labels

PROJECTORS_ATTR = "emollm_projectors"
"""Attribute of the (unwrapped) base model that holds the ``torch.nn.ModuleDict`` of projectors."""


@dataclass
class AdapterSpec:
    """One modality's adapter: which encoder feeds which projector, and how many pseudo-tokens it makes.

    Attributes:
        modality: ``"audio"`` or ``"video"``; its placeholder (``<|audio|>``) must be in the prompt.
        encoder: Name in :data:`emollm.modeling.encoders.ENCODERS` (``prosody_frames``, ``hf_audio``,
            ``vision_frames``).
        projector: Name in :data:`emollm.modeling.projectors.PROJECTORS` (``linear``, ``mlp``, ``resampler``,
            ``text_guided_mixer``).
        num_tokens: K, the number of pseudo-tokens that replace the placeholder.
        encoder_settings: Keyword arguments of the encoder (e.g. ``{"path": "/models/wavlm-base"}``).
        projector_settings: Extra keyword arguments of the projector (e.g. ``{"num_heads": 4}``).
        normalize: ``"none"`` feeds the encoder's frames as they are; ``"speaker"`` z-scores them with their
            speaker's statistics first (:mod:`emollm.modeling.frame_norm`), fitted label-free on the clips
            being encoded and saved with the checkpoint for inference.
    """

    modality: str = "audio"
    encoder: str = "prosody_frames"
    projector: str = "mlp"
    num_tokens: int = 8
    encoder_settings: dict = field(default_factory=dict)
    projector_settings: dict = field(default_factory=dict)
    normalize: str = "none"

    def __post_init__(self):
        from emollm.modeling.frame_norm import NORMALIZATIONS

        if self.modality not in PLACEHOLDERS:
            raise ConfigError(f"unknown modality {self.modality!r}; accepted: {sorted(PLACEHOLDERS)}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalize {self.normalize!r}; accepted: {', '.join(NORMALIZATIONS)}")
        if int(self.num_tokens) < 1:
            raise ConfigError(f"num_tokens must be >= 1, got {self.num_tokens}")

    def to_dict(self) -> dict:
        """The spec as a JSON-serialisable dict (what checkpoints store)."""
        return asdict(self)


def build_adapters(specs: Sequence[AdapterSpec | Mapping], hidden_size: int):
    """Encoders and projectors for ``specs``, in order.

    Returns:
        ``(encoders, projectors)``: a dict modality -> frozen encoder, and a ``torch.nn.ModuleDict``
        modality -> projector mapping the encoder's ``output_dim`` to ``hidden_size``.

    Raises:
        ConfigError: a modality given twice, or an unknown encoder/projector name.
    """
    specs = [s if isinstance(s, AdapterSpec) else AdapterSpec(**s) for s in specs]
    if not specs:
        return {}, torch.nn.ModuleDict()
    from emollm.modeling.encoders import build_encoder
    from emollm.modeling.projectors import build_projector

    modalities = [s.modality for s in specs]
    if len(set(modalities)) != len(modalities):
        raise ConfigError(f"each modality may have one adapter, got {modalities}")
    encoders, projectors = {}, torch.nn.ModuleDict()
    for spec in specs:
        encoder = build_encoder(spec.encoder, **spec.encoder_settings)
        encoders[spec.modality] = encoder
        projectors[spec.modality] = build_projector(
            spec.projector,
            encoder.output_dim,
            hidden_size,
            num_tokens=spec.num_tokens,
            **spec.projector_settings,
        )
    return encoders, projectors


def unwrap_model(model):
    """The plain ``transformers`` model inside DDP/accelerate (``.module``) and PEFT (``get_base_model``)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def attach_projectors(model, projectors: torch.nn.ModuleDict | None) -> None:
    """Register ``projectors`` on the base model inside ``model`` (see :data:`PROJECTORS_ATTR`)."""
    base = unwrap_model(model)
    if projectors is None:
        if hasattr(base, PROJECTORS_ATTR):
            delattr(base, PROJECTORS_ATTR)
        return
    device = next(base.parameters()).device
    setattr(base, PROJECTORS_ATTR, projectors.to(device))


def get_projectors(model) -> torch.nn.ModuleDict | None:
    """The projectors registered on ``model`` (through any DDP/PEFT wrapping), or None."""
    return getattr(unwrap_model(model), PROJECTORS_ATTR, None)


def pooled_text_embeds(token_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``token_embeds`` ``(B, T, H)`` where ``mask`` ``(B, T)`` is true, shape ``(B, H)``."""
    weights = mask.to(token_embeds.dtype).unsqueeze(-1)
    return (token_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def project_features(
    projectors: torch.nn.ModuleDict,
    features: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    text_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every projector's K vectors, concatenated in projector order: ``(B, sum K, hidden)``.

    Args:
        projectors: modality -> projector.
        features: modality -> ``(frames (B, T, D), mask (B, T))`` from
            :func:`emollm.modeling.encoders.pad_features`.
        text_embeds: ``(B, hidden)`` pooled prompt embeddings (used by ``text_guided_mixer``).

    Raises:
        ConfigError: features missing for a modality that has a projector, or given for one that has none.
    """
    missing = [m for m in projectors if m not in features]
    extra = [m for m in features if m not in projectors]
    if missing or extra:
        raise ConfigError(
            f"features must be given for exactly the adapted modalities {list(projectors)}; "
            f"missing {missing}, unexpected {extra}"
        )
    outputs = []
    for modality, projector in projectors.items():
        frames, mask = features[modality]
        weight = next(projector.parameters())  # encoders give float32 on the CPU; the projector may not be
        frames, mask = frames.to(device=weight.device, dtype=weight.dtype), mask.to(weight.device)
        outputs.append(projector(frames, mask, text_embeds))
    return torch.cat(outputs, dim=1)


def build_inputs_embeds(
    model,
    input_ids: torch.Tensor,
    features: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None,
    text_mask: torch.Tensor,
) -> torch.Tensor:
    """``inputs_embeds`` for a padded batch whose ``input_ids`` may hold pseudo-token slots.

    The training path (:mod:`emollm.training`) calls this inside the loss, so gradients reach the projectors.

    Args:
        model: The LLM (possibly PEFT- or DDP-wrapped) with projectors attached.
        input_ids: ``(B, T)`` with :data:`~emollm.modeling.injection.PSEUDO_TOKEN_ID` at the slots.
        features: modality -> ``(frames, mask)``, batched like ``input_ids``; None without adapters.
        text_mask: ``(B, T)`` true at the prompt's text tokens (no padding, slots or answer tokens): what the
            pooled text embedding of ``text_guided_mixer`` averages.
    """
    inner = model  # DDP's wrapper has no get_input_embeddings: look through it (PEFT forwards the call)
    while hasattr(inner, "module") and isinstance(inner.module, torch.nn.Module):
        inner = inner.module
    embedding = inner.get_input_embeddings()
    projectors = get_projectors(model)
    if not projectors:
        return embed_with_pseudo_tokens(embedding, input_ids, None)
    slots = input_ids == PSEUDO_TOKEN_ID
    token_embeds = embedding(input_ids.masked_fill(slots, 0))
    text = pooled_text_embeds(token_embeds, text_mask & ~slots)
    vectors = project_features(projectors, features or {}, text)
    return embed_with_pseudo_tokens(embedding, input_ids, vectors)


class EmotionLM:
    """A causal LM that scores labels and generates rationales, optionally hearing audio as pseudo-tokens.

    Args:
        model: A ``transformers`` causal LM (any architecture ``AutoModelForCausalLM`` loads), possibly with
            a PEFT adapter.
        tokenizer: Its tokenizer; a pad token (EOS) and left padding are set if missing.
        name: What to call the model in reports (its name or path).
        encoders: modality -> frozen encoder, for :meth:`encode`.
        projectors: modality -> projector (a ``ModuleDict``, in placeholder order); registered on the model.
        adapters: The :class:`AdapterSpec` list the encoders and projectors were built from (saved with
            checkpoints).
        frame_normalizers: modality -> :class:`~emollm.modeling.frame_norm.FrameNormalizer` for adapters
            with ``normalize="speaker"`` (checkpoints restore the training set's; see
            :meth:`fit_frame_normalizers`).
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str = "model",
        *,
        encoders: Mapping | None = None,
        projectors: torch.nn.ModuleDict | None = None,
        adapters: Sequence[AdapterSpec] = (),
        frame_normalizers: Mapping | None = None,
    ):
        prepare_tokenizer(tokenizer)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.encoders = dict(encoders or {})
        self.adapters = list(adapters)
        self.frame_normalizers = dict(frame_normalizers or {})
        if projectors is not None:
            attach_projectors(model, projectors)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        *,
        dtype=None,
        device: str | None = None,
        adapters: Sequence[AdapterSpec | Mapping] = (),
    ):
        """Load a built-in model name, a local folder, a hub id, or an emollm checkpoint folder.

        A folder with ``emollm_config.json`` is a trained checkpoint (:mod:`emollm.modeling.checkpoint`): its
        base model, LoRA adapter, encoders and projector weights are restored. Otherwise ``adapters`` builds
        fresh (untrained) adapters on the base model.
        """
        from emollm.modeling.checkpoint import is_checkpoint, load_checkpoint

        if is_checkpoint(name_or_path):
            return load_checkpoint(name_or_path, dtype=dtype, device=device)
        model, tokenizer = load_base_model(name_or_path, dtype=dtype, device=device)
        specs = [s if isinstance(s, AdapterSpec) else AdapterSpec(**s) for s in adapters]
        encoders, projectors = build_adapters(specs, model.get_input_embeddings().embedding_dim)
        return cls(
            model,
            tokenizer,
            name=name_or_path,
            encoders=encoders,
            projectors=projectors if specs else None,
            adapters=specs,
        )

    @property
    def projectors(self) -> torch.nn.ModuleDict | None:
        """The projectors attached to the model, or None."""
        return get_projectors(self.model)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities with a projector, in placeholder order (empty for a text-only model)."""
        projectors = self.projectors
        return tuple(projectors) if projectors else ()

    @property
    def num_tokens(self) -> dict[str, int]:
        """Modality -> K pseudo-tokens."""
        projectors = self.projectors or {}
        return {m: int(p.num_tokens) for m, p in projectors.items()}

    @property
    def placeholders(self) -> dict[str, str]:
        """Template variables for the prompt: ``{"audio": "<|audio|>"}`` for each adapted modality."""
        return {m: PLACEHOLDERS[m] for m in self.modalities}

    def encode(self, modality: str, inputs: Sequence, speakers: Sequence | None = None) -> list[torch.Tensor]:
        """The frames ``(T_i, D)`` the projector reads for each input (audio paths/arrays, image folders...).

        The frozen encoder's output, normalised per speaker when the adapter says so
        (:meth:`normalize_frames`); ``speakers`` gives one speaker id (or None) per input.
        """
        if modality not in self.encoders:
            raise ConfigError(
                f"no encoder for {modality!r}; this model has {sorted(self.encoders) or 'none'}"
            )
        return self.normalize_frames(modality, self.encoders[modality].encode(inputs), speakers)

    def normalizes(self, modality: str) -> bool:
        """Whether ``modality``'s adapter z-scores its frames per speaker (``normalize="speaker"``)."""
        return any(s.modality == modality and s.normalize == "speaker" for s in self.adapters)

    def fit_frame_normalizers(self, frames: Mapping[str, Sequence[torch.Tensor]], speakers: Sequence) -> None:
        """Fit :attr:`frame_normalizers` on raw encoder ``frames`` (modality -> one tensor per clip).

        Only modalities whose adapter has ``normalize="speaker"`` are fitted; labels are never needed.
        """
        from emollm.modeling.frame_norm import FrameNormalizer

        for modality, clips in frames.items():
            if self.normalizes(modality) and clips:
                self.frame_normalizers[modality] = FrameNormalizer.fit(clips, speakers)

    def normalize_frames(
        self, modality: str, frames: Sequence[torch.Tensor], speakers: Sequence | None = None
    ) -> list[torch.Tensor]:
        """Raw encoder ``frames`` as the projector reads them: unchanged, or z-scored per speaker.

        Raises:
            ConfigError: the adapter normalises per speaker but no statistics were fitted or loaded.
        """
        frames = list(frames)
        if not self.normalizes(modality):
            return frames
        normalizer = self.frame_normalizers.get(modality)
        if normalizer is None:
            raise ConfigError(
                f"the {modality} adapter normalises frames per speaker, but no statistics are fitted; call "
                "fit_frame_normalizers(...) or load a checkpoint that saved them"
            )
        speakers = [None] * len(frames) if speakers is None else list(speakers)
        if len(speakers) != len(frames):
            raise ConfigError(f"got {len(speakers)} speakers for {len(frames)} inputs; give one per input")
        return [normalizer(clip, speaker) for clip, speaker in zip(frames, speakers)]

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt with placeholders expanded to K pseudo-token slots."""
        add_special = not getattr(self.tokenizer, "chat_template", None)
        return [
            tokenize_with_placeholders(self.tokenizer, p, self.num_tokens, add_special_tokens=add_special)
            for p in prompts
        ]

    @torch.no_grad()
    def pseudo_vectors(
        self, ids: Sequence[Sequence[int]], features: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[torch.Tensor]:
        """The projector vectors for each prompt's slots, ``(sum K, hidden)`` per prompt.

        Args:
            ids: Prompts tokenised by :meth:`tokenize`.
            features: One dict per prompt, modality -> encoder frames ``(T, D)`` (from :meth:`encode`).
        """
        from emollm.modeling.encoders import pad_features

        if len(features) != len(ids):
            raise ConfigError(f"got features for {len(features)} prompts but there are {len(ids)} prompts")
        device = next(self.model.parameters()).device
        width = max(len(row) for row in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        text_mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            text_mask[i, : len(row)] = True
        batched = {}
        for modality in self.modalities:
            rows = []
            for i, item in enumerate(features):
                if modality not in item:
                    raise ConfigError(
                        f"prompt {i} has no {modality!r} features; this model needs {self.modalities}"
                    )
                rows.append(torch.as_tensor(item[modality], dtype=torch.float32))
            frames, mask = pad_features(rows)
            batched[modality] = (frames.to(device), mask.to(device))
        embedding = self.model.get_input_embeddings()
        slots = input_ids == PSEUDO_TOKEN_ID
        token_embeds = embedding(input_ids.masked_fill(slots, 0).to(device))
        text = pooled_text_embeds(token_embeds, (text_mask & ~slots).to(device))
        vectors = project_features(self.projectors, batched, text)
        return list(vectors.to(embedding.weight.dtype))

    def _inputs(self, prompts: Sequence[str], features):
        """Prompts as the lm functions take them: strings, or ids + pseudo vectors when adapters exist."""
        if not self.modalities:
            if features is not None:
                raise ConfigError("features were given but this model has no adapters (a text-only model)")
            return list(prompts), None
        if features is None:
            raise ConfigError(
                f"this model has {list(self.modalities)} adapters: pass features=[{{modality: frames}}, ...] "
                f"(see EmotionLM.encode), one per prompt"
            )
        ids = self.tokenize(prompts)
        return ids, self.pseudo_vectors(ids, features)

    def score(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        features: Sequence[Mapping[str, torch.Tensor]] | None = None,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Log-probabilities, shape ``(len(prompts), len(labels))``; see :func:`score_labels`.

        ``features`` (one dict per prompt, modality -> frames) is required when the model has adapters.
        """
        inputs, vectors = self._inputs(prompts, features)
        return score_labels(
            self.model,
            self.tokenizer,
            inputs,
            get_label_set(labels),
            length_normalize=length_normalize,
            batch_size=batch_size,
            pseudo_embeds=vectors,
        )

    def distribution(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        features: Sequence[Mapping[str, torch.Tensor]] | None = None,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Probabilities over the label set (softmax of :meth:`score`); each row sums to 1."""
        scores = self.score(
            prompts, labels, features=features, length_normalize=length_normalize, batch_size=batch_size
        )
        return scores.softmax(dim=-1)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        features: Sequence[Mapping[str, torch.Tensor]] | None = None,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> list[str]:
        """Completions of the prompts, in order; see :func:`emollm.modeling.lm.generate`."""
        inputs, vectors = self._inputs(prompts, features)
        return generate(
            self.model,
            self.tokenizer,
            inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            batch_size=batch_size,
            pseudo_embeds=vectors,
        )

    def prompt_length(self, prompt: str) -> int:
        """Number of tokens of ``prompt`` as the model sees it (placeholders count K each)."""
        if self.modalities:
            return len(self.tokenize([prompt])[0])
        return len(_encode_prompt(self.tokenizer, prompt))
