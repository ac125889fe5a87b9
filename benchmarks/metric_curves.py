"""Curves of logged metrics over training, per task and variant of a bench grid.

``tether bench report`` draws the training return against env steps and tabulates each reported
metric's mean over a run; this script draws how such metrics move during training: for every task
(a column) and key (a row), one line per variant, the IQM over seeds on a common grid of env steps
with its 95 % bootstrap band. It reads each finished cell's ``run/metrics.jsonl``, so it runs on a
grid's output folder before the per-cell folders are discarded, and writes the figure and the
curves it drew (JSON)::

    python benchmarks/metric_curves.py benchmarks/results/bench/r2d2_staleness \\
        --keys staleness/dq_first staleness/dq_last --log \\
        --out benchmarks/results/bench/r2d2_staleness/staleness.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tether.bench import stats
from tether.bench.provenance import measured_on
from tether.bench.report import GRID_INFO, load_results, summarise
from tether.bench.runner import run_records

POINTS = 40


def _series(records: list[dict[str, Any]], key: str) -> np.ndarray | None:
    """``[n, 2]`` (env step, value) of ``key`` in a run's metrics records, finite values only."""
    rows = [(float(r["step"]), float(r[key])) for r in records
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    return np.asarray(rows, dtype=float) if len(rows) >= 2 else None


def _curve(series: list[np.ndarray], n_resamples: int) -> dict[str, Any] | None:
    """IQM over runs on a common step grid (where every run logged), with its bootstrap band."""
    if not series:
        return None
    first, last = max(s[0, 0] for s in series), min(s[-1, 0] for s in series)
    if last <= first:
        return None
    steps = np.linspace(first, last, POINTS)
    values = np.stack([np.interp(steps, s[:, 0], s[:, 1]) for s in series], axis=-1)
    point, low, high = stats.estimate_along([values], n_resamples=n_resamples)
    return {"steps": steps.tolist(), "iqm": point.tolist(), "low": low.tolist(), "high": high.tolist(),
            "runs": len(series)}


def curves(folder: Path, keys: list[str], n_resamples: int) -> dict[str, Any]:
    """Every (task, variant, key) curve of the grid under ``folder``."""
    records = load_results(folder)
    info_path = folder / GRID_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    summary = summarise(records, info=info, n_resamples=10)  # for the order, labels and provenance
    found: list[dict[str, Any]] = []
    for row in summary["rows"]:
        runs = [run_records(folder / f"{row['task']}__{row['variant']}__seed{seed}" / "run")
                for seed in row["seeds"]]  # each cell's metrics.jsonl, read once for every key
        for key in keys:
            series = [s for s in (_series(records, key) for records in runs) if s is not None]
            curve = _curve(series, n_resamples)
            if curve is not None:
                found.append({"task": row["task"], "task_label": row["task_label"], "variant": row["variant"],
                              "label": row["label"], "key": key, **curve})
    return {"grid": summary["grid"], "tasks": summary["tasks"], "variants": summary["variants"], "keys": keys,
            "curves": found, "provenance": summary["provenance"]}


def plot(data: dict[str, Any], out: Path, *, log: bool) -> None:
    """One panel per (key, task); one IQM line and band per variant."""
    import matplotlib  # noqa: PLC0415 (an optional extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    keys, tasks = data["keys"], data["tasks"]
    fig, axes = plt.subplots(len(keys), len(tasks), figsize=(4.6 * len(tasks), 3.4 * len(keys)),
                             squeeze=False)
    colours = {v: f"C{i}" for i, v in enumerate(data["variants"])}
    for i, key in enumerate(keys):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for c in (c for c in data["curves"] if c["key"] == key and c["task"] == task):
                steps = np.asarray(c["steps"])
                ax.plot(steps, c["iqm"], color=colours[c["variant"]], label=f"{c['label'] or c['variant']}"
                        f" ({c['runs']})")
                ax.fill_between(steps, np.asarray(c["low"], dtype=float), np.asarray(c["high"], dtype=float),
                                color=colours[c["variant"]], alpha=0.15, linewidth=0)
            if log:
                ax.set_yscale("symlog", linthresh=1e-4)
            ax.set(title=task if i == 0 else "", xlabel="env steps" if i == len(keys) - 1 else "", ylabel=key)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small", framealpha=0.8)
    fig.suptitle(f"{data['grid']}: IQM over seeds, 95 % bootstrap band", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a grid's output folder (tether bench run --out)")
    parser.add_argument("--keys", nargs="+", required=True, help="metrics.jsonl keys to draw")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write (its curves: .json beside)")
    parser.add_argument("--log", action="store_true", help="a symmetric-log value axis")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per point")
    args = parser.parse_args(argv)
    try:
        data = curves(args.folder, args.keys, args.resamples)
    except FileNotFoundError as err:
        print(f"metric_curves: {err}", file=sys.stderr)
        return 2
    missing = [k for k in args.keys if not any(c["key"] == k for c in data["curves"])]
    if missing:
        print(f"metric_curves: no cell under {args.folder} logged {', '.join(missing)} at two steps or more;"
              " check the key names in a cell's run/metrics.jsonl", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(data, args.out, log=args.log)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}\n{measured_on(data['provenance'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
