"""TrackedVectorEnv: a gymnasium vector env that owns an EpisodeClock and advances it every step.

One rule covers every gymnasium autoreset mode: the clock renews a row's episode id at the step
whose returned observation is the first observation of the row's new episode, and the wrapper
reports that as ``episode_starts``. The loop then reads the truncation bootstrap from the live
(pre-reset) state and resets exactly the ``episode_starts`` rows::

    step = venv.step(policy.env_actions(actions))          # clock.advance(step.episode_starts)
    boot = policy.value(final_obs, state, bootstrap=True)  # the ending episode's own state
    state = state.reset(step.episode_starts)               # zeros where step.obs starts an episode

Per mode:

- ``SAME_STEP``: a done row's next observation is already the reset one (the final one is in
  ``info["final_obs"]``), so ``episode_starts == done`` and every step is valid.
- ``NEXT_STEP`` (gymnasium's default): a done row returns its final observation; the *next* step
  ignores the action, resets the env and returns the reset observation with reward 0. That step is
  marked ``valid=False`` (never train on it) and is where ``episode_starts`` (and the clock's
  renewal) happens, so the state is reset right before the new episode's first observation is fed.
- ``DISABLED``: the wrapper resets done rows itself (``env.reset(options={"reset_mask": done})``)
  and then behaves like ``SAME_STEP``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from tether.clock import EpisodeClock, as_row_mask
from tether.errors import NonFiniteError, format_rows
from tether.rollout._obs import copy_tree, set_rows, tree_map

__all__ = ["TrackedVectorEnv", "VecStep"]


class VecStep(NamedTuple):
    """What :meth:`TrackedVectorEnv.step` returns; every per-row array is ``[E]`` (E envs).

    Attributes:
        obs: the observation to feed next, ``[E, ...]``: the first observation of a new episode in
            the ``episode_starts`` rows.
        reward: float64 ``[E]``: the reward of this step (0 on a next-step autoreset step).
        terminated: bool ``[E]``: the episode ended here by termination (no bootstrap).
        truncated: bool ``[E]``: the episode ended here by truncation (bootstrap ``V(final_obs)``).
        done: bool ``[E]``: ``terminated | truncated``.
        episode_starts: bool ``[E]``: ``obs`` is the first observation of a new episode; the clock
            renewed these rows' ids, so reset them now: ``state = state.reset(step.episode_starts)``.
        valid: bool ``[E]``: False where this step was a next-step autoreset step (the env ignored
            the action); such a transition must never be trained on.
        final_obs: ``[E, ...]``: the last observation of the ending episode in ``done`` rows (equal
            to ``obs`` elsewhere); the input of the truncation bootstrap.
        info: the step's info in gymnasium's ``key`` / ``_key`` layout, describing ``obs``.
        final_info: the info of the ending step for ``done`` rows (same layout), or ``None``.
    """

    obs: Any
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    done: np.ndarray
    episode_starts: np.ndarray
    valid: np.ndarray
    final_obs: Any
    info: dict[str, Any]
    final_info: dict[str, Any] | None


def _read_autoreset_mode(env: gym.vector.VectorEnv, override: Any) -> AutoresetMode:
    declared = env.metadata.get("autoreset_mode")
    if override is None and declared is None:
        raise ValueError(
            f"TrackedVectorEnv: {type(env).__name__}.metadata has no 'autoreset_mode', so the"
            " step on which a new episode starts is unknown; pass"
            " autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP (or SAME_STEP / DISABLED)"
        )
    chosen = AutoresetMode(override if override is not None else declared)
    if declared is not None and AutoresetMode(declared) != chosen:
        raise ValueError(
            f"TrackedVectorEnv: autoreset_mode={chosen} was passed, but the env declares"
            f" {AutoresetMode(declared)} in its metadata; drop the argument"
        )
    return chosen


def _check_action_tree(space: spaces.Space[Any], actions: Any, path: str, num_envs: int) -> None:
    """Raise a ValueError naming the expected and the actual shape when an action does not fit."""
    if isinstance(space, spaces.Dict):
        if not isinstance(actions, dict) or set(actions) != set(space.spaces):
            got = sorted(actions) if isinstance(actions, dict) else type(actions).__name__
            raise ValueError(
                f"TrackedVectorEnv.step: expected actions{path} as a dict with keys"
                f" {sorted(space.spaces)}, got {got}"
            )
        for key, sub in space.spaces.items():
            _check_action_tree(sub, actions[key], f"{path}[{key!r}]", num_envs)
        return
    if isinstance(space, spaces.Tuple):
        if not isinstance(actions, tuple | list) or len(actions) != len(space.spaces):
            raise ValueError(
                f"TrackedVectorEnv.step: expected actions{path} as a tuple of {len(space.spaces)},"
                f" got {type(actions).__name__}"
            )
        for i, sub in enumerate(space.spaces):
            _check_action_tree(sub, actions[i], f"{path}[{i}]", num_envs)
        return
    if space.shape is None:  # pragma: no cover - spaces without a fixed shape (Text, Graph)
        return
    shape = tuple(np.shape(actions))
    if shape != tuple(space.shape):
        raise ValueError(
            f"TrackedVectorEnv.step: expected actions{path} shaped {tuple(space.shape)} for the"
            f" batched action space {space} ({num_envs} envs), got shape {shape};"
            " the policy's env_actions() must return one action per env row"
        )


def _merge_rows(base: dict[str, Any], update: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """Info where ``rows`` take ``update``'s entries and drop ``base``'s (gymnasium's layout)."""
    out = dict(base)
    for key in set(base) | set(update):
        if key.startswith("_"):
            continue
        old_mask = base.get(f"_{key}", np.zeros_like(rows)) & ~rows
        new_mask = update.get(f"_{key}", np.zeros_like(rows)) & rows
        if key not in update:
            out[f"_{key}"] = old_mask
            continue
        value = update[key]
        if isinstance(value, dict):
            out[key] = _merge_rows(base.get(key, {}), value, rows)
        elif key in base and not isinstance(base[key], dict):
            merged = np.array(base[key], copy=True)
            merged[new_mask] = value[new_mask]
            out[key] = merged
        else:
            out[key] = value
        out[f"_{key}"] = old_mask | new_mask
    return out


class TrackedVectorEnv:
    """A gymnasium vector env whose :class:`~tether.EpisodeClock` advances with every step.

    Wraps :class:`gymnasium.vector.SyncVectorEnv`, :class:`~gymnasium.vector.AsyncVectorEnv` or any
    :class:`gymnasium.vector.VectorEnv` (vector wrappers included) in any autoreset mode, read from
    ``env.metadata["autoreset_mode"]``. ``step`` advances the clock once, renewing the ids of the
    rows whose returned observation starts a new episode, so a loop cannot forget the boundary.

    Args:
        env: the vector env.
        clock: the clock to advance; a new ``EpisodeClock(env.num_envs)`` when ``None``.
        autoreset_mode: only for envs whose metadata does not declare one.

    Raises:
        TypeError: when ``env`` is not a gymnasium vector env.
        ValueError: when the autoreset mode is unknown or the clock has another number of rows.

    Example:
        >>> import gymnasium as gym
        >>> venv = TrackedVectorEnv(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2))
        >>> obs, info = venv.reset(seed=0)
        >>> step = venv.step(venv.action_space.sample())
        >>> venv.clock.tick, step.episode_starts.tolist(), step.valid.tolist()
        (1, [False, False], [True, True])
        >>> venv.close()
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        *,
        clock: EpisodeClock | None = None,
        autoreset_mode: AutoresetMode | str | None = None,
    ) -> None:
        if isinstance(env, TrackedVectorEnv):
            raise TypeError("TrackedVectorEnv: the env is already tracked; use it directly")
        if not isinstance(env, gym.vector.VectorEnv):
            kind = "a single gymnasium.Env" if isinstance(env, gym.Env) else "not a vector env"
            raise TypeError(
                f"TrackedVectorEnv: expected a gymnasium.vector.VectorEnv, got {type(env).__name__}"
                f" ({kind}); wrap it with gymnasium.vector.SyncVectorEnv([make_env] * num_envs)"
                " (or AsyncVectorEnv)"
            )
        self._env = env
        self._mode = _read_autoreset_mode(env, autoreset_mode)
        num_envs = int(env.num_envs)
        if clock is None:
            clock = EpisodeClock(num_envs)
        elif clock.num_envs != num_envs:
            raise ValueError(
                f"TrackedVectorEnv: expected a clock of {num_envs} rows (one per env), got one of"
                f" {clock.num_envs}"
            )
        self._clock = clock
        self._num_envs = num_envs
        # NEXT_STEP: rows whose next step is the env's autoreset (the action will be ignored).
        self._pending = np.zeros(num_envs, dtype=bool)
        self._ready = False
        self._stepped = False

    # ----------------------------------------------------------------------------------------
    @property
    def env(self) -> gym.vector.VectorEnv:
        """The wrapped vector env."""
        return self._env

    @property
    def clock(self) -> EpisodeClock:
        """The clock this wrapper advances; build states with ``policy.initial_state(E, clock)``."""
        return self._clock

    @property
    def num_envs(self) -> int:
        """Env rows ``E``."""
        return self._num_envs

    @property
    def autoreset_mode(self) -> AutoresetMode:
        """The wrapped env's autoreset mode."""
        return self._mode

    @property
    def autoreset_pending(self) -> np.ndarray:
        """Rows whose next step is a next-step autoreset (their action is ignored); a copy."""
        return self._pending.copy()

    def restore_autoreset_pending(self, pending: Any) -> None:
        """Restore which rows' next step is an autoreset (NEXT_STEP mode), from a checkpoint.

        Raises:
            ValueError: when ``pending`` is not a bool mask of one flag per env row.
        """
        what = "TrackedVectorEnv.restore_autoreset_pending"
        self._pending = as_row_mask(pending, self._num_envs, what).copy()

    @property
    def observation_space(self) -> spaces.Space[Any]:
        """The batched observation space."""
        return self._env.observation_space

    @property
    def action_space(self) -> spaces.Space[Any]:
        """The batched action space."""
        return self._env.action_space

    @property
    def single_observation_space(self) -> spaces.Space[Any]:
        """One env's observation space."""
        return self._env.single_observation_space

    @property
    def single_action_space(self) -> spaces.Space[Any]:
        """One env's action space."""
        return self._env.single_action_space

    # ----------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env; every row starts a new episode.

        After a reset that follows steps, every episode id is renewed (the clock advances once
        with all rows done): build a fresh state with ``policy.initial_state(E, venv.clock)``.

        Args:
            seed / options: passed to the vector env's ``reset``.

        Returns:
            ``(obs [E, ...], info)`` as the vector env returns them.
        """
        if options is not None and "reset_mask" in options:
            raise ValueError(
                "TrackedVectorEnv.reset: options['reset_mask'] is handled by the wrapper (DISABLED"
                " mode resets done rows itself); call reset() without it"
            )
        obs, info = self._env.reset(seed=seed, options=options)
        if self._stepped:
            self._clock.advance(np.ones(self._num_envs, dtype=bool))
        self._pending = np.zeros(self._num_envs, dtype=bool)
        self._ready = True
        self._stepped = False
        return obs, info

    def step(self, actions: Any) -> VecStep:
        """Step every env once, advance the clock once, and say where episodes end and start.

        Args:
            actions: the batched actions, shaped like ``action_space`` (numpy; CPU tensors are
                converted).

        Returns:
            A :class:`VecStep`.

        Raises:
            RuntimeError: when ``reset()`` was not called first.
            ValueError: when ``actions`` does not fit the batched action space (nothing is
                stepped, the clock does not move).
            NonFiniteError: when the env returned NaN or inf rewards, naming the rows and the
                tick (the env stepped and the clock advanced).
        """
        if not self._ready:
            raise RuntimeError("TrackedVectorEnv.step: call reset() before the first step()")
        actions = tree_map(lambda a: a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a,
                           actions)
        _check_action_tree(self._env.action_space, actions, "", self._num_envs)
        obs, reward, terminated, truncated, info = self._env.step(actions)
        self._stepped = True
        terminated = np.asarray(terminated, dtype=bool).copy()
        truncated = np.asarray(truncated, dtype=bool).copy()
        done = terminated | truncated
        valid = np.ones(self._num_envs, dtype=bool)
        final_info: dict[str, Any] | None = None
        if self._mode is AutoresetMode.NEXT_STEP:
            starts = self._pending
            valid = ~starts
            final_obs = obs
            self._pending = done.copy()
        elif self._mode is AutoresetMode.SAME_STEP:
            starts = done
            final_obs = obs
            if done.any():
                final_obs = set_rows(copy_tree(obs), np.flatnonzero(done), info["final_obs"])
                final_info = info.get("final_info")
        else:  # DISABLED: reset the done rows here, then it reads like SAME_STEP
            starts = done
            final_obs = obs
            if done.any():
                final_obs = copy_tree(obs)  # the reset below may write into the same arrays
                final_info = info
                obs, reset_info = self._env.reset(options={"reset_mask": done.copy()})
                info = _merge_rows(info, reset_info, done)
        self._clock.advance(starts)
        out = VecStep(obs, np.asarray(reward, dtype=np.float64), terminated, truncated, done,
                      starts.copy(), valid, final_obs, info, final_info)
        bad = np.flatnonzero(~np.isfinite(out.reward))
        if bad.size:  # [E] host floats: no device, no measurable cost
            raise NonFiniteError(
                f"TrackedVectorEnv.step: the rewards of env rows {format_rows(bad)} are NaN or inf (at tick"
                f" {self._clock.tick}): no return or advantage can be learned from them. Fix the env's"
                " rewards (or wrap it to clean them)",
                quantity="reward", rows=bad.tolist(), tick=self._clock.tick)
        return out

    def close(self, **kwargs: Any) -> None:
        """Close the wrapped env."""
        self._env.close(**kwargs)

    def __enter__(self) -> TrackedVectorEnv:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"TrackedVectorEnv({type(self._env).__name__}, num_envs={self._num_envs},"
                f" autoreset_mode={self._mode.name}, tick={self._clock.tick})")
