"""Learning curves of one or more runs, side by side, to a PNG (matplotlib, headless).

matplotlib is optional (``pip install 'tether-rl[plot]'``): without it :func:`plot_runs` raises
:class:`MissingDependencyError`, which ``tether train`` reports as a one-line notice.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.errors import MissingDependencyError
from tether.train.metrics import RunFolderError, read_metrics

__all__ = ["MissingDependencyError", "plot_keys", "plot_runs"]


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 (optional dependency)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependencyError("plotting needs matplotlib: pip install 'tether-rl[plot]'") from err
    return plt


def plot_keys(runs: Sequence[str | Path], out: str | Path, keys: Sequence[str]) -> Path:
    """Plot each metric matching ``keys`` against environment steps, one panel per metric.

    Args:
        runs: run folders (or ``metrics.jsonl`` files).
        out: the PNG to write.
        keys: record keys or shell-style patterns (``state/h_rms``, ``state/stale_kl_*``).

    Returns:
        The path of the PNG.

    Raises:
        MissingDependencyError: when matplotlib is not installed.
        RunFolderError: when no record of any run has a matching key.
    """
    plt = _pyplot()
    records = {Path(r).name if Path(r).is_dir() else Path(r).parent.name: read_metrics(r) for r in runs}
    found = sorted({k for rs in records.values() for r in rs for k in r
                    if r[k] is not None and any(fnmatch.fnmatchcase(k, p) for p in keys)})
    if not found:
        raise RunFolderError(f"no run has a metric matching {list(keys)} (runs: {', '.join(map(str, runs))})")
    fig, axes = plt.subplots(len(found), 1, figsize=(7, 2.6 * len(found)), constrained_layout=True,
                             squeeze=False)
    for ax, key in zip(axes[:, 0], found, strict=True):
        for name, rs in records.items():
            kept = [r for r in rs if r.get(key) is not None]
            ax.plot([r["step"] for r in kept], [r[key] for r in kept], label=name)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1, 0].set_xlabel("environment steps")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def plot_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    metric: str = "ep_return",
    labels: Sequence[str] | None = None,
) -> Path:
    """Plot ``metric`` against environment steps and against wall-clock time for each run.

    Args:
        runs: run folders (or ``metrics.jsonl`` files).
        out: the PNG to write.
        metric: the record key to plot (``ep_return`` by default).
        labels: legend labels (default: the run folder names).

    Returns:
        The path of the PNG.

    Raises:
        MissingDependencyError: when matplotlib is not installed (``pip install tether-rl[plot]``).
        FileNotFoundError: when a run has no metrics file.
        RunFolderError: when no run has the metric (or a metrics file is malformed).
    """
    plt = _pyplot()
    names = list(labels) if labels is not None else [Path(r).name if Path(r).is_dir() else Path(r).parent.name
                                                        for r in runs]
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    plotted = 0
    for run, name in zip(runs, names, strict=True):
        records = [r for r in read_metrics(run) if r.get(metric) is not None]
        if not records:
            continue
        plotted += 1
        values = [r[metric] for r in records]
        by_step.plot([r["step"] for r in records], values, label=name)
        by_time.plot([r["time"] for r in records], values, label=name)
    if not plotted:
        plt.close(fig)
        raise RunFolderError(f"no run has any {metric!r} records to plot (runs: {', '.join(map(str, runs))})")
    by_step.set_xlabel("environment steps")
    by_time.set_xlabel("wall-clock seconds")
    for ax in (by_step, by_time):
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
