"""The lifecycle of an unroll: the checks of a step for a live state, alignment for a replay.

From a live state an unroll is a step of ``T``: the tracked core's own checks run (rows that
restart at ``t = 0`` may hold an ended episode), and the final state takes the clock's episode
ids for rows that restarted. From a snapshot it is a replay: it is checked against what the clock
recorded (:meth:`~tether.EpisodeClock.recorded_starts`), host side, in ``O(T * B)``.
"""

from __future__ import annotations

import numpy as np
import torch

from tether.errors import ReplayAlignmentError, format_rows
from tether.modes import get_mode, report
from tether.state import RecurrentState
from tether.tracking import TrackedRNN

_STARTS_FIX = ("store and pass episode_starts[t, b] = True where obs[t, b] is the first observation"
               " of a new episode (the done flag of the step BEFORE t), as the rollout saw them")


def live_step(
    core: TrackedRNN, x: torch.Tensor, state: RecurrentState, starts: np.ndarray
) -> tuple[np.ndarray | None, bool]:
    """Check a live state as a step of ``T`` and work out its final episode ids.

    Returns:
        ``(ids, verified)``: the final state's ids (``None``: keep the state's) and whether they
        are verified current. A row that restarts at ``t > 0`` restarts in an episode the clock
        has not begun yet: its id is ``-1`` until the next checked step adopts the clock's.
    """
    checked = core.check(x, state, steps=int(x.shape[0]), starts=starts[0])
    clock = state.clock
    if clock is None or not starts.any():
        return checked, checked is not None
    ids = (state.episode_ids if checked is None else checked).copy()  # type: ignore[union-attr]
    later = starts[1:].any(axis=0)
    first_only = starts[0] & ~later
    ids[first_only] = clock.episode_ids[state.rows()[first_only]]
    ids[later] = -1
    ids.setflags(write=False)
    return ids, checked is not None and not later.any()


def check_replay(state: RecurrentState, starts: np.ndarray) -> None:
    """Check that a replay from a snapshot lines up with what the clock saw.

    Two mistakes are caught. A snapshot taken after the rollout: a sequence of ``T > 1`` steps from
    it would need observations from the future. And ``episode_starts`` that miss a start the clock
    recorded (all zeros, or shifted by a step): the replay would carry a state across an episode
    boundary. Extra starts are allowed (a memoryless baseline restarts every step on purpose), and
    so is a missing start at the first step when the snapshot already holds the new episode (it
    was reset before it was stored). Ticks the history no longer holds go unchecked.
    """
    clock = state.clock
    if clock is None or state.episode_ids is None or get_mode() == "off":
        return
    T = int(starts.shape[0])
    ticks, rows = state.ticks(), state.rows()
    late = ticks >= clock.tick if T > 1 else np.zeros_like(ticks, dtype=bool)
    if late.any():
        bad = np.flatnonzero(late)
        report(ReplayAlignmentError(
            f"a sequence of {T} steps was replayed from a snapshot of tick {int(ticks[bad[0]])} for"
            f" rows {format_rows(rows[bad])}, but the clock is at tick {clock.tick}: the snapshot"
            " was taken after the rollout, not before its first step",
            kind="replay-after-rollout",
            fix="take the snapshot (state.snapshot()) before the rollout's first step and replay from it;"
                " to run a core ahead of the clock on made-up inputs, unroll the live state instead",
            rows=rows[bad].tolist(), snapshot_ticks=ticks[bad].tolist(), clock_tick=clock.tick,
        ))
        return
    recorded = clock.recorded_starts(ticks, rows, T)
    if recorded is None:
        return
    seen, ids = recorded
    # Only ticks before now belong to a rollout (the obs at now starts the next one).
    past = ticks[None, :] + np.arange(T)[:, None] < clock.tick
    missing = seen & ~starts & past
    missing[0] &= state.episode_ids != ids[0]  # a snapshot already reset into the new episode
    if not missing.any():
        return
    t_bad, b_bad = np.nonzero(missing)
    at = ticks[b_bad] + t_bad
    order = np.lexsort((rows[b_bad], at))  # by tick, then row
    t_bad, b_bad, at = t_bad[order], b_bad[order], at[order]
    mistake, what = _which_mistake(starts, t_bad, b_bad)
    pairs = [(int(r), int(k)) for r, k in zip(rows[b_bad], at, strict=True)]
    report(ReplayAlignmentError(
        f"episode_starts miss {t_bad.size} episode start(s) the clock recorded; {what}; the replay"
        f" does not restart these (row, tick) pairs: {format_rows(pairs)}",
        kind="replay-starts", fix=_STARTS_FIX, mistake=mistake, pairs=pairs,
        rows=rows[b_bad].tolist(), ticks=at.tolist(), snapshot_ticks=ticks.tolist(), clock_tick=clock.tick,
    ))


def _which_mistake(starts: np.ndarray, t_bad: np.ndarray, b_bad: np.ndarray) -> tuple[str, str]:
    """Name the mistake behind missing starts: all zero, shifted by +1 or -1 step, or some missing.

    Shifted by +1 (one step late): every missed start has a start one step later in its row (or
    the sequence ends there); by -1 (one step early): one step earlier (or it begins there).
    """
    if not starts.any():
        return "all-zero", "they are all zero"
    T = int(starts.shape[0])
    late_ok = (t_bad + 1 >= T) | starts[np.minimum(t_bad + 1, T - 1), b_bad]
    early_ok = (t_bad == 0) | starts[np.maximum(t_bad - 1, 0), b_bad]
    if late_ok.all() and (t_bad + 1 < T).any():
        return "shifted+1", "they are shifted by +1 (one step late: the flags of the step AFTER the start?)"
    if early_ok.all() and (t_bad > 0).any():
        return "shifted-1", ("they are shifted by -1 (one step early: the done flag stored at the step that"
                             " ended the episode, not at the next one?)")
    return "missing", "some are missing (not all zero, not shifted by a step)"
