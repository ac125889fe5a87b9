"""Tests for tether.clock.EpisodeClock."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tether import EpisodeClock


def test_starts_at_zero_with_distinct_ids() -> None:
    """A new clock is at tick 0, window 0, with one distinct id per row."""
    clock = EpisodeClock(3)
    assert (clock.tick, clock.window, clock.num_envs) == (0, 0, 3)
    assert clock.episode_ids.tolist() == [0, 1, 2]


def test_advance_renews_only_done_rows() -> None:
    """advance() bumps the tick and gives done rows fresh, never reused ids."""
    clock = EpisodeClock(3)
    clock.advance(np.array([False, True, False]))
    assert clock.tick == 1
    assert clock.episode_ids.tolist() == [0, 3, 2]
    assert clock.retired_ids.tolist() == [-1, 1, -1]
    clock.advance(torch.tensor([True, True, False]))
    assert clock.episode_ids.tolist() == [4, 5, 2]
    assert clock.renewals == 2


def test_retired_ids_only_valid_at_the_tick_they_retired() -> None:
    """retired_ids names the episodes that ended at the latest advance and no earlier ones."""
    clock = EpisodeClock(2)
    clock.advance([True, False])
    assert clock.retired_ids.tolist() == [0, -1]
    clock.advance([False, False])
    assert clock.retired_ids.tolist() == [-1, -1]


def test_episode_ids_are_read_only() -> None:
    """Callers cannot edit the clock's ids in place."""
    clock = EpisodeClock(2)
    with pytest.raises(ValueError, match="read-only"):
        clock.episode_ids[0] = 7


def test_end_window_counts() -> None:
    """end_window() counts training windows and leaves ticks alone."""
    clock = EpisodeClock(1)
    clock.end_window()
    clock.end_window()
    assert (clock.window, clock.tick) == (2, 0)


@pytest.mark.parametrize(
    ("done", "match"),
    [
        (np.array([1, 0]), "expected a bool mask of shape \\(2,\\).*got dtype int64"),
        (np.array([True, False, True]), "expected a bool mask of shape \\(2,\\).*got shape \\(3,\\)"),
        (torch.tensor([1.0, 0.0]), "got a torch.float32 tensor"),
        (np.array([[True, False]]), "got shape \\(1, 2\\)"),
    ],
)
def test_malformed_done_is_refused_and_changes_nothing(done: object, match: str) -> None:
    """A malformed done mask raises ValueError saying what was expected; the clock is untouched."""
    clock = EpisodeClock(2)
    with pytest.raises(ValueError, match=match):
        clock.advance(done)
    assert clock.tick == 0
    assert clock.episode_ids.tolist() == [0, 1]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_num_envs_must_be_positive_int(bad: object) -> None:
    """num_envs must be a positive int."""
    with pytest.raises(ValueError, match="positive int"):
        EpisodeClock(bad)  # type: ignore[arg-type]


def test_state_dict_round_trip_and_pickle() -> None:
    """A clock restored from state_dict (or pickle) continues with the same ids and ticks."""
    clock = EpisodeClock(3)
    clock.advance([True, False, True])
    clock.end_window()
    other = EpisodeClock(3)
    other.load_state_dict(clock.state_dict())
    copy = pickle.loads(pickle.dumps(clock))
    for restored in (other, copy):
        assert (restored.tick, restored.window) == (1, 1)
        assert restored.episode_ids.tolist() == clock.episode_ids.tolist()
        restored.advance([False, True, False])
        clock_next = EpisodeClock(3)
        clock_next.load_state_dict(clock.state_dict())
        clock_next.advance([False, True, False])
        assert restored.episode_ids.tolist() == clock_next.episode_ids.tolist()


def test_load_state_dict_refuses_other_sizes() -> None:
    """A saved clock of another size is refused with the sizes named."""
    with pytest.raises(ValueError, match="expected a clock of 2 rows, got one of 3"):
        EpisodeClock(2).load_state_dict(EpisodeClock(3).state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        EpisodeClock(2).load_state_dict({"tick": 1})


def test_recorded_starts_match_the_advances() -> None:
    """recorded_starts gives, per sequence, the ticks where its row began an episode, and the ids."""
    clock = EpisodeClock(3)
    clock.advance(np.array([False, True, False]))  # tick 1: row 1 -> episode 3
    clock.advance(np.array([False, False, False]))
    clock.advance(np.array([True, True, False]))  # tick 3: rows 0, 1 -> episodes 4, 5
    recorded = clock.recorded_starts(np.array([0, 1]), np.array([1, 0]), 3)
    assert recorded is not None
    starts, ids = recorded
    assert starts.tolist() == [[True, False], [True, False], [False, True]]  # row 1 at 0, 1; row 0 at 3
    assert ids.tolist() == [[1, -1], [3, -1], [-1, 4]]
    late, _ = clock.recorded_starts(np.array([3]), np.array([2]), 4)  # past the clock's now: no start
    assert late.tolist() == [[False], [False], [False], [False]]


def test_history_is_bounded_by_windows_and_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The history keeps the previous stepping window on, at most HISTORY_LIMIT records; older: None."""
    clock = EpisodeClock(2)
    clock.advance(np.array([True, False]))
    clock.end_window()
    assert clock.window_start_ticks == (0, 1)
    assert clock.recorded_starts(np.array([0]), np.array([0]), 2) is not None
    for _ in range(3):  # windows without env steps (an end_window per minibatch) keep it
        clock.end_window()
    assert clock.recorded_starts(np.array([0]), np.array([0]), 2) is not None
    clock.advance(np.array([False, False]))
    clock.end_window()
    assert clock.window_start_ticks == (1, 2)
    assert clock.recorded_starts(np.array([0]), np.array([0]), 2) is None
    monkeypatch.setattr("tether.clock.HISTORY_LIMIT", 8)
    for _ in range(20):
        clock.advance(np.array([True, True]))
    assert clock.recorded_starts(np.array([2]), np.array([0]), 1) is None
    assert clock.recorded_starts(np.array([20]), np.array([0]), 1) is not None
