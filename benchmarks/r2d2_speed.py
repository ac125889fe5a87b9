"""R2D2's speed on tether's tasks: env steps/s, learner updates/s, where an iteration's time goes.

For each task (the ``cartpole`` and ``recall`` presets of :mod:`tether.r2d2.presets`) a fresh
:class:`tether.r2d2.R2D2` fills its replay up to ``learning_starts`` (not timed), then trains
``--steps`` more env steps (timed, wall clock): env steps per second of the whole loop
(collection, learner updates, staleness measure, metrics records) and learner updates per second.

The split of an iteration's time is measured from outside the library, by wrapping the names the
trainer calls (``perf_counter`` around each call, nothing added to the library): the collector's
``collect`` (collection), the replay's ``sample``, :func:`tether.r2d2.learner.learner_step` (the
replay of the sequences through both networks and the loss), the time from its return to the
replay's ``update_priorities`` (backward, gradient clip, optimiser step), ``update_priorities``
itself, and :func:`tether.r2d2.staleness.measure_staleness` (Δq); the rest (ε, target-network
copies, metrics records, the final checkpoint) is what the loop spends outside them.

Each round runs every task twice, with the preset's ``staleness_every`` and with 0 (the order
alternates from round to round; the same seed, so both runs do the same work but the measure):
the staleness measure's cost is the ratio of the medians of the timed seconds (and of the
process's CPU seconds, which other jobs on a shared machine disturb less). RecurrentPPO on
the same tasks' PPO presets (:mod:`tether.ppo.presets`) runs ``--steps`` env steps once per task
in round 0, timed the same way, for a side-by-side rate. Mid-run checkpoints are turned off.

Run: ``python benchmarks/r2d2_speed.py [--rounds N] [--steps S] [--tasks cartpole recall]
[--out benchmarks/results/r2d2_speed.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import tether.r2d2.trainer as r2d2_trainer
from tether.bench import provenance
from tether.ppo import PPOConfig, RecurrentPPO
from tether.r2d2 import R2D2, R2D2Config

#: The parts of an iteration, in the order the trainer runs them.
PARTS = ("collection", "sample", "replay_loss", "backward_optimiser", "update_priorities", "staleness")
NO_CHECKPOINTS = 10**9  # checkpoint_every: only the final checkpoint of a train() call


class Timers:
    """Seconds spent in each wrapped call, and when the last learner step returned."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.learned_at: float | None = None

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its wall time added to ``part``."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.seconds[part] += ended - started
                if part == "replay_loss":
                    self.learned_at = ended
        return timed

    def wrap_update(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``update_priorities``, also closing the backward + optimiser span the learner step opened."""
        timed = self.wrap("update_priorities", fn)

        def update(*args: Any, **kwargs: Any) -> Any:
            if self.learned_at is not None:
                self.seconds["backward_optimiser"] += time.perf_counter() - self.learned_at
                self.learned_at = None
            return timed(*args, **kwargs)
        return update

    def reset(self) -> None:
        """Forget what was counted so far."""
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.learned_at = None


@contextlib.contextmanager
def instrumented(trainer: R2D2) -> Iterator[Timers]:
    """Wrap the calls of ``trainer``'s loop with timers; the module's names are restored after."""
    timers = Timers()
    # the trainer module's names of the learner step and the staleness measure, and their parts
    patched = {"learner_step": "replay_loss", "measure_staleness": "staleness"}
    originals = {name: getattr(r2d2_trainer, name) for name in patched}
    replay, collector = trainer.replay, trainer.run.collector
    replay.sample = timers.wrap("sample", replay.sample)  # type: ignore[method-assign]
    replay.update_priorities = timers.wrap_update(replay.update_priorities)  # type: ignore[method-assign]
    collector.collect = timers.wrap("collection", collector.collect)  # type: ignore[method-assign]
    for name, part in patched.items():
        setattr(r2d2_trainer, name, timers.wrap(part, originals[name]))
    try:
        yield timers
    finally:
        for name, fn in originals.items():
            setattr(r2d2_trainer, name, fn)


def run_r2d2(task: str, steps: int, seed: int, folder: Path, staleness_every: int | None) -> dict[str, Any]:
    """One R2D2 run: fill the replay to ``learning_starts``, then time ``steps`` more env steps."""
    preset = R2D2Config.from_preset(task)
    extra = {} if staleness_every is None else {"staleness_every": staleness_every}
    config = R2D2Config.from_preset(task, total_steps=preset.learning_starts + steps, seed=seed,
                                    run_dir=str(folder), progress=False, checkpoint_every=NO_CHECKPOINTS,
                                    **extra)
    trainer = R2D2(config, overwrite=True)
    try:
        per_collect = config.collect_steps * config.num_envs
        fill = math.ceil(config.learning_starts / per_collect) - 1  # iterations without an update
        with instrumented(trainer) as timers:
            started = time.perf_counter()
            trainer.train(max_iterations=fill)
            fill_seconds = time.perf_counter() - started
            if trainer.update:
                raise RuntimeError(f"{task}: {trainer.update} updates before learning_starts")
            timers.reset()
            steps0, iteration0 = trainer.steps, trainer.iteration
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.train()
            seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
            parts = dict(timers.seconds)
        iterations = trainer.iteration - iteration0
        if trainer.update != iterations * config.updates_per_collect:
            raise RuntimeError(f"{task}: {trainer.update} updates in {iterations} timed iterations")
    finally:
        trainer.close()
    parts["rest"] = seconds - sum(parts.values())
    return {"staleness_every": config.staleness_every, "steps": trainer.steps - steps0,
            "updates": trainer.update, "iterations": iterations, "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "fill_steps": steps0, "fill_seconds": fill_seconds, "part_seconds": parts}


def run_ppo(task: str, steps: int, seed: int, folder: Path) -> dict[str, Any]:
    """One RecurrentPPO run of ``steps`` env steps on the task's PPO preset, timed as R2D2's."""
    config = PPOConfig.from_preset(task, total_steps=steps, seed=seed, run_dir=str(folder), progress=False,
                                   checkpoint_every=NO_CHECKPOINTS)
    trainer = RecurrentPPO(config, overwrite=True)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = trainer.train()
        seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        trainer.close()
    return {"steps": summary["steps"], "updates": summary["updates"], "seconds": seconds,
            "cpu_seconds": cpu_seconds, "steps_per_second": summary["steps"] / seconds}


def summarise(task: str, on: list[dict[str, Any]], off: list[dict[str, Any]],
              ppo: list[dict[str, Any]]) -> dict[str, Any]:
    """A task's runs and their medians: rates, the split per iteration, the staleness ratio."""
    c = R2D2Config.from_preset(task)
    seconds_on = statistics.median(r["seconds"] for r in on)
    seconds_off = statistics.median(r["seconds"] for r in off)
    steps, updates, iterations = on[0]["steps"], on[0]["updates"], on[0]["iterations"]
    split = {part: statistics.median(r["part_seconds"][part] for r in on) / iterations * 1e3
             for part in [*PARTS, "rest"]}
    learner = statistics.median(sum(r["part_seconds"][p] for p in PARTS[1:5]) for r in on)
    return {"task": task, "env_id": c.env_id, "num_envs": c.num_envs, "collect_steps": c.collect_steps,
            "updates_per_collect": c.updates_per_collect, "batch_size": c.batch_size,
            "length": c.burn_in + c.seq_len, "burn_in": c.burn_in, "learning_starts": c.learning_starts,
            "staleness_every": on[0]["staleness_every"], "steps": steps, "updates": updates,
            "iterations": iterations,
            "steps_per_second": steps / seconds_on, "updates_per_second": updates / seconds_on,
            "learner_updates_per_second": updates / learner,
            "steps_per_second_off": steps / seconds_off, "staleness_ratio": seconds_on / seconds_off,
            "staleness_ratio_cpu": statistics.median(r["cpu_seconds"] for r in on)
            / statistics.median(r["cpu_seconds"] for r in off),
            "ms_per_iteration": seconds_on / iterations * 1e3, "split_ms": split,
            "ppo_steps": ppo[0]["steps"],
            "ppo_steps_per_second": statistics.median(r["steps_per_second"] for r in ppo),
            "runs": {"on": on, "off": off, "ppo": ppo}}


def main() -> None:
    """Measure every task, print a summary, write the results file (with ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (staleness on / off)")
    parser.add_argument("--steps", type=int, default=8_192, help="timed env steps after learning starts")
    parser.add_argument("--tasks", nargs="+", default=["cartpole", "recall"],
                        choices=sorted(R2D2Config.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": [], "ppo": []}
            for r in range(args.rounds):
                for side in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    folder = Path(tmp) / f"{task}-{side}-{r}"
                    every = 0 if side == "off" else None  # None: the preset's
                    runs[side].append(run_r2d2(task, args.steps, args.seed, folder, every))
                    print(f"{task} round {r} staleness {side}: {runs[side][-1]['seconds']:.2f} s", flush=True)
                if r == 0:
                    runs["ppo"].append(run_ppo(task, args.steps, args.seed, Path(tmp) / f"{task}-ppo"))
            row = summarise(task, runs["on"], runs["off"], runs["ppo"])
            rows.append(row)
            split = ", ".join(f"{k} {v:.2f}" for k, v in row["split_ms"].items())
            print(f"{task}: R2D2 {row['steps_per_second']:.0f} env steps/s, {row['updates_per_second']:.1f}"
                  f" updates/s (learner alone {row['learner_updates_per_second']:.1f}/s); staleness on / off"
                  f" {row['staleness_ratio']:.3f}; RecurrentPPO {row['ppo_steps_per_second']:.0f} env"
                  f" steps/s; ms per iteration: {split}", flush=True)
    result = {"benchmark": "r2d2_speed",
              "command": f"python benchmarks/r2d2_speed.py --rounds {args.rounds} --steps {args.steps}",
              "rounds": args.rounds, "steps": args.steps, "seed": args.seed, "torch_threads": 1,
              "device": "cpu",
              "tasks": rows, "provenance": provenance.collect()}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
