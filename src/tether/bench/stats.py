"""Statistics over seeds: IQM and median with stratified-bootstrap confidence intervals.

Following Agarwal et al., "Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021, the
rliable library): the interquartile mean (the mean of the middle 50 % of runs) is robust to an
outlier seed and more efficient than the median; intervals come from a percentile bootstrap that
resamples the seeds of each task separately (stratified), so every resample keeps each task's count.
The resampling is :func:`scipy.stats.bootstrap`'s; nothing here draws its own resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from tether.bench._extras import require

__all__ = ["Estimate", "at_bar", "estimate", "estimate_along", "iqm", "median", "performance_profile",
           "ratio"]

Statistic = Callable[..., Any]

#: Resamples and confidence level used unless a caller says otherwise.
N_RESAMPLES = 2000
CONFIDENCE = 0.95


def _stats() -> Any:
    return require("scipy.stats", extra="bench", purpose="tether bench statistics")


def iqm(x: Any, axis: int = -1) -> Any:
    """The interquartile mean along ``axis``: ``scipy.stats.trim_mean(x, 0.25)``."""
    return _stats().trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def median(x: Any, axis: int = -1) -> Any:
    """The median along ``axis``."""
    return np.median(np.asarray(x, dtype=float), axis=axis)


def _pooled(statistic: Statistic) -> Statistic:
    """``statistic`` of the strata joined along the resampled (last) axis."""

    def pooled(*samples: Any, axis: int = -1) -> Any:
        return statistic(np.concatenate(samples, axis=axis), axis=axis)

    return pooled


@attrs.frozen(kw_only=True)
class Estimate:
    """A point estimate with its confidence interval (``nan`` bounds: too few runs to resample)."""

    point: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        """``{"point", "low", "high"}`` with ``None`` for ``nan`` (JSON has no nan)."""
        return {k: (None if np.isnan(v) else float(v)) for k, v in attrs.asdict(self).items()}


def estimate(
    strata: Sequence[Any],
    statistic: Statistic = iqm,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """``statistic`` of the pooled runs, with a stratified percentile-bootstrap interval.

    Args:
        strata: one 1-D array of scores per task (one array: no stratification).
        statistic: a vectorised statistic ``f(x, axis)`` (:func:`iqm`, :func:`median`, ...).
        n_resamples: bootstrap resamples.
        confidence: the interval's confidence level.
        seed: seed of the resampling, so a report is reproducible.

    Returns:
        The point estimate on all runs and the interval; ``nan`` bounds when a stratum has fewer
        than two runs (nothing to resample).
    """
    samples = tuple(np.asarray(s, dtype=float).ravel() for s in strata)
    pooled = _pooled(statistic)
    point = float(pooled(*samples))
    if any(s.size < 2 for s in samples):
        return Estimate(point=point, low=float("nan"), high=float("nan"))
    if all(np.ptp(s) == 0 for s in samples):  # every resample is the sample itself
        return Estimate(point=point, low=point, high=point)
    result = _stats().bootstrap(samples, pooled, n_resamples=n_resamples, confidence_level=confidence,
                                method="percentile", vectorized=True, paired=False, axis=-1,
                                rng=np.random.default_rng(seed))
    return Estimate(point=point, low=float(result.confidence_interval.low),
                    high=float(result.confidence_interval.high))


def estimate_along(
    strata: Sequence[Any],
    statistic: Statistic = iqm,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`estimate` for many points at once (a curve): runs on the last axis.

    Args:
        strata: arrays shaped ``[P, runs_k]`` (the same ``P`` points in every stratum).

    Returns:
        ``(point, low, high)``, each shaped ``[P]``; bounds ``nan`` with fewer than two runs.
    """
    samples = tuple(np.asarray(s, dtype=float) for s in strata)
    pooled = _pooled(statistic)
    point = np.asarray(pooled(*samples), dtype=float)
    if any(s.shape[-1] < 2 for s in samples):
        empty = np.full_like(point, np.nan)
        return point, empty, empty.copy()
    result = _stats().bootstrap(samples, pooled, n_resamples=n_resamples, confidence_level=confidence,
                                method="percentile", vectorized=True, paired=False, axis=-1,
                                rng=np.random.default_rng(seed))
    low = np.asarray(result.confidence_interval.low, dtype=float)
    high = np.asarray(result.confidence_interval.high, dtype=float)
    # a point whose runs all agree has no spread to resample: its interval is the point
    return point, np.where(np.isnan(low), point, low), np.where(np.isnan(high), point, high)


def ratio(
    numerator: Any,
    denominator: Any,
    *,
    paired: bool,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """``median(numerator) / median(denominator)`` with a percentile-bootstrap interval.

    Args:
        numerator: per-run values of one variant (e.g. steps/s).
        denominator: the reference variant's.
        paired: the runs pair up (same seeds, alternated): resample pairs together.

    Returns:
        The ratio and its interval (``nan`` bounds with fewer than two runs a side).
    """
    top, bottom = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)

    def of(a: Any, b: Any, axis: int = -1) -> Any:
        return np.median(a, axis=axis) / np.median(b, axis=axis)

    point = float(of(top, bottom))
    if min(top.size, bottom.size) < 2 or (np.ptp(top) == 0 and np.ptp(bottom) == 0):
        bound = point if min(top.size, bottom.size) >= 2 else float("nan")
        return Estimate(point=point, low=bound, high=bound)
    result = _stats().bootstrap((top, bottom), of, n_resamples=n_resamples, confidence_level=confidence,
                                method="percentile", vectorized=True, paired=paired, axis=-1,
                                rng=np.random.default_rng(seed))
    return Estimate(point=point, low=float(result.confidence_interval.low),
                    high=float(result.confidence_interval.high))


def at_bar(scores: Any, bar: float) -> tuple[int, int]:
    """``(seeds at or above bar, seeds)``."""
    values = np.asarray(scores, dtype=float)
    return int((values >= bar).sum()), int(values.size)


def performance_profile(
    strata: Sequence[Any],
    taus: Any,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fraction of runs scoring above each ``tau``, with stratified-bootstrap bands.

    Args:
        strata: one 1-D array of (normalised) scores per task.
        taus: the thresholds, shape ``[P]``.
        kwargs: passed to :func:`estimate_along`.

    Returns:
        ``(fraction, low, high)``, each shaped ``[P]``.
    """
    thresholds = np.asarray(taus, dtype=float)[:, None]
    indicators = [(np.asarray(s, dtype=float).ravel()[None, :] > thresholds).astype(float) for s in strata]

    def mean(x: Any, axis: int = -1) -> Any:
        return np.mean(x, axis=axis)

    return estimate_along(indicators, mean, **kwargs)
