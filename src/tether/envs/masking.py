"""MaskObservation: zero chosen features of a Box observation, turning an MDP into a POMDP.

A masked feature reads 0 at every step, so a policy that needs it has to infer it from the history
of observations, which takes memory. The registered ``tether/CartPole-NoVel-v0`` and
``tether/Pendulum-NoVel-v0`` are the classic-control tasks with their velocities masked this way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from numpy.typing import NDArray

__all__ = ["MaskObservation"]

# CartPole observes (x, x_dot, theta, theta_dot); Pendulum observes (cos theta, sin theta, theta_dot).
CARTPOLE_VELOCITIES = (1, 3)
PENDULUM_VELOCITIES = (2,)


class MaskObservation(
    gym.ObservationWrapper[NDArray[Any], Any, NDArray[Any]],
    gym.utils.RecordConstructorArgs,
):
    """Zero the chosen features of a Box observation at every step, so the policy must infer them.

    Features are positions on the last axis of the observation (the only axis of a flat vector).
    The observation space keeps the inner shape and dtype, so the wrapper is a drop-in for code
    written against the inner env: a masked feature keeps its bounds when they already contain 0
    (as for every CartPole and Pendulum feature) and has them widened to contain 0 otherwise. The
    bounds are never collapsed to ``[0, 0]``, which would make range normalisers divide by zero.
    Each observation is copied before masking; the inner env's array is never edited.

    Args:
        env: an env whose observation space is a :class:`gymnasium.spaces.Box` with at least one
            dimension.
        indices: the features to zero, as positions on the last axis. Negative positions count
            from the end, as in numpy; a repeated position is masked once.

    Raises:
        TypeError: when the observation space is not a Box, or ``indices`` is not a collection of
            ints.
        ValueError: when ``indices`` is empty, a position is out of range, or the Box has no axis.

    Shapes:
        observation: any ``(..., F)``, unchanged; ``observation[..., indices] == 0``.

    Example:
        >>> import gymnasium as gym
        >>> from tether.envs import MaskObservation
        >>> env = MaskObservation(gym.make("CartPole-v1"), indices=(1, 3))
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, obs[[1, 3]].tolist()
        ((4,), [0.0, 0.0])
        >>> env.indices
        (1, 3)
    """

    def __init__(self, env: gym.Env[Any, Any], indices: Iterable[int]):
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(
                f"MaskObservation: expects an env with a Box observation space, got {space!r};"
                " mask a Dict or Tuple space's Box parts with gymnasium's TransformObservation"
            )
        if len(space.shape) == 0:
            raise ValueError(
                "MaskObservation: expects a Box observation space with at least one axis (features"
                " are positions on the last axis), got shape (); reshape the observation to (1,) first"
            )
        self._indices = _normalize_indices(indices, space.shape[-1])
        gym.utils.RecordConstructorArgs.__init__(self, indices=self._indices)
        gym.ObservationWrapper.__init__(self, env)

        position = list(self._indices)
        low = np.array(space.low, copy=True)
        high = np.array(space.high, copy=True)
        low[..., position] = np.minimum(low[..., position], 0)
        high[..., position] = np.maximum(high[..., position], 0)
        self.observation_space = spaces.Box(low=low, high=high, shape=space.shape, dtype=space.dtype)

    @property
    def indices(self) -> tuple[int, ...]:
        """The masked positions on the last axis, non-negative and sorted."""
        return self._indices

    def observation(self, observation: NDArray[Any]) -> NDArray[Any]:
        """Return a copy of ``observation`` with the masked features set to 0."""
        masked = np.array(observation, copy=True)
        masked[..., list(self._indices)] = 0
        return masked


def _normalize_indices(indices: Iterable[int], num_features: int) -> tuple[int, ...]:
    """Check mask positions against ``num_features`` and return them non-negative and sorted.

    Raises:
        TypeError: ``indices`` is a single int, not iterable, or holds something other than ints.
        ValueError: ``indices`` is empty or a position is outside ``[-num_features, num_features)``.
    """
    if isinstance(indices, (int, np.integer)):
        raise TypeError(
            f"MaskObservation: expects a collection of feature positions, got the single int {indices};"
            f" pass indices=({indices},)"
        )
    try:
        given = list(indices)
    except TypeError:
        raise TypeError(
            "MaskObservation: expects a collection of feature positions (ints),"
            f" got {type(indices).__name__}; pass e.g. indices=(1, 3)"
        ) from None
    if not given:
        raise ValueError(
            "MaskObservation: expects at least one feature position to mask, got none;"
            " pass e.g. indices=(1, 3), or drop the wrapper"
        )
    for index in given:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"MaskObservation: expects int feature positions, got {index!r}"
                f" ({type(index).__name__}) in {given!r}"
            )
    out_of_range = [int(i) for i in given if not -num_features <= i < num_features]
    if out_of_range:
        raise ValueError(
            f"MaskObservation: feature position(s) {out_of_range} out of range for an observation"
            f" with {num_features} features on its last axis; expected positions in"
            f" [{-num_features}, {num_features - 1}], got {[int(i) for i in given]}"
        )
    return tuple(sorted({int(i) % num_features for i in given}))


def _cartpole_no_velocity(**kwargs: Any) -> MaskObservation:
    """Build CartPole with the cart velocity and pole angular velocity (features 1 and 3) masked.

    The entry point of ``tether/CartPole-NoVel-v0``; ``kwargs`` go to ``CartPoleEnv``.
    """
    return MaskObservation(CartPoleEnv(**kwargs), CARTPOLE_VELOCITIES)


def _pendulum_no_velocity(**kwargs: Any) -> MaskObservation:
    """Build Pendulum with the angular velocity (feature 2) masked.

    The entry point of ``tether/Pendulum-NoVel-v0``; ``kwargs`` go to ``PendulumEnv``.
    """
    return MaskObservation(PendulumEnv(**kwargs), PENDULUM_VELOCITIES)
