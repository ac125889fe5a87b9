"""CUDA: the core, the engine and the actor-critic on a GPU (skipped cleanly where none is)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tether import EpisodeClock, mode, track
from tether.sequence import unroll, unroll_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_a_tracked_loop_runs_on_cuda_without_a_sync_per_step(kind: type[nn.RNNBase]) -> None:
    """Steps, advances and resets with CUDA tensors: tether adds no host-device sync per step."""
    core = track(kind(4, 8).to(CUDA))
    clock = EpisodeClock(3)
    state = core.initial_state(3, clock)
    x = torch.randn(1, 3, 4, device=CUDA)
    done = np.array([False, True, False])
    with mode("strict"), torch.no_grad():
        _, state = core(x, state)  # warm-up outside the sync check (kernel selection)
        clock.advance(done)
        state = state.reset(done)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(50):
                _, state = core(x, state)
                clock.advance(done)
                state = state.reset(done)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert state.device.type == "cuda"


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_unroll_on_cuda_equals_the_reference(kind: type[nn.RNNBase]) -> None:
    """unroll with host-side starts on CUDA equals the per-step loop (outputs and gradients)."""
    torch.manual_seed(0)
    core = track(kind(4, 8, num_layers=2).to(CUDA))
    x = torch.randn(16, 5, 4, device=CUDA, requires_grad=True)
    starts = np.random.default_rng(0).random((16, 5)) < 0.2
    y, _ = unroll(core, x, starts, core.initial_state(5))
    (gx,) = torch.autograd.grad(y.sum(), x)
    y_ref, _ = unroll_reference(core, x, starts, core.initial_state(5))
    (gx_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)


def test_the_actor_critic_acts_and_evaluates_on_cuda_with_bf16_autocast() -> None:
    """act and evaluate_actions run on CUDA, also under bf16 autocast."""
    gym = pytest.importorskip("gymnasium")
    from tether.nets import FactoredRecurrentActorCritic  # noqa: PLC0415 (needs gymnasium)

    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2),
                                          shared_core=False).to(CUDA)
    clock = EpisodeClock(6)
    state = policy.initial_state(6, clock)
    obs = torch.randn(6, 4, device=CUDA)
    with mode("strict"), torch.autocast("cuda", dtype=torch.bfloat16):
        out = policy.act(obs, state)
        evaluated = policy.evaluate_actions(obs.expand(3, 6, 4), out.actions.expand(3, 6),
                                            np.zeros((3, 6), dtype=bool), state)
    assert out.actions.device.type == "cuda"
    assert torch.isfinite(evaluated.log_prob).all()
