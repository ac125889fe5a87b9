"""The cartpole preset's learning bar on 2 ranks × 4 envs (gloo), over several seeds.

Each seed runs the command a user would (``tether train --preset cartpole --nproc 2 --num-envs 4
--seed S``: torchrun, 2 ranks, 8 envs in all), whose deterministic evaluation over 20 episodes
(rank 0, at the end) is compared with the preset's bar (450, as in ``benchmarks/grids/learning.toml``).
Writes ``benchmarks/results/distributed_learning.json`` with the commit, versions and CPU.

Run: ``python benchmarks/distributed_learning.py --seeds 0 1 2 3 4 [--nproc 2 --num-envs 4]``;
more ``tether train`` flags after ``--`` (e.g. ``-- --n-epochs 20``), with ``--out`` naming the file.
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
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether.bench import provenance

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results" / "distributed_learning.json"
BAR = 450.0


def run(seed: int, nproc: int, num_envs: int, extra: list[str]) -> dict[str, Any]:
    """Train one seed through the CLI; return its evaluation and speed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "tether", "train", "--preset", "cartpole", "--nproc", str(nproc),
                   "--num-envs", str(num_envs), "--seed", str(seed), "--no-progress", "--run-dir",
                   str(run_dir), *extra]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        result = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    trained = next(line for line in done.stdout.splitlines() if line.startswith("trained"))
    trained = trained.split("; run folder:")[0]  # a temporary folder: no machine path in results
    return {"seed": seed, "mean_return": result["mean_return"], "passed": result["mean_return"] >= BAR,
            "updates": len(lines), "trained": trained}


def main() -> None:
    """Run the seeds, print a line each and the summary, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=4, help="envs per rank")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file to write")
    parser.add_argument("extra", nargs="*", help="more tether train flags (after --)")
    args = parser.parse_args()
    commit = (provenance.git_state()["commit"] or "unknown")[:7]  # the code as the runs start
    records = []
    for seed in args.seeds:
        records.append(run(seed, args.nproc, args.num_envs, args.extra))
        print(json.dumps(records[-1]), flush=True)
    returns = [r["mean_return"] for r in records]
    import gymnasium  # noqa: PLC0415

    summary = {
        "benchmark": "distributed_learning", "preset": "cartpole", "bar": BAR, "nproc": args.nproc,
        "num_envs_per_rank": args.num_envs, "extra_flags": args.extra, "seeds": args.seeds, "runs": records,
        "passed": sum(r["passed"] for r in records), "median_return": statistics.median(returns),
        "commit": commit,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "gymnasium": gymnasium.__version__},
        "hardware": {"machine": platform.machine(), "cpu_count": os.cpu_count(),
                     "note": "2 CPU cores shared with other work while measured"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"{summary['passed']}/{len(records)} seeds reach {BAR}; median {summary['median_return']:.1f};"
          f" wrote {args.out}")


if __name__ == "__main__":
    main()
