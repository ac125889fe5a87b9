"""Toy memory tasks for tether's tests: a third-party package that registers its ids on import.

``CueEnv`` shows a cue on the first step, blanks for ``delay`` steps, then pays 1 for naming the
cue (and -1 otherwise). Only the observation differs between the ids: :data:`OBSERVATIONS` maps
a kind to ``(space, encode)``, and every kind is registered as ``toys/Cue-<kind>-v0``. Adding a
kind of observation space is one line there. ``toys/Cue-DictFlat-v0`` is the Dict kind wrapped in
gymnasium's ``FlattenObservation`` (whose lambda cannot be pickled). ``toys/Unseeded-v0`` draws its
cue from an unseeded generator: its episodes are not determined by its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _one_hot(index: int, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.float32)
    out[index] = 1.0
    return out


Encoder = tuple[spaces.Space[Any], Callable[[int | None, int], Any]]

# kind -> (observation space for n cues, encode(cue or None for a blank step, n)); one line per kind.
OBSERVATIONS: dict[str, Callable[[int], Encoder]] = {
    "Box": lambda n: (spaces.Box(0.0, 1.0, (n + 1,), np.float32),
                      lambda cue, n: _one_hot(n if cue is None else cue, n + 1)),
    "Dict": lambda n: (spaces.Dict({"cue": spaces.Box(0.0, 1.0, (n,), np.float32),
                                    "blank": spaces.Box(0.0, 1.0, (1,), np.float32)}),
                       lambda cue, n: {"cue": np.zeros(n, np.float32) if cue is None else _one_hot(cue, n),
                                       "blank": np.full(1, float(cue is None), np.float32)}),
    # The cue as a Discrete index (n: no cue shown), and as parts of MultiDiscrete / Tuple / Dict spaces.
    "Discrete": lambda n: (spaces.Discrete(n + 1), lambda cue, n: np.int64(n if cue is None else cue)),
    "MultiDiscrete": lambda n: (spaces.MultiDiscrete([n + 1, 2]),
                                lambda cue, n: np.array([n if cue is None else cue, int(cue is None)])),
    "Tuple": lambda n: (spaces.Tuple((spaces.Discrete(n + 1), spaces.Box(0.0, 1.0, (1,), np.float32))),
                        lambda cue, n: (np.int64(n if cue is None else cue),
                                        np.full(1, float(cue is None), np.float32))),
    "DictDiscrete": lambda n: (spaces.Dict({"cue": spaces.Discrete(n + 1), "phase": spaces.MultiBinary(1)}),
                               lambda cue, n: {"cue": np.int64(n if cue is None else cue),
                                               "phase": np.array([int(cue is None)], np.int8)}),
}


class CueEnv(gym.Env[Any, np.int64]):
    """Remember the first observation's cue for ``delay`` steps, then name it."""

    def __init__(self, kind: str = "Box", num_cues: int = 2, delay: int = 3, seeded: bool = True) -> None:
        self.observation_space, self._encode = OBSERVATIONS[kind](num_cues)
        self.action_space = spaces.Discrete(num_cues)
        self.num_cues, self.delay, self.seeded = num_cues, delay, seeded
        self._cue, self._t = 0, 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random if self.seeded else np.random.default_rng()
        self._cue, self._t = int(rng.integers(self.num_cues)), 0
        return self._encode(self._cue, self.num_cues), {}

    def step(self, action: np.int64) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        if self._t <= self.delay:
            return self._encode(None, self.num_cues), 0.0, False, False, {}
        reward = 1.0 if int(action) == self._cue else -1.0
        return self._encode(None, self.num_cues), reward, True, False, {}


def make_flat(**kwargs: Any) -> gym.Env[Any, Any]:
    """The Dict kind, flattened to a Box by gymnasium's FlattenObservation."""
    return gym.wrappers.FlattenObservation(CueEnv(kind="Dict", **kwargs))


def _register(env_id: str, entry_point: str, **kwargs: Any) -> None:
    # The test collector may import this package twice (under two names): register once.
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


for _kind in OBSERVATIONS:
    _register(f"toys/Cue-{_kind}-v0", "tether_toys:CueEnv", kind=_kind)
_register("toys/Cue-DictFlat-v0", "tether_toys:make_flat")
_register("toys/Unseeded-v0", "tether_toys:CueEnv", seeded=False)
