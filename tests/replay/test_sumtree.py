"""The sum tree and the priorities: proportional sampling, new-sequence priority, weights, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from tether.replay import SequenceReplay
from tether.replay.priorities import Priorities
from tether.replay.sumtree import SumTree

from .helpers import collect

SPECS = [{"length": 3, "ending": "truncate"}, {"length": 5, "ending": "terminate"}]


def test_find_walks_to_the_interval_holding_the_target() -> None:
    """Cumulative masses [0, 1), [1, 1), [1, 4), [4, 6): targets land in their interval; empty never."""
    tree = SumTree(5)
    tree.set(np.array([0, 2, 3]), np.array([1.0, 3.0, 2.0]))
    assert tree.total == 6.0
    found = tree.find(np.array([0.0, 0.999, 1.0, 3.999, 4.0, 5.999]))
    assert found.tolist() == [0, 0, 2, 2, 3, 3]
    # a target at the very top (rounding) still ends on a slot with mass, never on slot 4
    assert tree.find(np.array([6.0])).tolist() == [3]


def test_set_recomputes_parents_without_drift() -> None:
    """Many updates: the root equals the leaves' sum exactly as recomputed, a repeated slot's last wins."""
    tree = SumTree(7)
    rng = np.random.default_rng(0)
    for _ in range(200):
        slots = rng.integers(0, 7, size=3)
        tree.set(slots, rng.random(3))
    leaves = tree.get(np.arange(7))
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
    tree.set(np.array([1, 1]), np.array([5.0, 7.0]))
    assert tree.get(np.array([1]))[0] == 7.0


def test_sampling_frequencies_follow_the_priorities() -> None:
    """200 000 draws from priorities 1..8 with alpha 0.9: each frequency within 5 standard deviations.

    Each count is Binomial(n, p_i); its standard deviation sqrt(p_i (1 - p_i) / n) is at most 0.0011
    here, so a 5-sigma band fails a correct sampler with probability below 1e-5 per slot (and the
    seed is fixed); a sampler off by even 1% of a slot's probability lands outside it.
    """
    priorities = Priorities(8, 0.9, prioritized=True)
    priorities.add(np.arange(8))
    priorities.update(np.arange(8), np.arange(1, 9, dtype=np.float64), None)
    n = 200_000
    draws = priorities.sample(n, torch.Generator().manual_seed(0))
    freq = np.bincount(draws, minlength=8) / n
    expected = np.arange(1, 9) ** 0.9 / (np.arange(1, 9) ** 0.9).sum()
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert (np.abs(freq - expected) < 5 * sigma).all(), (freq, expected)


def test_replay_samples_proportionally_and_weights_by_importance() -> None:
    """Through sample(): P(i) proportional to p^alpha; weights (N P)^-beta / max; new ones get the max."""
    replay = SequenceReplay(6, 2, seq_len=2, period=2, priority_exponent=1.0, importance_exponent=0.5)
    rec, collector = collect(replay, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=6, rounds=1)
    assert len(replay) == 6
    batch = replay.sample(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.weights, torch.ones(4))  # all at the max priority 1
    slots = np.arange(6)
    replay.update_priorities(slots, torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 10.0]))
    counts = np.zeros(6)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        batch = replay.sample(200, generator=generator)
        counts += np.bincount(batch.indices, minlength=6)
        p = np.array([1.0, 2.0, 3.0, 4.0, 1e-8, 10.0])[batch.indices] / 20.0
        w = (6 * p) ** -0.5
        torch.testing.assert_close(batch.weights, torch.tensor(w / w.max(), dtype=torch.float32))
    freq = counts / counts.sum()
    expected = np.array([1, 2, 3, 4, 0, 10]) / 20
    assert np.abs(freq - expected).max() < 5 * np.sqrt(0.25 / counts.sum())
    assert counts[4] == 0
    # the next sequences enter with the largest priority seen (10)
    replay.policy_version = 1
    collector.collect(rec)
    assert replay.priorities.raw.max() == 10.0
    assert replay.stats()["replay/priority_max"] == 10.0


def test_uniform_when_not_prioritized() -> None:
    """prioritized=False: every live sequence equally likely, all weights 1, updates change nothing."""
    replay = SequenceReplay(6, 2, seq_len=2, period=2, prioritized=False)
    collect(replay, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=6, rounds=1)
    replay.update_priorities(np.arange(6), np.array([100.0, 0, 0, 0, 0, 0]))
    batch = replay.sample(30_000, generator=torch.Generator().manual_seed(0))
    freq = np.bincount(batch.indices, minlength=6) / 30_000
    assert np.abs(freq - 1 / 6).max() < 5 * np.sqrt((1 / 6) * (5 / 6) / 30_000)
    torch.testing.assert_close(batch.weights, torch.ones(30_000))


def test_update_priorities_validates_its_input() -> None:
    """Wrong shape, NaN, negative, out-of-range or non-int indices: one ValueError line each."""
    replay = SequenceReplay(6, 2, seq_len=2, period=2)
    collect(replay, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=6, rounds=1)
    idx = np.array([0, 1])
    before = replay.priorities.raw.copy()
    with pytest.raises(ValueError, match=r"expected priorities shaped \(2,\) \(one per index\), got \(3,\)"):
        replay.update_priorities(idx, np.ones(3))
    with pytest.raises(ValueError, match=r"expected finite priorities >= 0, got \[nan\]"):
        replay.update_priorities(idx, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"expected finite priorities >= 0, got \[-1.0\]"):
        replay.update_priorities(idx, np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match=r"expected indices in \[0, 6\) \(table slots\), got values from 0 to 6"):
        replay.update_priorities(np.array([0, 6]), np.ones(2))
    with pytest.raises(ValueError, match="expected indices a 1-d int array"):
        replay.update_priorities(np.array([0.5]), np.ones(1))
    np.testing.assert_array_equal(replay.priorities.raw, before)  # nothing changed by the refusals
