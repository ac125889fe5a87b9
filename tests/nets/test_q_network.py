"""Tests for tether.nets.q_network: RecurrentQNetwork's construction, ε-greedy acting and lifecycle."""

from __future__ import annotations

import copy
import doctest
import math
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import tether
from tether import EpisodeClock, RecurrentState, StaleStateError, StateMismatchError
from tether.errors import ActionMaskError, ConfigError
from tether.nets import QActResult, QValues, RecurrentQNetwork, q_heads, q_network

OBS = spaces.Box(-1.0, 1.0, (3,))
ACTIONS = {
    "discrete": spaces.Discrete(4),
    "multidiscrete": spaces.MultiDiscrete([3, 2, 4]),
}


def make(action: str | spaces.Space[Any] = "discrete", obs: spaces.Space[Any] = OBS,
         **kwargs: Any) -> RecurrentQNetwork:
    space = ACTIONS[action] if isinstance(action, str) else action
    kwargs.setdefault("hidden_sizes", (16,))
    kwargs.setdefault("core_hidden_size", 8)
    return RecurrentQNetwork(obs, space, **kwargs)


def one_step_q(net: RecurrentQNetwork, obs: Any, state: tether.RecurrentState) -> torch.Tensor:
    """Q ``[B, K, N]`` of one step from ``state``, through q_values (no clock: unchecked)."""
    obs_seq = obs.unsqueeze(0) if isinstance(obs, torch.Tensor) else obs
    with torch.no_grad():
        starts = np.zeros((1, state.batch_size), dtype=bool)
        return net.q_values(obs_seq, starts, state).q[0]


# ------------------------------------------------------------------------------------------------
# construction
@pytest.mark.parametrize(("action", "valid"), [
    ("discrete", [[True] * 4]),
    ("multidiscrete", [[True, True, True, False], [True, True, False, False], [True] * 4]),
])
def test_heads_pad_to_one_grid(action: str, valid: list[list[bool]]) -> None:
    """K heads of at most N actions; action_valid marks the real slots, the others are -inf."""
    net = make(action)
    assert net.action_valid.tolist() == valid
    assert (net.num_heads, net.num_actions) == (len(valid), 4)
    q = net.q_values(torch.randn(5, 2, 3), np.zeros((5, 2), dtype=bool), net.initial_state(2)).q
    assert q.shape == (5, 2, len(valid), 4)
    assert torch.isinf(q[..., ~net.action_valid]).all()
    assert (q[..., ~net.action_valid] < 0).all()
    assert torch.isfinite(q[..., net.action_valid]).all()


@pytest.mark.parametrize("space", [
    spaces.Box(-1.0, 1.0, (2,)), spaces.MultiBinary(3),
    spaces.Dict({"a": spaces.Discrete(2)}), spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))),
], ids=["box", "multibinary", "dict", "tuple"])
def test_other_action_spaces_are_refused_in_one_line(space: spaces.Space[Any]) -> None:
    """Anything but Discrete / MultiDiscrete: one ConfigError line naming the space."""
    with pytest.raises(ConfigError, match=r"^RecurrentQNetwork: R2D2 takes discrete actions: expected a"
                       r" Discrete or MultiDiscrete action space, got .*; discretise") as info:
        make(space)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
    assert repr(space) in str(info.value)


def test_bad_settings_are_refused() -> None:
    """A bad core kind, size or layer count: one line each."""
    with pytest.raises(ConfigError, match="expected core 'lstm' or 'gru', got 'rnn'"):
        make(core="rnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected num_layers to be a positive int, got 0"):
        make(num_layers=0)
    with pytest.raises(ValueError, match="expected core_hidden_size to be a positive int, got -1"):
        make(core_hidden_size=-1)


@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_state_layout_follows_the_core(core: str, layers: int) -> None:
    """The state is [L, B, H], (h, c) for an LSTM and h for a GRU."""
    net = make(core=core, num_layers=layers)  # type: ignore[arg-type]
    state = net.initial_state(3)
    assert state.has_c == (core == "lstm")
    assert tuple(state.h.shape) == (layers, 3, 8)
    assert (net.state_layers, net.hidden_size) == (layers, 8)


def test_an_empty_encoder_feeds_the_features_to_the_core() -> None:
    """hidden_sizes=() leaves the encoder empty: the core reads the observation features."""
    net = make(hidden_sizes=(), activation="tanh")
    assert len(net.encoder) == 0  # type: ignore[arg-type]
    assert net.rnn.input_size == 3  # the tracked core reads through to nn.LSTM
    assert net.act(torch.randn(2, 3), net.initial_state(2)).actions.shape == (2,)


@pytest.mark.parametrize("action", ["discrete", "multidiscrete"])
def test_dueling_is_value_plus_centred_advantage(action: str) -> None:
    """Q = V + A - mean(A over each head's valid actions), from the head's own layers."""
    net = make(action, dueling=True)
    features = torch.randn(5, 8)
    q = net.head(features)
    adv = net.head.linear(features).reshape(5, net.num_heads, net.num_actions)
    value = net.head.value(features)  # type: ignore[misc]
    for k, n in enumerate(net.head.sizes):
        expected = value + adv[:, k, :n] - adv[:, k, :n].mean(-1, keepdim=True)
        torch.testing.assert_close(q[:, k, :n], expected)
    # the advantage part averages to zero over each head's valid actions
    centred = torch.where(net.action_valid, q - value.unsqueeze(-1), torch.zeros(()))
    torch.testing.assert_close(centred.sum(-1), torch.zeros(5, net.num_heads), atol=1e-5, rtol=0)


def test_plain_head_has_no_value_stream() -> None:
    """Without dueling the head is one linear layer."""
    net = make()
    assert net.head.value is None
    assert not any(name.startswith("head.value") for name, _ in net.named_parameters())


# ------------------------------------------------------------------------------------------------
# acting
def test_act_is_greedy_at_epsilon_zero_and_deterministic() -> None:
    """ε = 0 (the default) and deterministic=True take the argmax of Q; log-prob 0; value = max Q."""
    net = make("multidiscrete")
    obs = torch.randn(6, 3)
    state = net.initial_state(6)
    q = one_step_q(net, obs, state)
    for deterministic in (False, True):
        out = net.act(obs, state, deterministic=deterministic)
        assert isinstance(out, QActResult)
        assert out.actions.dtype == torch.int64
        assert out.actions.tolist() == q.argmax(-1).tolist()
        torch.testing.assert_close(out.log_prob, torch.zeros(6))
        torch.testing.assert_close(out.value, q.amax(-1).mean(-1))
        torch.testing.assert_close(out.state.h, net.q_values(obs.unsqueeze(0), np.zeros((1, 6), dtype=bool),
                                                             state).state.h)
    assert not out.value.requires_grad


def test_deterministic_ignores_epsilon() -> None:
    """deterministic=True is greedy whatever epsilon holds (and whatever its length)."""
    net = make()
    net.set_epsilon([1.0, 1.0, 1.0])
    obs = torch.randn(5, 3)
    out = net.act(obs, net.initial_state(5), deterministic=True)
    assert out.actions.tolist() == one_step_q(net, obs, net.initial_state(5)).argmax(-1)[:, 0].tolist()


def test_log_prob_is_the_epsilon_greedy_probability() -> None:
    """log_prob = sum over heads of log((1 - ε)[a = greedy] + ε / n_allowed), per row's ε."""
    net = make("multidiscrete")
    B = 64
    eps = torch.linspace(0.0, 1.0, B)
    net.set_epsilon(eps)
    obs = torch.randn(B, 3)
    state = net.initial_state(B)
    greedy = one_step_q(net, obs, state).argmax(-1)
    out = net.act(obs, state)
    sizes = torch.tensor(net.head.sizes, dtype=torch.float32)
    prob = eps[:, None] / sizes + (1 - eps[:, None]) * (out.actions == greedy).float()
    torch.testing.assert_close(out.log_prob, prob.log().sum(-1))
    assert ((out.actions >= 0) & (out.actions < sizes.long())).all()


def test_epsilon_one_explores_uniformly_and_zero_never() -> None:
    """Row 0 (ε = 1) takes every action about equally often; row 1 (ε = 0) is always greedy."""
    net = make()
    net.set_epsilon([1.0, 0.0])
    obs = torch.randn(2, 3)
    state = net.initial_state(2)
    greedy = int(one_step_q(net, obs, state).argmax(-1)[1, 0])
    counts = torch.zeros(4)
    for _ in range(400):
        out = net.act(obs, state)
        counts[out.actions[0]] += 1
        assert int(out.actions[1]) == greedy
        assert math.isclose(float(out.log_prob[0]), math.log(0.25), rel_tol=1e-6)
    assert (counts > 60).all(), counts  # 100 expected per action; 60 is > 4 standard deviations off


@pytest.mark.parametrize("epsilon", [0.0, 1.0])
def test_masks_are_respected_greedy_and_random(epsilon: float) -> None:
    """A masked action is never chosen: not as the argmax, not at random."""
    net = make("multidiscrete")
    net.set_epsilon(epsilon)
    B = 32
    obs = torch.randn(B, 3)
    state = net.initial_state(B)
    greedy = one_step_q(net, obs, state).argmax(-1)  # [B, K]
    # forbid each row's greedy action of every head, and also action 0 of the last head
    masks = torch.ones(B, 9, dtype=torch.bool)
    offsets = [0, 3, 5]
    for k, offset in enumerate(offsets):
        masks[torch.arange(B), offset + greedy[:, k]] = False
    masks[:, 5] = masks[:, 5] & (greedy[:, 2] != 1)  # keep at least two actions in the last head
    for _ in range(20):
        out = net.act(obs, state, masks)
        for k, offset in enumerate(offsets):
            assert masks[torch.arange(B), offset + out.actions[:, k]].all()
    allowed = torch.stack([masks[:, o : o + n].sum(-1) for o, n in zip(offsets, (3, 2, 4), strict=True)], -1)
    if epsilon == 1.0:
        torch.testing.assert_close(out.log_prob, -allowed.float().log().sum(-1))
    else:
        q = one_step_q(net, obs, state)
        grid = net.head.allowed(masks, (B,))
        torch.testing.assert_close(out.value, q.masked_fill(~grid, -math.inf).amax(-1).mean(-1))


def test_masks_in_the_actor_critics_forms_are_accepted() -> None:
    """Masks come as the actor-critic takes them: one tensor, a list or a dict by factor name."""
    net = make(spaces.MultiDiscrete([2, 3]))
    obs, state = torch.randn(2, 3), net.initial_state(2)
    mask = torch.tensor([[True, False, False, False, True]] * 2)
    for given in (mask, [mask], {"action": mask}, mask.numpy()):
        assert net.act(obs, state, given).actions.tolist() == [[0, 2], [0, 2]]


def test_a_row_with_no_allowed_action_is_one_line() -> None:
    """A row whose mask allows nothing raises ActionMaskError naming the row."""
    net = make()
    masks = torch.ones(3, 4, dtype=torch.bool)
    masks[1] = False
    with pytest.raises(ActionMaskError, match=r"^act: the action mask of head 'action' allows no action in"
                       r" rows \[1\]; every row needs at least one True"):
        net.act(torch.randn(3, 3), net.initial_state(3), masks)


def test_env_actions_add_the_start_back() -> None:
    """env_actions turns zero-based indices into the space's values and dtype."""
    net = make(spaces.Discrete(3, start=-1))
    assert net.env_actions(torch.tensor([0, 2])).tolist() == [-1, 1]
    net = make(spaces.MultiDiscrete([[2, 3], [4, 2]]))
    assert (net.num_heads, net.num_actions) == (4, 4)
    out = net.act(torch.randn(5, 3), net.initial_state(5))
    assert out.actions.shape == (5, 4)
    assert net.env_actions(out.actions).shape == (5, 2, 2)


def test_value_is_max_q_and_keeps_the_state() -> None:
    """value() is max Q averaged over heads, without graph."""
    net = make("multidiscrete", dueling=True)
    obs, state = torch.randn(4, 3), net.initial_state(4)
    torch.testing.assert_close(net.value(obs, state), one_step_q(net, obs, state).amax(-1).mean(-1))
    assert not net.value(obs, state).requires_grad


# ------------------------------------------------------------------------------------------------
# epsilon
def test_set_epsilon_takes_one_rate_or_one_per_row() -> None:
    """One rate for all rows, or one per row (a sequence or a tensor); epsilon is not in state_dict."""
    net = make()
    net.set_epsilon(0.25)
    assert net.epsilon.tolist() == [0.25]
    net.set_epsilon(torch.tensor([0.5, 0.0]))
    assert net.epsilon.tolist() == [0.5, 0.0]
    net.set_epsilon(RecurrentQNetwork.actor_epsilons(4))
    assert net.epsilon.shape == (4,)
    assert "epsilon" not in net.state_dict()
    net.act(torch.randn(4, 3), net.initial_state(4))


@pytest.mark.parametrize(("values", "message"), [
    (1.5, r"expected rates in \[0, 1\], got 1.5 at index 0"),
    ([0.1, -0.2], r"expected rates in \[0, 1\], got -0.2 at index 1"),
    ([0.1, float("nan")], r"expected rates in \[0, 1\], got nan at index 1"),
    ([], r"expected one rate or one per env row \(a 1-D sequence\), got shape \[0\]"),
    ([[0.1, 0.2]], r"expected one rate or one per env row \(a 1-D sequence\), got shape \[1, 2\]"),
    (True, r"expected one rate or one per env row"),
    ("high", r"expected a number or a 1-D sequence of numbers in \[0, 1\], got 'high'"),
])
def test_set_epsilon_refuses_bad_rates(values: Any, message: str) -> None:
    """Bad rates: one ConfigError line; the old rates stay."""
    net = make()
    net.set_epsilon(0.3)
    with pytest.raises(ConfigError, match=r"^RecurrentQNetwork.set_epsilon: " + message) as info:
        net.set_epsilon(values)
    assert "\n" not in str(info.value)
    torch.testing.assert_close(net.epsilon, torch.tensor([0.3]))


def test_act_refuses_epsilon_of_another_row_count() -> None:
    """Three rates for five rows: one line saying what to set."""
    net = make()
    net.set_epsilon([0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match=r"^act: epsilon holds 3 rates but obs has 5 rows; call set_epsilon"
                       r" with one rate or 5 \(one per env row\)$"):
        net.act(torch.randn(5, 3), net.initial_state(5))


def test_actor_epsilons_follow_the_apex_schedule() -> None:
    """ε_i = 0.4 ** (1 + 7 i / (E - 1)); bad arguments are refused."""
    eps = RecurrentQNetwork.actor_epsilons(8)
    expected = torch.tensor([0.4 ** (1 + 7 * i / 7) for i in range(8)])
    torch.testing.assert_close(eps, expected)
    assert RecurrentQNetwork.actor_epsilons(1).tolist() == pytest.approx([0.4])
    with pytest.raises(ConfigError, match=r"expected num_envs to be an int >= 1, got 0"):
        RecurrentQNetwork.actor_epsilons(0)
    with pytest.raises(ConfigError, match=r"expected base in \[0, 1\] and alpha >= 0"):
        RecurrentQNetwork.actor_epsilons(2, base=1.5)


def test_the_same_seed_gives_the_same_choices() -> None:
    """ε-greedy draws come from torch's global generator: a seed replays them, another differs."""
    net = make("multidiscrete")
    net.set_epsilon(0.5)
    obs, state = torch.randn(16, 3), net.initial_state(16)

    def draws(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        return [net.act(obs, state).actions.tolist() for _ in range(5)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    generator_state = torch.get_rng_state()
    first = net.act(obs, state).actions
    torch.set_rng_state(generator_state)
    assert torch.equal(net.act(obs, state).actions, first)


# ------------------------------------------------------------------------------------------------
# lifecycle (the tracked step's checks)
def test_strict_mode_catches_a_missed_reset() -> None:
    """A row used after its episode ended, without reset, raises; the reset state passes."""
    net = make()
    clock = EpisodeClock(3)
    out = net.act(torch.zeros(3, 3), net.initial_state(3, clock))
    done = np.array([False, True, False])
    clock.advance(done)
    with tether.mode("strict"), pytest.raises(StaleStateError, match=r"rows \[1\] of the state"):
        net.act(torch.zeros(3, 3), out.state)
    with tether.mode("strict"):
        net.act(torch.zeros(3, 3), out.state.reset(done))


def test_strict_mode_catches_a_reused_state() -> None:
    """Feeding the pre-step state again raises StaleStateError naming the ticks."""
    net = make(core="gru")
    clock = EpisodeClock(2)
    state = net.initial_state(2, clock)
    net.act(torch.zeros(2, 3), state)
    clock.advance(np.zeros(2, dtype=bool))
    with tether.mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1"):
        net.act(torch.zeros(2, 3), state)


def test_bootstrap_value_reads_the_ending_episode_state() -> None:
    """value(bootstrap=True) is the sanctioned pre-reset read; a plain read is refused."""
    net = make()
    clock = EpisodeClock(2)
    out = net.act(torch.randn(2, 3), net.initial_state(2, clock))
    clock.advance(np.array([True, False]))
    with tether.mode("strict"):
        net.value(torch.randn(2, 3), out.state, bootstrap=True)
        with pytest.raises(StaleStateError, match=r"rows \[0\]"):
            net.value(torch.randn(2, 3), out.state)


def test_a_state_of_another_shape_is_refused() -> None:
    """A GRU state for an LSTM network, or the wrong batch, raises StateMismatchError."""
    net = make()
    with pytest.raises(StateMismatchError, match=r"act: expected a lstm \(h, c\) state shaped \[layers=1,"
                       r" batch=2 \(the obs rows\), hidden=8\], got h shaped \[1, 2, 8\]"):
        net.act(torch.zeros(2, 3), make(core="gru").initial_state(2))
    with pytest.raises(StateMismatchError, match=r"batch=2"):
        net.act(torch.zeros(2, 3), net.initial_state(3))
    with pytest.raises(TypeError, match="expected a RecurrentState, got tuple"):
        net.act(torch.zeros(2, 3), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))  # type: ignore[arg-type]


def test_memoryless_act_ignores_the_state_but_keeps_the_checks() -> None:
    """memoryless=True: act and value from any state equal act from zeros; a reused state still raises."""
    net = make(memoryless=True)
    obs = torch.randn(3, 3)
    clock = EpisodeClock(3)
    zeros = net.initial_state(3, clock)
    noisy = RecurrentState.from_tensors(tuple(torch.randn_like(t) for t in zeros.tensors), clock=clock)
    torch.testing.assert_close(net.act(obs, noisy).value, net.act(obs, zeros).value)
    torch.testing.assert_close(net.value(obs, noisy), net.value(obs, zeros))
    recurrent = copy.deepcopy(net)
    recurrent.memoryless = False
    assert not torch.allclose(recurrent.value(obs, noisy), recurrent.value(obs, zeros))
    clock.advance(np.zeros(3, dtype=bool))
    with tether.mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1"):
        net.act(obs, zeros)


# ------------------------------------------------------------------------------------------------
# copies
@pytest.mark.parametrize("dueling", [False, True])
def test_state_dict_round_trip(dueling: bool) -> None:
    """A fresh network loading the state_dict gives the same Q-values."""
    net = make("multidiscrete", dueling=dueling, core="gru", num_layers=2)
    other = make("multidiscrete", dueling=dueling, core="gru", num_layers=2)
    other.load_state_dict(net.state_dict())
    obs, starts = torch.randn(4, 2, 3), np.zeros((4, 2), dtype=bool)
    torch.testing.assert_close(other.q_values(obs, starts, other.initial_state(2)).q,
                               net.q_values(obs, starts, net.initial_state(2)).q)
    assert sorted(net.state_dict()) == sorted(name for name, _ in net.named_parameters())


def test_deepcopy_is_an_independent_target_network() -> None:
    """copy.deepcopy(online) equals it, shares no storage, and does not follow its updates."""
    online = make("multidiscrete", dueling=True)
    online.set_epsilon([0.1, 0.2])
    target = copy.deepcopy(online)
    online_ptrs = {p.data_ptr() for p in online.parameters()}
    assert not online_ptrs & {p.data_ptr() for p in target.parameters()}
    assert target.epsilon.tolist() == online.epsilon.tolist()
    obs, starts = torch.randn(3, 2, 3), np.zeros((3, 2), dtype=bool)
    before = target.q_values(obs, starts, target.initial_state(2)).q
    torch.testing.assert_close(before, online.q_values(obs, starts, online.initial_state(2)).q)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    torch.testing.assert_close(target.q_values(obs, starts, target.initial_state(2)).q, before)
    target.load_state_dict(online.state_dict())  # the periodic copy
    torch.testing.assert_close(target.q_values(obs, starts, target.initial_state(2)).q,
                               online.q_values(obs, starts, online.initial_state(2)).q)


def test_pickles() -> None:
    """The network pickles (for async actors and checkpoints of whole objects)."""
    net = make()
    clone = pickle.loads(pickle.dumps(net))
    obs = torch.randn(2, 3)
    torch.testing.assert_close(clone.value(obs, clone.initial_state(2)), net.value(obs, net.initial_state(2)))


# ------------------------------------------------------------------------------------------------
def test_public_names() -> None:
    """tether.nets exports the Q-network, its act result and its Q-values."""
    assert {"QActResult", "QValues", "RecurrentQNetwork"} <= set(tether.nets.__all__)
    assert tether.nets.QValues is QValues


@pytest.mark.parametrize("module", [q_network, q_heads])
def test_docstring_examples_run(module: Any) -> None:
    """The examples in the docstrings are doctests and they pass."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
