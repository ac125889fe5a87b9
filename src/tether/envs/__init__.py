"""Embedded tasks that need memory, registered with gymnasium under the ``tether/`` namespace.

Importing this package registers:

==============================  ==========================================  ==============
id                              task                                        episode steps
==============================  ==========================================  ==============
``tether/CartPole-NoVel-v0``    CartPole-v1, features 1 and 3 (velocities)  at most 500
                                read 0
``tether/Pendulum-NoVel-v0``    Pendulum-v1, feature 2 (angular velocity)   200
                                reads 0
``tether/Recall-v0``            name a cue seen ``delay`` steps earlier     ``delay + 2``
``tether/RecallDiscrete-v0``    Recall, observations one ``Discrete``       ``delay + 2``
``tether/RecallDict-v0``        Recall, observations a ``Dict`` of          ``delay + 2``
                                ``Discrete`` cue and phase
==============================  ==========================================  ==============

``gymnasium.make("tether.envs:tether/Recall-v0")`` imports the package and makes the env in one call.
Keyword arguments to ``gymnasium.make`` go to the env (``delay=16`` for Recall, ``g=9.81`` for
Pendulum).

:func:`make_vector_env` makes a vector env of any id ``gymnasium.make`` takes (``module:Id``
included), importing the modules that register ids first and passing env kwargs.

Example:
    >>> import gymnasium as gym
    >>> import tether.envs
    >>> env = gym.make("tether/Recall-v0", delay=2, num_cues=3)
    >>> env.observation_space.shape, env.action_space
    ((4,), Discrete(3))
"""

from __future__ import annotations

from tether._extras import require

require("gymnasium", "tether.envs")

from typing import Any

import gymnasium as gym

from tether.envs.factory import make_vector_env
from tether.envs.masking import MaskObservation
from tether.envs.recall import RecallEnv

__all__ = ["ENV_IDS", "MaskObservation", "RecallEnv", "make_vector_env"]

ENV_IDS: tuple[str, ...] = (
    "tether/CartPole-NoVel-v0",
    "tether/Pendulum-NoVel-v0",
    "tether/Recall-v0",
    "tether/RecallDiscrete-v0",
    "tether/RecallDict-v0",
)
"""The ids this package registers, for ``gymnasium.make``."""


def _register(env_id: str, entry_point: str, **spec: Any) -> None:
    # Registering an id twice makes gymnasium warn; a reload of this module must stay silent.
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, **spec)


# The solved-threshold of CartPole-v1 carries over: the task is the same, only the observation changed.
_register(
    ENV_IDS[0], "tether.envs.masking:_cartpole_no_velocity", max_episode_steps=500, reward_threshold=475.0
)
_register(ENV_IDS[1], "tether.envs.masking:_pendulum_no_velocity", max_episode_steps=200)
# Every Recall episode terminates by itself after `delay + 2` steps: no time limit is needed.
_register(ENV_IDS[2], "tether.envs.recall:RecallEnv")
# Recall with non-Box observations (see RecallEnv's table): the same task, other spaces.
_register("tether/RecallDiscrete-v0", "tether.envs.recall:RecallEnv", kwargs={"observation": "discrete"})
_register("tether/RecallDict-v0", "tether.envs.recall:RecallEnv", kwargs={"observation": "dict"})
