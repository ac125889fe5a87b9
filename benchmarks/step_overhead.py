"""Per-step overhead of a tracked LSTM vs the raw nn.LSTM, as ratios measured in one run.

The variants are interleaved round by round (so machine noise hits all of them alike) and the
medians compared. Prints a markdown table with the torch version and the CPU.

Run: ``python benchmarks/step_overhead.py [--rounds N]``; also writes
``benchmarks/results/step_overhead.json`` (medians and provenance, which the README table renders
from: ``python -m tether.bench tables``). Instruction counts per step, which do not
move with the machine's load: ``valgrind --tool=callgrind python benchmarks/step_overhead.py
--only strict --steps 1100`` (and ``--steps 100`` for the start-up to subtract).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._step import BATCH, HIDDEN, INPUT, make_steps
from tether import mode
from tether.bench.provenance import collect

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds")
    parser.add_argument("--inner", type=int, default=20, help="steps timed together per round")
    parser.add_argument("--only", choices=("raw", "raw_cell", "strict", "warn", "off"),
                        help="just run --steps steps of one variant, untimed (for valgrind --tool=callgrind)")
    parser.add_argument("--steps", type=int, default=1100, help="steps for --only")
    parser.add_argument("--json", type=Path, default=RESULTS / "step_overhead.json",
                        help="results file to write (default: benchmarks/results/step_overhead.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = make_steps()
    if args.only:
        check_mode, fn = steps[args.only]
        with mode(check_mode):  # type: ignore[arg-type]
            for _ in range(args.steps):
                fn()
        return
    for check_mode, fn in steps.values():  # warm-up
        with mode(check_mode):  # type: ignore[arg-type]
            for _ in range(200):
                fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    forwards: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (check_mode, fn) in steps.items():
            with mode(check_mode):  # type: ignore[arg-type]
                start = time.perf_counter()
                forward = sum(fn() for _ in range(args.inner))
                times[name].append((time.perf_counter() - start) / args.inner)
                forwards[name].append(forward / args.inner)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    forward_medians = {name: statistics.median(ts) for name, ts in forwards.items()}
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {cpu}, 1 thread, batch {BATCH}, input {INPUT}, hidden {HIDDEN},"
          f" no_grad, {args.rounds} rounds x {args.inner} steps, medians")
    print("| variant | forward (µs) | forward / raw | whole loop step (µs) | step / raw |")
    print("|---|---|---|---|---|")
    for name, median in medians.items():
        fwd = forward_medians[name]
        print(f"| {name} | {fwd * 1e6:.1f} | {fwd / forward_medians['raw']:.3f} | {median * 1e6:.1f} |"
              f" {median / medians['raw']:.3f} |")
    print("forward: the tracked module's call (checks, ATen op, new state) vs nn.LSTM's call;"
          " whole loop step: that plus clock.advance(done) and state.reset(done)"
          " (the raw loop's step is its forward alone)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    shape = {"rounds": args.rounds, "inner": args.inner, "batch": BATCH, "input": INPUT, "hidden": HIDDEN}
    record = {"args": shape, "forward_seconds": forward_medians, "step_seconds": medians,
              "provenance": collect()}
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"results: {args.json.name}")


if __name__ == "__main__":
    main()
