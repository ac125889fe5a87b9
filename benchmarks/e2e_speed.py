"""End-to-end training speed: ``tether train --preset cartpole`` with the LSTM and the GRU core,
on this checkout and (``--before REF``) on an earlier commit, alternated round by round.

Each run is its own process (``python -m tether.cli train ... --total-steps N --no-eval``) and reports the
steps/s the trainer prints (collection and updates, from the first step to the last). Runs are
interleaved in a fresh random order each round, so machine noise hits all alike; the medians are
compared as ratios within this run. ``--before REF`` checks REF out into a temporary git worktree
and runs it with the same Python.

Run: ``python benchmarks/e2e_speed.py [--before REF] [--rounds N] [--steps N]
[--out benchmarks/results/e2e_speed.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether.bench import provenance

ROOT = Path(__file__).resolve().parent.parent

_RATE = re.compile(r"trained (\d+) steps in [\d.]+ s \(([\d.]+) steps/s\)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(tree: Path, core: str, steps: int, run_dir: Path) -> tuple[float, float]:
    """Train once in a subprocess from the sources under ``tree``; its steps/s and steps per CPU-second.

    The CPU time is the whole process's (start-up included), which other jobs on a shared machine
    disturb far less than the wall clock the trainer's steps/s is measured on.
    """
    cpu = _children_cpu()
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, "-m", "tether.cli", "train", "--preset", "cartpole", "--core", core,
           "--total-steps", str(steps), "--run-dir", str(run_dir), "--no-progress", "--seed", "0",
           "--no-eval"]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    cpu = _children_cpu() - cpu
    found = _RATE.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return float(found[2]), int(found[1]) / cpu


def _ratios(medians: dict[str, float], before: bool) -> dict[str, float]:
    ratios = {"gru / lstm (now)": medians["now/gru"] / medians["now/lstm"]}
    if before:
        ratios["gru / lstm (before)"] = medians["before/gru"] / medians["before/lstm"]
        ratios["lstm now / before"] = medians["now/lstm"] / medians["before/lstm"]
        ratios["gru now / before"] = medians["now/gru"] / medians["before/gru"]
    return ratios


def main() -> None:
    """Measure, print a markdown table, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default=None, help="an earlier commit to compare with (git ref)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds")
    parser.add_argument("--steps", type=int, default=16_384, help="env steps per run")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        before_commit = None
        if args.before:
            before = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT,
                           check=True, capture_output=True)
            before_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=before, check=True,
                                           capture_output=True, text=True).stdout.strip()
            trees["before"] = before
        try:
            cells = [(t, c) for t in trees for c in ("lstm", "gru")]
            rates: dict[str, list[float]] = {f"{t}/{c}": [] for t, c in cells}
            cpu_rates: dict[str, list[float]] = {f"{t}/{c}": [] for t, c in cells}
            rng = random.Random(0)
            for r in range(args.rounds):
                for t, c in rng.sample(cells, len(cells)):
                    rate, cpu_rate = run_once(trees[t], c, args.steps, Path(tmp) / f"run-{t}-{c}-{r}")
                    rates[f"{t}/{c}"].append(rate)
                    cpu_rates[f"{t}/{c}"].append(cpu_rate)
                    print(f"round {r}: {t}/{c} {rate:.0f} steps/s, {cpu_rate:.0f} steps per CPU-second",
                          flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["before"])], cwd=ROOT,
                               check=False, capture_output=True)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu_rates.items()}
    ratios, cpu_ratios = _ratios(medians, bool(args.before)), _ratios(cpu_medians, bool(args.before))
    result: dict[str, Any] = {"benchmark": "e2e_speed", "preset": "cartpole", "steps": args.steps,
                              "rounds": args.rounds, "before": args.before, "before_commit": before_commit,
                              "steps_per_second": rates, "medians": medians, "ratios": ratios,
                              "steps_per_cpu_second": cpu_rates, "cpu_medians": cpu_medians,
                              "cpu_ratios": cpu_ratios,
                              "provenance": provenance.collect()}
    print("| run | median steps/s | per round |\n|---|---:|---|")
    for k, v in rates.items():
        print(f"| {k} | {medians[k]:.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f} (per CPU-second: {cpu_ratios[k]:.2f})")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
