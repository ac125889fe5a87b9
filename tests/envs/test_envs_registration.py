"""Tests for tether.envs' gymnasium registration: ids, specs, make and make_vec."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest

import tether.envs
from tether.envs import ENV_IDS, MaskObservation, RecallEnv


def test_public_names() -> None:
    """The package exports exactly the mask wrapper, the recall env, the id list and the env factory."""
    assert sorted(tether.envs.__all__) == ["ENV_IDS", "MaskObservation", "RecallEnv", "make_vector_env"]
    assert ENV_IDS == ("tether/CartPole-NoVel-v0", "tether/Pendulum-NoVel-v0", "tether/Recall-v0",
                       "tether/RecallDiscrete-v0", "tether/RecallDict-v0")


@pytest.mark.parametrize(("env_id", "max_steps", "threshold"), [
    ("tether/CartPole-NoVel-v0", 500, 475.0),
    ("tether/Pendulum-NoVel-v0", 200, None),
    ("tether/Recall-v0", None, None),
    ("tether/RecallDiscrete-v0", None, None),
    ("tether/RecallDict-v0", None, None),
])
def test_ids_are_registered_with_their_limits(env_id: str, max_steps: int | None, threshold: float | None) -> None:
    """Each id is in gymnasium's registry under the tether namespace with the plain task's time limit."""
    spec = gym.spec(env_id)
    assert spec.namespace == "tether"
    assert spec.max_episode_steps == max_steps
    assert spec.reward_threshold == threshold


@pytest.mark.parametrize(("env_id", "unwrapped_type", "shape"), [
    ("tether/CartPole-NoVel-v0", gym.envs.classic_control.CartPoleEnv, (4,)),
    ("tether/Pendulum-NoVel-v0", gym.envs.classic_control.PendulumEnv, (3,)),
    ("tether/Recall-v0", RecallEnv, (5,)),
])
def test_make_builds_the_task(env_id: str, unwrapped_type: type, shape: tuple[int, ...]) -> None:
    """gymnasium.make builds each task around the expected env, with the expected observation shape."""
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, unwrapped_type)
    obs, _ = env.reset(seed=0)
    assert obs.shape == shape
    assert env.observation_space.contains(obs)


def test_module_prefix_form_imports_and_makes() -> None:
    """The 'tether.envs:<id>' form works, so a config file can name the task without an import."""
    assert isinstance(gym.make("tether.envs:tether/Recall-v0").unwrapped, RecallEnv)


def test_make_passes_keyword_arguments_to_the_env() -> None:
    """make's keyword arguments reach the env: Recall's delay, Pendulum's gravity."""
    recall = gym.make("tether/Recall-v0", delay=3, num_cues=6).unwrapped
    assert isinstance(recall, RecallEnv)
    assert (recall.delay, recall.num_cues) == (3, 6)
    pendulum = gym.make("tether/Pendulum-NoVel-v0", g=9.81)
    assert pendulum.unwrapped.g == 9.81  # type: ignore[attr-defined]


def test_masked_tasks_wrap_the_inner_env_once() -> None:
    """The masked tasks are the plain env under exactly one MaskObservation, with the velocity positions."""
    for env_id, indices in (("tether/CartPole-NoVel-v0", (1, 3)), ("tether/Pendulum-NoVel-v0", (2,))):
        env = gym.make(env_id)
        masks = []
        layer = env
        while isinstance(layer, gym.Wrapper):
            if isinstance(layer, MaskObservation):
                masks.append(layer.indices)
            layer = layer.env
        assert masks == [indices]


def test_pendulum_novel_truncates_at_200_steps() -> None:
    """Pendulum never terminates, so the episode is truncated at exactly step 200."""
    env = gym.make("tether/Pendulum-NoVel-v0")
    env.reset(seed=0)
    ends = [env.step(np.zeros(1, dtype=np.float32))[2:4] for _ in range(200)]
    assert ends[:-1] == [(False, False)] * 199
    assert ends[-1] == (False, True)


def test_make_vec_masks_every_row() -> None:
    """A sync vector env of CartPole-NoVel masks features 1 and 3 in every row."""
    envs = gym.make_vec("tether/CartPole-NoVel-v0", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 4)
    for _ in range(5):
        np.testing.assert_array_equal(obs[:, [1, 3]], 0.0)
        obs = envs.step(np.array([0, 1, 0]))[0]
    envs.close()


def test_reimport_does_not_register_twice() -> None:
    """Reloading tether.envs keeps the registry as it was and raises no 'overriding' warning."""
    before = {env_id: gym.spec(env_id) for env_id in ENV_IDS}
    importlib.reload(tether.envs)
    assert {env_id: gym.spec(env_id) for env_id in ENV_IDS} == before
