"""Training throughput of one process × 8 envs against 2 ranks × 4 envs (gloo), cartpole preset.

Both variants train the ``cartpole`` preset (``tether train --preset cartpole``) for the same
number of env steps with one torch thread per process; the 2-rank variant runs under torchrun
(``torch.distributed.run --standalone``). The steps/s figure is the trainer's own (env steps of all
ranks over rank 0's training seconds: collection + optimisation, without start-up and the
evaluation). Variants alternate round by round; medians are reported. Writes
``benchmarks/results/distributed_speed.json`` with versions, CPU, load average and commit.

Note the variants are not the same optimisation: with ``minibatch_envs = 1`` per rank the 2-rank
run takes half as many optimiser steps per update, each on a minibatch twice as large (the union
of the ranks' minibatches). The figure is throughput, not learning.

Run: ``python benchmarks/distributed_speed.py [--steps 8192] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether.bench import provenance

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results" / "distributed_speed.json"


def _worker(out: Path, num_envs: int, steps: int, seed: int) -> None:
    """Train the preset (this process's share of a torchrun job, or the whole of a single one)."""
    from tether import distributed  # noqa: PLC0415
    from tether.ppo import PPOConfig, RecurrentPPO  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as run_dir:
        config = PPOConfig.from_preset("cartpole", num_envs=num_envs, total_steps=steps, seed=seed,
                                       progress=False, run_dir=run_dir, mode="off",
                                       checkpoint_every=10_000)
        trainer = RecurrentPPO(config)
        summary = trainer.train()
        trainer.close()
        if distributed.is_main_process():
            out.write_text(json.dumps({"steps": summary["steps"], "seconds": summary["time"],
                                       "steps_per_second": summary["steps_per_second"],
                                       "ranks": distributed.world_size()}), encoding="utf-8")
    distributed.shutdown()


def _run(ranks: int, num_envs: int, steps: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        worker = [str(Path(__file__).resolve()), "--worker", str(out), "--num-envs", str(num_envs),
                  "--steps", str(steps), "--seed", str(seed)]
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc-per-node={ranks}"] if ranks > 1 else [sys.executable])
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        started = time.perf_counter()
        subprocess.run([*launcher, *worker], env=env, check=True, capture_output=True, text=True)
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        result["wall_seconds"] = time.perf_counter() - started
        return result


def main() -> None:
    """Measure, print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8192, help="env steps per run (all ranks together)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both variants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--num-envs", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.worker is not None:
        _worker(args.worker, args.num_envs, args.steps, args.seed)
        return
    commit = (provenance.git_state()["commit"] or "unknown")[:7]  # the code as the runs start
    variants = {"1 rank x 8 envs": (1, 8), "2 ranks x 4 envs": (2, 4)}
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (ranks, envs) in variants.items():
            runs[name].append(_run(ranks, envs, args.steps, args.seed))
            print(name, f"{runs[name][-1]['steps_per_second']:.0f} steps/s", flush=True)
    medians = {name: statistics.median(r["steps_per_second"] for r in rs) for name, rs in runs.items()}
    import gymnasium  # noqa: PLC0415

    result = {
        "benchmark": "distributed_speed",
        "preset": "cartpole",
        "steps_per_run": args.steps,
        "rounds": args.rounds,
        "median_steps_per_second": medians,
        "ratio_2x4_over_1x8": medians["2 ranks x 4 envs"] / medians["1 rank x 8 envs"],
        "runs": runs,
        "commit": commit,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "gymnasium": gymnasium.__version__},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                     "cpu_count": os.cpu_count(), "load_average_before": load_before,
                     "load_average_after": os.getloadavg(),
                     "note": "2 CPU cores shared with other work while measured"},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| variant | median steps/s |\n|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.0f} |")
    print(f"ratio 2x4 / 1x8: {result['ratio_2x4_over_1x8']:.2f}; commit {result['commit']}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
