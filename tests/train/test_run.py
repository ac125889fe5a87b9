"""Tests for tether.train.run.Run: a trainer that is not PPO gets env, collector, checkpoints and exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from tether.clock import EpisodeClock
from tether.errors import CheckpointError
from tether.nets import FactoredRecurrentActorCritic
from tether.rollout import Transition
from tether.train import EnvConfig, NetworkConfig, Run, RunConfig
from tether.train.config import check_fields


@attrs.define(kw_only=True, slots=False)
class _ToyConfig(RunConfig, NetworkConfig, EnvConfig):
    """A second algorithm's settings: the shared concerns only (no PPO field)."""

    def __attrs_post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Steps:
    """A sink that keeps the observations and actions it is given (a replay buffer in miniature)."""

    def __init__(self) -> None:
        self.obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        del num_steps, clock

    def write(self, step: Transition) -> None:
        self.obs.append(step.obs.numpy().copy())
        self.actions.append(step.actions.numpy().copy())

    def finish(self, last_value: torch.Tensor) -> None:
        del last_value


def _run(config: _ToyConfig) -> Run:
    def build(venv: gym.vector.VectorEnv[Any, Any, Any]) -> nn.Module:
        return FactoredRecurrentActorCritic(venv.single_observation_space, venv.single_action_space,
                                            hidden_sizes=(config.encoder_size,), core=config.core,
                                            core_hidden_size=config.hidden_size)

    return Run(config, algo="toy", build_policy=build, rollout_steps=5,
               build_optimizer=lambda p: torch.optim.SGD(p.parameters(), lr=0.1))


def test_a_trainer_that_is_not_ppo_resumes_exactly(tmp_path: Path) -> None:
    """Collect, save, collect again; a Run restored from the file collects the very same steps."""
    config = _ToyConfig(num_envs=3, hidden_size=8, encoder_size=8, seed=4, run_dir=str(tmp_path / "run"),
                        progress=False)
    first = _run(config)
    first.collector.collect(_Steps())
    first.update, first.steps = 1, 15
    path = first.save(tmp_path / "run" / "checkpoint.pt")
    after = first.collector.collect(_Steps())
    first.close()

    source, data = Run.read(tmp_path / "run", "toy")
    assert (source, data["algo"], data["update"], data["steps"]) == (path, "toy", 1, 15)
    assert data["config"] == config.to_dict()
    second = _run(_ToyConfig(**data["config"]))
    second.restore(data, source)
    again = second.collector.collect(_Steps())
    second.close()
    assert (second.update, second.steps) == (1, 15)
    np.testing.assert_array_equal(np.stack(again.obs), np.stack(after.obs))
    np.testing.assert_array_equal(np.stack(again.actions), np.stack(after.actions))


def test_a_checkpoint_names_its_trainer(tmp_path: Path) -> None:
    """Another trainer's checkpoint is refused in one line naming both (and how to run it)."""
    run = _run(_ToyConfig(num_envs=2, hidden_size=8, encoder_size=8, run_dir=str(tmp_path), progress=False))
    run.save(tmp_path / "checkpoint.pt")
    run.close()
    with pytest.raises(CheckpointError, match=r"this is a 'toy' run, not 'ppo'; use tether train --algo toy"):
        Run.read(tmp_path, "ppo")
