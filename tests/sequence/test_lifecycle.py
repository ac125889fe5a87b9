"""Tests for tether.sequence._lifecycle: unroll inside the lifecycle, and replay alignment."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tether import (
    EpisodeClock,
    GraphLeakError,
    RecurrentState,
    ReplayAlignmentError,
    StaleStateError,
    mode,
    track,
)
from tether.sequence import unroll

E, H = 3, 4


def _rollout(steps: int, seed: int = 0, *, clock: EpisodeClock | None = None
             ) -> tuple[EpisodeClock, RecurrentState, torch.Tensor, np.ndarray, nn.Module]:
    """A correct per-step loop of `steps` steps; returns the clock, the snapshot taken before it,
    the observations and the episode starts as the rollout saw them (CleanRL's `dones`)."""
    rng = np.random.default_rng(seed)
    clock = clock or EpisodeClock(E)
    core = track(nn.LSTM(2, H))
    state = core.initial_state(E, clock)
    snapshot = state.snapshot()
    obs = torch.randn(steps, E, 2)
    starts = np.zeros((steps, E), dtype=bool)
    next_start = np.zeros(E, dtype=bool)  # CleanRL starts with next_done = zeros
    with torch.no_grad(), mode("strict"):
        for t in range(steps):
            starts[t] = next_start
            _, state = unroll(core, obs[t : t + 1], next_start[None], state)
            done = rng.random(E) < 0.2
            clock.advance(done)
            next_start = done
    return clock, snapshot, obs, starts, core


# ------------------------------------------------------------------------------------------------
# a live state: the checks of a step
def test_a_per_step_loop_on_unroll_is_silent_and_restarts_rows() -> None:
    """unroll(T = 1) with the done flags as starts is a correct loop: silent in strict mode."""
    _, _, _, starts, _ = _rollout(60)
    assert starts.any()  # the loop restarted rows through unroll, and no check fired


def test_unroll_catches_a_missed_reset() -> None:
    """Starts left at zero after an episode ended: the next unroll says which rows are stale."""
    clock = EpisodeClock(E)
    core = track(nn.GRU(2, H))
    state = core.initial_state(E, clock)
    _, state = unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), state)
    clock.advance(np.array([False, True, False]))
    with mode("strict"), pytest.raises(StaleStateError, match=r"rows \[1\] of the state still hold episodes") as info:
        unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), state)
    # the fix names the spelling this loop uses: unroll's episode_starts, not state.reset(done)
    assert "episode_starts" in info.value.fix
    assert "reset(done)" not in info.value.fix


def test_unroll_catches_a_reused_state() -> None:
    """Feeding the state from before the last step again is a stale tick."""
    clock = EpisodeClock(E)
    core = track(nn.LSTM(2, H))
    old = core.initial_state(E, clock)
    _, new = unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), old)
    clock.advance(np.zeros(E, bool))
    with mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1"):
        unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), old)
    unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), new)


def test_unroll_catches_a_graph_across_a_window() -> None:
    """A state carrying a graph into the next window without detach() is a graph leak."""
    clock = EpisodeClock(E)
    core = track(nn.LSTM(2, H))
    state = core.initial_state(E, clock)
    _, state = unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), state)
    clock.advance(np.zeros(E, bool))
    clock.end_window()
    with mode("strict"), pytest.raises(GraphLeakError, match="from training window 0") as info:
        unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), state)
    # both remedies, each with when it applies: no_grad for collection, detach for training
    assert "collect under `torch.no_grad()`" in info.value.fix
    assert "state = state.detach()" in info.value.fix
    unroll(core, torch.zeros(1, E, 2), np.zeros((1, E), bool), state.detach())


def test_rows_restarting_inside_a_live_unroll_join_the_clocks_episodes() -> None:
    """A row restarted at t > 0 takes the episode the clock gives it; later misses still raise."""
    clock = EpisodeClock(E)
    core = track(nn.LSTM(2, H))
    starts = np.zeros((3, E), bool)
    starts[1, 0] = True
    with mode("strict"):
        _, state = unroll(core, torch.zeros(3, E, 2), starts, core.initial_state(E, clock))
        assert state.episode_ids.tolist() == [-1, 1, 2]
        for done in ([True, False, False], [False, False, False], [False, False, False]):
            clock.advance(np.array(done))
        _, state = core(torch.zeros(1, E, 2), state)  # silent: row 0 adopts episode 3
        assert state.episode_ids.tolist() == [3, 1, 2]
        clock.advance(np.array([True, False, False]))
        with pytest.raises(StaleStateError, match=r"rows \[0\]"):
            core(torch.zeros(1, E, 2), state)


def test_the_graph_limit_spares_replays_and_long_single_calls() -> None:
    """Step-by-step replay from a snapshot past the limit, and one long call, do not fire."""
    clock = EpisodeClock(2)
    core = track(nn.GRU(2, H), max_graph_steps=16)
    x = torch.randn(40, 2, 2, requires_grad=True)
    with mode("strict"):
        state = core.initial_state(2, clock).snapshot()
        for t in range(40):
            _, state = core(x[t : t + 1], state)
        assert state.graph_steps == 40
        _, long = unroll(core, x, np.zeros((40, 2), bool), core.initial_state(2, clock))
        assert long.graph_steps == 40


# ------------------------------------------------------------------------------------------------
# a replay from a snapshot: aligned with what the clock saw
@pytest.mark.parametrize("window_ended", [False, True])
def test_a_correct_replay_is_silent_before_and_after_end_window(window_ended: bool) -> None:
    """Replaying the rollout from the snapshot taken before it, with its own starts, is silent."""
    clock, snapshot, obs, starts, core = _rollout(40)
    if window_ended:
        clock.end_window()
    with mode("strict"):
        y, _ = unroll(core, obs, starts, snapshot)
    assert y.shape == (40, E, H)


def test_all_zero_starts_are_caught() -> None:
    """Replaying with no episode starts names the rows and ticks the clock saw start."""
    _, snapshot, obs, starts, core = _rollout(40)
    with mode("strict"), pytest.raises(ReplayAlignmentError, match=r"episode_starts miss \d+ episode start\(s\) the clock recorded; they are all zero") as info:
        unroll(core, obs, np.zeros_like(starts), snapshot)
    assert info.value.mistake == "all-zero"
    assert re.search(r"\(row, tick\) pairs: \[\(\d+, \d+\), .*and \d+ more\]", str(info.value))
    t, b = np.nonzero(starts)
    assert sorted(zip(info.value.ticks, info.value.rows, strict=True)) == sorted(
        zip(t.tolist(), b.tolist(), strict=True))
    assert info.value.kind == "replay-starts"


def test_starts_shifted_by_one_step_are_caught() -> None:
    """The done flags stored at the step they happened (one step early) are caught."""
    _, snapshot, obs, starts, core = _rollout(40)
    early = np.zeros_like(starts)
    early[:-1] = starts[1:]
    with mode("strict"), pytest.raises(ReplayAlignmentError, match=r"shifted by -1 \(one step early") as info:
        unroll(core, obs, early, snapshot)
    assert info.value.mistake == "shifted-1"
    late = np.zeros_like(starts)
    late[1:] = starts[:-1]
    with mode("strict"), pytest.raises(ReplayAlignmentError, match=r"shifted by \+1 \(one step late") as info:
        unroll(core, obs, late, snapshot)
    assert info.value.mistake == "shifted+1"


def test_some_missing_starts_are_named_as_such() -> None:
    """Starts with one recorded start dropped are "some missing", listed as (row, tick) pairs."""
    _, snapshot, obs, starts, core = _rollout(40)
    alone = starts[1:-1] & ~starts[:-2] & ~starts[2:]  # a start with no start beside it
    t, b = np.argwhere(alone)[0]
    dropped = starts.copy()
    dropped[t + 1, b] = False
    with mode("strict"), pytest.raises(ReplayAlignmentError, match=r"some are missing") as info:
        unroll(core, obs, dropped, snapshot)
    assert info.value.mistake == "missing"
    assert info.value.pairs == [(int(b), int(t) + 1)]
    assert f"(row, tick) pairs: [({b}, {t + 1})]" in str(info.value)


def test_a_snapshot_taken_after_the_rollout_is_caught() -> None:
    """Replaying the rollout from the state after it says so and names the ticks."""
    clock, _, obs, starts, core = _rollout(40)
    after = core.initial_state(E, clock).snapshot()  # a state at the clock's now
    with mode("strict"), pytest.raises(ReplayAlignmentError, match="taken after the rollout") as info:
        unroll(core, obs, starts, after)
    assert info.value.snapshot_ticks == [40] * E
    assert info.value.clock_tick == 40


def test_extra_starts_and_off_mode_are_silent() -> None:
    """More restarts than the clock saw (a memoryless baseline) pass; off mode checks nothing."""
    _, snapshot, obs, starts, core = _rollout(30)
    with mode("strict"):
        unroll(core, obs, np.ones_like(starts), snapshot)
    with mode("off"):
        unroll(core, obs, np.zeros_like(starts), snapshot)


def test_ticks_the_history_forgot_go_unchecked() -> None:
    """After two more windows the rollout's ticks are forgotten: no check, no false positive."""
    clock, snapshot, obs, starts, core = _rollout(30)
    clock.end_window()
    clock.advance(np.zeros(E, bool))
    clock.end_window()
    with mode("strict"):
        unroll(core, obs, np.zeros_like(starts), snapshot)
    assert clock.recorded_starts(np.zeros(E, np.int64), np.arange(E), 30) is None


# ------------------------------------------------------------------------------------------------
# properties: replays of random rollouts, chunked or whole, over several epochs
REPLAY_MISTAKES = {
    "zero-starts": "replay-starts",
    "starts-one-step-early": "replay-starts",
    "starts-one-step-late": "replay-starts",
    "snapshot-after-rollout": "replay-after-rollout",
}


def _replays(dones: np.ndarray, seq_len: int, epochs: int, windows: list[bool], mistake: str | None) -> None:
    """Collect a rollout with per-chunk snapshots, then replay every chunk for several epochs."""
    steps = dones.shape[0]
    clock = EpisodeClock(E)
    core = track(nn.GRU(2, H))
    state = core.initial_state(E, clock)
    obs = torch.randn(steps, E, 2)
    starts = np.zeros((steps, E), dtype=bool)
    starts[0] = True  # tether's collector marks the first observation a start
    snapshots = {}
    with torch.no_grad():
        for t in range(steps):
            if t % seq_len == 0:
                snapshots[t] = state.snapshot()
            _, state = core(obs[t : t + 1], state)
            clock.advance(dones[t])
            state = state.reset(dones[t])
            if t + 1 < steps:
                starts[t + 1] = dones[t]
    if mistake == "snapshot-after-rollout":
        snapshots = {t: state.snapshot() for t in snapshots}
    given = starts.copy()
    if mistake == "zero-starts":
        given[:] = False
    elif mistake == "starts-one-step-early":
        given[:] = False
        given[:-1] = starts[1:]
    elif mistake == "starts-one-step-late":
        given[:] = False
        given[1:] = starts[:-1]
    for epoch in range(epochs):
        if windows[epoch % len(windows)]:
            clock.end_window()
        for t0, snap in snapshots.items():
            unroll(core, obs[t0 : t0 + seq_len], given[t0 : t0 + seq_len], snap)


replay_case = st.fixed_dictionaries({
    "steps": st.integers(4, 24),
    "seq_len": st.integers(2, 24),
    "epochs": st.integers(1, 3),
    "windows": st.lists(st.booleans(), min_size=1, max_size=3),
    "seed": st.integers(0, 10_000),
})


def _dones(case: dict, force: bool) -> np.ndarray:
    dones = np.random.default_rng(case["seed"]).random((case["steps"], E)) < 0.25
    if force:  # one isolated episode start inside the rollout, so a shift or a zeroing shows
        mid = case["steps"] // 2
        dones[mid - 2 : mid + 1, 0] = (False, True, False)
    return dones


@settings(max_examples=60, deadline=None)
@given(case=replay_case)
def test_correct_replays_never_trip(case: dict) -> None:
    """Chunked and whole-rollout replays over several epochs, windows ended or not: silent."""
    seq_len = min(case["seq_len"], case["steps"])
    with mode("strict"):
        _replays(_dones(case, False), seq_len, case["epochs"], case["windows"], None)


@settings(max_examples=60, deadline=None)
@given(case=replay_case, mistake=st.sampled_from(sorted(REPLAY_MISTAKES)))
def test_each_replay_mistake_trips_exactly_its_check(case: dict, mistake: str) -> None:
    """A misaligned replay raises ReplayAlignmentError of exactly its kind."""
    seq_len = case["steps"]  # the whole rollout: the forced start is inside the replayed sequence
    with mode("strict"), pytest.raises(ReplayAlignmentError) as info:
        _replays(_dones(case, True), seq_len, case["epochs"], [False], mistake)
    assert info.value.kind == REPLAY_MISTAKES[mistake], str(info.value)

