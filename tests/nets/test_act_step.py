"""Tests for the lean act step: the same draws, log-probs, values and next state as the generic path."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from tether import EpisodeClock, RecurrentState, StaleStateError, mode
from tether.nets import FactoredRecurrentActorCritic

SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "multi": gym.spaces.MultiDiscrete([2, 3]),
    "box": gym.spaces.Box(-1.0, 1.0, (2,)),
    "dict": gym.spaces.Dict({"move": gym.spaces.Discrete(3), "aim": gym.spaces.Box(-1.0, 1.0, (2,))}),
}


def _generic_act(policy: FactoredRecurrentActorCritic, obs: torch.Tensor, state: RecurrentState,
                 masks: Any, deterministic: bool) -> tuple[torch.Tensor, ...]:
    """The step as act composed it before: split, both tracked cores, stack, the scoring heads."""
    with torch.no_grad():
        x = policy._obs(obs, 1, "act")
        mask = policy._masks(masks, (x.shape[0],), "act")
        z, zv = policy._encode(x)
        pi, vf = policy._split(state)
        y, pi = policy.actor_core(z.unsqueeze(0), pi)
        if policy.critic_core is None:
            yv, nxt = y, pi
        else:
            yv, vf = policy.critic_core(zv.unsqueeze(0), vf)
            nxt = RecurrentState.stack_layers((pi, vf))
        actions, log_prob, _, value = policy._outputs(y[0], yv[0], mask, None, deterministic)
    return actions, log_prob, value, *nxt.tensors


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("deterministic", [False, True])
def test_act_draws_what_the_generic_path_draws(space: str, shared: bool, deterministic: bool) -> None:
    """Same RNG: act's actions, log-probs, values and next state equal the generic step's."""
    torch.manual_seed(0)
    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1.0, 1.0, (4,)), SPACES[space],
                                          shared_core=shared, num_layers=2)
    masks = None
    if space in ("discrete", "dict"):
        masks = torch.tensor([[True, False, True], [False, True, True], [True, True, True]] * 2)
    clock = EpisodeClock(6)
    state = policy.initial_state(6, clock)
    for step in range(3):
        obs = torch.randn(6, 4)
        torch.manual_seed(step)
        out = policy.act(obs, state, masks, deterministic)
        torch.manual_seed(step)
        want = _generic_act(policy, obs, state, masks, deterministic)
        got = (out.actions, out.log_prob, out.value, *out.state.tensors)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)
        assert out.state.tick == (state.tick or 0) + 1
        done = np.array([False, True, False, False, False, True])
        clock.advance(done)
        state = out.state.reset(done)


@pytest.mark.parametrize("shared", [True, False])
def test_act_still_catches_a_stale_state(shared: bool) -> None:
    """The lean step keeps the tracked core's checks: a state not reset after its episode raises."""
    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2),
                                          shared_core=shared)
    clock = EpisodeClock(2)
    first = policy.initial_state(2, clock)
    state = policy.act(torch.zeros(2, 4), first).state
    clock.advance(np.array([False, True]))
    with mode("strict"), pytest.raises(StaleStateError, match=r"was not reset|were not reset"):
        policy.act(torch.zeros(2, 4), state)
    with mode("strict"), pytest.raises(StaleStateError, match="tick"):
        policy.act(torch.zeros(2, 4), first.reset())  # the state of tick 0, fed at tick 1


def test_act_in_off_mode_equals_strict_mode() -> None:
    """Off mode skips the checks but computes the same step."""
    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2))
    obs, state = torch.randn(3, 4), policy.initial_state(3)
    outs = []
    for m in ("strict", "off"):
        torch.manual_seed(1)
        with mode(m):
            outs.append(policy.act(obs, state))
    torch.testing.assert_close(outs[0].actions, outs[1].actions)
    torch.testing.assert_close(outs[0].state.tensors, outs[1].state.tensors)
