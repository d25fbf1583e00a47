"""Adapter plumbing: specs, encoders + projectors, and the one path that builds ``inputs_embeds``.

Each :class:`AdapterSpec` names a frozen encoder (:mod:`emollm.modeling.encoders`) and a learnable
projector (:mod:`emollm.modeling.projectors`). The projector maps the encoder's frames to K vectors of the
LLM's hidden size, which replace the modality's placeholder (``<|audio|>``) in the prompt's embeddings
(:mod:`emollm.modeling.injection`). A modality may have several adapters (e.g. the utterance's prosody
functionals *and* its prosody frames, each with its projector): their K1 + K2 vectors fill its placeholder in
the order the specs are given. Everything per adapter (encoders, projectors, frames, frame statistics) is
keyed by :attr:`AdapterSpec.key`: the modality itself when it has one adapter, else the adapter's ``name``.
The projectors are registered on the LLM itself (attribute :data:`PROJECTORS_ATTR` of the base model), so
``.to(device)``, ``.parameters()``, optimisers and DDP see them with the LoRA weights. Scoring, generation
and training all build ``inputs_embeds`` through :func:`build_inputs_embeds` (or
:meth:`emollm.modeling.EmotionLM.pseudo_vectors`, its inference twin).

This module knows nothing of :class:`~emollm.modeling.EmotionLM` or of checkpoint files, so both
:mod:`emollm.modeling.emotion_lm` and :mod:`emollm.modeling.checkpoint` import it.

>>> import torch
>>> from emollm.modeling.injection import PSEUDO_TOKEN_ID
>>> class Toy(torch.nn.Module):  # any model with get_input_embeddings and a hidden size of 16
...     def __init__(self):
...         super().__init__()
...         self.embed = torch.nn.Embedding(10, 16)
...     def get_input_embeddings(self):
...         return self.embed
>>> model = Toy()
>>> encoders, projectors = build_adapters([AdapterSpec(projector="linear", num_tokens=2)], hidden_size=16)
>>> attach_projectors(model, projectors)
>>> ids = torch.tensor([[3, PSEUDO_TOKEN_ID, PSEUDO_TOKEN_ID, 4]])
>>> frames = (torch.randn(1, 25, encoders["audio"].output_dim), torch.ones(1, 25, dtype=torch.bool))
>>> build_inputs_embeds(model, ids, {"audio": frames}, text_mask=ids >= 0).shape
torch.Size([1, 4, 16])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from emollm.errors import ConfigError
from emollm.modeling.injection import PLACEHOLDERS, PSEUDO_TOKEN_ID, embed_with_pseudo_tokens

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
        name: The adapter's key when its modality has several adapters (letters, digits and ``_``, e.g.
            ``"functionals"``); empty: the modality is the key.

    >>> AdapterSpec(num_tokens=4).to_dict()["encoder"]
    'prosody_frames'
    >>> AdapterSpec().key, AdapterSpec(name="functionals").key
    ('audio', 'functionals')
    """

    modality: str = "audio"
    encoder: str = "prosody_frames"
    projector: str = "mlp"
    num_tokens: int = 8
    encoder_settings: dict = field(default_factory=dict)
    projector_settings: dict = field(default_factory=dict)
    normalize: str = "none"
    name: str = ""

    def __post_init__(self):
        from emollm.modeling.frame_norm import NORMALIZATIONS

        if self.modality not in PLACEHOLDERS:
            raise ConfigError(f"unknown modality {self.modality!r}; accepted: {sorted(PLACEHOLDERS)}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalize {self.normalize!r}; accepted: {', '.join(NORMALIZATIONS)}")
        if int(self.num_tokens) < 1:
            raise ConfigError(f"num_tokens must be >= 1, got {self.num_tokens}")
        if self.name and not self.name.isidentifier():
            raise ConfigError(
                f"an adapter name is letters, digits and '_' (it names frame fields); got {self.name!r}"
            )

    @property
    def key(self) -> str:
        """What the adapter's encoder, projector, frames and statistics are keyed by: its name or modality."""
        return self.name or self.modality

    def to_dict(self) -> dict:
        """The spec as a JSON-serialisable dict (what checkpoints store)."""
        return asdict(self)


def build_adapters(specs: Sequence[AdapterSpec | Mapping], hidden_size: int):
    """Encoders and projectors for ``specs``, in order.

    Returns:
        ``(encoders, projectors)``: a dict key -> frozen encoder, and a ``torch.nn.ModuleDict`` key ->
        projector mapping the encoder's ``output_dim`` to ``hidden_size`` (keys: :attr:`AdapterSpec.key`).

    Raises:
        ConfigError: two adapters with one key (a modality with several adapters needs a ``name`` for each),
            the adapters of one modality not given one after another, or an unknown encoder/projector name.

    >>> encoders, projectors = build_adapters([{"projector": "linear", "num_tokens": 4}], hidden_size=16)
    >>> encoders["audio"].name, projectors["audio"].num_tokens, projectors["audio"].out_dim
    ('prosody_frames', 4, 16)
    """
    specs = [s if isinstance(s, AdapterSpec) else AdapterSpec(**s) for s in specs]
    if not specs:
        return {}, torch.nn.ModuleDict()
    from emollm.modeling.encoders import build_encoder
    from emollm.modeling.projectors import build_projector

    check_adapter_specs(specs)
    encoders, projectors = {}, torch.nn.ModuleDict()
    for spec in specs:
        encoder = build_encoder(spec.encoder, **spec.encoder_settings)
        encoders[spec.key] = encoder
        projectors[spec.key] = build_projector(
            spec.projector,
            encoder.output_dim,
            hidden_size,
            num_tokens=spec.num_tokens,
            **spec.projector_settings,
        )
    return encoders, projectors


def check_adapter_specs(specs: Sequence[AdapterSpec]) -> None:
    """Refuse specs whose vectors could not fill the placeholders in order.

    Keys must be unique (a modality with several adapters names each), and the adapters of one modality
    must come one after another (its placeholder's slots are filled in spec order).

    >>> check_adapter_specs([AdapterSpec(name="a"), AdapterSpec(name="b")])
    >>> check_adapter_specs([AdapterSpec(), AdapterSpec()])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emollm.errors.ConfigError: two adapters share the key 'audio' ... its own name
    """
    keys = [s.key for s in specs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(
                f"two adapters share the key {key!r} (adapter keys: {keys}); give each adapter of a modality "
                f"its own name"
            )
    order = [s.modality for s in specs]
    for i, modality in enumerate(order):
        if modality in order[:i] and order[i - 1] != modality:
            raise ConfigError(
                f"the adapters of one modality must be given one after another (they fill its placeholder in "
                f"order); got the modalities {order}"
            )


def slot_counts(specs: Sequence[AdapterSpec]) -> dict[str, int]:
    """Modality -> pseudo-token slots at its placeholder: the sum of its adapters' K, in spec order.

    >>> slot_counts([AdapterSpec(name="functionals", num_tokens=4), AdapterSpec(name="frames", num_tokens=8)])
    {'audio': 12}
    """
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.modality] = counts.get(spec.modality, 0) + int(spec.num_tokens)
    return counts


def unwrap_model(model):
    """The plain ``transformers`` model inside DDP/accelerate (``.module``) and PEFT (``get_base_model``).

    >>> import torch
    >>> class Wrapper(torch.nn.Module):  # as DDP wraps a model
    ...     def __init__(self, module):
    ...         super().__init__()
    ...         self.module = module
    >>> inner = torch.nn.Linear(2, 2)
    >>> unwrap_model(Wrapper(inner)) is inner
    True
    """
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def attach_projectors(model, projectors: torch.nn.ModuleDict | None) -> None:
    """Register ``projectors`` on the base model inside ``model`` (see :data:`PROJECTORS_ATTR`).

    They move to the model's device; None removes them.

    >>> import torch
    >>> model = torch.nn.Linear(4, 4)
    >>> attach_projectors(model, torch.nn.ModuleDict({"audio": torch.nn.Linear(2, 4)}))
    >>> list(get_projectors(model))
    ['audio']
    >>> attach_projectors(model, None)
    >>> get_projectors(model) is None
    True
    """
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
    """Mean of ``token_embeds`` ``(B, T, H)`` where ``mask`` ``(B, T)`` is true, shape ``(B, H)``.

    >>> import torch
    >>> pooled_text_embeds(torch.arange(6.0).view(1, 3, 2), torch.tensor([[True, True, False]])).tolist()
    [[1.0, 2.0]]
    """
    weights = mask.to(token_embeds.dtype).unsqueeze(-1)
    return (token_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def project_frames(
    projectors: torch.nn.ModuleDict,
    batched: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    text_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every projector's K vectors, concatenated in projector order: ``(B, sum K, hidden)``.

    Args:
        projectors: adapter key -> projector.
        batched: adapter key -> ``(frames (B, T, D), mask (B, T))`` from
            :func:`emollm.modeling.encoders.pad_frames`.
        text_embeds: ``(B, hidden)`` pooled prompt embeddings (used by ``text_guided_mixer``).

    Raises:
        ConfigError: frames missing for a modality that has a projector, or given for one that has none.

    >>> import torch
    >>> from emollm.modeling.projectors import build_projector
    >>> projectors = torch.nn.ModuleDict({"audio": build_projector("linear", 22, 16, num_tokens=4)})
    >>> frames = (torch.randn(2, 30, 22), torch.ones(2, 30, dtype=torch.bool))
    >>> project_frames(projectors, {"audio": frames}).shape
    torch.Size([2, 4, 16])
    """
    missing = [m for m in projectors if m not in batched]
    extra = [m for m in batched if m not in projectors]
    if missing or extra:
        raise ConfigError(
            f"frames must be given for exactly the adapters {list(projectors)}; "
            f"missing {missing}, unexpected {extra}"
        )
    outputs = []
    for modality, projector in projectors.items():
        frames, mask = batched[modality]
        weight = next(projector.parameters())  # encoders give float32 on the CPU; the projector may not be
        frames, mask = frames.to(device=weight.device, dtype=weight.dtype), mask.to(weight.device)
        outputs.append(projector(frames, mask, text_embeds))
    return torch.cat(outputs, dim=1)


def build_inputs_embeds(
    model,
    input_ids: torch.Tensor,
    batched: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None,
    text_mask: torch.Tensor,
) -> torch.Tensor:
    """``inputs_embeds`` for a padded batch whose ``input_ids`` may hold pseudo-token slots.

    The training path (:mod:`emollm.training`) calls this inside the loss, so gradients reach the projectors.
    The module docstring has an example.

    Args:
        model: The LLM (possibly PEFT- or DDP-wrapped) with projectors attached.
        input_ids: ``(B, T)`` with :data:`~emollm.modeling.injection.PSEUDO_TOKEN_ID` at the slots.
        batched: modality -> ``(frames, mask)``, batched like ``input_ids``; None without adapters.
        text_mask: ``(B, T)`` true at the prompt's text tokens (no padding, slots or answer tokens): what the
            pooled text embedding of ``text_guided_mixer`` averages.

    Returns:
        ``(B, T, hidden)``: the token embeddings, with the projectors' vectors at the slots.
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
    vectors = project_frames(projectors, batched or {}, text)
    return embed_with_pseudo_tokens(embedding, input_ids, vectors)
