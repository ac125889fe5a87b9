"""The grid's figures: return vs steps with bootstrap bands, and performance profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tether.bench import stats
from tether.bench._extras import require

__all__ = ["plot_curves", "plot_profile"]


def _pyplot() -> Any:
    matplotlib = require("matplotlib", extra="bench", purpose="tether bench plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra="bench", purpose="tether bench plots")


def _axes(plt: Any, count: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, count, figsize=(max(7.5, 5.2 * count), 4.8), squeeze=False)
    return fig, list(axes[0])


def plot_curves(summary: dict[str, Any], out: str | Path) -> Path:
    """Training return vs env steps per task: the IQM over seeds and its 95 % band, per variant.

    Raises:
        MissingExtraError: when matplotlib is not installed.
    """
    plt = _pyplot()
    fig, axes = _axes(plt, len(summary["tasks"]))
    colours = {v: f"C{i}" for i, v in enumerate(summary["variants"])}
    for ax, task in zip(axes, summary["tasks"], strict=True):
        for row in (r for r in summary["rows"] if r["task"] == task and r["curve"]):
            curve = row["curve"]
            steps, colour = np.asarray(curve["steps"]), colours[row["variant"]]
            ax.plot(steps, curve["iqm"], color=colour, label=f"{row['label'] or row['variant']}"
                    f" ({curve['seeds']} seeds)")
            low = np.asarray([np.nan if v is None else v for v in curve["low"]], dtype=float)
            high = np.asarray([np.nan if v is None else v for v in curve["high"]], dtype=float)
            ax.fill_between(steps, low, high, color=colour, alpha=_band_alpha(summary), linewidth=0)
        bar = next((r["bar"] for r in summary["rows"] if r["task"] == task), None)
        if bar is not None:
            ax.axhline(bar, color="k", lw=0.8, ls="--", label=f"bar {bar:g}")
        ax.set(title=task, xlabel="env steps", ylabel="training return (IQM over seeds, 95 % CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right", framealpha=0.8)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_profile(summary: dict[str, Any], out: str | Path) -> Path:
    """Performance profiles: the fraction of runs scoring above τ, per task and over all tasks.

    Per task τ is the raw evaluation return; the last panel (when every task has a ``score_range``)
    uses normalised scores over all tasks, the bands resampled per task.

    Raises:
        MissingExtraError: when matplotlib is not installed.
    """
    plt = _pyplot()
    panels = len(summary["tasks"]) + (1 if summary["aggregate"] else 0)
    fig, axes = _axes(plt, panels)
    colours = {v: f"C{i}" for i, v in enumerate(summary["variants"])}
    for ax, task in zip(axes, summary["tasks"], strict=False):
        rows = [r for r in summary["rows"] if r["task"] == task]
        # τ spans the scores, the bar and the task's range, so the bar always shows on the axis
        span = [s for r in rows for s in r["scores"]] + [rows[0]["bar"], *(rows[0]["score_range"] or [])]
        taus = np.linspace(min(span), max(span), 101) if max(span) > min(span) else np.asarray(span[:1])
        for row in rows:
            fraction, low, high = stats.performance_profile([row["scores"]], taus)
            _profile_line(ax, taus, fraction, low, high, colours[row["variant"]],
                          row["label"] or row["variant"], _band_alpha(summary))
        ax.axvline(rows[0]["bar"], color="k", lw=0.8, ls="--", label=f"bar {rows[0]['bar']:g}")
        ax.set(title=task, xlabel="evaluation return τ", ylabel="fraction of runs > τ")
    if summary["aggregate"]:
        ax = axes[-1]
        for agg in summary["aggregate"]:
            p = agg["profile"]
            _profile_line(ax, np.asarray(p["tau"]), np.asarray(p["fraction"]), np.asarray(p["low"]),
                          np.asarray(p["high"]), colours[agg["variant"]], agg["variant"],
                          _band_alpha(summary))
        ax.set(title="all tasks", xlabel="normalised score τ", ylabel="fraction of runs > τ")
    for ax in axes:
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _band_alpha(summary: dict[str, Any]) -> float:
    """Fainter bands when many variants overlap, so the lines stay readable."""
    return 0.2 if len(summary["variants"]) <= 3 else 0.07


def _profile_line(ax: Any, taus: np.ndarray, fraction: np.ndarray, low: np.ndarray, high: np.ndarray,
                  colour: str, label: str, alpha: float) -> None:
    ax.step(taus, fraction, where="post", color=colour, label=label)
    ax.fill_between(taus, low, high, step="post", color=colour, alpha=alpha, linewidth=0)
