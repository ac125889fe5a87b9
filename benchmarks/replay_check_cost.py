"""What the replay-alignment check costs: unroll from a checked snapshot in strict vs off mode.

A rollout of ``T`` steps of ``B`` envs is collected with a clock (random episode ends, 2 % per
step), then replayed from its snapshot with ``tether.sequence.unroll``, forward + backward, in
strict mode (the check compares the replay's episode starts with the clock's record, host side)
and in off mode (no check). The variants are interleaved round by round and the medians of the
thread CPU time compared, which leaves out the time this thread waited for a core on a shared
machine. The check alone (``check_replay``) is timed too.

Run: ``python benchmarks/replay_check_cost.py [--rounds N] [--out results.json]``.
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

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tether import EpisodeClock, mode, track
from tether.bench import provenance
from tether.sequence import unroll
from tether.sequence._lifecycle import check_replay

SHAPES = [(128, 8, 64, 64), (32, 64, 64, 64), (128, 32, 128, 256)]


def _case(steps: int, batch: int, n_in: int, hidden: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """The fwd+bwd replay of one collected rollout, and the check alone."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clock = EpisodeClock(batch)
    core = track(nn.LSTM(n_in, hidden))
    snapshot = core.initial_state(batch, clock).snapshot()
    starts = np.zeros((steps, batch), dtype=bool)
    for t in range(steps):
        done = rng.random(batch) < 0.02
        clock.advance(done)
        if t + 1 < steps:
            starts[t + 1] = done
    x = torch.randn(steps, batch, n_in, requires_grad=True)

    def replay() -> None:
        y, _ = unroll(core, x, starts, snapshot)
        y.sum().backward()

    def check() -> None:
        check_replay(snapshot, starts)

    return replay, check


def _median_cpu(fn: Callable[[], None], check_mode: str) -> float:
    with mode(check_mode):  # type: ignore[arg-type]
        start = time.thread_time()
        fn()
        return time.thread_time() - start


def main() -> None:
    """Measure, print a markdown table, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for shape in SHAPES:
        replay, check = _case(*shape)
        for _ in range(2):  # warm-up (and the one-off kernel probe)
            replay()
        times: dict[str, list[float]] = {"strict": [], "off": [], "check": []}
        for _ in range(args.rounds):
            times["strict"].append(_median_cpu(replay, "strict"))
            times["off"].append(_median_cpu(replay, "off"))
            times["check"].append(_median_cpu(check, "strict"))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"shape": list(shape), "strict_ms": med["strict"] * 1e3, "off_ms": med["off"] * 1e3,
                     "ratio": med["strict"] / med["off"], "check_us": med["check"] * 1e6})
    commit = provenance.git_state()["commit"] or "unknown"
    result = {"benchmark": "replay_check_cost", "commit": commit, "torch": torch.__version__,
              "python": platform.python_version(), "machine": platform.machine(), "threads": 1,
              "rounds": args.rounds, "rows": rows}
    print(f"commit {result['commit'][:12]}, torch {torch.__version__}, 1 thread, thread CPU medians")
    print("| T, B, in, H | replay strict (ms) | replay off (ms) | strict / off | the check alone (µs) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| {}, {}, {}, {} | ".format(*r["shape"]) + f"{r['strict_ms']:.2f} | {r['off_ms']:.2f} |"
              f" {r['ratio']:.3f} | {r['check_us']:.0f} |")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
