"""Projectors: K pseudo-tokens whatever the number of frames, padding invariance, gradients, settings."""

from __future__ import annotations

import json

import pytest
import torch

from emollm.errors import ConfigError
from emollm.modeling.projectors import (
    PROJECTORS,
    build_projector,
    masked_segment_pool,
    segment_weights,
)

IN_DIM, OUT_DIM = 6, 16
NAMES = sorted(PROJECTORS)


def make(name: str, num_tokens: int = 4, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_projector(name, IN_DIM, OUT_DIM, num_tokens=num_tokens, **kwargs)


def run(projector, features, mask=None, text=None):
    if text is None and projector.name == "text_guided_mixer":
        text = torch.randn(features.shape[0], OUT_DIM, generator=torch.Generator().manual_seed(1))
    return projector(features, mask, text)


def test_registry_lists_valid_names_on_unknown_name():
    assert set(PROJECTORS) == {"linear", "mlp", "resampler", "text_guided_mixer"}
    with pytest.raises(ConfigError, match="linear, mlp, resampler, text_guided_mixer"):
        build_projector("qformer", IN_DIM, OUT_DIM)
    with pytest.raises(ConfigError, match="bad settings"):
        build_projector("linear", IN_DIM, OUT_DIM, hidden=8)
    with pytest.raises(ConfigError, match="num_tokens"):
        build_projector("mlp", IN_DIM, OUT_DIM, num_tokens=0)
    with pytest.raises(ConfigError, match="num_heads=3 must divide"):
        build_projector("resampler", IN_DIM, OUT_DIM, num_heads=3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frames", [1, 3, 50])
@pytest.mark.parametrize("num_tokens", [1, 4])
def test_always_num_tokens_outputs(name, frames, num_tokens):
    projector = make(name, num_tokens)
    assert (projector.name, projector.in_dim, projector.out_dim, projector.num_tokens) == (
        name,
        IN_DIM,
        OUT_DIM,
        num_tokens,
    )
    out = run(projector, torch.randn(2, frames, IN_DIM))
    assert out.shape == (2, num_tokens, OUT_DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_padding_with_garbage_under_the_mask_changes_nothing(name):
    projector = make(name).eval()
    real = torch.randn(1, 7, IN_DIM)
    garbage = torch.cat([real, 1e3 * torch.randn(1, 5, IN_DIM)], dim=1)
    garbage[0, -1] = float("nan")  # even non-finite padding is ignored
    mask = torch.tensor([[True] * 7 + [False] * 5])
    text = torch.randn(1, OUT_DIM)
    alone = run(projector, real, None, text)
    padded = run(projector, garbage, mask, text)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
    # in a batch, next to a longer row, the short row is unchanged too
    batch = torch.cat([garbage, torch.randn(1, 12, IN_DIM)])
    both = run(projector, batch, torch.cat([mask, torch.ones(1, 12, dtype=torch.bool)]), text.repeat(2, 1))
    torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_row_without_real_frames_is_one_zero_frame(name):
    projector = make(name).eval()
    text = torch.randn(1, OUT_DIM)
    empty = run(projector, torch.randn(1, 5, IN_DIM), torch.zeros(1, 5, dtype=torch.bool), text)
    torch.testing.assert_close(empty, run(projector, torch.zeros(1, 1, IN_DIM), None, text))
    assert run(projector, torch.zeros(1, 0, IN_DIM), None, text).shape == (1, 4, OUT_DIM)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    projector = make(name).train()
    features = torch.randn(3, 9, IN_DIM)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 4:] = False
    run(projector, features, mask).pow(2).mean().backward()
    for pname, parameter in projector.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, pname
    assert projector.num_parameters() == sum(p.numel() for p in projector.parameters()) > 0


@pytest.mark.parametrize("name", NAMES)
def test_settings_round_trip(name):
    projector = make(name, num_tokens=3, seed=0)
    settings = projector.settings()
    assert json.loads(json.dumps(settings)) == settings
    twin = build_projector(name, **settings)
    assert twin.settings() == settings and twin.num_parameters() == projector.num_parameters()
    twin.load_state_dict(projector.state_dict())
    features = torch.randn(2, 10, IN_DIM)
    torch.testing.assert_close(run(projector.eval(), features), run(twin.eval(), features))


def test_linear_parameter_count_by_hand():
    projector = build_projector("linear", in_dim=22, out_dim=576, num_tokens=8)
    assert projector.num_parameters() == 2 * 22 + 22 * 576 + 576
    projector.norm.requires_grad_(False)
    assert projector.num_parameters() == 22 * 576 + 576
    mlp = build_projector("mlp", in_dim=22, out_dim=576, num_tokens=8, hidden=64)
    assert mlp.num_parameters() == 2 * 22 + (22 * 64 + 64) + (64 * 576 + 576)


@pytest.mark.parametrize("name", NAMES)
def test_in_dim_mismatch_is_explained(name):
    projector = make(name)
    with pytest.raises(
        ConfigError, match=f"encoder gives features of size 7 but the projector expects in_dim={IN_DIM}"
    ):
        run(projector, torch.randn(1, 4, 7))
    with pytest.raises(ConfigError, match="mask must have shape"):
        run(projector, torch.randn(1, 4, IN_DIM), torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="batch, frames, dim"):
        run(projector, torch.randn(4, IN_DIM))


def test_text_guided_mixer_needs_and_uses_text():
    mixer = make("text_guided_mixer").eval()
    features = torch.randn(2, 10, IN_DIM)
    with pytest.raises(ConfigError, match="needs text_embeds"):
        mixer(features, None, None)
    with pytest.raises(ConfigError, match="text_embeds must have shape"):
        mixer(features, None, torch.randn(2, OUT_DIM + 1))
    first, second = (mixer(features, None, torch.randn(2, OUT_DIM)) for _ in range(2))
    assert not torch.allclose(first, second)
    # the other projectors ignore text
    linear = make("linear").eval()
    torch.testing.assert_close(linear(features, None, torch.randn(2, OUT_DIM)), linear(features))


def test_segment_pooling_splits_real_frames_in_order():
    frames = torch.arange(6.0).view(1, 6, 1)
    mask = torch.tensor([[True, False, True, True, True, False]])  # real: 0, 2, 3, 4
    assert masked_segment_pool(frames, mask, 2).flatten().tolist() == [1.0, 3.5]
    assert masked_segment_pool(frames, mask, 4).flatten().tolist() == [0.0, 2.0, 3.0, 4.0]
    # more segments than frames: each segment still averages at least one frame
    two = masked_segment_pool(frames[:, :2], torch.ones(1, 2, dtype=torch.bool), 4)
    assert two.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    weights = segment_weights(torch.ones(2, 50, dtype=torch.bool), 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 8))


def test_projector_follows_its_dtype():
    projector = make("mlp").to(torch.bfloat16)
    out = projector(torch.randn(1, 5, IN_DIM))  # float32 features from an encoder
    assert out.dtype == torch.bfloat16
