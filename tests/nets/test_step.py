"""Tests for the exportable policy step: equal to act / value / evaluate_actions, and exportable."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from tether import RecurrentState
from tether.envs import make_vector_env
from tether.envs.factory import obs_normalizer
from tether.nets import FactoredRecurrentActorCritic, MemorylessPolicy, ObservationNorm, PolicyStep
from tether.policy import ExportablePolicy, RecurrentPolicy

T, B = 7, 5
CASES: dict[str, tuple[gym.Space[Any], gym.Space[Any]]] = {
    "box": (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-1.0, 1.0, (2,))),
    "discrete": (gym.spaces.Discrete(4, start=2), gym.spaces.Discrete(3)),
    "multi_discrete": (gym.spaces.MultiDiscrete([3, 2]), gym.spaces.MultiDiscrete([2, 3])),
    "dict": (gym.spaces.Dict({"cue": gym.spaces.Discrete(3, start=1), "pos": gym.spaces.Box(-1, 1, (2,)),
                              "nest": gym.spaces.Tuple((gym.spaces.MultiBinary(2),))}),
             gym.spaces.Dict({"move": gym.spaces.Discrete(3), "aim": gym.spaces.Box(-1.0, 1.0, (2,))})),
}
MASKED = {"discrete", "multi_discrete", "dict"}


def _policy(case: str, core: str, shared: bool) -> FactoredRecurrentActorCritic:
    torch.manual_seed(3)
    obs_space, action_space = CASES[case]
    policy = FactoredRecurrentActorCritic(obs_space, action_space, core=core,  # type: ignore[arg-type]
                                          shared_core=shared, num_layers=2, core_hidden_size=8,
                                          hidden_sizes=(16,), log_std_init=-0.3)
    with torch.no_grad():  # larger head weights than the init's 0.01 gain: argmaxes far from ties
        for param in policy.heads.parameters():
            param.mul_(30.0)
    return policy


def _batched(space: gym.Space[Any], rng: np.random.Generator) -> Any:
    """``B`` observations of ``space`` stacked per leaf (a dict / tuple tree for Dict / Tuple)."""
    space.seed(int(rng.integers(1 << 31)))
    samples = [space.sample() for _ in range(B)]
    if isinstance(space, gym.spaces.Dict):
        return {k: _stack([s[k] for s in samples], space[k]) for k in space.spaces}
    return _stack(samples, space)


def _stack(samples: list[Any], space: gym.Space[Any]) -> Any:
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_stack([s[i] for s in samples], sub) for i, sub in enumerate(space.spaces))
    if isinstance(space, gym.spaces.Dict):
        return {k: _stack([s[k] for s in samples], space[k]) for k in space.spaces}
    return np.stack(samples)


def _leaves(policy: FactoredRecurrentActorCritic, obs: Any) -> list[torch.Tensor]:
    """The step's observation inputs: one tensor per leaf, in the layout's leaf order."""
    out = []
    for leaf in policy.obs_layout.leaves:
        value = obs
        for key in leaf.path:
            value = value[key]
        out.append(torch.as_tensor(value))
    return out


def _masks(policy: FactoredRecurrentActorCritic, rng: np.random.Generator) -> torch.Tensor:
    """Random bool masks ``[B, D]`` with at least one allowed choice per component."""
    mask = rng.random((B, policy.layout.mask_size)) < 0.5
    for factor in policy.layout.discrete:
        start = factor.mask_offset
        for n in factor.sizes:
            mask[np.arange(B), start + rng.integers(n, size=B)] = True
            start += n
    return torch.as_tensor(mask)


def _warm_state(policy: FactoredRecurrentActorCritic, rng: np.random.Generator) -> RecurrentState:
    """A state with non-zero rows, so that a reset at step 0 changes something."""
    state = policy.initial_state(B)
    for _ in range(2):
        state = policy.act(_batched(policy.observation_space, rng), state).state
    return state


def _rollout(policy: FactoredRecurrentActorCritic, masked: bool, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    starts = rng.random((T, B)) < 0.3
    starts[0, 0] = starts[3, 2] = True
    state = first = _warm_state(policy, rng)
    obs, masks, acts, values, states, evaluated = [], [], [], [], [], []
    for t in range(T):
        obs.append(_batched(policy.observation_space, rng))
        masks.append(_masks(policy, rng) if masked else None)
        state = state.reset(starts[t])
        evaluated.append(policy.value(obs[t], state))
        out = policy.act(obs[t], state, masks[t], deterministic=True)
        states.append(out.state.tensors)
        acts.append(out.actions)
        values.append(out.value)
        state = out.state
    return {"first": first, "starts": starts, "obs": obs, "masks": masks, "actions": acts,
            "values": values, "states": states, "value_calls": evaluated}


def _run_step(step: PolicyStep, policy: FactoredRecurrentActorCritic, roll: dict[str, Any]) -> list[Any]:
    tensors, outputs = roll["first"].tensors, []
    for t in range(T):
        mask = [roll["masks"][t]] if step.action_masks else []
        with torch.no_grad():
            out = step(*_leaves(policy, roll["obs"][t]), *tensors, torch.as_tensor(roll["starts"][t]), *mask)
        n_state = len(tensors)
        tensors = out[-n_state:]
        outputs.append(out)
    return outputs


def _stack_tree(steps: list[Any]) -> Any:
    if isinstance(steps[0], dict):
        return {k: _stack_tree([s[k] for s in steps]) for k in steps[0]}
    if isinstance(steps[0], tuple):
        return tuple(_stack_tree([s[i] for s in steps]) for i in range(len(steps[0])))
    return np.stack(steps)


@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(("case", "masked"), [("box", False), ("discrete", False), ("discrete", True),
                                              ("multi_discrete", True), ("dict", False), ("dict", True)])
def test_deterministic_step_equals_act_and_value(core: str, shared: bool, case: str, masked: bool) -> None:
    """Over a rollout with resets at random rows (step 0 too): actions, value, next state equal act's."""
    policy = _policy(case, core, shared)
    roll = _rollout(policy, masked)
    step = policy.export_step(action_masks=masked)
    for t, out in enumerate(_run_step(step, policy, roll)):
        heads, value, state = out[: len(policy.layout.factors)], out[-len(roll["states"][t]) - 1], out[-len(
            roll["states"][t]):]
        want = policy.layout.split(roll["actions"][t])
        for got_head, want_head in zip(heads, want, strict=True):
            torch.testing.assert_close(got_head, want_head)
        torch.testing.assert_close(value, roll["values"][t])
        torch.testing.assert_close(value, roll["value_calls"][t])
        for got_t, want_t in zip(state, roll["states"][t], strict=True):
            torch.testing.assert_close(got_t, want_t)


@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(("case", "masked"), [("box", False), ("discrete", True), ("multi_discrete", False),
                                              ("multi_discrete", True), ("dict", True)])
def test_stochastic_parameters_are_the_distributions_evaluate_actions_scores(
        core: str, shared: bool, case: str, masked: bool) -> None:
    """The step's distribution parameters give evaluate_actions' log-probs, entropies and values."""
    policy = _policy(case, core, shared)
    roll = _rollout(policy, masked, seed=1)
    outputs = _run_step(policy.export_step(deterministic=False, action_masks=masked), policy, roll)
    masks = torch.stack(roll["masks"]) if masked else None
    with torch.no_grad():
        result = policy.evaluate_actions(_stack_tree(roll["obs"]), torch.stack(roll["actions"]), roll["starts"],
                                         roll["first"], masks)
    for t, out in enumerate(outputs):
        log_prob, entropy, params = torch.zeros(B), torch.zeros(B), list(out)
        for factor, action in zip(policy.layout.factors, policy.layout.split(roll["actions"][t]), strict=True):
            if factor.is_discrete:
                parts = torch.split(params.pop(0), list(factor.sizes), dim=-1)
                index = action.reshape(B, -1)
                for i, part in enumerate(parts):
                    dist = Categorical(logits=part)
                    log_prob += dist.log_prob(index[:, i])
                    entropy += dist.entropy()
            else:
                mean, log_std = params.pop(0), params.pop(0)
                dist = Normal(mean, log_std.exp())  # type: ignore[assignment]
                log_prob += dist.log_prob(action).sum(-1)
                entropy += dist.entropy().sum(-1)
        torch.testing.assert_close(log_prob, result.log_prob[t])
        torch.testing.assert_close(entropy, result.entropy[t])
        torch.testing.assert_close(params[0], result.value[t])


def test_the_reset_happens_inside_the_graph() -> None:
    """A row with episode_start True gives the output of a zero state; other rows are untouched."""
    policy = _policy("box", "lstm", True)
    step = policy.export_step()
    obs, h, c, _ = step.example_inputs(3)
    obs = torch.randn(3, 3)
    h, c = torch.randn_like(h), torch.randn_like(c)
    start = torch.tensor([False, True, False])
    with torch.no_grad():
        got = step(obs, h, c, start)
        zero = step(obs, torch.zeros_like(h), torch.zeros_like(c), torch.zeros(3, dtype=torch.bool))
        kept = step(obs, h, c, torch.zeros(3, dtype=torch.bool))
    for g, z, k in zip(got, zero, kept, strict=True):
        rows = (slice(None), 1) if g.dim() == 3 else (1,)
        torch.testing.assert_close(g[rows], z[rows])
        other = (slice(None), [0, 2]) if g.dim() == 3 else ([0, 2],)
        torch.testing.assert_close(g[other], k[other])


def test_observation_normalisation_is_inside_the_graph() -> None:
    """With obs_norm the step on raw obs equals act on (obs - mean) / sqrt(var + eps), clipped."""
    policy = _policy("box", "gru", False)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    step = policy.export_step(obs_norm=ObservationNorm(mean, var, eps=1e-8, clip=1.5))
    raw = torch.randn(B, 3) * 3
    state = policy.initial_state(B)
    normed = ((raw.double() - torch.as_tensor(mean)) / torch.sqrt(torch.as_tensor(var) + 1e-8)).clamp(-1.5, 1.5)
    want = policy.act(normed.float(), state, deterministic=True)
    with torch.no_grad():
        action, value, h = step(raw, *state.tensors, torch.zeros(B, dtype=torch.bool))
    torch.testing.assert_close(action, want.actions)
    torch.testing.assert_close(value, want.value)
    torch.testing.assert_close(h, want.state.tensors[0])


def test_observation_norm_reads_gymnasiums_normaliser() -> None:
    """from_wrapper takes the running statistics and epsilon of make_vector_env's normaliser."""
    venv = make_vector_env("tether.envs:tether/CartPole-NoVel-v0", 2, normalize_obs=True)
    try:
        venv.reset(seed=0)
        for _ in range(5):
            venv.step(venv.action_space.sample())
        wrapper = obs_normalizer(venv)
        norm = ObservationNorm.from_wrapper(wrapper)
        np.testing.assert_array_equal(norm.mean, wrapper.obs_rms.mean)
        np.testing.assert_array_equal(norm.var, wrapper.obs_rms.var)
        assert norm.eps == wrapper.epsilon
        assert norm.clip is None
    finally:
        venv.close()


def test_names_follow_the_documented_order() -> None:
    """Leaf inputs are named obs.<path> in leaf order; heads' outputs by head name."""
    policy = _policy("dict", "lstm", False)
    step = policy.export_step(deterministic=False, action_masks=True)
    assert step.input_names == ["obs.cue", "obs.nest.0", "obs.pos", "h", "c", "episode_start", "action_mask"]
    assert step.output_names == ["mean.aim", "log_std.aim", "log_probs.move", "value", "next_h", "next_c"]
    shapes = [tuple(o.shape) for o in step(*step.example_inputs(2))]
    assert shapes == [(2, 2), (2, 2), (2, 3), (2,), (4, 2, 8), (4, 2, 8)]
    gru = _policy("discrete", "gru", True).export_step()
    assert (gru.input_names, gru.output_names) == (["obs", "h", "episode_start"], ["action", "value", "next_h"])


def test_the_step_shares_the_policys_parameters() -> None:
    """Training the policy changes the step; a deep copy keeps the old weights."""
    policy = _policy("box", "lstm", True)
    step = policy.export_step()
    frozen = copy.deepcopy(step)
    inputs = step.example_inputs(2)
    before = frozen(*inputs)[1]
    with torch.no_grad():
        policy.value_head.bias.add_(1.0)
    torch.testing.assert_close(step(*inputs)[1], before + 1.0)
    torch.testing.assert_close(frozen(*inputs)[1], before)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"action_masks": True}, ValueError, "no discrete head"),
    ({"obs_norm": ObservationNorm(np.zeros(2), np.ones(2))}, ValueError, r"mean and var shaped \[3\]"),
])
def test_export_step_refuses_what_does_not_fit(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """Masks without a discrete head, or statistics of another shape, are refused in one line."""
    with pytest.raises(error, match=match):
        _policy("box", "lstm", True).export_step(**kwargs)


def test_obs_norm_needs_a_box_space_and_inputs_are_counted() -> None:
    """obs_norm on a Dict space is refused; a call with a missing input names the inputs."""
    with pytest.raises(ValueError, match="normalises a Box observation"):
        _policy("dict", "lstm", True).export_step(obs_norm=ObservationNorm(np.zeros(1), np.ones(1)))
    step = _policy("box", "lstm", True).export_step()
    with pytest.raises(TypeError, match=r"expected 4 inputs \['obs', 'h', 'c', 'episode_start'\], got 3"):
        step(*step.example_inputs(2)[:3])


@pytest.mark.parametrize(("core", "shared", "strict"), [("lstm", True, False), ("lstm", False, True),
                                                       ("gru", True, True), ("gru", False, False)])
# torch's non-strict export warns that nn.LSTM / nn.GRU refresh their _flat_weights list while
# tracing; the graph still takes the parameters (the outputs below follow the eager step).
@pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights:UserWarning")
def test_torch_export_with_a_dynamic_batch(core: str, shared: bool, strict: bool) -> None:
    """torch.export takes the step with the batch dim dynamic; the program equals the eager step."""
    policy = _policy("dict", core, shared)
    step = policy.export_step(action_masks=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    assert step.dynamic_shapes(batch) == (tuple({1: batch} if name in ("h", "c") else {0: batch}
                                                for name in step.input_names),)
    program = torch.export.export(step, step.example_inputs(3), dynamic_shapes=step.dynamic_shapes(batch),
                                  strict=strict)
    rng = np.random.default_rng(0)
    state = [torch.randn(policy.state_layers, B, 8) for _ in range(2 if core == "lstm" else 1)]
    inputs = (*_leaves(policy, _batched(policy.observation_space, rng)), *state,
              torch.tensor([True, False, False, True, False]), _masks(policy, rng))
    with torch.no_grad():
        want = step(*inputs)
        got = program.module()(*inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_the_actor_critic_is_an_exportable_policy() -> None:
    """FactoredRecurrentActorCritic follows ExportablePolicy; a policy without export_step does not."""
    policy = _policy("box", "gru", True)
    assert isinstance(policy, ExportablePolicy)
    assert isinstance(MemorylessPolicy(policy), RecurrentPolicy)
    assert not isinstance(MemorylessPolicy(policy), ExportablePolicy)


def test_the_documented_export_example_runs() -> None:
    """docs/actor_critic.md's export example runs as written."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "actor_critic.md").read_text()
    section = text.split("### Exporting one step", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "actor_critic.md", "exec"), namespace)
    assert namespace["action"].shape == (7,)
    assert namespace["h"].shape == (1, 7, 64)
