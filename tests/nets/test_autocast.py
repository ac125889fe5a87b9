"""bf16 autocast (CPU here; the CUDA run is benchmarks/cuda_check.py): the checks accept the
autocast dtype beside a float32 state, and refuse a real dtype mismatch outside autocast."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from tether import EpisodeClock, RecurrentState, mode, track
from tether.nets import FactoredRecurrentActorCritic
from tether.sequence import unroll

BOX = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)


@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("shared_core", [False, True])
def test_act_and_evaluate_actions_under_bf16_autocast(core: str, shared_core: bool) -> None:
    """Strict mode raises nothing; the outputs are finite and near float32's."""
    torch.manual_seed(0)
    policy = FactoredRecurrentActorCritic(BOX, gym.spaces.Discrete(3), core=core, shared_core=shared_core)
    T, B = 6, 5
    obs = torch.randn(T, B, 4)
    actions = torch.randint(0, 3, (T, B))
    starts = np.zeros((T, B), dtype=bool)
    starts[3, 1] = True
    clock = EpisodeClock(B)
    with mode("strict"):
        state = policy.initial_state(B, clock)
        with torch.no_grad():
            ref = policy.evaluate_actions(obs, actions, starts, state)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = policy.evaluate_actions(obs, actions, starts, state)
            step = policy.act(obs[0], state)
        low.value.float().sum().backward()  # the graph runs back through the bf16 core
    for got, want in ((low.log_prob, ref.log_prob), (low.value, ref.value), (low.entropy, ref.entropy)):
        assert torch.isfinite(got.float()).all()
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    assert torch.isfinite(step.log_prob.float()).all()
    assert step.state.tick == clock.tick + 1


def test_unroll_takes_an_autocast_input_beside_a_float32_state() -> None:
    """An encoder's bf16 output under autocast feeds unroll from a float32 state; outside
    autocast the same mismatch is refused in one line."""
    torch.manual_seed(0)
    encoder, core = nn.Linear(3, 8), track(nn.LSTM(8, 6))
    x = torch.randn(4, 2, 3)
    starts = np.zeros((4, 2), dtype=bool)
    state = RecurrentState.zeros(1, 2, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(x)
        assert z.dtype == torch.bfloat16
        y, _ = unroll(core, z, starts, state)
    with torch.no_grad():
        want, _ = core.module(encoder(x), tuple(t.clone() for t in state.tensors))
    torch.testing.assert_close(y.float(), want, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match=r"unroll: expected x on cpu / torch.float32 \(the state's\), got cpu"
                                         r" / torch.bfloat16"):
        unroll(core, z.detach(), starts, state)
