"""What each start of a replayed chunk costs per PPO update, measured side by side in one process.

For every task of ``benchmarks/grids/sequence_start.toml`` the script builds one trainer per
variant (rollout, stored, burn-in:8, burn-in:32) with exactly the grid's settings for seed 0, but
the telemetry off (the starts' own cost, not the measuring's), runs one update of each to warm up,
then ``--rounds`` rounds in which every trainer runs one update, the order rotating from round to
round. An update is collection plus optimisation (``update_seconds`` of its metrics record). Each
start's cost is the ratio of its median to the stored start's median, on the same task; all of
them are measured in the same minutes of the same machine, so the machine's slow moments fall on
every start alike.

Run: ``python benchmarks/sequence_start_cost.py [--rounds N] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tether import PPOConfig, RecurrentPPO
from tether.bench import provenance
from tether.bench.grid import load_grid

GRID = Path(__file__).resolve().parent / "grids" / "sequence_start.toml"


def _trainers(task: Any, variants: Any, grid: Any, folder: Path) -> dict[str, RecurrentPPO]:
    out = {}
    for variant in variants:
        cell = next(c for c in grid.cells()
                    if c.task is task and c.variant is variant and c.seed == grid.seeds[0])
        settings = {**cell.settings(), "telemetry": False, "progress": False,
                    "run_dir": str(folder / f"{task.name}-{variant.name}")}
        config = (PPOConfig.from_preset(task.preset, **settings) if task.preset
                  else PPOConfig.from_dict(settings))
        out[variant.name] = RecurrentPPO(config, overwrite=True)
    return out


def _one_update(trainer: RecurrentPPO) -> float:
    """Run one more update; its ``update_seconds`` (collection + optimisation, not the checkpoint)."""
    trainer.train(max_updates=1)
    last = (trainer.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1]
    return float(json.loads(last)["update_seconds"])


def measure(rounds: int) -> dict[str, Any]:
    """Seconds per update of every start on every task, and the ratios to the stored start."""
    grid = load_grid(GRID)
    tasks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in grid.tasks:
            trainers = _trainers(task, grid.variants, grid, Path(tmp))
            names = list(trainers)
            try:
                for name in names:
                    _one_update(trainers[name])  # warm-up, not counted
                times: dict[str, list[float]] = {name: [] for name in names}
                for r in range(rounds):
                    order = names[r % len(names):] + names[:r % len(names)]
                    for name in order:
                        times[name].append(_one_update(trainers[name]))
            finally:
                for trainer in trainers.values():
                    trainer.close()
            base = statistics.median(times["stored"])
            tasks[task.name] = {
                "label": task.label,
                "variants": {name: {"label": next(v.label for v in grid.variants if v.name == name),
                                    "median_seconds": statistics.median(times[name]),
                                    "ratio_to_stored": statistics.median(times[name]) / base,
                                    "seconds": times[name]} for name in names},
            }
            line = ", ".join(f"{n} {tasks[task.name]['variants'][n]['ratio_to_stored']:.2f}x" for n in names)
            print(f"{task.name}: stored {base * 1000:.0f} ms per update; {line}", flush=True)
    return tasks


def main() -> None:
    """Measure, print a line per task, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tasks = measure(args.rounds)
    result = {"benchmark": "sequence_start_cost", "grid": "benchmarks/grids/sequence_start.toml",
              "rounds": args.rounds, "telemetry": False, "tasks": tasks, "provenance": provenance.collect()}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
