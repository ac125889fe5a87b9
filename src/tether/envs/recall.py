"""RecallEnv: show a cue, wait ``delay`` blank steps, then ask for the cue back.

The smallest task whose reward needs memory: the query observation is the same whatever the cue,
so a policy that sees only the current observation answers right with probability exactly
``1 / num_cues``, while a policy that remembers the first observation answers right every time.
The same task comes with three observation spaces (``observation=``): a Box (the default), a
single Discrete, and a Dict of two Discretes.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from tether.errors import ConfigError

__all__ = ["RecallEnv"]

ObservationKind = Literal["box", "discrete", "dict"]
_OBSERVATIONS: tuple[ObservationKind, ...] = ("box", "discrete", "dict")
_PHASES = {"cue": 0, "blank": 1, "query": 2}


class RecallEnv(gym.Env[Any, np.int64]):
    """A cue, ``delay`` blank steps, then a query that is rewarded only if the cue is named.

    With ``observation="box"`` (the default) observations have ``num_cues + 1`` features: a one-hot
    cue in the first ``num_cues`` and a query flag in the last. The other observation spaces
    carry the same information (the table is for the Box):

    ==============  ================================  ============================================
    observation     space                             cue k / blank / query
    ==============  ================================  ============================================
    ``"box"``       ``Box(0, 1, (num_cues + 1,))``    one-hot k / zeros / last feature 1
    ``"discrete"``  ``Discrete(num_cues + 2)``        k / ``num_cues`` / ``num_cues + 1``
    ``"dict"``      ``Dict(cue=Discrete(num_cues +    ``{"cue": k, "phase": 0}`` /
                    1), phase=Discrete(3))``          ``{"cue": num_cues, "phase": 1}`` /
                                                      ``{"cue": num_cues, "phase": 2}``
    ==============  ================================  ============================================

    An episode is ``delay + 2`` steps long:

    ======================  ============================  =================================
    observation index t     observation                   reward of the action taken at t
    ======================  ============================  =================================
    0                       one-hot cue, flag 0           0 (any action)
    1 … delay               all zeros                     0 (any action)
    delay + 1 (the query)   zeros, flag 1                 1 if action == cue else 0; ends
    ======================  ============================  =================================

    The episode terminates after the query action (the final observation is a blank), with
    ``info["is_success"]`` set to whether the answer was right. The cue is drawn uniformly from
    the env's ``np_random`` at each reset, so episodes are determined by ``reset(seed=...)``.
    The optimal return is 1; any memoryless policy returns ``1 / num_cues`` in expectation.

    Args:
        delay: blank steps between the cue and the query, ``>= 0``.
        num_cues: number of distinct cues (and of actions), ``>= 2``.
        render_mode: ``None`` or ``"ansi"`` (a one-line text description of the current step).
        observation: ``"box"``, ``"discrete"`` or ``"dict"`` (the table above).

    Raises:
        TypeError: when ``delay`` or ``num_cues`` is not an int.
        ConfigError: when ``delay < 0`` or ``num_cues < 2`` (also a ``ValueError``).
        ValueError: when ``render_mode`` / ``observation`` is not supported.

    Example:
        >>> from tether.envs import RecallEnv
        >>> env = RecallEnv(delay=1, num_cues=3)
        >>> obs, _ = env.reset(seed=0, options={"cue": 2})
        >>> obs.tolist()
        [0.0, 0.0, 1.0, 0.0]
        >>> env.step(0)[0].tolist(), env.step(0)[0].tolist()
        ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
        >>> _, reward, terminated, _, info = env.step(2)
        >>> reward, terminated, info
        (1.0, True, {'is_success': True})
        >>> env = RecallEnv(delay=1, num_cues=3, observation="dict")
        >>> env.reset(seed=0, options={"cue": 2})[0]
        {'cue': np.int64(2), 'phase': np.int64(0)}
    """

    # gymnasium reads `metadata` from the class (gymnasium.make checks render modes before building).
    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, delay: int = 8, num_cues: int = 4, render_mode: str | None = None,
                 observation: ObservationKind = "box"):
        self.delay = _check_int("delay", delay, 0, "0 puts the query right after the cue")
        self.num_cues = _check_int("num_cues", num_cues, 2, "a single cue leaves nothing to remember")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"RecallEnv: render_mode expects None or one of {self.metadata['render_modes']},"
                f" got {render_mode!r}"
            )
        if observation not in _OBSERVATIONS:
            raise ValueError(
                f"RecallEnv: observation expects one of {list(_OBSERVATIONS)}, got {observation!r}")
        self.render_mode = render_mode
        self.observation = observation
        self.observation_space: spaces.Space[Any] = self._space()
        self.action_space = spaces.Discrete(self.num_cues)
        self._cue: int | None = None
        self._t = 0
        self._answer: int | None = None

    @property
    def query_step(self) -> int:
        """The index of the observation that carries the query flag: ``delay + 1``."""
        return self.delay + 1

    @property
    def episode_length(self) -> int:
        """The number of steps in every episode: ``delay + 2``."""
        return self.delay + 2

    @property
    def optimal_return(self) -> float:
        """The return of a policy that remembers the cue: 1."""
        return 1.0

    @property
    def chance_return(self) -> float:
        """The expected return of any memoryless policy: ``1 / num_cues``."""
        return 1.0 / self.num_cues

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode and return the cue observation.

        Args:
            seed: seeds the env's ``np_random`` (the cue generator), as in gymnasium.
            options: ``{"cue": k}`` forces the cue to ``k`` (for evaluation and tests); the random
                draw still happens, so the cue sequence of later episodes does not change.

        Raises:
            ValueError: when ``options`` holds a key other than ``"cue"`` or the cue is out of range.
        """
        super().reset(seed=seed)
        cue = int(self.np_random.integers(self.num_cues))
        if options:
            cue = self._forced_cue(options)
        self._cue, self._t, self._answer = cue, 0, None
        return self._observe("cue"), {}

    def step(self, action: np.int64 | int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Take one action; only the action at the query step is rewarded.

        Raises:
            RuntimeError: when called before ``reset`` or after the episode terminated.
            ValueError: when ``action`` is not in the action space.
        """
        if self._cue is None or self._answer is not None:
            raise RuntimeError(
                "RecallEnv: step() called "
                + ("before reset()" if self._cue is None else "after the episode terminated at the query")
                + "; call env.reset() to start an episode"
            )
        if not self.action_space.contains(action):
            raise ValueError(
                f"RecallEnv: expects an action in Discrete({self.num_cues}) (an int in"
                f" [0, {self.num_cues - 1}]), got {action!r}"
            )
        if self._t == self.query_step:
            self._answer = int(action)
            correct = self._answer == self._cue
            return self._observe("blank"), float(correct), True, False, {"is_success": correct}
        self._t += 1
        return self._observe("query" if self._t == self.query_step else "blank"), 0.0, False, False, {}

    def render(self) -> str | None:
        """Describe the current step in one line when ``render_mode == "ansi"``, else return None."""
        if self.render_mode != "ansi":
            return None
        if self._cue is None:
            return "RecallEnv: not reset yet"
        where = f"step {self._t} of {self.episode_length}"
        if self._answer is not None:
            verdict = "right" if self._answer == self._cue else "wrong"
            return f"episode over: answered {self._answer}, cue was {self._cue} ({verdict})"
        if self._t == 0:
            return f"{where}: cue {self._cue} of {self.num_cues}"
        if self._t == self.query_step:
            return f"{where}: query, answer with the cue's index"
        return f"{where}: blank, keep the cue in memory"

    def _space(self) -> spaces.Space[Any]:
        n = self.num_cues
        if self.observation == "discrete":
            return spaces.Discrete(n + 2)
        if self.observation == "dict":
            return spaces.Dict({"cue": spaces.Discrete(n + 1), "phase": spaces.Discrete(len(_PHASES))})
        return spaces.Box(0.0, 1.0, shape=(n + 1,), dtype=np.float32)

    def _observe(self, phase: Literal["cue", "blank", "query"]) -> Any:
        """The observation of a step of this phase, in the env's observation space."""
        n, cue = self.num_cues, self._cue
        assert cue is not None  # only called once reset() drew the cue
        if self.observation == "discrete":
            return np.int64({"cue": cue, "blank": n, "query": n + 1}[phase])
        if self.observation == "dict":
            return {"cue": np.int64(cue if phase == "cue" else n), "phase": np.int64(_PHASES[phase])}
        obs: NDArray[np.float32] = np.zeros(n + 1, dtype=np.float32)
        if phase != "blank":
            obs[cue if phase == "cue" else n] = 1.0
        return obs

    def _forced_cue(self, options: dict[str, Any]) -> int:
        unknown = sorted(set(options) - {"cue"})
        if unknown:
            raise ValueError(f"RecallEnv.reset: unknown option(s) {unknown}; the only option is 'cue'")
        cue = options["cue"]
        valid = isinstance(cue, (int, np.integer)) and not isinstance(cue, (bool, np.bool_))
        if not valid or not 0 <= cue < self.num_cues:
            raise ValueError(
                f"RecallEnv.reset: options['cue'] expects an int in [0, {self.num_cues - 1}], got {cue!r}"
            )
        return int(cue)


def _check_int(name: str, value: Any, minimum: int, meaning: str) -> int:
    """Return ``value`` as an int, or raise saying what ``name`` expects.

    Raises:
        TypeError: ``value`` is not an int (a bool is not accepted either).
        ConfigError: ``value < minimum`` (a ``ValueError`` too).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"RecallEnv: {name} expects an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ConfigError(f"RecallEnv: {name} expects an int >= {minimum} ({meaning}), got {value}")
    return int(value)
