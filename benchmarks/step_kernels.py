"""One inference step of an LSTM / GRU on the CPU: the sequence op against the cell op.

``policy.act`` and a tracked module's single step without autograd run as ``torch.lstm_cell`` /
``torch.gru_cell`` where those beat the sequence op (``torch.lstm`` goes through oneDNN, whose
fixed cost per call a single small step never earns back). This measures both at T = 1, input 64,
over rows x hidden units, and is where ``tether._aten.LSTM_CELL_MAX_ROWS_X_HIDDEN`` comes from.
Variants are interleaved round by round; medians of thread CPU time; ratios within this run.

Run: ``python benchmarks/step_kernels.py [--rounds N] [--out benchmarks/results/step_kernels.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether._aten import LSTM_CELL_MAX_ROWS_X_HIDDEN
from tether.bench import provenance

SHAPES = ((1, 64), (8, 64), (16, 64), (32, 64), (48, 64), (64, 64), (8, 128), (16, 128), (32, 128),
          (8, 256), (4, 512), (128, 32))
INPUT = 64


def kernels(batch: int, hidden: int) -> dict[str, Callable[[], Any]]:
    """The four single-step calls at one shape."""
    torch.manual_seed(0)
    lstm, gru = torch.nn.LSTM(INPUT, hidden), torch.nn.GRU(INPUT, hidden)
    x, h, c = torch.randn(1, batch, INPUT), torch.randn(1, batch, hidden), torch.randn(1, batch, hidden)
    wl, wg = lstm._flat_weights, gru._flat_weights
    return {
        "lstm_op": lambda: torch.lstm(x, (h, c), wl, True, 1, 0.0, False, False, False),
        "lstm_cell": lambda: torch.lstm_cell(x[0], (h[0], c[0]), *wl),
        "gru_op": lambda: torch.gru(x, h, wg, True, 1, 0.0, False, False, False),
        "gru_cell": lambda: torch.gru_cell(x[0], h[0], *wg),
    }


def measure(calls: dict[str, Callable[[], Any]], rounds: int, n: int) -> dict[str, float]:
    """Median thread-CPU microseconds per call, interleaved round by round (two warm-up rounds)."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.no_grad():
        for r in range(rounds + 2):
            for name, fn in calls.items():
                start = time.thread_time()
                for _ in range(n):
                    fn()
                if r >= 2:
                    times[name].append((time.thread_time() - start) / n * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    """Measure, print a markdown table, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=300, help="calls per kernel per round")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for batch, hidden in SHAPES:
        us = measure(kernels(batch, hidden), args.rounds, args.calls)
        rows.append({"batch": batch, "hidden": hidden, "us": us,
                     "lstm_cell_over_op": us["lstm_cell"] / us["lstm_op"],
                     "gru_cell_over_op": us["gru_cell"] / us["gru_op"],
                     "cell_chosen": batch * hidden <= LSTM_CELL_MAX_ROWS_X_HIDDEN})
    result = {"benchmark": "step_kernels", **provenance.git_state(), "torch": torch.__version__,
              "python": platform.python_version(), "cpu": provenance.hardware()["cpu"], "threads": 1,
              "rounds": args.rounds, "calls_per_round": args.calls,
              "lstm_cell_max_rows_x_hidden": LSTM_CELL_MAX_ROWS_X_HIDDEN, "rows": rows,
              "provenance": provenance.collect()}
    print(f"commit {str(result.get('commit'))[:12]}, torch {torch.__version__}, {result['cpu']}, 1 thread,"
          f" medians of {args.rounds} interleaved rounds (µs, thread CPU time)")
    print("| B | H | B x H | lstm op | lstm_cell | cell / op | gru op | gru_cell | cell / op | tether runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        u = r["us"]
        print(f"| {r['batch']} | {r['hidden']} | {r['batch'] * r['hidden']} | {u['lstm_op']:.1f} |"
              f" {u['lstm_cell']:.1f} | {r['lstm_cell_over_op']:.2f} | {u['gru_op']:.1f} |"
              f" {u['gru_cell']:.1f} | {r['gru_cell_over_op']:.2f} |"
              f" {'cells' if r['cell_chosen'] else 'lstm op / gru cell'} |")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
