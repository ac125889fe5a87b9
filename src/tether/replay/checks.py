"""The alignment checks of a sampled replay batch: stored states against their stamps, starts against ids.

The clock's window history does not reach sequences stored many updates ago, so a replay buffer
keeps what the checks need beside every step: the episode id and the clock tick. For every sampled
sequence (host side, ``O(T * B)``, no device synchronisation when called from
:meth:`~tether.replay.SequenceReplay.sample`):

- the stored state's tick equals the first step's tick (``"replay-state-tick"``: a state stored a
  step late or early, naming the off-by);
- its episode ids equal the first step's, unless ``episode_starts[0]`` (``"replay-state-episode"``);
- within the mask, ticks run consecutively (``"replay-splice"``: steps joined from two times);
- within the mask, ``episode_starts[t]`` is True exactly where the episode id changes from ``t - 1``
  to ``t`` (``"replay-starts"`` with a ``mistake``: ``"all-zero"``, ``"shifted+1"``,
  ``"shifted-1"``, ``"extra"`` or ``"missing"``; an id that changes with no start anywhere near is
  ``"replay-splice"``: a sequence spliced from two episodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tether.errors import ReplayAlignmentError, format_rows
from tether.modes import get_mode, report

__all__ = ["check_sequences"]

_TICK_FIX = "store the state fed at the sequence's first step (step.state, before the step), with its tick"
_EPISODE_FIX = ("store the state fed at the sequence's first step with that step's episode ids (the"
                " state reset at an episode start carries the new episode's id)")
_STARTS_FIX = ("keep episode_starts[t, b] True exactly where obs[t, b] is the first observation of a new"
               " episode (where the stored episode id changes), as the collector wrote them")
_SPLICE_FIX = ("build a sequence from consecutive steps of one env's stream; an episode boundary inside"
               " it must carry episode_starts=True")


def check_sequences(batch: Any) -> None:
    """Check a sampled :class:`~tether.replay.ReplayBatch` against its stored stamps (mode-aware).

    Strict mode raises the first misalignment, warn mode warns once per kind and call site, off
    mode returns at once. ``SequenceReplay.sample`` runs it on every batch; call it yourself on a
    batch you built or edited. The mask is read from ``batch.mask`` (on CUDA: one copy to the host).

    Args:
        batch: a :class:`~tether.replay.ReplayBatch`.

    Raises:
        ReplayAlignmentError: in strict mode, with ``kind`` ``"replay-state-tick"`` (and
            ``off_by``), ``"replay-state-episode"``, ``"replay-starts"`` (and ``mistake``) or
            ``"replay-splice"``; ``rows`` (batch rows), ``env_rows`` and ``pairs`` (batch row,
            tick) name where.
    """
    if get_mode() == "off":
        return
    check_host(batch, batch.mask.detach().cpu().numpy())


def check_host(batch: Any, mask: np.ndarray) -> None:
    """:func:`check_sequences` with the mask ``[T, B]`` already on the host (what ``sample`` has)."""
    if get_mode() == "off":
        return
    for error in _state_errors(batch) + _step_errors(batch, mask):
        report(error)


def _state_errors(batch: Any) -> list[ReplayAlignmentError]:
    state, ticks, ids = batch.initial_state, batch.ticks, batch.episode_ids
    env_rows = state.rows()
    errors = []
    off_by = state.ticks() - ticks[0]
    if off_by.any():
        bad = np.flatnonzero(off_by)
        offs = sorted(set(off_by[bad].tolist()))
        what = {(1,): "stored one step late: the state after the first step, not the one fed at it",
                (-1,): "stored one step early: the state fed at the step before the first"}.get(
                    tuple(offs), "stored at another step than the first")
        errors.append(ReplayAlignmentError(
            f"the stored start states of batch rows {format_rows(bad)} (env rows"
            f" {format_rows(env_rows[bad])}) are for ticks {format_rows(state.ticks()[bad])}, but their"
            f" sequences start at ticks {format_rows(ticks[0, bad])} (off by {offs}): {what}",
            kind="replay-state-tick", fix=_TICK_FIX, rows=bad.tolist(), env_rows=env_rows[bad].tolist(),
            off_by=off_by[bad].tolist(), snapshot_ticks=state.ticks()[bad].tolist(),
            ticks=ticks[0, bad].tolist()))
    if state.episode_ids is not None:
        wrong = (state.episode_ids != ids[0]) & ~batch.episode_starts[0]
        if wrong.any():
            bad = np.flatnonzero(wrong)
            errors.append(ReplayAlignmentError(
                f"the stored start states of batch rows {format_rows(bad)} (env rows"
                f" {format_rows(env_rows[bad])}) hold episode ids {format_rows(state.episode_ids[bad])},"
                f" but their first steps, which start no episode, belong to episodes"
                f" {format_rows(ids[0, bad])}: the state is from another episode",
                kind="replay-state-episode", fix=_EPISODE_FIX, rows=bad.tolist(),
                env_rows=env_rows[bad].tolist(), pairs=[(int(b), int(ticks[0, b])) for b in bad]))
    return errors


def _pairs(where: np.ndarray, ticks: np.ndarray) -> list[tuple[int, int]]:
    t, b = np.nonzero(where)
    order = np.lexsort((t, b))
    return [(int(b[i]), int(ticks[t[i], b[i]])) for i in order]


def _step_errors(batch: Any, mask: np.ndarray) -> list[ReplayAlignmentError]:
    ticks, ids, starts = batch.ticks, batch.episode_ids, batch.episode_starts
    env_rows = batch.initial_state.rows()
    inside = np.zeros_like(mask)
    inside[1:] = mask[1:] & mask[:-1]  # steps t >= 1 whose step t - 1 is in the mask too
    jumps = inside.copy()
    jumps[1:] &= ticks[1:] != ticks[:-1] + 1
    errors = []
    if jumps.any():
        pairs = _pairs(jumps, ticks)
        rows = sorted({b for b, _ in pairs})
        errors.append(ReplayAlignmentError(
            f"the ticks of batch rows {format_rows(rows)} (env rows {format_rows(env_rows[rows])}) jump"
            f" inside the sequence at (batch row, tick) {format_rows(pairs)}: the sequence is spliced"
            " from steps of different times",
            kind="replay-splice", fix=_SPLICE_FIX, rows=rows, env_rows=env_rows[rows].tolist(),
            pairs=pairs))
        spliced = np.asarray(jumps.any(axis=0))
        inside &= ~spliced[None, :]  # the starts of a spliced row say nothing more
    changes = np.zeros_like(mask)
    changes[1:] = ids[1:] != ids[:-1]
    missing = inside & changes & ~starts
    extra = inside & starts & ~changes
    if missing.any() or extra.any():
        errors.append(_starts_error(batch, mask, missing, extra))
    return errors


def _shift_fits(starts: np.ndarray, mask: np.ndarray, missing: np.ndarray,
                extra: np.ndarray) -> tuple[bool, bool]:
    """Whether every fault fits starts moved one step late (+1), and one step early (-1)."""
    T = starts.shape[0]
    lengths = mask.sum(axis=0)
    t = np.arange(T)[:, None]
    nxt = np.zeros_like(extra)
    nxt[:-1] = extra[1:]
    prv = np.zeros_like(extra)
    prv[1:] = extra[:-1]
    miss_next = np.zeros_like(missing)
    miss_next[:-1] = missing[1:]
    miss_prev = np.zeros_like(missing)
    miss_prev[1:] = missing[:-1]
    at_end = t + 1 >= lengths[None, :]
    from_first = (t == 1) & ~starts[0][None, :]  # a start at step 0, moved to step 1
    to_first = (t == 1) & starts[0][None, :]  # a start at step 1, moved to step 0
    late = (~missing | nxt | at_end) & (~extra | miss_prev | from_first)
    early = (~missing | prv | to_first) & (~extra | miss_next | at_end)
    return bool(late.all()), bool(early.all())


def _starts_error(batch: Any, mask: np.ndarray, missing: np.ndarray,
                  extra: np.ndarray) -> ReplayAlignmentError:
    ticks, starts = batch.ticks, batch.episode_starts
    env_rows = batch.initial_state.rows()
    late, early = _shift_fits(starts, mask, missing, extra)
    kind = "replay-starts"
    if missing.any() and not (starts & mask).any():
        mistake, what = "all-zero", "they are all zero"
    elif late:
        mistake, what = ("shifted+1", "they are shifted by +1 (one step late: the flag of the step AFTER the"
                         " start?)")
    elif early:
        mistake, what = ("shifted-1", "they are shifted by -1 (one step early: the done flag stored at the"
                         " step that ended the episode?)")
    elif not missing.any():
        mistake, what = "extra", "some mark a start where the episode id does not change"
    elif not extra.any():
        kind, mistake = "replay-splice", "splice"
        what = "the episode id changes with no start: the sequence is spliced from two episodes"
    else:
        mistake, what = "missing", "some are missing and some are extra (not all zero, not shifted by a step)"
    faults = missing | extra
    pairs = _pairs(faults, ticks)
    rows = sorted({b for b, _ in pairs})
    return ReplayAlignmentError(
        f"episode_starts of batch rows {format_rows(rows)} (env rows {format_rows(env_rows[rows])})"
        f" disagree with the stored episode ids at {int(faults.sum())} step(s); {what}; (batch row,"
        f" tick) pairs: {format_rows(pairs)}",
        kind=kind, fix=_SPLICE_FIX if kind == "replay-splice" else _STARTS_FIX, mistake=mistake,
        rows=rows, env_rows=env_rows[rows].tolist(), pairs=pairs,
        ticks=[tick for _, tick in pairs])
