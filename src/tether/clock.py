"""EpisodeClock: the source of truth for episode boundaries and training windows.

The clock lives in host memory and only counts: an episode id per env row, a global ``tick`` (one
per environment step) and a ``window`` counter (one per training window / optimizer step). States
are checked against it with integer comparisons, so checking never synchronises a device.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch

__all__ = ["EpisodeClock"]

#: Renewal records (advances that started an episode somewhere) the replay history keeps at most.
HISTORY_LIMIT = 1 << 16


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

    __slots__ = ("_copied_at", "_hist_ids", "_hist_rows", "_hist_ticks", "_ids", "_known_from", "_next_id",
                 "_num_envs", "_renewals", "_retired", "_retired_tick", "_tick", "_window", "_window_starts")

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
        self._copied_at = -1  # the tick at which a copy / unpickle made this clock (-1: not a copy)
        self._reset_history()

    def _reset_history(self) -> None:
        # What the clock saw, for checking replays (host side, cheap): one record per advance that
        # renewed an id (its tick, the rows, their new ids), kept from the previous window's first
        # tick on. Every row starts an episode at the clock's first tick.
        self._hist_ticks: list[int] = [self._tick]
        self._hist_rows: list[np.ndarray] = [np.arange(self._num_envs, dtype=np.int64)]
        self._hist_ids: list[np.ndarray] = [self._ids]
        self._known_from = self._tick  # the first tick whose starts the history still holds
        self._window_starts = [self._tick, self._tick]  # first ticks of the previous / current window

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
    def is_copy(self) -> bool:
        """Whether this clock was made by ``copy.deepcopy`` or unpickling and has not advanced since.

        A state copied alone carries such a clock: it stays where it was while the loop advances
        the live one (:meth:`RecurrentState.bind <tether.RecurrentState.bind>` rejoins them).
        """
        return self._copied_at == self._tick

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
            self._hist_ticks.append(self._tick)
            self._hist_rows.append(ended)
            self._hist_ids.append(ids[ended])
            if len(self._hist_ticks) > HISTORY_LIMIT:
                self._forget_before(self._hist_ticks[len(self._hist_ticks) // 2])
        return flags

    def end_window(self) -> None:
        """Close the current training window (a truncated-BPTT or optimizer-step boundary).

        A state that still carries an autograd graph must be ``detach()``-ed before it is used
        in the next window; tracked modules raise :class:`~tether.GraphLeakError` otherwise.
        """
        self._window += 1
        # A window with no env step (optimizer steps between rollouts) does not push the rollout
        # out of the history: an end_window() per minibatch keeps the replays checked.
        if self._tick > self._window_starts[1]:
            self._window_starts = [self._window_starts[1], self._tick]
            self._forget_before(self._window_starts[0])

    def _forget_before(self, tick: int) -> None:
        cut = bisect.bisect_left(self._hist_ticks, tick)
        if cut:
            del self._hist_ticks[:cut], self._hist_rows[:cut], self._hist_ids[:cut]
        self._known_from = max(self._known_from, tick)

    @property
    def window_start_ticks(self) -> tuple[int, int]:
        """The first tick of the previous and of the current window that saw an env step."""
        return self._window_starts[0], self._window_starts[1]

    def recorded_starts(
        self, ticks: np.ndarray, rows: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """What the clock saw of episode starts over ``steps`` ticks from ``ticks[b]``, row ``rows[b]``.

        For replay checks: ``starts[t, b]`` is True when row ``rows[b]`` began a new episode at
        tick ``ticks[b] + t`` (every row begins one at the clock's first tick), and ``ids[t, b]``
        is that episode's id (-1 where none began). Ticks after the clock's now read as no start.

        Args:
            ticks: int64 ``[B]``, the first tick of each sequence.
            rows: int64 ``[B]``, the clock row of each sequence.
            steps: ``T``.

        Returns:
            ``(starts [T, B], ids [T, B])``, or ``None`` when some tick is older than the history
            (kept from the first tick of the previous window that saw an env step).
        """
        ticks = np.asarray(ticks, dtype=np.int64)
        if ticks.size == 0 or int(ticks.min()) < self._known_from:
            return None
        lo, hi = int(ticks.min()), int(ticks.max()) + steps
        span = np.full((hi - lo, self._num_envs), -1, dtype=np.int64)
        first = bisect.bisect_left(self._hist_ticks, lo)
        last = bisect.bisect_left(self._hist_ticks, hi)
        for i in range(first, last):
            span[self._hist_ticks[i] - lo, self._hist_rows[i]] = self._hist_ids[i]
        at = ticks[None, :] - lo + np.arange(steps)[:, None]  # [T, B] positions in the span
        ids = span[at, np.asarray(rows, dtype=np.int64)[None, :]]
        return ids >= 0, ids

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
        self._copied_at = -1
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
        # The history before a restore is not saved: replays of earlier ticks go unchecked.
        self._reset_history()
        self._hist_ticks, self._hist_rows, self._hist_ids = [], [], []

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._num_envs = int(state["num_envs"])
        self._restore(state)
        self._copied_at = self._tick

    def __repr__(self) -> str:
        return f"EpisodeClock(num_envs={self._num_envs}, tick={self._tick}, window={self._window})"
