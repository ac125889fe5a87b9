"""Tests for RolloutCollector.run_episodes (evaluation without a buffer) and its state_dict round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from tether.rollout import RolloutCollector

from .helpers import TWO_ENVS, CounterPolicy, make_vec


def test_run_episodes_counts_each_rows_first_episodes() -> None:
    """Row 0 gives 2 episodes (returns 1+2, 11+12), row 1 one (1+2+3), in the order they end."""
    collector = RolloutCollector(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS), CounterPolicy(), 4)
    assert collector.run_episodes([2, 1], seed=0) == [3.0, 6.0, 23.0]
    assert collector.state is None  # a later collect() starts from a reset
    with pytest.raises(ValueError, match=r"expected 2 counts >= 0 \(one per env row\), got \[1\]"):
        collector.run_episodes([1])
    collector.venv.close()


def test_state_dict_round_trip_restores_the_live_run() -> None:
    """State, clock, last observation, pending autoresets and tallies come back; collect() goes on."""
    source = RolloutCollector(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS), CounterPolicy(), 5)
    source.collect()  # row 0 (2-step episodes) ends at tick 5: its next step is an autoreset
    saved = source.state_dict()
    assert saved["pending"].tolist() == [True, False]
    target = RolloutCollector(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS), CounterPolicy(), 5)
    target.load_state_dict(saved)
    assert target.clock.tick == source.clock.tick == 5
    np.testing.assert_array_equal(target.clock.episode_ids, source.clock.episode_ids)
    np.testing.assert_array_equal(target.venv.autoreset_pending, source.venv.autoreset_pending)
    assert target.state is not None
    assert source.state is not None
    torch.testing.assert_close(target.state.h, source.state.h)
    assert target.state.tick == source.state.tick
    np.testing.assert_array_equal(target._obs, source._obs)
    assert (target.num_episodes, target.total_steps) == (source.num_episodes, source.total_steps)
    target.collect()  # strict mode: the restored state fits the restored clock
    with pytest.raises(ValueError, match="expected a run of 2 envs, got one of 3"):
        target.load_state_dict({**saved, "starts": np.ones(3, dtype=bool)})
    source.venv.close()
    target.venv.close()
