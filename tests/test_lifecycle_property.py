"""Property tests: a correct loop never trips a check; one injected mistake trips exactly its check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tether import EpisodeClock, GraphLeakError, LifecycleError, StaleStateError, mode, track

MISTAKES = {
    "skip-reset": (StaleStateError, "stale-episode"),
    "reuse-old-state": (StaleStateError, "stale-tick"),
    "skip-advance": (StaleStateError, "stale-tick"),
    "skip-detach": (GraphLeakError, "graph-window"),
    "store-live-graph": (GraphLeakError, "graph-stored"),
    "step-bootstrap-result": (StaleStateError, "spent-state"),
}

step_strategy = st.fixed_dictionaries({
    "done": st.lists(st.booleans(), min_size=3, max_size=3),
    "end_window": st.booleans(),
    "bootstrap": st.booleans(),
    "snapshot": st.booleans(),
    "grad": st.booleans(),
})


def _run(steps: list[dict], core: str, mistake: str | None, at: int) -> None:
    """Drive a loop through ``steps``; inject ``mistake`` at step ``at`` (None: a correct loop)."""
    module = nn.LSTM(4, 6) if core == "lstm" else nn.GRUCell(4, 6)
    tracked = track(module)
    clock = EpisodeClock(3)
    state = tracked.initial_state(3, clock)
    stored = []

    def x() -> torch.Tensor:
        return torch.randn(1, 3, 4) if core == "lstm" else torch.randn(3, 4)

    for t, step in enumerate(steps):
        inject = mistake if t == at else None
        with torch.set_grad_enabled(step["grad"] or inject in ("skip-detach", "store-live-graph")):
            previous = state
            _, state = tracked(x(), state)
        if inject == "reuse-old-state":
            state = previous
        if inject == "store-live-graph":
            stored.append(state.for_buffer())  # raises here: the live graph is refused
        done = np.array(step["done"])
        if inject == "skip-reset":
            done[0] = True  # make sure some episode really ends at this step
        if inject == "skip-detach":
            done[-1] = False  # a row that goes on keeps the graph (a full reset would cut it)
        if inject != "skip-advance":
            clock.advance(done)
        if (step["bootstrap"] and done.any()) or inject == "step-bootstrap-result":
            with torch.no_grad():
                _, spent = tracked(x(), state, bootstrap=True)
            if inject == "step-bootstrap-result":
                state = spent
        if inject != "skip-reset":
            state = state.reset(done)
        if step["snapshot"]:
            stored.append(state.snapshot())
        if step["end_window"] or inject == "skip-detach":
            clock.end_window()
            if inject != "skip-detach":
                state = state.detach()
    with torch.no_grad():
        tracked(x(), state)  # the step after the last one, where most mistakes surface
    for snap in stored:  # replay from every snapshot is allowed at any later time
        tracked(torch.randn(2, 3, 4) if core == "lstm" else torch.randn(3, 4), snap)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step_strategy, min_size=1, max_size=25), core=st.sampled_from(["lstm", "gru-cell"]))
def test_correct_loop_never_trips(steps: list[dict], core: str) -> None:
    """No false positives: random dones, resets, detaches, window ends, bootstraps, snapshots."""
    with mode("strict"):
        _run(steps, core, None, -1)


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(step_strategy, min_size=1, max_size=15),
    core=st.sampled_from(["lstm", "gru-cell"]),
    mistake=st.sampled_from(sorted(MISTAKES)),
    where=st.floats(0, 1, exclude_max=True),
)
def test_one_mistake_trips_exactly_its_check(steps: list[dict], core: str, mistake: str, where: float) -> None:
    """One injected mistake raises exactly the error of that kind."""
    at = int(where * len(steps))
    kind, name = MISTAKES[mistake]
    with mode("strict"), pytest.raises(LifecycleError) as info:
        _run(steps, core, mistake, at)
    assert type(info.value) is kind
    assert info.value.kind == name, str(info.value)


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 12),
    core=st.sampled_from(["lstm", "gru-cell"]),
    reads=st.lists(st.booleans(), min_size=12, max_size=12),
    grad=st.booleans(),
)
def test_bootstrap_reads_anywhere_in_a_full_window_never_trip(
    limit: int, core: str, reads: list[bool], grad: bool
) -> None:
    """Windows exactly max_graph_steps long with a truncation bootstrap read at any of their
    steps (the last included) are silent: a read's result is discarded, never counted."""
    module = nn.LSTM(4, 6) if core == "lstm" else nn.GRUCell(4, 6)
    tracked = track(module, max_graph_steps=limit)
    clock = EpisodeClock(3)
    state = tracked.initial_state(3, clock)

    def x(rows: int) -> torch.Tensor:
        return torch.randn(1, rows, 4) if core == "lstm" else torch.randn(rows, 4)

    with mode("strict"), torch.set_grad_enabled(True):
        for _window in range(2):
            for t in range(limit):
                _, state = tracked(x(3), state)
                truncated = np.array([reads[t], False, False])
                clock.advance(truncated)
                if truncated.any():
                    with torch.set_grad_enabled(grad):
                        tracked(x(1), state[np.array([0])], bootstrap=True)
                state = state.reset(truncated)
            clock.end_window()
            state = state.detach()
        tracked(x(3), state)


@pytest.mark.parametrize("position", range(6))
def test_a_bootstrap_read_at_each_position_of_a_full_window_is_silent(position: int) -> None:
    """Every position of a window exactly max_graph_steps = 6 long, the last included."""
    tracked = track(nn.LSTM(4, 6), max_graph_steps=6)
    clock = EpisodeClock(2)
    state = tracked.initial_state(2, clock)
    with mode("strict"):
        for t in range(6):
            _, state = tracked(torch.randn(1, 2, 4), state)
            truncated = np.array([t == position, False])
            clock.advance(truncated)
            if truncated.any():
                tracked(torch.randn(1, 1, 4), state[np.array([0])], bootstrap=True)
            state = state.reset(truncated)
        clock.end_window()
        tracked(torch.randn(1, 2, 4), state.detach())
