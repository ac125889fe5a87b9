"""Tests for tether.interop.torchrl's conversions between RecurrentState / EpisodeClock and TensorDict keys."""

from __future__ import annotations

import pytest

pytest.importorskip("torchrl")

import numpy as np
import torch
from tensordict import TensorDict

from tether import EpisodeClock, RecurrentState
from tether.errors import StateMismatchError
from tether.interop.torchrl import (
    clock_entries,
    episode_ids_from_traj_count,
    episode_starts_from_is_init,
    is_init_from_episode_starts,
    state_from_tensordict,
    state_to_tensordict,
)


def test_states_round_trip_through_tensordict_keys() -> None:
    """[L, B, H] -> [B, L, H] under the keys and back, row for row; a clock checks the batch."""
    state = RecurrentState.from_tensors((torch.randn(2, 3, 4), torch.randn(2, 3, 4)))
    td = state_to_tensordict(state, TensorDict({}, [3]), ["h", "c"])
    torch.testing.assert_close(td["c"][1], state.c[:, 1])
    back = state_from_tensordict(td, ["h", "c"], clock=EpisodeClock(3))
    torch.testing.assert_close(back.h, state.h)
    assert back.tick == 0
    with pytest.raises(StateMismatchError, match=r"expected batch 2 to match the clock's 2 rows, got batch 3"):
        state_from_tensordict(td, ["h", "c"], clock=EpisodeClock(2))
    with pytest.raises(ValueError, match=r"expected 2 key\(s\) for the state's tensors, got \['h'\]"):
        state_to_tensordict(state, td, ["h"])


def test_is_init_and_episode_starts_are_transposes() -> None:
    """is_init [B, T, 1] <-> episode_starts [T, B]; malformed flags are refused."""
    starts = np.random.default_rng(0).random((5, 3)) < 0.4
    is_init = is_init_from_episode_starts(starts)
    assert is_init.shape == (3, 5, 1)
    assert np.array_equal(episode_starts_from_is_init(is_init), starts)
    assert np.array_equal(episode_starts_from_is_init(is_init.squeeze(-1)), starts)
    with pytest.raises(ValueError, match=r"expected a bool is_init \[B, T\] or \[B, T, 1\], got torch.int64"):
        episode_starts_from_is_init(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected a bool \[T, B\], got float64"):
        is_init_from_episode_starts(np.zeros((5, 3)))


def test_traj_count_reads_as_episode_ids() -> None:
    """TrajCounter's traj_count [B, T, 1] is the episode ids [T, B]."""
    counts = torch.tensor([[0, 0, 2], [1, 1, 1]]).unsqueeze(-1)
    assert episode_ids_from_traj_count(counts).tolist() == [[0, 1], [0, 1], [2, 1]]
    with pytest.raises(ValueError, match=r"expected traj_count \[B, T\] or \[B, T, 1\]"):
        episode_ids_from_traj_count(torch.zeros(4))


def test_the_clock_reads_as_init_tracker_and_traj_counter() -> None:
    """At tick 0 every row starts; after an advance only the done rows, with their new ids."""
    clock = EpisodeClock(3)
    assert clock_entries(clock)["is_init"].flatten().tolist() == [True, True, True]
    clock.advance(np.array([False, True, False]))
    entries = clock_entries(clock)
    assert entries["is_init"].flatten().tolist() == [False, True, False]
    assert entries["traj_count"].flatten().tolist() == [0, 3, 2]
    clock.advance(np.array([False, False, False]))
    assert not clock_entries(clock)["is_init"].any()
