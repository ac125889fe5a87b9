"""episode_history: the way back from sampled sequences to their episodes' true first steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from tether.replay import SequenceReplay

from .helpers import collect

#: CountingEnv observations are [episode, step]: an episode's first step has obs[1] == 0.
SPECS = [{"length": 7, "ending": "truncate"}, {"length": 5, "ending": "terminate"}]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_history_runs_from_the_episode_start_to_the_sequence_end(mode: AutoresetMode) -> None:
    """Covered rows start at step 0 of the first step's episode; the sequence sits at its offset."""
    replay = SequenceReplay(40, 2, seq_len=3, burn_in=1, period=2)
    rec, _ = collect(replay, mode=mode, specs=SPECS, num_steps=10, rounds=3)
    batch = replay.sample(24, generator=torch.Generator().manual_seed(0))
    history = replay.episode_history(batch, max_steps=20)
    assert history.rows.size > 0
    for j, b in enumerate(history.rows.tolist()):
        offset = int(history.offsets[j])
        # the offset is how many steps the episode ran before the sequence's first (its obs step)
        assert offset == int(batch.obs[0, b, 1])
        assert float(history.obs[0, j, 1]) == 0.0
        assert float(history.obs[0, j, 0]) == float(batch.obs[0, b, 0])
        assert history.episode_starts[0, j]
        n = int(batch.mask[:, b].sum())
        assert int(history.mask[:, j].sum()) == offset + n
        torch.testing.assert_close(history.obs[offset:offset + n, j], batch.obs[:n, b])
        np.testing.assert_array_equal(history.episode_starts[offset + 1:offset + n, j],
                                      batch.episode_starts[1:n, b])
        assert history.initial_state.ticks()[j] == batch.ticks[0, b] - offset
    # rows whose episode began before the stream was kept, or further back than allowed, are left out
    uncovered = np.setdiff1d(np.arange(24), history.rows)
    ticks = rec.ticks()
    for b in uncovered.tolist():
        first = int(np.flatnonzero(ticks == batch.ticks[0, b])[0])
        step = int(batch.obs[0, b, 1])
        assert step > 20 or first - step < len(ticks) - replay.ring_steps
    torch.testing.assert_close(history.initial_state.h, torch.zeros(1, history.rows.size, 1))


def test_max_steps_limits_how_far_back() -> None:
    """With max_steps=1 only sequences starting at most one step into their episode are covered."""
    replay = SequenceReplay(40, 2, seq_len=3, burn_in=1, period=2)
    collect(replay, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=10, rounds=3)
    batch = replay.sample(24, generator=torch.Generator().manual_seed(0))
    history = replay.episode_history(batch, max_steps=1)
    np.testing.assert_array_equal(history.rows, np.flatnonzero(batch.obs[0, :, 1].numpy() <= 1))
    with pytest.raises(ValueError, match="expected max_steps an int >= 0, got -1"):
        replay.episode_history(batch, max_steps=-1)
