"""Tests for tether.nets.distributions: the pure-tensor categorical and Gaussian math."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Normal

from tether.nets.distributions import (
    categorical_entropy,
    categorical_log_prob,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
    gaussian_sample,
    masked_logits,
    normalized_log_probs,
)

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def logits_and_mask(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    rows = draw(st.integers(1, 6))
    n = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, n, generator=gen) * draw(st.sampled_from([0.1, 1.0, 30.0]))
    mask = torch.rand(rows, n, generator=gen) < draw(st.floats(0.2, 1.0))
    mask[torch.arange(rows), torch.randint(n, (rows,), generator=gen)] = True  # one allowed per row
    return logits, mask


@SETTINGS
@given(logits_and_mask())
def test_masked_categorical_matches_torch_categorical(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Log-probs and entropy equal torch's Categorical over the allowed actions only."""
    logits, mask = data
    log_probs = normalized_log_probs(masked_logits(logits, mask))
    reference = Categorical(logits=logits.masked_fill(~mask, -math.inf))
    actions = reference.sample()
    torch.testing.assert_close(categorical_log_prob(log_probs, actions), reference.log_prob(actions))
    expected_entropy = -(reference.probs * reference.logits.clamp(min=-1e30)).sum(-1)
    torch.testing.assert_close(categorical_entropy(log_probs), expected_entropy)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(logits)))


@SETTINGS
@given(logits_and_mask())
def test_sampling_never_picks_a_masked_action(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Gumbel-max sampling and the mode both stay inside the mask."""
    logits, mask = data
    masked = masked_logits(logits, mask)
    for _ in range(5):
        drawn = categorical_sample(masked)
        assert drawn.dtype == torch.int64
        assert mask.gather(-1, drawn.unsqueeze(-1)).all()
    assert mask.gather(-1, categorical_sample(masked, deterministic=True).unsqueeze(-1)).all()


def test_sampling_follows_the_probabilities() -> None:
    """Empirical frequencies of the Gumbel-max draw match softmax(logits)."""
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0]]).expand(20000, 4)
    counts = torch.bincount(categorical_sample(logits), minlength=4).float() / 20000
    torch.testing.assert_close(counts, torch.softmax(logits[0], -1), atol=0.015, rtol=0)


def test_masked_logits_use_the_finite_dtype_minimum() -> None:
    """A masked logit is finfo(dtype).min, never -inf; no mask leaves the logits untouched."""
    logits = torch.zeros(2, 3, dtype=torch.float16)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    out = masked_logits(logits, mask)
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all()
    assert out[0, 1].item() == torch.finfo(torch.float16).min
    assert masked_logits(logits, None) is logits


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_masked_log_probs_entropy_and_grads_stay_finite_in_low_precision(dtype: torch.dtype) -> None:
    """With huge logits and most actions masked, log-probs, entropy and gradients are finite."""
    torch.manual_seed(1)
    raw = (torch.randn(4, 16) * 200).to(dtype).requires_grad_(True)
    mask = torch.zeros(4, 16, dtype=torch.bool)
    mask[:, 3] = True
    mask[1:, 7] = True
    log_probs = normalized_log_probs(masked_logits(raw, mask))
    actions = categorical_sample(masked_logits(raw, mask))
    chosen = categorical_log_prob(log_probs, actions)
    entropy = categorical_entropy(log_probs)
    assert log_probs.dtype == dtype
    assert torch.isfinite(log_probs).all()
    assert torch.isfinite(chosen).all()
    assert torch.isfinite(entropy).all()
    (chosen.sum() + entropy.sum()).backward()
    assert raw.grad is not None
    assert torch.isfinite(raw.grad).all()
    # Even the log-prob of a masked action (a buffer holding a bad action) stays finite.
    assert torch.isfinite(categorical_log_prob(log_probs, torch.zeros(4, dtype=torch.long))).all()


def test_minus_inf_masking_would_break_half_precision() -> None:
    """The reason for the finite floor: -inf masking gives a NaN entropy gradient."""
    raw = torch.zeros(1, 3, dtype=torch.float16, requires_grad=True)
    mask = torch.tensor([[True, False, True]])
    log_probs = torch.log_softmax(raw.masked_fill(~mask, -math.inf), -1)
    (-(log_probs.exp() * log_probs).sum()).backward()
    assert raw.grad is not None
    assert torch.isnan(raw.grad).any()


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 4), st.floats(-2.0, 1.0), st.integers(0, 2**16))
def test_gaussian_matches_torch_normal(rows: int, dim: int, log_std: float, seed: int) -> None:
    """Log-density (summed over dims) and entropy equal torch's Normal."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    log_stds = torch.full((dim,), log_std, dtype=torch.float64) + torch.rand(dim, generator=gen,
                                                                             dtype=torch.float64)
    reference = Normal(mean, log_stds.exp())
    actions = gaussian_sample(mean, log_stds)
    torch.testing.assert_close(gaussian_log_prob(mean, log_stds, actions), reference.log_prob(actions).sum(-1))
    torch.testing.assert_close(gaussian_entropy(mean, log_stds), reference.entropy().sum(-1))
    assert gaussian_sample(mean, log_stds, deterministic=True) is mean


def test_gaussian_sample_statistics() -> None:
    """Samples have the requested mean and standard deviation."""
    torch.manual_seed(0)
    mean = torch.tensor([1.0, -2.0]).expand(40000, 2)
    log_std = torch.tensor([0.0, math.log(0.5)])
    draws = gaussian_sample(mean, log_std)
    torch.testing.assert_close(draws.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.tensor([1.0, 0.5]), atol=0.02, rtol=0)
