"""Where every step ``(t, b)`` of an unroll goes in the lanes of one fused call (host side, numpy).

A *lane* is one batch column of the fused call. The spliced layout keeps row ``b`` in lane ``b``
and splices a *reset step* before each episode start; the padded layout gives every episode
segment its own lane. Positions are flat, ``position * lanes + lane`` (the order of a
``[length, lanes]`` tensor). Planning reads only the host bool array ``episode_starts [T, B]``.
"""

from __future__ import annotations

import attrs
import numpy as np


@attrs.frozen
class Lanes:
    """A layout of ``T x B`` steps into ``lanes`` lanes of ``length`` steps, plus reset / hold steps."""

    length: int
    lanes: int
    # int64 [length * lanes]: the step (t * B + b) each position runs; T * B at a reset step,
    # T * B + 1 at a hold step (LSTM). The gathers read those from two extra rows (see _lanes).
    source: np.ndarray
    out: np.ndarray  # int64 [T * B]: the position of step (t, b)
    final_lane: np.ndarray | None  # int64 [B]: the lane that ends row b (None: lane b)
    init_row: np.ndarray | None  # int64 [lanes]: the row a lane starts from, B: zeros (None: row b)
    masks_start: bool  # whether a start at t = 0 is handled here (else: mask the initial state)


def _finish(
    length: int, lanes: int, out: np.ndarray, resets: np.ndarray, has_c: bool, masks_start: bool,
    final_lane: np.ndarray | None = None, init_row: np.ndarray | None = None,
) -> Lanes:
    """Fill in the source of every position: reset steps at ``resets``, and hold (LSTM) or reset
    (GRU) steps at every other position without a step."""
    steps = out.size
    source = np.full(length * lanes, steps + 1 if has_c else steps, dtype=np.int64)
    source[resets] = steps
    source[out] = np.arange(steps, dtype=np.int64)
    return Lanes(length, lanes, source, out, final_lane, init_row, masks_start)


def plan_padded(starts: np.ndarray, has_c: bool) -> Lanes:
    """Each episode segment is its own lane, from the row's state (first) or zeros (the others)."""
    T, B = starts.shape
    begins = starts.copy()
    begins[0] = False
    within = np.cumsum(begins, axis=0)  # segment of (t, b) within row b
    count = within[-1] + 1
    first = np.cumsum(count) - count
    seg = first + within  # [T, B] global segment id
    lanes = int(count.sum())
    begins[0] = True
    t_idx, b_idx = np.nonzero(begins)
    seg_start = np.zeros(lanes, dtype=np.int64)
    seg_start[seg[t_idx, b_idx]] = t_idx
    pos = np.arange(T)[:, None] - seg_start[seg]
    out = (pos * lanes + seg).ravel()
    init_row = np.full(lanes, B, dtype=np.int64)
    init_row[first] = np.where(starts[0], B, np.arange(B))
    return _finish(int(pos.max()) + 1, lanes, out, out[:0], has_c, True, first + count - 1, init_row)


def plan_spliced(starts: np.ndarray, has_c: bool) -> Lanes:
    """Lane ``b`` is row ``b``, with a reset step spliced in before each start.

    A start at ``t = 0`` becomes a reset step too when its row has room before the busiest
    row's end (then the initial state needs no masking); otherwise the caller masks the state.
    """
    T, B = starts.shape
    before = np.cumsum(starts, axis=0, dtype=np.int64)  # reset steps before (t, b)
    fold = int(before[-1].max()) == int((before[-1] - starts[0]).max())
    if not fold:
        before -= starts[0]
    out = ((before + np.arange(T)[:, None]) * B + np.arange(B)).ravel()
    begins = starts if fold else starts[1:]
    resets = out[out.size - begins.size :][begins.ravel()] - B  # one position before each start
    return _finish(T + int(before[-1].max()), B, out, resets, has_c, fold)
