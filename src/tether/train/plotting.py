"""Learning curves of one or more runs, side by side, to a PNG (matplotlib, headless).

matplotlib is optional (``pip install 'tether-rl[plot]'``): without it :func:`plot_runs` raises
:class:`MissingDependencyError`, which ``tether train`` reports as a one-line notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tether.errors import MissingDependencyError
from tether.train.metrics import RunFolderError, read_metrics

__all__ = ["MissingDependencyError", "plot_runs"]


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
    try:
        import matplotlib  # noqa: PLC0415 (optional dependency)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependencyError("plotting needs matplotlib: pip install 'tether-rl[plot]'") from err
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
