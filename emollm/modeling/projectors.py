"""Learnable projectors: encoder frames ``(B, T, in_dim)`` -> exactly K pseudo-tokens ``(B, K, out_dim)``.

The trainable middle of the adapter route (frozen encoder -> projector -> K vectors written into the LLM's
``inputs_embeds`` by :func:`emollm.modeling.injection.embed_with_pseudo_tokens`). ``out_dim`` is the LLM's
hidden size. Every projector takes the same arguments, whatever T is (1 frame or 3000):

- ``features``: ``(B, T, in_dim)``, e.g. from :func:`emollm.modeling.encoders.pad_frames`;
- ``mask``: ``(B, T)`` bool, True on real frames (None: all real). Masked frames never change the output; a
  row without any real frame is treated as a single all-zero frame;
- ``text_embeds``: ``(B, out_dim)``, the pooled embeddings of the prompt's text (needed by
  ``text_guided_mixer`` only, ignored by the others).

Each has ``name`` (its key in :data:`PROJECTORS`), ``in_dim``, ``out_dim``, ``num_tokens``, ``settings()``
(JSON-ready: ``build_projector(p.name, **p.settings())`` rebuilds it) and ``num_parameters()``.

>>> import torch
>>> projector = build_projector("mlp", in_dim=22, out_dim=16, num_tokens=4)
>>> projector(torch.randn(2, 50, 22), torch.ones(2, 50, dtype=torch.bool)).shape
torch.Size([2, 4, 16])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emollm.errors import ConfigError


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _prepare(projector: nn.Module, features: torch.Tensor, mask: torch.Tensor | None):
    """Check the inputs; zero the masked frames; give every row a real frame (else one zero frame).

    Returns the features in the projector's dtype and device, and the bool mask.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ConfigError(f"projector features must be a (batch, frames, dim) tensor, got {shape}")
    if features.shape[-1] != projector.in_dim:
        raise ConfigError(
            f"encoder gives features of size {features.shape[-1]} but the projector expects "
            f"in_dim={projector.in_dim}; build the projector with the encoder's output_dim"
        )
    batch, frames, _ = features.shape
    parameter = next(projector.parameters())
    features = features.to(parameter.device, parameter.dtype)
    if mask is None:
        mask = torch.ones(batch, frames, dtype=torch.bool, device=features.device)
    elif tuple(mask.shape) != (batch, frames):
        raise ConfigError(
            f"mask must have shape (batch, frames) = {(batch, frames)}, got {tuple(mask.shape)}"
        )
    mask = mask.to(features.device, torch.bool)
    if frames == 0:
        features = features.new_zeros(batch, 1, projector.in_dim)
        mask = torch.ones(batch, 1, dtype=torch.bool, device=features.device)
    # padding and undefined values (NaN, e.g. a functional without a voiced vowel) read as 0
    features = torch.nan_to_num(features, nan=0.0).masked_fill(~mask.unsqueeze(-1), 0.0)
    empty = ~mask.any(dim=1)
    if empty.any():
        mask = mask.clone()
        mask[empty, 0] = True
    return features, mask


def segment_weights(mask: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Averaging weights ``(B, K, T)`` that split each row's real frames into ``K`` consecutive segments.

    Real frames are counted in order, skipping masked ones; with ``L`` real frames, segment ``k`` averages
    real frames ``floor(k * L / K)`` to ``ceil((k + 1) * L / K) - 1`` (``adaptive_avg_pool1d``'s split), so
    every segment holds at least one frame even when ``L < K`` (frames are then repeated). A row without
    real frames gets all-zero weights.

    >>> segment_weights(torch.tensor([[True, True, True, False]]), 2)[0].tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]]
    """
    mask = mask.bool()
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    rank = (mask.cumsum(dim=1) - 1).unsqueeze(1)  # (B, 1, T): index among the real frames
    k = torch.arange(num_segments, device=mask.device).view(1, -1, 1)
    start = torch.div(k * lengths.unsqueeze(-1), num_segments, rounding_mode="floor")
    end = -torch.div(-(k + 1) * lengths.unsqueeze(-1), num_segments, rounding_mode="floor")  # ceil
    inside = (rank >= start) & (rank < end) & mask.unsqueeze(1)
    weights = inside.float()
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)


def masked_segment_pool(features: torch.Tensor, mask: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Average each row's real frames into ``num_segments`` consecutive segments: ``(B, K, D)``.

    Masked frames are left out (see :func:`segment_weights`); masked features must be finite.

    >>> x = torch.arange(4.0).view(1, 4, 1)
    >>> masked_segment_pool(x, torch.tensor([[True, True, True, False]]), 3).flatten().tolist()
    [0.0, 1.0, 2.0]
    """
    weights = segment_weights(mask, num_segments).to(features.dtype)
    return torch.bmm(weights, features)


class LinearProjector(nn.Module):
    """LayerNorm, masked adaptive average pooling into K segments, one Linear to ``out_dim``.

    The cheapest adapter: each pseudo-token is a linear map of the mean of one K-th of the utterance.

    Args:
        in_dim: Size of the encoder's features.
        out_dim: The LLM's hidden size.
        num_tokens: K, the number of pseudo-tokens.

    >>> LinearProjector(22, 16, num_tokens=4).num_parameters()  # 2 * 22 + 22 * 16 + 16
    412
    """

    name = "linear"

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 8):
        super().__init__()
        self.in_dim, self.out_dim = _positive_int("in_dim", in_dim), _positive_int("out_dim", out_dim)
        self.num_tokens = _positive_int("num_tokens", num_tokens)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this projector with :func:`build_projector`."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "num_tokens": self.num_tokens}

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return _trainable(self)

    def forward(self, features, mask=None, text_embeds=None) -> torch.Tensor:
        """``(B, T, in_dim)`` features -> ``(B, num_tokens, out_dim)``; ``text_embeds`` is ignored."""
        features, mask = _prepare(self, features, mask)
        return self.proj(masked_segment_pool(self.norm(features), mask, self.num_tokens))


class MLPProjector(nn.Module):
    """LayerNorm, masked adaptive average pooling into K segments, then Linear-GELU-Linear (LLaVA-1.5).

    Args:
        in_dim: Size of the encoder's features.
        out_dim: The LLM's hidden size.
        num_tokens: K, the number of pseudo-tokens.
        hidden: Width of the hidden layer; None means ``out_dim``.

    >>> MLPProjector(22, 16, num_tokens=4).settings()["hidden"]
    16
    """

    name = "mlp"

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 8, hidden: int | None = None):
        super().__init__()
        self.in_dim, self.out_dim = _positive_int("in_dim", in_dim), _positive_int("out_dim", out_dim)
        self.num_tokens = _positive_int("num_tokens", num_tokens)
        self.hidden = out_dim if hidden is None else _positive_int("hidden", hidden)
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, self.hidden), nn.GELU(), nn.Linear(self.hidden, out_dim))

    def settings(self) -> dict:
        """The keyword arguments that rebuild this projector with :func:`build_projector`."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "num_tokens": self.num_tokens,
            "hidden": self.hidden,
        }

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return _trainable(self)

    def forward(self, features, mask=None, text_embeds=None) -> torch.Tensor:
        """``(B, T, in_dim)`` features -> ``(B, num_tokens, out_dim)``; ``text_embeds`` is ignored."""
        features, mask = _prepare(self, features, mask)
        return self.mlp(masked_segment_pool(self.norm(features), mask, self.num_tokens))


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sine/cosine encodings of (frame) positions: ``positions.shape + (dim,)``.

    >>> sinusoidal_positions(torch.tensor([0, 1]), 4).shape
    torch.Size([2, 4])
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / max(half, 1))
    angles = positions.unsqueeze(-1).float() * freqs
    encoding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    return nn.functional.pad(encoding, (0, dim - 2 * half))


class _ResamplerLayer(nn.Module):
    """Queries attend to the frames (pre-norm cross-attention), then a pre-norm feed-forward block."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm_queries, self.norm_frames, self.norm_ffn = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        frames = self.norm_frames(frames)
        attended, _ = self.attention(
            self.norm_queries(queries), frames, frames, key_padding_mask=padding, need_weights=False
        )
        queries = queries + attended
        return queries + self.ffn(self.norm_ffn(queries))


class ResamplerProjector(nn.Module):
    """K learnable queries cross-attend to the frames (a Q-Former-lite / Perceiver resampler).

    The frames are normalised (LayerNorm), projected to ``dim`` and given sinusoidal encodings of their
    order among the real frames (so padding never shifts them); each of ``num_layers`` layers lets the K
    queries attend to them (``nn.MultiheadAttention`` with ``key_padding_mask``) and applies a feed-forward
    block, both pre-norm and residual; a final LayerNorm and Linear map the queries to ``out_dim``. Unlike
    Flamingo's Perceiver resampler, the queries do not attend to themselves.

    Args:
        in_dim: Size of the encoder's features.
        out_dim: The LLM's hidden size.
        num_tokens: K, the number of learnable queries and pseudo-tokens.
        num_layers: Number of cross-attention layers.
        num_heads: Attention heads; must divide ``dim``.
        dim: Internal width; None means ``min(out_dim, 256)``.

    Raises:
        ConfigError: a non-positive size, or ``num_heads`` not dividing ``dim``.

    >>> ResamplerProjector(22, 32, num_tokens=4).settings()["dim"]
    32
    """

    name = "resampler"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tokens: int = 8,
        num_layers: int = 1,
        num_heads: int = 4,
        dim: int | None = None,
    ):
        super().__init__()
        self.in_dim, self.out_dim = _positive_int("in_dim", in_dim), _positive_int("out_dim", out_dim)
        self.num_tokens = _positive_int("num_tokens", num_tokens)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.num_heads = _positive_int("num_heads", num_heads)
        self.dim = min(out_dim, 256) if dim is None else _positive_int("dim", dim)
        if self.dim % self.num_heads:
            raise ConfigError(
                f"num_heads={num_heads} must divide the resampler's dim={self.dim}; pick num_heads among "
                f"{[h for h in range(1, min(self.dim, 16) + 1) if self.dim % h == 0]} or set dim"
            )
        self.norm_in = nn.LayerNorm(in_dim)
        self.proj_in = nn.Linear(in_dim, self.dim)
        self.queries = nn.Parameter(torch.randn(num_tokens, self.dim) * 0.02)
        self.layers = nn.ModuleList(_ResamplerLayer(self.dim, self.num_heads) for _ in range(self.num_layers))
        self.norm_out = nn.LayerNorm(self.dim)
        self.proj_out = nn.Linear(self.dim, out_dim)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this projector with :func:`build_projector`."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "num_tokens": self.num_tokens,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "dim": self.dim,
        }

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return _trainable(self)

    def forward(self, features, mask=None, text_embeds=None) -> torch.Tensor:
        """``(B, T, in_dim)`` features -> ``(B, num_tokens, out_dim)``; ``text_embeds`` is ignored."""
        features, mask = _prepare(self, features, mask)
        frames = self.proj_in(self.norm_in(features))
        frames = frames + sinusoidal_positions(mask.cumsum(dim=1) - 1, self.dim).to(frames.dtype)
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, frames, ~mask)
        return self.proj_out(self.norm_out(queries))


class TextGuidedMixer(nn.Module):
    """MSE-Adapter's Text-Guide-Mixer: modality tokens gated by the prompt's text via a Hadamard product.

    After Yang, Dong and Qiang, "MSE-Adapter: A Lightweight Plugin Endowing LLMs with the Capability to
    Perform Multimodal Sentiment Analysis and Emotion Recognition" (AAAI 2025, arXiv:2502.12478). The
    modality frames are normalised, pooled into K segments and projected to ``out_dim``; the pooled text
    embedding (``text_embeds``, e.g. the mean of the prompt's token embeddings) goes through a LayerNorm and
    a learned Linear map; their Hadamard (element-wise) product, broadcast over the K segments, feeds the
    final Linear-GELU-Linear projection. The product ties every pseudo-token to the text at the feature
    level, which is the TGM's point.

    Simplified from the paper: one modality per projector (the paper mixes audio and video and adds a
    Multi-Scale-Fusion module), the modality's temporal encoder is replaced by segment pooling, and the
    text is pooled by the caller; the LayerNorm on the text (the LLM's embeddings are small) is ours.

    Args:
        in_dim: Size of the encoder's features.
        out_dim: The LLM's hidden size (also the size of ``text_embeds``).
        num_tokens: K, the number of pseudo-tokens.
        hidden: Width of the final MLP's hidden layer; None means ``out_dim``.

    >>> mixer = TextGuidedMixer(22, 16, num_tokens=4)
    >>> mixer(torch.randn(1, 30, 22), None, torch.randn(1, 16)).shape
    torch.Size([1, 4, 16])
    """

    name = "text_guided_mixer"

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 8, hidden: int | None = None):
        super().__init__()
        self.in_dim, self.out_dim = _positive_int("in_dim", in_dim), _positive_int("out_dim", out_dim)
        self.num_tokens = _positive_int("num_tokens", num_tokens)
        self.hidden = out_dim if hidden is None else _positive_int("hidden", hidden)
        self.norm = nn.LayerNorm(in_dim)
        self.modality_proj = nn.Linear(in_dim, out_dim)
        self.text_norm = nn.LayerNorm(out_dim)
        self.text_proj = nn.Linear(out_dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(out_dim, self.hidden), nn.GELU(), nn.Linear(self.hidden, out_dim))

    def settings(self) -> dict:
        """The keyword arguments that rebuild this projector with :func:`build_projector`."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "num_tokens": self.num_tokens,
            "hidden": self.hidden,
        }

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return _trainable(self)

    def forward(self, features, mask=None, text_embeds=None) -> torch.Tensor:
        """``(B, T, in_dim)`` features and ``(B, out_dim)`` text embeddings -> ``(B, num_tokens, out_dim)``.

        Raises:
            ConfigError: ``text_embeds`` is None or not ``(B, out_dim)``.
        """
        features, mask = _prepare(self, features, mask)
        if text_embeds is None:
            raise ConfigError(
                "the text_guided_mixer projector needs text_embeds, the (batch, out_dim) pooled embeddings "
                "of the prompt's text; got None"
            )
        if tuple(text_embeds.shape) != (features.shape[0], self.out_dim):
            raise ConfigError(
                f"text_embeds must have shape (batch, out_dim) = {(features.shape[0], self.out_dim)}, got "
                f"{tuple(text_embeds.shape)}"
            )
        modality = self.modality_proj(masked_segment_pool(self.norm(features), mask, self.num_tokens))
        text = self.text_proj(self.text_norm(text_embeds.to(modality.device, modality.dtype)))
        return self.mlp(modality * text.unsqueeze(1))


PROJECTORS = {
    "linear": LinearProjector,
    "mlp": MLPProjector,
    "resampler": ResamplerProjector,
    "text_guided_mixer": TextGuidedMixer,
}
"""Projector name -> class; :func:`build_projector` looks names up here."""


def build_projector(name: str, in_dim: int, out_dim: int, num_tokens: int = 8, **kwargs) -> nn.Module:
    """The projector registered as ``name``: ``(B, T, in_dim)`` frames -> ``(B, num_tokens, out_dim)``.

    Args:
        name: A key of :data:`PROJECTORS`.
        in_dim: The encoder's ``output_dim``.
        out_dim: The LLM's hidden size.
        num_tokens: K, the number of pseudo-tokens it outputs.
        **kwargs: The projector's own settings (``hidden``, ``num_layers``, ``num_heads``, ``dim``).

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or bad settings.

    >>> build_projector("resampler", in_dim=22, out_dim=32, num_tokens=4).num_tokens
    4
    """
    if name not in PROJECTORS:
        raise ConfigError(f"unknown projector {name!r}; valid names: {', '.join(PROJECTORS)}")
    try:
        return PROJECTORS[name](in_dim=in_dim, out_dim=out_dim, num_tokens=num_tokens, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad settings for projector {name!r}: {exc}") from exc
