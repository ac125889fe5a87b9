"""Reached and held: when each run of a grid row first reached its task's bar in training, and where it ended.

A row of a learning table gives each seed's final evaluation. This script tells a run that never
learned from one that learned and then lost it: for every seed of the chosen rows it reports the
first env step at which the training return (the mean over the episodes finished since the last
record, exploration included) reached the bar, the best training return, the training return over
the last ``--tail`` records, and the final deterministic evaluation. It reads each finished cell's
``result.json``, prints a markdown table per row and writes them as JSON::

    python benchmarks/learning_peaks.py benchmarks/results/bench/r2d2_staleness \\
        --task cartpole --out benchmarks/results/bench/r2d2_staleness/peaks.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from tether.bench.provenance import measured_on
from tether.bench.report import GRID_INFO, load_results, summarise


def peaks(record: dict[str, Any], bar: float, tail: int) -> dict[str, Any]:
    """One run's first step at the bar, best and final training return, and evaluation."""
    curve = [(p["step"], p["ep_return"]) for p in record["curve"] if p.get("ep_return") is not None]
    reached = next((step for step, value in curve if value >= bar), None)
    last = [value for _, value in curve[-tail:]]
    return {"seed": record["cell"]["seed"], "first_step_at_bar": reached,
            "best_train_return": max((v for _, v in curve), default=None),
            "last_train_return": statistics.fmean(last) if last else None, "eval": record["score"]}


def render(row: dict[str, Any]) -> str:
    """A markdown table of one row's runs."""
    name = f"{row['task_label'] or row['task']}, {row['label'] or row['variant']}"
    lines = [f"{name} (bar {row['bar']:g}):", "",
             "| seed | first step at the bar (training) | best training return |"
             f" training return, last {row['tail']} records | evaluation |", "|---:|---:|---:|---:|---:|"]
    for r in row["runs"]:
        first = "never" if r["first_step_at_bar"] is None else f"{r['first_step_at_bar']:,}"
        lines.append(f"| {r['seed']} | {first} | {r['best_train_return']:.3g} |"
                     f" {r['last_train_return']:.3g} | {r['eval']:.3g} |")
    held = sum(r["eval"] >= row["bar"] for r in row["runs"])
    reached = sum(r["first_step_at_bar"] is not None for r in row["runs"])
    n = len(row["runs"])
    lines += ["", f"Reached the bar in training: {reached}/{n}; at it in the final evaluation: {held}/{n}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a grid's output folder (tether bench run --out)")
    parser.add_argument("--task", default=None, help="only this task (default: every task)")
    parser.add_argument("--variant", nargs="*", default=None, help="only these variants (default: every one)")
    parser.add_argument("--tail", type=int, default=10, help="records averaged for the last training return")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        records = load_results(args.folder)
    except FileNotFoundError as err:
        print(f"learning_peaks: {err}", file=sys.stderr)
        return 2
    info_path = args.folder / GRID_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    summary = summarise(records, info=info, n_resamples=10)  # for the rows' order, bars and labels
    rows = []
    for row in summary["rows"]:
        if (args.task and row["task"] != args.task) or (args.variant and row["variant"] not in args.variant):
            continue
        mine = sorted((r for r in records if r["cell"]["task"] == row["task"]
                       and r["cell"]["variant"] == row["variant"]), key=lambda r: r["cell"]["seed"])
        rows.append({"task": row["task"], "task_label": row["task_label"], "variant": row["variant"],
                     "label": row["label"], "bar": row["bar"], "tail": args.tail,
                     "runs": [peaks(r, row["bar"], args.tail) for r in mine]})
    if not rows:
        print(f"learning_peaks: no row of {args.folder} matches --task {args.task} --variant {args.variant};"
              f" its tasks are {', '.join(summary['tasks'])}, its variants {', '.join(summary['variants'])}",
              file=sys.stderr)
        return 2
    print("\n\n".join(render(row) for row in rows) + f"\n\n{measured_on(summary['provenance'])}")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "provenance": summary["provenance"]}, indent=1) + "\n",
                            encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
