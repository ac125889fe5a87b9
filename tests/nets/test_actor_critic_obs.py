"""Tests for FactoredRecurrentActorCritic's observations: every space end to end, the Box path
unchanged, a custom encoder, and compile."""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import tether
from tether.errors import ObservationError
from tether.nets import FactoredRecurrentActorCritic
from tether.nets.cores import recurrent_core
from tether.nets.heads import FactoredHeads, orthogonal_init, value_head
from tether.rollout import RolloutCollector

SPACES: dict[str, spaces.Space[Any]] = {
    "box": spaces.Box(-1.0, 1.0, (3,)),
    "box-uint8-image": spaces.Box(0, 255, (2, 2, 3), dtype=np.uint8),
    "discrete": spaces.Discrete(4, start=2),
    "multi-discrete": spaces.MultiDiscrete([[2, 3], [4, 1]], start=[[0, -1], [1, 0]]),
    "multi-binary": spaces.MultiBinary(3),
    "tuple": spaces.Tuple((spaces.Discrete(3), spaces.Box(-1.0, 1.0, (2,)))),
    "dict-nested": spaces.Dict({"cue": spaces.Discrete(3),
                                "inner": spaces.Dict({"bits": spaces.MultiBinary(2),
                                                      "pos": spaces.Box(-1.0, 1.0, (2,))})}),
}
#: Stored dtype of each leaf: what the vector env gives (ints stay ints, one-hot is the network's).
STORED = {"box": [torch.float32], "box-uint8-image": [torch.uint8], "discrete": [torch.int64],
          "multi-discrete": [torch.int64], "multi-binary": [torch.int8],
          "tuple": [torch.int64, torch.float32], "dict-nested": [torch.int64, torch.int8, torch.float32]}


class SpaceEnv(gym.Env[Any, np.int64]):
    """Observations drawn from ``space`` (seeded by reset), episodes of ``length`` steps, reward 0."""

    def __init__(self, space: spaces.Space[Any], length: int = 4) -> None:
        self.observation_space = space
        self.action_space = spaces.Discrete(3)
        self.length, self._t = length, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self.observation_space.sample(), 0.0, self._t >= self.length, False, {}



def _leaves(tree: Any) -> list[Any]:
    """The leaves of a stored observation tree (dicts and tuples), in order."""
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, tuple):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [tree]

def _venv(space: spaces.Space[Any], num_envs: int = 3) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda i=i: SpaceEnv(space, length=3 + i) for i in range(num_envs)])


@pytest.mark.parametrize("name", sorted(SPACES))
def test_round_trip_act_buffer_evaluate_actions(name: str) -> None:
    """Collected with act, stored as the env gave it, replayed: the same log-prob and value (1e-6)."""
    torch.manual_seed(0)
    space = SPACES[name]
    policy = FactoredRecurrentActorCritic(space, spaces.Discrete(3), hidden_sizes=(16,), core_hidden_size=8,
                                          shared_core=False)
    with tether.mode("strict"):
        collector = RolloutCollector(_venv(space), policy, 10, seq_len=5, seed=0)
        buffer = collector.collect()
        buffer.compute_advantages()
        assert [leaf.dtype for leaf in _leaves(buffer.obs)] == STORED[name]
        mb = next(buffer.minibatches(1))
        out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state)
    assert mb.episode_starts[1:].any()  # episodes restart inside the replayed chunks
    torch.testing.assert_close(out.log_prob, mb.log_probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.value, mb.values, rtol=0, atol=1e-6)
    collector.venv.close()


def test_discrete_obs_out_of_range_raise_from_act_and_evaluate_actions() -> None:
    """A value outside Discrete(4, start=2) is one ObservationError line naming the method."""
    policy = FactoredRecurrentActorCritic(SPACES["discrete"], spaces.Discrete(3))
    state = policy.initial_state(2)
    with pytest.raises(ObservationError, match=r"^act: expected obs to hold whole numbers in \[2, 5\] for"
                                               r" Discrete\(4, start=2\), got 6;"):
        policy.act(torch.tensor([2, 6]), state)
    with pytest.raises(ObservationError, match=r"^evaluate_actions: expected obs shaped \[T, B\] \(or flattened"
                                               r" \[T, B, 1\]\)"):
        policy.evaluate_actions(torch.tensor([2, 3]), torch.zeros(1, 2), np.zeros((1, 2), bool), state)


def _old_encoder(in_features: int, sizes: list[int]) -> nn.Sequential:
    """The encoder as the Box-only actor-critic built it (before observation layouts)."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [orthogonal_init(nn.Linear(in_features, size), math.sqrt(2.0)), nn.LayerNorm(size), nn.Tanh()]
        in_features = size
    return nn.Sequential(*layers)


@pytest.mark.parametrize("shared_core", [True, False])
def test_box_policy_is_bit_identical_to_the_box_only_path(shared_core: bool) -> None:
    """Same parameter names, init order and values as the old construction; the same features and outputs."""
    box = spaces.Box(0, 255, (2, 3), dtype=np.uint8)
    action = spaces.Discrete(4)
    torch.manual_seed(7)
    policy = FactoredRecurrentActorCritic(box, action, hidden_sizes=(16, 8), core_hidden_size=8,
                                          shared_core=shared_core)
    torch.manual_seed(7)  # the old constructor, piece by piece, in its order
    old: dict[str, nn.Module] = {"encoder": _old_encoder(6, [16, 8])}
    if not shared_core:
        old["critic_encoder"] = _old_encoder(6, [16, 8])
    old["actor_core"] = recurrent_core("lstm", 8, 8, 1, 64)
    if not shared_core:
        old["critic_core"] = recurrent_core("lstm", 8, 8, 1, 64)
    old["heads"] = FactoredHeads(policy.layout, 8, 0.0)
    old["value_head"] = value_head(8)
    expected = {f"{prefix}.{k}": v for prefix, module in old.items() for k, v in module.state_dict().items()}
    got = policy.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    obs = np.random.default_rng(0).integers(0, 256, (5, 2, 3)).astype(np.uint8)
    features = policy._obs(obs, 1, "act")
    assert torch.equal(features, torch.as_tensor(obs).to(torch.float32).reshape(5, 6))  # the old as_obs
    assert torch.equal(policy._encode(features)[0], old["encoder"](features))


def _custom(shared_core: bool) -> FactoredRecurrentActorCritic:
    space = SPACES["dict-nested"]
    width = 7  # cue 3 + bits 2 + pos 2

    def build() -> nn.Module:
        return nn.Sequential(nn.Linear(width, 12), nn.ReLU())

    return FactoredRecurrentActorCritic(space, spaces.Discrete(3), encoder=build(), encoder_out=12,
                                        critic_encoder=None if shared_core else build(), shared_core=shared_core,
                                        core_hidden_size=8)


@pytest.mark.parametrize("shared_core", [True, False])
def test_custom_encoder_replaces_the_mlp_and_round_trips(shared_core: bool) -> None:
    """encoder= is used as given (its own parameters in the state_dict); replay matches collection."""
    torch.manual_seed(0)
    policy = _custom(shared_core)
    assert policy.encoder_out == 12
    assert isinstance(policy.encoder, nn.Sequential)
    assert "encoder.0.weight" in policy.state_dict()
    assert ("critic_encoder.0.weight" in policy.state_dict()) is not shared_core
    with tether.mode("strict"):
        collector = RolloutCollector(_venv(SPACES["dict-nested"]), policy, 8, seed=1)
        buffer = collector.collect()
        buffer.compute_advantages()
        mb = next(buffer.minibatches(1))
        out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state)
    torch.testing.assert_close(out.log_prob, mb.log_probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.value, mb.values, rtol=0, atol=1e-6)
    collector.venv.close()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"encoder": nn.Linear(3, 4)}, ValueError, r"expected encoder_out= \(the features your encoder returns"),
    ({"encoder_out": 4}, ValueError, r"encoder_out go with encoder=, which was not given"),
    ({"encoder": nn.Linear(3, 4), "encoder_out": 4, "hidden_sizes": (8,)}, ValueError,
     "leave them unset"),
    ({"encoder": nn.Linear(3, 4), "encoder_out": 4, "shared_core": False}, ValueError,
     r"shared_core=False with encoder= needs critic_encoder=, a second instance"),
    ({"encoder": nn.Linear(3, 4), "encoder_out": 4, "critic_encoder": nn.Linear(3, 4)}, ValueError,
     "critic_encoder= is for a separate critic"),
    ({"encoder": "mlp", "encoder_out": 4}, TypeError, "expected encoder to be an nn.Module, got str"),
])
def test_custom_encoder_misuse_raises(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """Each incomplete or contradictory custom-encoder setting says what to pass."""
    with pytest.raises(error, match=match):
        FactoredRecurrentActorCritic(SPACES["box"], spaces.Discrete(2), **kwargs)


def test_custom_encoder_with_the_same_instance_for_the_critic_is_refused() -> None:
    """A separate critic sharing the actor's encoder instance would not be separate: refused."""
    encoder = nn.Linear(3, 4)
    with pytest.raises(ValueError, match="a second instance of your encoder"):
        FactoredRecurrentActorCritic(SPACES["box"], spaces.Discrete(2), encoder=encoder, encoder_out=4,
                                     critic_encoder=encoder, shared_core=False)


# As in test_actor_critic.py: dynamo's read of `.grad` on the non-leaf core outputs warns inside torch.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_stages_take_tree_observations() -> None:
    """compile(aot_eager, fullgraph) on a nested Dict observation gives the eager outputs."""
    torch.manual_seed(0)
    space = SPACES["dict-nested"]
    eager = FactoredRecurrentActorCritic(space, spaces.Discrete(3), hidden_sizes=(16,), core_hidden_size=8)
    compiled = copy.deepcopy(eager)
    compiled.compile(backend="aot_eager", fullgraph=True)
    space.seed(0)
    steps = [space.sample() for _ in range(6)]
    obs = {"cue": torch.tensor([s["cue"] for s in steps]).view(3, 2),
           "inner": {"bits": torch.tensor(np.stack([s["inner"]["bits"] for s in steps])).view(3, 2, 2),
                     "pos": torch.tensor(np.stack([s["inner"]["pos"] for s in steps])).view(3, 2, 2)}}
    first = {"cue": obs["cue"][0], "inner": {k: v[0] for k, v in obs["inner"].items()}}
    state = eager.initial_state(2)
    a, b = (p.act(first, state, deterministic=True) for p in (eager, compiled))
    torch.testing.assert_close(b.value, a.value)
    torch.testing.assert_close(b.actions, a.actions)
    actions, starts = torch.zeros(3, 2, dtype=torch.long), np.zeros((3, 2), bool)
    x, y = (p.evaluate_actions(obs, actions, starts, state) for p in (eager, compiled))
    torch.testing.assert_close(y.log_prob, x.log_prob)
    torch.testing.assert_close(y.value, x.value)
    assert set(compiled._compiled) == {"_encode", "_outputs", "_sample"}
