"""What ``--telemetry`` costs end to end: ``tether train`` with it on and off, rounds alternated.

Two configurations of the CartPole preset: as it is (``seq_len = 0``: each env's rollout replayed
as one sequence) and as the sequence-start comparison runs it (16-step chunks, 8 per minibatch:
``benchmarks/grids/sequence_start.toml``), where the telemetry also measures the gap of every
chunk. Each round trains each configuration for ``--total-steps`` steps twice, once without and
once with ``--telemetry`` (the order alternates from round to round), each in a fresh process, and
reads the run's training seconds (the last metrics record's ``time``: collection and updates,
without start-up or evaluation). The cost is the ratio of the medians, on over off; the process
wall time is recorded too. On a shared machine the spread between rounds is reported with it.

Run: ``python benchmarks/telemetry_cost.py [--rounds N] [--total-steps S] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tether.bench import provenance

#: The configurations measured: a name and the flags after ``tether train``.
CONFIGS: dict[str, list[str]] = {
    "cartpole preset": ["--preset", "cartpole"],
    "cartpole, 16-step chunks": ["--preset", "cartpole", "--seq-len", "16", "--minibatch-envs", "8"],
}


def _train(flags: list[str], total_steps: int, telemetry: bool, folder: Path) -> dict[str, float]:
    """One training run in a fresh process: its training seconds and its process wall time."""
    run_dir = folder / ("on" if telemetry else "off")
    command = [sys.executable, "-m", "tether", "train", *flags, "--total-steps",
               str(total_steps), "--no-eval", "--no-progress", "--run-dir", str(run_dir), "--overwrite"]
    if telemetry:
        command.append("--telemetry")
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    last = json.loads((run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    if telemetry and "state/h_rms" not in last:
        raise RuntimeError("a --telemetry run logged no state/ metrics")
    return {"train_seconds": float(last["time"]), "wall_seconds": wall}


def main() -> None:
    """Measure, print a summary, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--total-steps", type=int, default=16_384)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {"off": [], "on": []} for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, flags in CONFIGS.items():
                for telemetry in ((False, True) if r % 2 == 0 else (True, False)):
                    runs[name]["on" if telemetry else "off"].append(
                        _train(flags, args.total_steps, telemetry, Path(tmp)))
    configs: list[dict[str, Any]] = []
    for name, flags in CONFIGS.items():
        config: dict[str, Any] = {"name": name, "command": f"tether train {' '.join(flags)} --total-steps"
                                                           f" {args.total_steps} --no-eval [--telemetry]"}
        for key in ("train_seconds", "wall_seconds"):
            off = [x[key] for x in runs[name]["off"]]
            on = [x[key] for x in runs[name]["on"]]
            config[key] = {"median_off": statistics.median(off), "median_on": statistics.median(on),
                           "ratio_of_medians": statistics.median(on) / statistics.median(off),
                           "off": off, "on": on}
        configs.append(config)
        t = config["train_seconds"]
        print(f"{name}: training seconds, median of {args.rounds}: off {t['median_off']:.2f},"
              f" on {t['median_on']:.2f}; on / off = {t['ratio_of_medians']:.3f}"
              f" (off {min(t['off']):.2f}-{max(t['off']):.2f}, on {min(t['on']):.2f}-{max(t['on']):.2f})")
    result = {"benchmark": "telemetry_cost", "rounds": args.rounds, "total_steps": args.total_steps,
              "configs": configs, "provenance": provenance.collect()}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
