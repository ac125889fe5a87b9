"""Tests for tether.envs.masking: MaskObservation and the velocity-masked classic-control tasks."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import tether.envs  # noqa: F401  (registers the tether/ ids)
from tether.envs import MaskObservation


class _FixedObsEnv(gym.Env[NDArray[Any], int]):
    """An env that returns the same stored array at every step, to see what the wrapper edits."""

    def __init__(self, space: spaces.Box, value: NDArray[Any]):
        self.observation_space = space
        self.action_space = spaces.Discrete(2)
        self.value = value

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[Any], dict[str, Any]]:
        super().reset(seed=seed)
        return self.value, {}

    def step(self, action: int) -> tuple[NDArray[Any], float, bool, bool, dict[str, Any]]:
        return self.value, 0.0, False, False, {}


def _box(shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> spaces.Box:
    return spaces.Box(low, high, shape=shape, dtype=np.float32)


def _rollout(env: gym.Env[Any, Any], seed: int, actions: list[Any]) -> list[tuple[Any, ...]]:
    """Reset with ``seed`` and play ``actions`` (until the episode ends); one tuple per observation."""
    obs, _ = env.reset(seed=seed)
    steps: list[tuple[Any, ...]] = [(obs, 0.0, False, False)]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        steps.append((obs, float(reward), terminated, truncated))
        if terminated or truncated:
            break
    return steps


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.integers(0, 1), min_size=1, max_size=60),
)
def test_cartpole_novel_masks_velocities_and_keeps_the_rest(seed: int, actions: list[int]) -> None:
    """CartPole-NoVel reads 0 at features 1 and 3 and matches CartPole-v1 elsewhere, step by step."""
    masked = _rollout(gym.make("tether/CartPole-NoVel-v0"), seed, actions)
    plain = _rollout(gym.make("CartPole-v1"), seed, actions)
    assert len(masked) == len(plain)
    for (m_obs, *m_rest), (p_obs, *p_rest) in zip(masked, plain, strict=True):
        assert m_obs.shape == (4,)
        assert m_obs.dtype == p_obs.dtype
        np.testing.assert_array_equal(m_obs[[1, 3]], 0.0)
        np.testing.assert_array_equal(m_obs[[0, 2]], p_obs[[0, 2]])
        assert m_rest == p_rest
    # A masked velocity is 0 even where the true one is not: the mask is doing the work.
    assert any(np.any(p_obs[[1, 3]] != 0) for p_obs, *_ in plain)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    torques=st.lists(st.floats(-2.0, 2.0, width=32), min_size=1, max_size=40),
)
def test_pendulum_novel_masks_angular_velocity_and_keeps_the_rest(seed: int, torques: list[float]) -> None:
    """Pendulum-NoVel reads 0 at feature 2 and matches Pendulum-v1 at features 0 and 1."""
    actions = [np.array([t], dtype=np.float32) for t in torques]
    masked = _rollout(gym.make("tether/Pendulum-NoVel-v0"), seed, actions)
    plain = _rollout(gym.make("Pendulum-v1"), seed, actions)
    assert len(masked) == len(plain)
    for (m_obs, *m_rest), (p_obs, *p_rest) in zip(masked, plain, strict=True):
        assert m_obs.shape == (3,)
        assert m_obs[2] == 0.0
        np.testing.assert_array_equal(m_obs[:2], p_obs[:2])
        assert m_rest == p_rest


@pytest.mark.parametrize(("env_id", "plain_id"), [
    ("tether/CartPole-NoVel-v0", "CartPole-v1"),
    ("tether/Pendulum-NoVel-v0", "Pendulum-v1"),
])
def test_masked_space_is_a_drop_in_for_the_plain_space(env_id: str, plain_id: str) -> None:
    """The masked tasks keep the plain task's observation space: shape, dtype and bounds."""
    masked, plain = gym.make(env_id).observation_space, gym.make(plain_id).observation_space
    assert isinstance(masked, spaces.Box)
    assert isinstance(plain, spaces.Box)
    assert masked == plain


def test_bounds_are_widened_to_contain_zero_only_where_masked() -> None:
    """A masked feature whose bounds exclude 0 gets them widened to 0; other features keep theirs."""
    space = spaces.Box(
        low=np.array([1.0, -3.0, 2.0], dtype=np.float32),
        high=np.array([4.0, -1.0, 5.0], dtype=np.float32),
        dtype=np.float32,
    )
    env = MaskObservation(_FixedObsEnv(space, np.array([2.0, -2.0, 3.0], dtype=np.float32)), (0, 1))
    np.testing.assert_array_equal(env.observation_space.low, [0.0, -3.0, 2.0])
    np.testing.assert_array_equal(env.observation_space.high, [4.0, 0.0, 5.0])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0, 3.0])
    assert env.observation_space.contains(obs)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_masks_the_last_axis_of_any_box(data: st.DataObject) -> None:
    """On any Box shape, the given positions of the last axis read 0 and everything else is kept."""
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3), label="shape"))
    features = shape[-1]
    indices = data.draw(
        st.lists(st.integers(-features, features - 1), min_size=1, max_size=2 * features), label="indices"
    )
    value = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).uniform(0.5, 1.0, shape)
    value = value.astype(np.float32)
    stored = value.copy()
    env = MaskObservation(_FixedObsEnv(_box(shape), value), indices)
    obs, _ = env.reset(seed=0)

    positions = sorted({i % features for i in indices})
    assert env.indices == tuple(positions)
    kept = [i for i in range(features) if i not in positions]
    assert obs.shape == shape
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs[..., positions], 0.0)
    np.testing.assert_array_equal(obs[..., kept], value[..., kept])
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(value, stored)  # the inner env's array is never edited


def test_spec_records_the_wrapper_so_make_can_rebuild_it() -> None:
    """A wrapped registered env's spec names MaskObservation with its indices; make(spec) rebuilds it."""
    env = MaskObservation(gym.make("CartPole-v1"), [3, 1, -1])
    assert env.indices == (1, 3)
    assert env.spec is not None
    rebuilt = gym.make(env.spec)
    assert isinstance(rebuilt, MaskObservation)
    assert rebuilt.indices == (1, 3)
    obs, _ = rebuilt.reset(seed=3)
    np.testing.assert_array_equal(obs[[1, 3]], 0.0)


def _check_env_warnings(env_id: str) -> set[str]:
    """Run check_env on a made env; return its warnings, less the one every made (wrapped) env gets."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Rendering CartPole and Pendulum needs pygame, not a tether dependency; the mask leaves
        # render() to the inner env untouched.
        check_env(gym.make(env_id), skip_render_check=True)
    return {str(w.message) for w in caught if "different from the unwrapped" not in str(w.message)}


@pytest.mark.parametrize(("env_id", "plain_id", "expected"), [
    ("tether/CartPole-NoVel-v0", "CartPole-v1", "infinity"),
    ("tether/Pendulum-NoVel-v0", "Pendulum-v1", "symmetric and normalized"),
])
def test_check_env_passes_with_exactly_the_plain_envs_warnings(env_id: str, plain_id: str, expected: str) -> None:
    """check_env accepts the masked tasks and adds no warning to those of the plain task's own spaces."""
    masked_warnings = _check_env_warnings(env_id)
    assert masked_warnings == _check_env_warnings(plain_id)
    # The plain tasks' own spaces draw these: CartPole's infinite velocity bounds, Pendulum's [-2, 2] torque.
    assert masked_warnings
    assert all(expected in message for message in masked_warnings)


def test_out_of_range_index_raises_with_the_valid_range() -> None:
    """A position past the last feature raises ValueError naming the valid range and the bad positions."""
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"position\(s\) \[4, -5\] out of range .* 4 features .* \[-4, 3\]"):
        MaskObservation(env, (1, 4, -5))


def test_empty_indices_raise() -> None:
    """Masking nothing is a mistake and raises ValueError."""
    with pytest.raises(ValueError, match="expects at least one feature position to mask, got none"):
        MaskObservation(gym.make("CartPole-v1"), [])


def test_non_box_space_raises() -> None:
    """A Discrete observation space raises TypeError naming the space."""
    with pytest.raises(TypeError, match=r"expects an env with a Box observation space, got Discrete\(16\)"):
        MaskObservation(gym.make("FrozenLake-v1"), (0,))


def test_scalar_box_raises() -> None:
    """A 0-dimensional Box has no feature axis and raises ValueError."""
    env = _FixedObsEnv(spaces.Box(-1.0, 1.0, shape=(), dtype=np.float32), np.zeros((), dtype=np.float32))
    with pytest.raises(ValueError, match=r"at least one axis .* got shape \(\)"):
        MaskObservation(env, (0,))


@pytest.mark.parametrize(("indices", "message"), [
    (1, r"got the single int 1; pass indices=\(1,\)"),
    (None, r"collection of feature positions \(ints\), got NoneType"),
    ((1, 2.0), r"expects int feature positions, got 2.0 \(float\)"),
    ((True,), r"expects int feature positions, got True \(bool\)"),
])
def test_malformed_indices_raise_type_error(indices: Any, message: str) -> None:
    """Indices that are not a collection of ints raise TypeError saying what was expected."""
    with pytest.raises(TypeError, match=message):
        MaskObservation(gym.make("CartPole-v1"), indices)


def test_numpy_integer_indices_are_accepted() -> None:
    """numpy integer positions work like Python ints."""
    env = MaskObservation(gym.make("CartPole-v1"), np.array([3, 1]))
    assert env.indices == (1, 3)
    assert all(type(i) is int for i in env.indices)
