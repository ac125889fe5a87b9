"""Per-step overhead of a tracked LSTM vs the raw nn.LSTM, as ratios measured in one run.

The variants are interleaved round by round (so machine noise hits all of them alike) and the
medians compared. Prints a markdown table with the torch version and the CPU.

Run: ``python benchmarks/step_overhead.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._step import BATCH, HIDDEN, INPUT, make_steps


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds")
    parser.add_argument("--inner", type=int, default=20, help="steps timed together per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = make_steps()
    for fn in steps.values():  # warm-up
        for _ in range(200):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            for _ in range(args.inner):
                fn()
            times[name].append((time.perf_counter() - start) / args.inner)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {cpu}, 1 thread, batch {BATCH}, input {INPUT}, hidden {HIDDEN},"
          f" no_grad, {args.rounds} rounds x {args.inner} steps, medians")
    print("| variant | median step (µs) | ratio to raw |")
    print("|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median * 1e6:.1f} | {median / medians['raw']:.3f} |")


if __name__ == "__main__":
    main()
