"""Statistics over seeds: IQM, median, stratified-bootstrap intervals, profiles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.bench import stats


def test_iqm_of_a_known_sample() -> None:
    """The IQM of 0..9 drops two runs at each end: the mean of 2..7 is 4.5."""
    assert stats.iqm(np.arange(10.0)) == pytest.approx(4.5)
    assert stats.iqm([1.0, 2.0, 3.0, 4.0, 1000.0, 5.0, 6.0, 7.0]) == pytest.approx(4.5)  # outlier cut
    assert stats.median([3.0, 1.0, 2.0]) == 2.0


def test_estimate_of_a_known_sample_is_reproducible() -> None:
    """The interval brackets the point, sits inside the sample's range, and repeats with its seed."""
    scores = np.array([197.3, 438.3, 494.8, 379.4, 463.2, 293.9, 500.0, 500.0, 434.5, 491.1])
    first = stats.estimate([scores], stats.iqm, seed=3)
    assert first.point == pytest.approx(np.mean(np.sort(scores)[2:8]))
    assert scores.min() <= first.low <= first.point <= first.high <= scores.max()
    assert stats.estimate([scores], stats.iqm, seed=3) == first
    assert stats.estimate([scores], stats.iqm, seed=4) != first


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12), st.sampled_from(["iqm", "median"]))
def test_interval_contains_the_point(values: list[float], which: str) -> None:
    """For any sample the percentile interval holds the point estimate on the whole sample."""
    statistic = getattr(stats, which)
    result = stats.estimate([values], statistic, n_resamples=200)
    assert result.low - 1e-9 <= result.point <= result.high + 1e-9


def test_stratified_resampling_keeps_each_task_count() -> None:
    """Every resample the statistic sees holds 5 runs of task a and 3 of task b, as the data does."""
    counts: set[tuple[int, int]] = set()
    a, b = np.arange(5.0), 100.0 + np.arange(3.0)

    def spy(x: Any, axis: int = -1) -> Any:
        values = np.asarray(x)
        counts.update(zip((values < 50).sum(axis=axis).ravel().tolist(),
                          (values >= 100).sum(axis=axis).ravel().tolist(), strict=True))
        return stats.iqm(values, axis=axis)

    stats.estimate([a, b], spy, n_resamples=300)
    assert counts == {(5, 3)}


def test_stratified_estimate_keeps_task_weights() -> None:
    """Pooled over tasks, a resample never moves runs between tasks: the pooled mean stays put
    when each task's runs are all equal, whatever the resampling draws."""
    easy, hard = np.full(6, 1.0), np.full(2, 0.0)
    result = stats.estimate([easy, hard], lambda x, axis=-1: np.mean(x, axis=axis), n_resamples=200)
    assert (result.point, result.low, result.high) == pytest.approx((0.75, 0.75, 0.75))


def test_stratified_interval_is_narrower_than_unstratified_for_separated_tasks() -> None:
    """With two tasks on very different scales, resampling within tasks removes the between-task
    variance that resampling the pooled runs would add."""
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.0, 0.01, 5), rng.normal(1.0, 0.01, 5)

    def mean(x: Any, axis: int = -1) -> Any:
        return np.mean(x, axis=axis)

    stratified = stats.estimate([low, high], mean)
    pooled = stats.estimate([np.concatenate([low, high])], mean)
    assert stratified.point == pytest.approx(pooled.point)
    assert (stratified.high - stratified.low) < 0.5 * (pooled.high - pooled.low)


def test_too_few_runs_and_no_spread() -> None:
    """One run has no interval (nan bounds, None in JSON); equal runs have the point as interval."""
    one = stats.estimate([[42.0]])
    assert one.point == 42.0
    assert np.isnan(one.low)
    assert one.to_dict() == {"point": 42.0, "low": None, "high": None}
    same = stats.estimate([[500.0] * 5])
    assert (same.low, same.point, same.high) == (500.0, 500.0, 500.0)


def test_at_bar_counts_ties_as_reached() -> None:
    """A seed exactly at the bar counts."""
    assert stats.at_bar([449.9, 450.0, 500.0], 450.0) == (2, 3)


def test_performance_profile_of_a_known_sample() -> None:
    """The profile is the fraction of runs strictly above each tau, with bands around it."""
    scores = np.array([0.1, 0.4, 0.4, 0.9])
    fraction, low, high = stats.performance_profile([scores], [0.0, 0.4, 0.5, 1.0])
    np.testing.assert_allclose(fraction, [1.0, 0.25, 0.25, 0.0])
    assert np.all(low <= fraction + 1e-12)
    assert np.all(fraction <= high + 1e-12)
    assert (low[0], high[0], low[-1], high[-1]) == (1.0, 1.0, 0.0, 0.0)


def test_estimate_along_a_curve() -> None:
    """Per point of a curve, the IQM over seeds; flat points have the point as interval."""
    curve = np.stack([np.arange(10.0), np.full(10, 3.0)])  # [P=2, seeds=10]
    point, low, high = stats.estimate_along([curve])
    np.testing.assert_allclose(point, [4.5, 3.0])
    assert low[0] < 4.5 < high[0]
    assert (low[1], high[1]) == (3.0, 3.0)


def test_ratio_paired_by_seed() -> None:
    """Paired runs resample together: a variant exactly twice as fast on every seed is 2× with no
    spread; the same runs unpaired give an interval around 2 that is wider."""
    fast, slow = np.array([200.0, 400.0, 600.0, 300.0]), np.array([100.0, 200.0, 300.0, 150.0])
    paired = stats.ratio(fast, slow, paired=True, n_resamples=500)
    assert (paired.point, paired.low, paired.high) == pytest.approx((2.0, 2.0, 2.0))
    unpaired = stats.ratio(fast, slow, paired=False, n_resamples=500)
    assert unpaired.point == pytest.approx(2.0)
    assert unpaired.low < 2.0 < unpaired.high
    assert np.isnan(stats.ratio([1.0], [2.0], paired=True).low)
