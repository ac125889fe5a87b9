"""Tests for tether.nets.actor_critic: FactoredRecurrentActorCritic end to end."""

from __future__ import annotations

import copy
import doctest
import math
import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import tether
import tether.nets
from tether import EpisodeClock, RecurrentState, StaleStateError, StateMismatchError
from tether.nets import FactoredRecurrentActorCritic, actor_critic, distributions, factors, heads, masks, step
from tether.policy import RecurrentPolicy

OBS = spaces.Box(-1.0, 1.0, (3, 2))
ACTION_SPACES = {
    "discrete": spaces.Discrete(4),
    "multidiscrete": spaces.MultiDiscrete([3, 2]),
    "box": spaces.Box(-1.0, 1.0, (2,)),
    "dict": spaces.Dict({"d": spaces.Discrete(3), "m": spaces.MultiDiscrete([2, 2]),
                         "b": spaces.Box(-1.0, 1.0, (2,))}),
}


def make(action: str | spaces.Space = "dict", **kwargs: Any) -> FactoredRecurrentActorCritic:
    space = ACTION_SPACES[action] if isinstance(action, str) else action
    kwargs.setdefault("hidden_sizes", (16,))
    kwargs.setdefault("core_hidden_size", 8)
    return FactoredRecurrentActorCritic(OBS, space, **kwargs)


def random_masks(policy: FactoredRecurrentActorCritic, lead: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random masks with at least one allowed choice in every component."""
    mask = torch.rand(*lead, policy.layout.mask_size, generator=gen) < 0.5
    for factor in policy.layout.discrete:
        start = factor.mask_offset
        for n in factor.sizes:
            pick = torch.randint(n, lead, generator=gen)
            mask[..., start : start + n] |= nn.functional.one_hot(pick, n).bool()
            start += n
    return mask


def rollout(policy: FactoredRecurrentActorCritic, steps: int, batch: int, *, seed: int = 0,
            with_masks: bool = False) -> dict[str, Any]:
    """Step ``act`` in strict mode with random episode ends; record what evaluate_actions needs."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    clock = EpisodeClock(batch)
    state = policy.initial_state(batch, clock)
    record: dict[str, Any] = {"initial": state.snapshot(), "obs": torch.randn(steps, batch, 3, 2, generator=gen)}
    record["masks"] = random_masks(policy, (steps, batch), gen) if with_masks else None
    actions, log_probs, values, starts = [], [], [], []
    previous_done = np.zeros(batch, dtype=bool)
    with tether.mode("strict"):
        for t in range(steps):
            out = policy.act(record["obs"][t], state, None if record["masks"] is None else record["masks"][t])
            actions.append(out.actions)
            log_probs.append(out.log_prob)
            values.append(out.value)
            starts.append(previous_done)
            done = rng.random(batch) < 0.25
            clock.advance(done)
            record["last_state"] = out.state
            state = out.state.reset(done)
            previous_done = done
    record.update(actions=torch.stack(actions), log_prob=torch.stack(log_probs), value=torch.stack(values),
                  starts=np.stack(starts), clock=clock, state=state)
    return record


# ----------------------------------------------------------------------------------------------
# the consistency contract: stepping act == one evaluate_actions
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("action", list(ACTION_SPACES))
def test_act_steps_equal_one_evaluate_actions(action: str, core: str, shared: bool) -> None:
    """Log-probs and values of the sampled actions agree along a trajectory with resets."""
    torch.manual_seed(0)
    policy = make(action, core=core, shared_core=shared, num_layers=2)
    run = rollout(policy, steps=12, batch=3)
    assert run["starts"][1:].any()  # the trajectory does contain resets
    result = policy.evaluate_actions(run["obs"], run["actions"], run["starts"], run["initial"],
                                     return_state=True)
    torch.testing.assert_close(result.log_prob, run["log_prob"], atol=1e-5, rtol=0)
    torch.testing.assert_close(result.value, run["value"], atol=1e-5, rtol=0)
    assert result.entropy.shape == (12, 3)
    assert result.state is not None
    for got, want in zip(result.state.tensors, run["last_state"].tensors, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
@pytest.mark.parametrize("action", ["discrete", "dict"])
def test_masked_act_steps_equal_evaluate_actions(action: str, shared: bool) -> None:
    """With action masks, sampled actions respect them and the log-probs still agree."""
    torch.manual_seed(1)
    policy = make(action, shared_core=shared)
    run = rollout(policy, steps=10, batch=4, seed=3, with_masks=True)
    for f, part in zip(policy.layout.factors, policy.layout.split(run["actions"].flatten(0, 1)), strict=True):
        if f.is_discrete:
            columns = run["masks"].flatten(0, 1)[:, f.mask_offset : f.mask_offset + f.mask_size]
            offsets = torch.tensor([sum(f.sizes[:i]) for i in range(len(f.sizes))])
            index = (part.view(len(part), -1) + offsets).long()
            assert columns.gather(1, index).all()
    result = policy.evaluate_actions(run["obs"], run["actions"], run["starts"], run["initial"], run["masks"])
    torch.testing.assert_close(result.log_prob, run["log_prob"], atol=1e-5, rtol=0)
    torch.testing.assert_close(result.value, run["value"], atol=1e-5, rtol=0)
    assert result.state is None


def test_masks_change_the_distribution() -> None:
    """A mask that allows one action makes it certain: log-prob 0, entropy 0."""
    policy = make("discrete")
    state = policy.initial_state(2)
    only = torch.tensor([[False, False, True, False]] * 2)
    out = policy.act(torch.zeros(2, 6), state, only)
    assert out.actions.tolist() == [2, 2]
    torch.testing.assert_close(out.log_prob, torch.zeros(2))
    result = policy.evaluate_actions(torch.zeros(1, 2, 6), out.actions[None], np.zeros((1, 2), bool), state,
                                     masks=only[None])
    torch.testing.assert_close(result.entropy, torch.zeros(1, 2))


# ----------------------------------------------------------------------------------------------
# state layout and lifecycle
def test_separate_critic_state_stacks_actor_layers_first() -> None:
    """State [L_actor + L_critic, B, H]: rows 0..L-1 are the actor core's, the rest the critic's."""
    policy = make("box", shared_core=False, num_layers=2, core="lstm")
    state = policy.initial_state(3)
    assert (state.num_layers, state.batch_size, state.hidden_size, state.has_c) == (4, 3, 8, True)
    assert policy.core == "lstm"
    obs = torch.randn(3, 6)
    out = policy.act(obs, state)
    with torch.no_grad():
        z = policy.encoder(obs).unsqueeze(0)
        zv = policy.critic_encoder(obs).unsqueeze(0)  # type: ignore[misc]  # the critic's own encoder
        _, (h_pi, c_pi) = policy.actor_core.module(z)
        y_vf, (h_vf, c_vf) = policy.critic_core.module(zv)  # type: ignore[union-attr]
    torch.testing.assert_close(out.state.h, torch.cat([h_pi, h_vf]))
    torch.testing.assert_close(out.state.c, torch.cat([c_pi, c_vf]))
    torch.testing.assert_close(out.value, policy.value_head(y_vf[0]).squeeze(-1))


def test_shared_gru_state_has_the_core_layers_only() -> None:
    """A shared GRU policy's state is h only, [num_layers, B, H]."""
    policy = make("discrete", core="gru", num_layers=3)
    state = policy.initial_state(2, EpisodeClock(2))
    assert (state.num_layers, state.has_c, state.tick, policy.core) == (3, False, 0, "gru")


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_act_state_bookkeeping_advances_one_tick(shared: bool) -> None:
    """The state act returns is stamped for the next tick and carries no graph."""
    policy = make(shared_core=shared)
    clock = EpisodeClock(2)
    out = policy.act(torch.zeros(2, 6), policy.initial_state(2, clock))
    assert out.state.tick == 1
    assert not out.state.has_graph
    assert out.state.clock is clock
    assert out.state.episode_ids.tolist() == [0, 1]  # type: ignore[union-attr]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_strict_mode_catches_a_reused_state(shared: bool) -> None:
    """Feeding the pre-step state again raises StaleStateError through the policy."""
    policy = make(shared_core=shared)
    clock = EpisodeClock(2)
    state = policy.initial_state(2, clock)
    policy.act(torch.zeros(2, 6), state)
    clock.advance(np.zeros(2, dtype=bool))
    with tether.mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1"):
        policy.act(torch.zeros(2, 6), state)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_strict_mode_catches_a_missed_reset(shared: bool) -> None:
    """Using a row after its episode ended, without reset, names the row."""
    policy = make(shared_core=shared)
    clock = EpisodeClock(3)
    out = policy.act(torch.zeros(3, 6), policy.initial_state(3, clock))
    clock.advance(np.array([False, True, False]))
    with tether.mode("strict"), pytest.raises(StaleStateError, match=r"rows \[1\] of the state"):
        policy.act(torch.zeros(3, 6), out.state)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_bootstrap_value_reads_the_ending_episode_state(shared: bool) -> None:
    """value(bootstrap=True) is the sanctioned pre-reset read; a plain read of it is refused."""
    policy = make(shared_core=shared)
    clock = EpisodeClock(2)
    obs = torch.randn(2, 6)
    out = policy.act(obs, policy.initial_state(2, clock))
    done = np.array([True, False])
    clock.advance(done)
    final_obs = torch.randn(2, 6)
    with tether.mode("strict"):
        bootstrap = policy.value(final_obs, out.state, bootstrap=True)
        with pytest.raises(StaleStateError, match=r"rows \[0\]"):
            policy.value(final_obs, out.state)
        policy.act(final_obs, out.state.reset(done))  # the loop goes on with the reset state
    with tether.mode("off"):
        torch.testing.assert_close(bootstrap, policy.value(final_obs, out.state))
    assert not bootstrap.requires_grad


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_value_equals_the_value_act_returns(shared: bool) -> None:
    """value(obs, state) is act's value, and does not advance the state."""
    policy = make(shared_core=shared)
    clock = EpisodeClock(2)
    state = policy.initial_state(2, clock)
    obs = torch.randn(2, 3, 2)
    value = policy.value(obs, state)
    with tether.mode("strict"):
        torch.testing.assert_close(value, policy.act(obs, state).value)


def test_evaluate_actions_backpropagates_into_every_parameter() -> None:
    """Policy, entropy and value losses reach the encoder, both cores, all heads and the log-std."""
    torch.manual_seed(0)
    policy = make("dict", shared_core=False)
    run = rollout(policy, steps=6, batch=2)
    result = policy.evaluate_actions(run["obs"], run["actions"], run["starts"], run["initial"])
    (result.log_prob.mean() + result.entropy.mean() + result.value.pow(2).mean()).backward()
    for name, param in policy.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_evaluate_returns_a_state_with_the_graph_when_asked() -> None:
    """return_state=True gives the final state T ticks on, carrying the graph for truncated BPTT."""
    policy = make("box", shared_core=False)
    initial = policy.initial_state(2, EpisodeClock(2))
    result = policy.evaluate_actions(torch.randn(5, 2, 6), torch.randn(5, 2, 2), np.zeros((5, 2), bool),
                                     initial, return_state=True)
    assert result.state is not None
    assert result.state.tick == 5
    assert result.state.num_layers == 2
    assert result.state.has_graph


# ----------------------------------------------------------------------------------------------
# construction
def _is_orthogonal(weight: torch.Tensor, gain: float) -> bool:
    w = weight.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(gram, gain**2 * torch.eye(len(gram), dtype=torch.float64), atol=1e-5)


def test_orthogonal_init_and_zero_biases() -> None:
    """Encoder sqrt(2), action heads 0.01, value head 1.0, recurrent weights 1.0; biases zero."""
    policy = make("dict", hidden_sizes=(16, 12), shared_core=False)
    linears = [m for m in policy.encoder if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    assert all(_is_orthogonal(m.weight, math.sqrt(2.0)) for m in linears)
    assert all(_is_orthogonal(h.linear.weight, 0.01) for h in policy.heads.heads)  # type: ignore[union-attr]
    assert _is_orthogonal(policy.value_head.weight, 1.0)
    for core in (policy.actor_core, policy.critic_core):
        assert core is not None
        assert _is_orthogonal(core.module.weight_hh_l0, 1.0)
    for name, param in policy.named_parameters():
        if name.endswith(("bias", "log_std")) or "bias_" in name:
            assert not param.detach().any(), name


def test_encoder_layers_and_activation_are_configurable() -> None:
    """Linear + LayerNorm + activation per hidden size; an empty encoder feeds the core directly."""
    policy = make("discrete", hidden_sizes=(10, 7), activation="relu")
    assert [type(m) for m in policy.encoder] == [nn.Linear, nn.LayerNorm, nn.ReLU] * 2
    assert policy.actor_core.module.input_size == 7
    bare = make("discrete", hidden_sizes=(), activation=nn.SiLU)
    assert len(bare.encoder) == 0
    assert bare.actor_core.module.input_size == 6


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"core": "rnn"}, ValueError, "expected core 'lstm' or 'gru', got 'rnn'"),
    ({"num_layers": 0}, ValueError, "expected num_layers to be a positive int, got 0"),
    ({"hidden_sizes": (8, -1)}, ValueError, "expected each hidden size to be a positive int, got -1"),
    ({"activation": "swish"}, ValueError, "expected activation to be one of"),
])
def test_bad_configuration_raises(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """Each bad setting says what it expected."""
    with pytest.raises(error, match=match):
        make("discrete", **kwargs)


def test_unsupported_spaces_raise_type_error() -> None:
    """A Text action space and a Text observation space (inside a Dict) are refused at construction."""
    with pytest.raises(TypeError, match=r"unsupported action space Text"):
        FactoredRecurrentActorCritic(OBS, spaces.Text(4))
    with pytest.raises(TypeError, match=r"unsupported observation space Text\(.*at obs\['name'\]"):
        FactoredRecurrentActorCritic(spaces.Dict({"name": spaces.Text(4)}), spaces.Discrete(2))


# ----------------------------------------------------------------------------------------------
# bad input
def test_obs_of_the_wrong_shape_raise() -> None:
    """act wants [B, *obs_shape] or [B, obs_size]; evaluate_actions wants [T, B, ...]."""
    policy = make("discrete")
    state = policy.initial_state(2)
    with pytest.raises(ValueError, match=r"act: expected obs shaped \[B, 3, 2\] \(or flattened \[B, 6\]\).*got \[2, 5\]"):
        policy.act(torch.zeros(2, 5), state)
    with pytest.raises(ValueError, match=r"evaluate_actions: expected obs shaped \[T, B, 3, 2\]"):
        policy.evaluate_actions(torch.zeros(2, 3, 2), torch.zeros(1, 2), np.zeros((1, 2), bool), state)


def test_obs_forms_are_equivalent() -> None:
    """Shaped, flattened and float64 numpy observations give the same result."""
    policy = make("discrete")
    state = policy.initial_state(2)
    obs = np.random.default_rng(0).normal(size=(2, 3, 2))
    a = policy.value(torch.as_tensor(obs, dtype=torch.float32), state)
    torch.testing.assert_close(policy.value(obs.reshape(2, 6), state), a)
    torch.testing.assert_close(policy.value(obs, state), a)


def test_masks_errors_surface_through_act() -> None:
    """Wrong mask shapes, Box masks and empty rows raise from act with the method named."""
    policy = make("dict")
    state = policy.initial_state(2)
    obs = torch.zeros(2, 6)
    with pytest.raises(ValueError, match=r"act: masks .*expected a bool mask shaped \[2, 7\], got \[2, 6\]"):
        policy.act(obs, state, torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="act: got a mask for head 'b', a Box action"):
        policy.act(obs, state, {"b": torch.ones(2, 2, dtype=torch.bool)})
    empty = torch.ones(2, 7, dtype=torch.bool)
    empty[1, :3] = False
    with pytest.raises(tether.nets.ActionMaskError, match=r"head 'd' allows no action in rows \[1\]"):
        policy.act(obs, state, empty)
    with pytest.raises(ValueError, match="has no discrete head"):
        make("box").act(obs, make("box").initial_state(2), torch.ones(2, 2, dtype=torch.bool))


def test_evaluate_actions_input_errors() -> None:
    """Actions, episode starts and discrete ranges are checked with clear messages."""
    policy = make("multidiscrete")
    state = policy.initial_state(2)
    obs = torch.zeros(3, 2, 6)
    starts = np.zeros((3, 2), bool)
    with pytest.raises(ValueError, match=r"expected actions shaped \[3, 2, 2\] .*got \[3, 2\]"):
        policy.evaluate_actions(obs, torch.zeros(3, 2, dtype=torch.long), starts, state)
    with pytest.raises(ValueError, match=r"actions of head 'action' fall outside \[0, n\) for sizes \[3, 2\]"):
        policy.evaluate_actions(obs, torch.full((3, 2, 2), 2, dtype=torch.long), starts, state)
    good = torch.zeros(3, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected episode_starts as bool \[T=3, B=2\]"):
        policy.evaluate_actions(obs, good, starts.astype(np.float32), state)
    discrete = make("discrete")
    as_column = discrete.evaluate_actions(obs, torch.zeros(3, 2, 1, dtype=torch.long), starts, state)
    as_floats = discrete.evaluate_actions(obs, torch.zeros(3, 2), starts, state)
    torch.testing.assert_close(as_column.log_prob, as_floats.log_prob)


def test_state_errors_name_the_policy_layout() -> None:
    """A state of the wrong kind, layers or batch is refused before the cores see it."""
    separate = make("discrete", shared_core=False)
    shared_state = make("discrete").initial_state(2)
    with pytest.raises(StateMismatchError, match=r"act: expected a lstm \(h, c\) state shaped"
                       r" \[layers=2 = 1 actor \+ 1 critic, batch=2"):
        separate.act(torch.zeros(2, 6), shared_state)
    with pytest.raises(StateMismatchError, match=r"batch=3 \(the obs rows\)"):
        separate.act(torch.zeros(3, 6), separate.initial_state(2))
    with pytest.raises(StateMismatchError, match="got h shaped"):
        separate.act(torch.zeros(2, 6), make("discrete", core="gru", shared_core=False).initial_state(2))
    with pytest.raises(TypeError, match="expected a RecurrentState, got tuple"):
        separate.act(torch.zeros(2, 6), (torch.zeros(1, 2, 8),))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# precision, compile, protocol, packaging
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_masked_policy_stays_finite(dtype: torch.dtype) -> None:
    """In fp16 / bf16 with large logits and heavy masks, log-probs, entropy and grads are finite."""
    torch.manual_seed(0)
    space = spaces.Dict({"d": spaces.Discrete(50), "m": spaces.MultiDiscrete([4, 4]), "b": spaces.Box(-1, 1, (2,))})
    policy = make(space).to(dtype)
    with torch.no_grad():
        for head in policy.heads.heads:
            head.linear.weight.mul_(5000)  # type: ignore[union-attr, operator]
    mask = torch.zeros(3, 58, dtype=torch.bool)
    mask[:, [0, 50, 54, 57]] = True
    mask[1, 20] = True
    state = policy.initial_state(3)
    out = policy.act(torch.randn(3, 6), state, mask)
    assert out.log_prob.dtype == dtype
    assert torch.isfinite(out.log_prob).all()
    assert out.actions.dtype == torch.float32  # indices stay exact in a Dict action tensor
    result = policy.evaluate_actions(torch.randn(4, 3, 6), out.actions.expand(4, 3, 5), np.zeros((4, 3), bool),
                                     state, mask.expand(4, 3, 58))
    for tensor in result[:3]:
        assert torch.isfinite(tensor).all()
    (result.log_prob.float().sum() + result.entropy.float().sum()).backward()
    for name, param in policy.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


# Dynamo reads `.grad` of the (non-leaf) core outputs while tracing and torch warns about it;
# the project turns warnings into errors, so this one torch-internal message is ignored here.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_stages_match_eager_and_keep_the_checks() -> None:
    """compile(fullgraph=True) gives the same outputs and gradients; lifecycle errors still raise."""
    torch.manual_seed(0)
    eager = make("dict", shared_core=False)
    compiled = copy.deepcopy(eager)
    compiled.compile(backend="aot_eager", fullgraph=True)
    clock = EpisodeClock(3)
    state = eager.initial_state(3, clock)
    gen = torch.Generator().manual_seed(0)
    mask = random_masks(eager, (4, 3), gen)
    obs = torch.randn(4, 3, 6, generator=gen)
    want = eager.act(obs[0], state, mask[0], deterministic=True)
    got = compiled.act(obs[0], state, mask[0], deterministic=True)
    for a, b in zip(want[:3], got[:3], strict=True):
        torch.testing.assert_close(a, b)
    sampled = compiled.act(obs[0], state, mask[0])
    assert sampled.actions.shape == (3, 5)
    actions = want.actions.expand(4, 3, 5)
    starts = np.zeros((4, 3), bool)
    starts[2, 1] = True
    # Made-up inputs run ahead of the clock from the live state (a snapshot means a replay of the past).
    results = [p.evaluate_actions(obs, actions, starts, state, mask) for p in (eager, compiled)]
    for a, b in zip(results[0][:3], results[1][:3], strict=True):
        torch.testing.assert_close(a, b)
    for result in results:
        (result.log_prob.sum() + result.entropy.sum() + result.value.sum()).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert set(compiled._compiled) == {"_encode", "_sample", "_outputs"}
    clock.advance(np.zeros(3, dtype=bool))
    with tether.mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1"):
        compiled.act(obs[1], state)
    restored = pickle.loads(pickle.dumps(compiled))
    assert restored._compiled == {}
    assert restored._compile_options == ((), {"backend": "aot_eager", "fullgraph": True})
    assert restored.state_dict().keys() == eager.state_dict().keys()


def test_policy_follows_the_protocol_and_steps_a_vector_env() -> None:
    """A gymnasium vector env takes env_actions; the clock and resets keep strict mode quiet."""
    envs = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
    policy = FactoredRecurrentActorCritic(envs.single_observation_space, envs.single_action_space,
                                          hidden_sizes=(8,), core_hidden_size=8)
    assert isinstance(policy, RecurrentPolicy)
    clock = EpisodeClock(2)
    state = policy.initial_state(2, clock)
    obs, _ = envs.reset(seed=0)
    with tether.mode("strict"):
        for _ in range(3):
            out = policy.act(torch.as_tensor(obs), state)
            env_actions = policy.env_actions(out.actions)
            assert envs.action_space.contains(env_actions)
            obs, _, terminated, truncated, _ = envs.step(env_actions)
            done = terminated | truncated
            clock.advance(done)
            state = out.state.reset(done)
    envs.close()


def test_public_names() -> None:
    """tether.nets exports exactly its public surface."""
    assert sorted(tether.nets.__all__) == ["ActionLayout", "ActionMaskError", "FactoredRecurrentActorCritic",
                                           "MemorylessPolicy", "ObservationLayout", "ObservationNorm", "PolicyStep",
                                           "QActResult", "QValues", "RecurrentQNetwork"]
    assert isinstance(make().initial_state(1), RecurrentState)


@pytest.mark.parametrize("module", [actor_critic, distributions, factors, heads, masks, step])
def test_docstring_examples_run(module: Any) -> None:
    """The examples in the docstrings are doctests and they pass."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
