"""RecurrentQNetwork on the rollout path: RolloutCollector and evaluate_policy in real gymnasium envs."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
import torch

import tether
from tether.clock import EpisodeClock
from tether.envs import make_vector_env
from tether.nets import RecurrentQNetwork
from tether.rollout import RolloutCollector, Transition
from tether.train import EnvConfig, RunConfig, evaluate_policy


class RecordingSink:
    """A sink that keeps every transition (what a replay buffer sees)."""

    def __init__(self) -> None:
        self.steps: list[Transition] = []
        self.last_value: torch.Tensor | None = None

    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        self.clock = clock

    def write(self, step: Transition) -> None:
        self.steps.append(step)

    def finish(self, last_value: torch.Tensor) -> None:
        self.last_value = last_value


@attrs.define(kw_only=True, slots=False)
class Settings(RunConfig, EnvConfig):
    """The env and run settings evaluate_policy reads (as a trainer's config holds them)."""


def stack(trees: list[Any]) -> Any:
    if isinstance(trees[0], dict):
        return {k: torch.stack([t[k] for t in trees]) for k in trees[0]}
    return torch.stack(trees)


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("CartPole-v1", {}),
    ("tether/RecallDict-v0", {"delay": 2, "num_cues": 3}),
], ids=["cartpole", "recall-dict"])
@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_collector_runs_the_q_network_and_the_replay_matches(env_id: str, kwargs: dict[str, Any],
                                                             core: str) -> None:
    """collect() works with the default buffer and a sink; replaying the rollout from its first
    state with its starts gives the values act returned (strict mode, no alignment error)."""
    venv = make_vector_env(env_id, 3, env_kwargs=kwargs)
    net = RecurrentQNetwork(venv.single_observation_space, venv.single_action_space, hidden_sizes=(16,),
                            core_hidden_size=8, core=core, dueling=True)
    net.set_epsilon(net.actor_epsilons(3))
    T = 40
    with tether.mode("strict"):
        collector = RolloutCollector(venv, net, T, seed=0)
        buffer = collector.collect()
        assert buffer.log_probs.shape == (T, 3)
        assert (buffer.log_probs <= 0).all()
        sink = collector.collect(RecordingSink())
    venv.close()
    steps = sink.steps
    assert len(steps) == T
    actions = torch.stack([s.actions for s in steps])
    assert actions.dtype == torch.int64
    assert ((actions >= 0) & (actions < venv.single_action_space.n)).all()
    starts = np.stack([s.episode_starts for s in steps])
    assert starts[1:].any(), "the rollout should cross an episode end"
    with tether.mode("strict"), torch.no_grad():
        replay = net.q_values(stack([s.obs for s in steps]), starts, steps[0].state.snapshot())
    values = torch.stack([s.extras["value"] for s in steps])
    torch.testing.assert_close(replay.q.amax(-1).mean(-1), values, atol=1e-5, rtol=1e-5)
    # the state stored with the last step replays that step's value on its own
    torch.testing.assert_close(net.value(steps[-1].obs, steps[-1].state.snapshot()), values[-1])
    assert sink.last_value is not None
    assert sink.last_value.shape == (3,)


def test_seeded_collection_repeats_the_same_actions() -> None:
    """Same torch seed and env seed: the same ε-greedy actions, step for step."""
    def run() -> torch.Tensor:
        torch.manual_seed(0)
        venv = make_vector_env("CartPole-v1", 2)
        net = RecurrentQNetwork(venv.single_observation_space, venv.single_action_space, hidden_sizes=(8,),
                                core_hidden_size=8)
        net.set_epsilon([0.5, 0.1])
        sink = RolloutCollector(venv, net, 30, seed=3).collect(RecordingSink())
        venv.close()
        return torch.stack([s.actions for s in sink.steps])

    assert torch.equal(run(), run())


@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluate_policy_runs_the_q_network(deterministic: bool) -> None:
    """tether.train.evaluate_policy (Run.evaluate's function) plays whole episodes with it."""
    config = Settings(env_id="tether/RecallDict-v0", env_kwargs={"delay": 2, "num_cues": 3}, mode="strict")
    venv = make_vector_env(config.env_id, 1, env_kwargs=config.env_kwargs)
    net = RecurrentQNetwork(venv.single_observation_space, venv.single_action_space, hidden_sizes=(8,),
                            core_hidden_size=8, memoryless=not deterministic)
    venv.close()
    net.set_epsilon(1.0)
    summary = evaluate_policy(net, config, 5, seed=1, deterministic=deterministic)
    assert summary["episodes"] == 5
    assert summary["deterministic"] is deterministic
    assert all(r in (0.0, 1.0) for r in summary["returns"])
