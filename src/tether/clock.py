"""EpisodeClock: the source of truth for episode boundaries and training windows.

The clock lives in host memory and only counts: an episode id per env row, a global ``tick`` (one
per environment step) and a ``window`` counter (one per training window / optimizer step). States
are checked against it with integer comparisons, so checking never synchronises a device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["EpisodeClock"]


def any_row(flags: np.ndarray) -> bool:
    """Whether any flag is set; ``count_nonzero`` stays cheap where a ufunc ``any()`` is not."""
    return bool(np.count_nonzero(flags))


def as_row_mask(mask: Any, num_rows: int, what: str) -> np.ndarray:
    """Turn a done / reset mask into a host bool array of shape ``(num_rows,)``.

    Accepts a numpy array, a torch tensor (a CUDA tensor is copied to the host, which waits for
    the device) or a sequence of bools.

    Raises:
        ValueError: when the mask is not boolean or not shaped ``(num_rows,)``.
    """
    if type(mask) is np.ndarray and mask.dtype == np.bool_ and mask.shape == (num_rows,):
        return mask  # the common case (gymnasium's own arrays), checked with no conversion
    if isinstance(mask, torch.Tensor):
        if mask.dtype != torch.bool:
            raise ValueError(
                f"{what}: expected a bool mask of shape ({num_rows},), got a {mask.dtype} tensor;"
                " pass `mask.bool()` (or `terminated | truncated`)"
            )
        array = mask.detach().cpu().numpy()
    else:
        array = np.asarray(mask)
        if array.dtype != np.bool_:
            raise ValueError(
                f"{what}: expected a bool mask of shape ({num_rows},), got dtype {array.dtype};"
                " pass `np.asarray(mask, dtype=bool)` (or `terminated | truncated`)"
            )
    if array.shape != (num_rows,):
        raise ValueError(
            f"{what}: expected a bool mask of shape ({num_rows},) (one flag per env row),"
            f" got shape {tuple(array.shape)}"
        )
    return array


class EpisodeClock:
    """Counts environment steps, episode boundaries and training windows for ``num_envs`` rows.

    Call :meth:`advance` once per environment step with the ``done`` flags that step returned
    (``terminated | truncated``) and :meth:`end_window` at each truncated-BPTT / optimizer
    boundary. The vector-env wrapper does both for you; a custom loop calls them itself.

    Args:
        num_envs: number of env rows (the batch size of the states checked against this clock).

    Raises:
        ValueError: if ``num_envs`` is not a positive integer.

    Example:
        >>> import numpy as np
        >>> clock = EpisodeClock(2)
        >>> clock.tick, clock.window, clock.episode_ids.tolist()
        (0, 0, [0, 1])
        >>> _ = clock.advance(np.array([False, True]))
        >>> clock.tick, clock.episode_ids.tolist()
        (1, [0, 2])
    """

    __slots__ = ("_ids", "_next_id", "_num_envs", "_renewals", "_retired", "_retired_tick", "_tick",
                 "_window")

    def __init__(self, num_envs: int) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"EpisodeClock: expected num_envs to be a positive int, got {num_envs!r}")
        self._num_envs = int(num_envs)
        self._ids = np.arange(self._num_envs, dtype=np.int64)
        self._ids.setflags(write=False)
        self._next_id = self._num_envs
        self._tick = 0
        self._window = 0
        # Counts advances that renewed at least one id: a state whose ids were verified at the
        # current count is still valid without comparing arrays (the common, cheap case).
        self._renewals = 0
        self._retired = np.full(self._num_envs, -1, dtype=np.int64)
        self._retired_tick = -1

    @property
    def num_envs(self) -> int:
        """Number of env rows."""
        return self._num_envs

    @property
    def tick(self) -> int:
        """Environment steps taken so far (one per :meth:`advance`)."""
        return self._tick

    @property
    def window(self) -> int:
        """Training windows closed so far (one per :meth:`end_window`)."""
        return self._window

    @property
    def episode_ids(self) -> np.ndarray:
        """The current episode id of each row, int64 ``[num_envs]`` (read-only)."""
        return self._ids

    @property
    def retired_ids(self) -> np.ndarray:
        """Ids of the episodes that ended at the latest :meth:`advance` (-1 where none ended)."""
        if self._retired_tick != self._tick:
            return np.full(self._num_envs, -1, dtype=np.int64)
        return self._retired.copy()

    @property
    def renewals(self) -> int:
        """How many advances so far renewed at least one episode id."""
        return self._renewals

    def advance(self, done: Any) -> np.ndarray:
        """Record one environment step: ``tick += 1`` and each done row starts a new episode.

        Args:
            done: bool ``[num_envs]`` (numpy, torch or a sequence), ``terminated | truncated``.

        Returns:
            The done flags as a host bool array ``[num_envs]``.

        Raises:
            ValueError: when ``done`` is not a bool mask of shape ``(num_envs,)``.
        """
        flags = as_row_mask(done, self._num_envs, "EpisodeClock.advance(done)")
        self._tick += 1
        if any_row(flags):
            ended = np.flatnonzero(flags)
            retired = np.full(self._num_envs, -1, dtype=np.int64)
            retired[ended] = self._ids[ended]
            ids = self._ids.copy()
            ids[ended] = np.arange(self._next_id, self._next_id + ended.size, dtype=np.int64)
            ids.setflags(write=False)
            self._next_id += int(ended.size)
            self._ids = ids
            self._retired = retired
            self._retired_tick = self._tick
            self._renewals += 1
        return flags

    def end_window(self) -> None:
        """Close the current training window (a truncated-BPTT or optimizer-step boundary).

        A state that still carries an autograd graph must be ``detach()``-ed before it is used
        in the next window; tracked modules raise :class:`~tether.GraphLeakError` otherwise.
        """
        self._window += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore this clock (for checkpoints)."""
        return {
            "num_envs": self._num_envs,
            "episode_ids": self._ids.copy(),
            "next_id": self._next_id,
            "tick": self._tick,
            "window": self._window,
            "renewals": self._renewals,
            "retired": self._retired.copy(),
            "retired_tick": self._retired_tick,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a clock saved by :meth:`state_dict`.

        Raises:
            ValueError: when the saved clock has a different number of rows or misses a key.
        """
        missing = {"num_envs", "episode_ids", "next_id", "tick", "window"} - set(state)
        if missing:
            raise ValueError(f"EpisodeClock.load_state_dict: missing keys {sorted(missing)}")
        if int(state["num_envs"]) != self._num_envs:
            raise ValueError(
                f"EpisodeClock.load_state_dict: expected a clock of {self._num_envs} rows,"
                f" got one of {state['num_envs']}"
            )
        self._restore(state)
        self._renewals += 1  # states from before the load are rechecked against the loaded ids

    def _restore(self, state: dict[str, Any]) -> None:
        ids = np.asarray(state["episode_ids"], dtype=np.int64).copy()
        ids.setflags(write=False)
        self._ids = ids
        self._next_id = int(state["next_id"])
        self._tick = int(state["tick"])
        self._window = int(state["window"])
        self._renewals = int(state.get("renewals", 0))
        self._retired = np.asarray(state.get("retired", np.full(self._num_envs, -1)), dtype=np.int64)
        self._retired_tick = int(state.get("retired_tick", -1))

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._num_envs = int(state["num_envs"])
        self._restore(state)

    def __repr__(self) -> str:
        return f"EpisodeClock(num_envs={self._num_envs}, tick={self._tick}, window={self._window})"
