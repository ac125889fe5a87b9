"""Learning bars: train tether's RecurrentPPO (and its memoryless twin) on the memory tasks.

Each run trains with the task's settings below, then evaluates deterministically over 20 episodes,
and writes ``benchmarks/results/learning/<task>-<variant>-seed<k>.json``. ``--summary`` gathers all
result files into ``benchmarks/results/learning.md``.

Run: ``python benchmarks/learning.py --task cartpole --seeds 0 1 2 3 4`` (about 1-2 min a run here),
``python benchmarks/learning.py --task recall --memoryless``, ``python benchmarks/learning.py --summary``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from tether.ppo import PRESETS, PPOConfig, RecurrentPPO

RESULTS = Path(__file__).resolve().parent / "results" / "learning"

#: The bar of each preset (on the deterministic evaluation mean over 20 episodes).
BARS: dict[str, float] = {"cartpole": 450.0, "pendulum": -250.0, "recall": 0.9}


def run(task: str, seed: int, memoryless: bool) -> dict[str, object]:
    """Train and evaluate one seed; return the record (also written to the results folder)."""
    settings, bar = PRESETS[task], BARS[task]
    with tempfile.TemporaryDirectory() as tmp:
        config = PPOConfig.from_preset(task, seed=seed, progress=False, run_dir=tmp, recurrent=not memoryless)
        trainer = RecurrentPPO(config)
        summary = trainer.train()
        result = trainer.evaluate(20)
        trainer.close()
    record = {
        "task": task, "variant": "memoryless" if memoryless else "recurrent", "seed": seed,
        "settings": settings, "bar": bar,
        "eval_mean": result["mean_return"], "eval_std": result["std_return"],
        "passed": result["mean_return"] >= bar, "train_seconds": summary["time"],
        "steps_per_second": summary["steps_per_second"], "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{task}-{record['variant']}-seed{seed}.json"
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"{task} {record['variant']} seed {seed}: eval {result['mean_return']:.1f}"
          f" +- {result['std_return']:.1f} (bar {bar}), {summary['steps_per_second']:.0f} steps/s")
    return record


def summary() -> str:
    """A markdown table of every stored result."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        rows.setdefault((record["task"], record["variant"]), []).append(record)
    lines = ["| task | policy | seeds | eval mean per seed (20 episodes, deterministic) | bar |"
             " seeds at bar | median steps/s |", "|---|---|---|---|---|---|---|"]
    for (task, variant), records in sorted(rows.items()):
        records.sort(key=lambda r: r["seed"])
        evals = ", ".join(f"{r['eval_mean']:.1f}" for r in records)
        passed = sum(r["passed"] for r in records)
        speed = np.median([r["steps_per_second"] for r in records])
        lines.append(f"| {task} | {variant} | {len(records)} | {evals} | >= {records[0]['bar']} |"
                     f" {passed}/{len(records)} | {speed:.0f} |")
    text = "\n".join(lines) + "\n"
    (RESULTS.parent / "learning.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(PRESETS), help="task to train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run")
    parser.add_argument("--memoryless", action="store_true", help="train the memoryless (feed-forward) twin")
    parser.add_argument("--summary", action="store_true", help="print and write the table of all results")
    args = parser.parse_args()
    if args.task:
        for seed in args.seeds:
            run(args.task, seed, args.memoryless)
    if args.summary or not args.task:
        print(summary())


if __name__ == "__main__":
    main()
