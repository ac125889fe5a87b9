"""The lifecycle checks' reports: what each misuse says, where, and the fix for the loop's spelling.

:meth:`TrackedRNN.check <tether.TrackedRNN.check>` decides which checks run (cheap integer
comparisons on the hot path); the functions here build and report the errors, off the hot path,
and compare episode ids when the cheap test cannot vouch for them.
"""

from __future__ import annotations

import numpy as np

from tether.clock import EpisodeClock
from tether.errors import GraphLeakError, StaleStateError, format_rows
from tether.modes import get_mode, report
from tether.state import RecurrentState

__all__ = ["GRAPH_BYTES_PER_STATE_BYTE", "check_ids", "report_graph_limit", "report_spent", "report_tick",
           "report_window"]

_RESET_FIX = ("call `state = state.reset(done)` right after `clock.advance(done)` (a loop that restarts"
              " rows through unroll's episode_starts passes the done flags as this call's starts too)")
# A call that takes the episode starts (unroll, a policy's act) resets rows itself: its fix is them.
_STARTS_FIX = ("pass the rows whose episode ended at the previous step as the call's episode starts:"
               " `episode_starts[0] = done` (tether.sequence.unroll; a policy's act takes it as"
               " episode_start), the done flags that step gave `clock.advance(done)`")
_WINDOW_FIX = ("if the state comes from collection (acting in the env), collect under `torch.no_grad()`:"
               " a rollout needs no graph, and detaching it here would leave the values stored during"
               " it tied to a freed graph (torch's 'backward through the graph a second time'); if it"
               " is truncated-BPTT training, call `state = state.detach()` right after `clock.end_window()`")
#: Bytes a step of graph holds per byte of state, at least: the gates and the new state a recurrent
#: core keeps for backward (an LSTM's 4H gates + h, c against its 2H state: 3x; a GRU's 3H + h: 4x).
#: Encoder and head activations come on top, so the estimate is a floor.
GRAPH_BYTES_PER_STATE_BYTE = 3


def report_spent() -> None:
    """Report a state that came out of a bootstrap read and is stepped again."""
    report(StaleStateError(
        "this state came out of a bootstrap read (the ending episode's final value) and"
        " was stepped again",
        kind="spent-state",
        fix="keep stepping the state you passed to the bootstrap read, after `reset(done)`",
    ))


def report_window(state: RecurrentState, clock: EpisodeClock) -> None:
    """Report a state whose graph crosses ``end_window()``; the fix names both remedies."""
    report(GraphLeakError(
        f"the state carries an autograd graph of {state.graph_steps} step(s) from training"
        f" window {state.window}, but the clock is in window {clock.window} (end_window() was"
        " called since): backprop would run across the boundary and keep the old graph alive",
        kind="graph-window", fix=_WINDOW_FIX, graph_steps=state.graph_steps,
        state_window=state.window, clock_window=clock.window,
    ))


def report_graph_limit(state: RecurrentState, steps: int, limit: int) -> None:
    """Report a graph past ``limit``: strict mode raises; warn mode warns at the limit and again
    at each doubling of the graph's age (2x, 4x, ... the limit), so a leak shows in the log."""
    before = state.graph_steps
    after = before + steps
    level = ((after - 1) // limit).bit_length() - 1  # the largest k with limit * 2**k < after
    crossed = limit << level
    if get_mode() != "strict" and before > crossed:
        return  # warn mode: this doubling was reported when the graph crossed it
    state_bytes = sum(t.element_size() * t.nelement() for t in state.tensors)
    held = before * GRAPH_BYTES_PER_STATE_BYTE * state_bytes
    report(GraphLeakError(
        f"the state has carried its autograd graph through {before} steps of earlier calls;"
        f" {steps} more would pass the limit of {limit}: a live state kept across training windows"
        f" without detach() grows memory every step (the graph holds at least {_size(held)})",
        kind="graph-limit",
        fix="call `state = state.detach()` at each truncated-BPTT boundary (replay stored"
            " sequences from state.snapshot(); or raise track(..., max_graph_steps=N))",
        graph_steps=before, limit=limit, bytes_held=held,
    ), level=level)


def report_tick(state: RecurrentState, clock: EpisodeClock) -> None:
    """Report a state for another tick: an old state fed again, a copy, or a clock not advanced."""
    if state.tick is not None and state.tick < clock.tick:
        what = (f"a state from tick {state.tick} was used at tick {clock.tick}: an old state"
                " was fed again (the new state was not taken, or a state was forked/stored"
                " as the wrong step)")
        fix = "feed the state the module returned at the previous step (`y, state = m(x, state)`)"
    elif clock.is_copy:
        report(StaleStateError(
            f"a state for tick {state.tick} is checked against a copy of its clock (still at tick"
            f" {clock.tick}): the state is a copy (copy.deepcopy or pickle) that took a copy of"
            " the clock with it, and that copy does not move when the loop advances the live clock",
            kind="copied-state",
            fix="bind the copy to the live clock: `state = state.bind(clock)` (or copy the clock"
                " together with the state and advance the copied clock)",
            state_tick=state.tick, clock_tick=clock.tick,
        ))
        return
    else:
        what = (f"a state for tick {state.tick} was used at tick {clock.tick}: the clock was"
                " not advanced after the last step")
        fix = "call `clock.advance(done)` once after every env step"
    report(StaleStateError(what, kind="stale-tick", fix=fix,
                           state_tick=state.tick, clock_tick=clock.tick))


def check_ids(
    state: RecurrentState, clock: EpisodeClock, *, bootstrap: bool, restarting: np.ndarray | None
) -> np.ndarray | None:
    """Compare the state's episode ids with the clock's; report stale rows, return the verified ids.

    Rows in ``restarting`` (zeroed by the caller) and rows restarted inside an unroll (id -1) take
    the clock's ids; with ``bootstrap`` the ids of episodes that ended at the latest advance pass.
    """
    rows = state.rows()
    current = clock.episode_ids[rows]
    ids = state.episode_ids
    if ids is None:  # pragma: no cover - a state with a clock always has ids
        return None
    stale = ids != current
    if not stale.any():
        return ids
    # -1: a row that restarted inside a live unroll, in an episode the clock had not begun then.
    adopt = ids < 0 if restarting is None else (ids < 0) | restarting
    stale &= ~adopt
    if bootstrap:
        retired = clock.retired_ids[rows]
        stale &= ids != retired
        if not stale.any():
            return None
    if not stale.any():
        adopted = np.where(adopt, current, ids)
        adopted.setflags(write=False)
        return adopted
    bad = np.flatnonzero(stale)
    env_rows = rows[bad]
    report(StaleStateError(
        f"rows {format_rows(env_rows)} of the state still hold episodes"
        f" {format_rows(ids[bad])}, but those envs are now in episodes"
        f" {format_rows(current[bad])} (at tick {clock.tick}): the state was not reset when"
        " their episodes ended",
        kind="stale-episode", fix=_RESET_FIX if restarting is None else _STARTS_FIX,
        rows=env_rows.tolist(), state_ids=ids[bad].tolist(),
        clock_ids=current[bad].tolist(),
    ))
    return None


def _size(num_bytes: int) -> str:
    """``num_bytes`` as KiB, MiB or GiB (one decimal)."""
    value, unit = num_bytes / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
