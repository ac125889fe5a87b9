"""Tests for tether.sequence._strategy: the choice, the exactness probe and shared plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tether import track
from tether.sequence import UnrollPlan, plan_unroll, unroll
from tether.sequence._strategy import choose, saturates


def _sparse(steps: int = 16, batch: int = 4) -> np.ndarray:
    starts = np.zeros((steps, batch), dtype=bool)
    starts[[1, 4, 5], 2] = True
    return starts


def test_probe_accepts_cpu_float_kernels() -> None:
    """On CPU the saturated reset / hold steps are exact, so auto keeps the spliced layout."""
    for lstm in (True, False):
        for dtype in (torch.float32, torch.float64):
            assert saturates(lstm, torch.device("cpu"), dtype)


def test_auto_picks_the_layout_by_cost() -> None:
    """Auto: fused without starts, spliced for sparse starts, padded when every step starts."""
    module, cpu, f32 = nn.LSTM(3, 4), torch.device("cpu"), torch.float32
    assert choose(module, cpu, f32, np.zeros((16, 4), dtype=bool)) == "fused"
    assert choose(module, cpu, f32, _sparse()) == "spliced"
    assert choose(module, cpu, f32, np.ones((16, 4), dtype=bool)) == "padded"
    assert choose(nn.RNN(3, 4), cpu, f32, _sparse()) == "chunked"


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("pattern", ["none", "sparse", "dense"])
def test_one_plan_serves_two_cores_exactly(kind: type[nn.RNNBase], pattern: str) -> None:
    """A plan shared by an actor and a critic core gives what planning each call gives, bit for bit."""
    torch.manual_seed(0)
    starts = {"none": np.zeros((16, 4), dtype=bool), "sparse": _sparse(),
              "dense": np.random.default_rng(1).random((16, 4)) < 0.5}[pattern]
    actor, critic = track(kind(3, 5, num_layers=2)), track(kind(3, 5, num_layers=2))
    x = torch.randn(16, 4, 3)
    plan = plan_unroll(actor, starts)
    assert isinstance(plan, UnrollPlan)
    assert plan.shape == (16, 4)
    for core in (actor, critic):
        y_plan, final_plan = unroll(core, x, plan, core.initial_state(4))
        y_each, final_each = unroll(core, x, starts, core.initial_state(4))
        assert torch.equal(y_plan, y_each)
        for a, b in zip(final_plan.tensors, final_each.tensors, strict=True):
            assert torch.equal(a, b)


def test_a_plan_copies_its_indices_once_per_device() -> None:
    """The lane indices go to a device once and are reused by every core the plan serves."""
    core = track(nn.LSTM(3, 4))
    plan = plan_unroll(core, _sparse())
    assert plan.strategy == "spliced"
    first = plan.index_on(torch.device("cpu"))
    assert plan.index_on(torch.device("cpu")) is first


def test_a_plan_refuses_another_shape_kind_or_strategy() -> None:
    """A plan used for another [T, B], another module type or another strategy says so."""
    lstm = track(nn.LSTM(3, 4))
    plan = plan_unroll(lstm, _sparse())
    with pytest.raises(ValueError, match=r"the plan is for \[T, B\] = \[16, 4\], but x is \[T=8, B=4"):
        unroll(lstm, torch.zeros(8, 4, 3), plan, lstm.initial_state(4))
    gru = track(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="the plan was made for a LSTM core, got a GRU"):
        unroll(gru, torch.zeros(16, 4, 3), plan, gru.initial_state(4))
    with pytest.raises(ValueError, match="differs from the plan's 'spliced'"):
        unroll(lstm, torch.zeros(16, 4, 3), plan, lstm.initial_state(4), strategy="padded")
    with pytest.raises(ValueError, match=r"expected episode_starts as a bool mask \[T, B\], got shape \(16,\)"):
        plan_unroll(lstm, np.zeros(16, dtype=bool))


def test_a_plan_cannot_be_edited_after_planning() -> None:
    """The plan's starts are a read-only copy: editing the caller's array cannot make it stale."""
    starts = _sparse()
    plan = plan_unroll(track(nn.GRU(3, 4)), starts)
    starts[0, 0] = True
    assert not plan.episode_starts[0, 0]
    with pytest.raises(ValueError, match="read-only"):
        plan.episode_starts[0, 0] = True


def test_a_hook_added_after_planning_falls_back_exactly() -> None:
    """A forward hook registered after planning runs chunked (the hook fires), with the same result."""
    torch.manual_seed(0)
    module = nn.LSTM(3, 4)
    core = track(module)
    plan = plan_unroll(core, _sparse())
    x = torch.randn(16, 4, 3)
    want, _ = unroll(core, x, plan, core.initial_state(4))
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    got, _ = unroll(core, x, plan, core.initial_state(4))
    assert calls
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
