"""Tests for RecurrentQNetwork.q_values: the fused reset-aware replay equals the per-step loop."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

import tether
from tether import EpisodeClock, RecurrentState, ReplayAlignmentError
from tether.errors import ActionMaskError
from tether.nets import RecurrentQNetwork
from tether.sequence import plan_unroll

BOX = spaces.Box(-1.0, 1.0, (3,))
OBS_SPACES = {
    "box": BOX,
    "discrete": spaces.Discrete(5, start=2),
    "multidiscrete": spaces.MultiDiscrete([3, 2]),
    "multibinary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"cue": spaces.Discrete(4), "pos": spaces.Box(-1.0, 1.0, (2,))}),
    "tuple": spaces.Tuple((spaces.MultiBinary(2), spaces.Dict({"x": spaces.Box(0, 255, (2, 2), np.uint8)}))),
}


def make(obs: spaces.Space[Any] = BOX, action: spaces.Space[Any] | None = None, **kwargs: Any) -> RecurrentQNetwork:
    kwargs.setdefault("hidden_sizes", (16,))
    kwargs.setdefault("core_hidden_size", 8)
    return RecurrentQNetwork(obs, action if action is not None else spaces.MultiDiscrete([3, 2]), **kwargs)


def sample_obs(space: spaces.Space[Any], lead: tuple[int, ...], seed: int = 0) -> Any:
    """Observations ``[*lead, ...]`` sampled from ``space`` (a dict / tuple tree for Dict / Tuple)."""
    space.seed(seed)
    samples = [space.sample() for _ in range(int(np.prod(lead)))]
    return _stack(samples, lead)


def _stack(samples: list[Any], lead: tuple[int, ...]) -> Any:
    first = samples[0]
    if isinstance(first, Mapping):
        return {k: _stack([s[k] for s in samples], lead) for k in first}
    if isinstance(first, tuple):
        return tuple(_stack([s[i] for s in samples], lead) for i in range(len(first)))
    array = np.stack([np.asarray(s) for s in samples])
    return torch.as_tensor(array.reshape(*lead, *array.shape[1:]))


def reference(net: RecurrentQNetwork, obs: Any, starts: np.ndarray, state: RecurrentState
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The per-step masked loop on the network's plain pieces: zero the starting rows, step, Q."""
    x = net.obs_layout.features(obs, 2, net.head.linear.weight, "reference")
    T, B = int(x.shape[0]), int(x.shape[1])
    tensors = state.tensors
    qs = []
    for t in range(T):
        keep = torch.from_numpy(~starts[t]).to(x.dtype).view(1, B, 1)
        tensors = tuple(s * keep for s in tensors)
        z = net.encoder(x[t]).unsqueeze(0)
        if net.core == "lstm":
            y, (h, c) = net.rnn.module(z, (tensors[0], tensors[1]))
            tensors = (h, c)
        else:
            y, h = net.rnn.module(z, tensors[0])
            tensors = (h,)
        qs.append(net.head(y[0]))
    return torch.stack(qs), tensors


def random_state(net: RecurrentQNetwork, batch: int) -> RecurrentState:
    zeros = net.initial_state(batch)
    return RecurrentState.from_tensors(tuple(torch.randn_like(t) for t in zeros.tensors))


def starts_with_resets(steps: int, batch: int) -> np.ndarray:
    starts = np.zeros((steps, batch), dtype=bool)
    for t, b in ((0, 1), (2, 0), (5, 0), (3, 2), (steps - 1, 1)):
        if t < steps and b < batch:
            starts[t, b] = True
    return starts


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dueling", [False, True])
def test_q_values_equal_the_step_loop_with_resets(core: str, layers: int, dueling: bool) -> None:
    """Q, final state and parameter gradients equal the per-step loop, starts at t = 0 and inside."""
    net = make(core=core, num_layers=layers, dueling=dueling)
    T, B = 7, 3
    obs, starts = torch.randn(T, B, 3), starts_with_resets(T, B)
    state = random_state(net, B)
    out = net.q_values(obs, starts, state)
    q_ref, final_ref = reference(net, obs, starts, state)
    valid = net.action_valid
    torch.testing.assert_close(out.q[..., valid], q_ref[..., valid], atol=1e-5, rtol=1e-5)
    assert torch.isinf(out.q[..., ~valid]).all()
    for got, want in zip(out.state.tensors, final_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    weights = torch.randn(T, B, int(valid.sum()))
    grads = []
    for q in (out.q, q_ref):
        net.zero_grad()
        ((q[..., valid] * weights).sum() + sum(t.sum() for t in (out.state.tensors if q is out.q
                                                                  else final_ref))).backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() == {name for name, _ in net.named_parameters()}
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


@settings(max_examples=20, deadline=None)
@given(steps=st.integers(1, 9), batch=st.integers(1, 4), density=st.floats(0.0, 0.6),
       seed=st.integers(0, 2**16), core=st.sampled_from(["lstm", "gru"]))
def test_q_values_equal_the_step_loop_for_any_starts(steps: int, batch: int, density: float, seed: int,
                                                     core: str) -> None:
    """Property: for any pattern of starts the fused replay equals the loop."""
    T, B = steps, batch
    torch.manual_seed(seed)
    net = make(core=core, dueling=True)
    rng = np.random.default_rng(seed)
    starts = rng.random((T, B)) < density
    obs, state = torch.randn(T, B, 3), random_state(net, B)
    with torch.no_grad():
        q = net.q_values(obs, starts, state).q
        q_ref, _ = reference(net, obs, starts, state)
    torch.testing.assert_close(q[..., net.action_valid], q_ref[..., net.action_valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(OBS_SPACES))
def test_every_observation_space(name: str) -> None:
    """Each observation space encodes alike in act and q_values, and q_values equals the loop."""
    space = OBS_SPACES[name]
    net = make(space, spaces.Discrete(3), core="gru")
    T, B = 4, 3
    obs = sample_obs(space, (T, B))
    starts = starts_with_resets(T, B)
    state = net.initial_state(B)
    with torch.no_grad():
        q = net.q_values(obs, starts, state).q
        q_ref, _ = reference(net, obs, starts, state)
    torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=1e-5)
    first = sample_obs(space, (B,))
    out = net.act(first, state, deterministic=True)
    step_q = net.q_values(sample_obs(space, (1, B)), np.zeros((1, B), dtype=bool), state).q[0]
    assert out.actions.tolist() == step_q.argmax(-1)[:, 0].tolist()


def test_gradients_flow_and_no_grad_builds_no_graph() -> None:
    """Outside no_grad every parameter gets a gradient; inside it, nothing carries a graph."""
    net = make(dueling=True)
    obs, starts = torch.randn(5, 2, 3), starts_with_resets(5, 3)[:, :2]
    q = net.q_values(obs, starts, net.initial_state(2)).q
    # (a plain sum would not reach the dueling advantages: they are centred per head)
    (q[..., net.action_valid] * torch.randn(5, 2, 5)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    with torch.no_grad():
        out = net.q_values(obs, starts, net.initial_state(2))
    assert not out.q.requires_grad
    assert not out.state.tensors[0].requires_grad


def test_a_plan_is_shared_by_the_online_and_the_target_network() -> None:
    """q_values takes an UnrollPlan of net.rnn in place of the starts (plan once, unroll twice)."""
    online = make()
    target = copy.deepcopy(online)
    obs, starts = torch.randn(6, 3, 3), starts_with_resets(6, 3)
    plan = plan_unroll(online.rnn, starts)
    for net in (online, target):
        torch.testing.assert_close(net.q_values(obs, plan, net.initial_state(3)).q,
                                   net.q_values(obs, starts, net.initial_state(3)).q)


def test_masks_put_minus_inf_on_masked_actions() -> None:
    """q_values masks [T, B, D] set the masked actions to -inf and leave the rest."""
    net = make()
    T, B = 4, 2
    obs, starts = torch.randn(T, B, 3), np.zeros((T, B), dtype=bool)
    masks = torch.rand(T, B, 5) < 0.6
    masks[..., 0] = masks[..., 3] = True  # every head keeps an action
    plain = net.q_values(obs, starts, net.initial_state(B)).q
    masked = net.q_values(obs, starts, net.initial_state(B), masks).q
    allowed = net.head.allowed(masks, (T, B))
    torch.testing.assert_close(masked[allowed], plain[allowed])
    assert torch.isinf(masked[~allowed]).all()
    masks[2, 1, 3:] = False
    with pytest.raises(ActionMaskError, match=r"^q_values: the action mask of head 'action' \(component 1 of"
                       r" 2\) allows no action in \(t, b\) positions \[\(2, 1\)\]"):
        net.q_values(obs, starts, net.initial_state(B), masks)


def test_bad_starts_are_refused() -> None:
    """episode_starts must be bool [T, B]: one line saying so."""
    net = make()
    with pytest.raises(ValueError, match=r"^q_values: expected episode_starts as bool \[T=4, B=2\]"):
        net.q_values(torch.randn(4, 2, 3), np.zeros((4, 2), dtype=np.int64), net.initial_state(2))
    with pytest.raises(ValueError, match=r"^q_values: expected episode_starts as bool \[T=4, B=2\]"):
        net.q_values(torch.randn(4, 2, 3), np.zeros((4, 3), dtype=bool), net.initial_state(2))


def test_memoryless_q_values_ignore_the_state_and_restart_every_step() -> None:
    """memoryless=True: every step from zeros, whatever the state and the starts."""
    net = make(memoryless=True, dueling=True)
    T, B = 5, 3
    obs = torch.randn(T, B, 3)
    given_starts = np.zeros((T, B), dtype=bool)
    with torch.no_grad():
        q = net.q_values(obs, given_starts, random_state(net, B)).q
        q_zero = net.q_values(obs, starts_with_resets(T, B), net.initial_state(B)).q
        q_ref, _ = reference(net, obs, np.ones((T, B), dtype=bool), random_state(net, B))
    torch.testing.assert_close(q, q_zero)
    torch.testing.assert_close(q[..., net.action_valid], q_ref[..., net.action_valid], atol=1e-5, rtol=1e-5)
    recurrent = copy.deepcopy(net)
    recurrent.memoryless = False
    with torch.no_grad():
        assert not torch.allclose(recurrent.q_values(obs, given_starts, net.initial_state(B)).q[1:, :, 0, :3],
                                  q[1:, :, 0, :3])


# ------------------------------------------------------------------------------------------------
# a replay lines up with what acting saw, and misaligned starts are caught
def _act_rollout(net: RecurrentQNetwork, steps: int, batch: int, seed: int = 0) -> dict[str, Any]:
    T, B = steps, batch
    rng = np.random.default_rng(seed)
    clock = EpisodeClock(B)
    state = net.initial_state(B, clock)
    snapshot = state.snapshot()
    obs = torch.randn(T, B, 3)
    starts, values, actions = [], [], []
    previous = np.zeros(B, dtype=bool)
    with tether.mode("strict"):
        for t in range(T):
            out = net.act(obs[t], state)
            starts.append(previous)
            values.append(out.value)
            actions.append(out.actions)
            done = rng.random(B) < 0.3
            clock.advance(done)
            state = out.state.reset(done)
            previous = done
    return {"obs": obs, "starts": np.stack(starts), "values": torch.stack(values),
            "actions": torch.stack(actions), "snapshot": snapshot, "state": state}


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_replay_from_the_snapshot_reproduces_acting(core: str) -> None:
    """Replaying the rollout from its start snapshot with its starts gives act's values, silently."""
    net = make(core=core)
    net.set_epsilon(0.5)
    run = _act_rollout(net, 12, 4)
    with tether.mode("strict"), torch.no_grad():
        q = net.q_values(run["obs"], run["starts"], run["snapshot"]).q
    torch.testing.assert_close(q.amax(-1).mean(-1), run["values"], atol=1e-5, rtol=1e-5)
    assert run["starts"][1:].any()


def test_misaligned_starts_raise_in_strict_mode() -> None:
    """Starts all zero (the replay would carry memory across episodes) raise ReplayAlignmentError."""
    net = make()
    run = _act_rollout(net, 12, 4)
    with tether.mode("strict"), pytest.raises(ReplayAlignmentError, match=r"episode_starts miss \d+ episode"
                                              r" start\(s\) the clock recorded; they are all zero"):
        net.q_values(run["obs"], np.zeros_like(run["starts"]), run["snapshot"])


def test_memoryless_replay_with_extra_starts_is_silent() -> None:
    """The memoryless twin restarts every step on purpose: the replay check allows extra starts."""
    net = make(memoryless=True)
    run = _act_rollout(net, 8, 3)
    with tether.mode("strict"), torch.no_grad():
        q = net.q_values(run["obs"], run["starts"], run["snapshot"]).q
    torch.testing.assert_close(q.amax(-1).mean(-1), run["values"], atol=1e-5, rtol=1e-5)


def test_a_live_state_is_checked_as_one_long_step() -> None:
    """q_values from a live state that missed a reset raises, as a tracked step does."""
    net = make()
    clock = EpisodeClock(2)
    out = net.act(torch.randn(2, 3), net.initial_state(2, clock))
    clock.advance(np.array([True, False]))
    obs = torch.randn(3, 2, 3)
    with tether.mode("strict"), pytest.raises(tether.StaleStateError, match=r"rows \[0\]"):
        net.q_values(obs, np.zeros((3, 2), dtype=bool), out.state)
    starts = np.zeros((3, 2), dtype=bool)
    starts[0, 0] = True  # the row restarts at t = 0: allowed
    with tether.mode("strict"):
        net.q_values(obs, starts, out.state)
