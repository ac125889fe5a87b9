"""Learning on Recall with non-Box observations: recurrent PPO against its memoryless twin.

Tasks: ``tether/RecallDiscrete-v0`` (one Discrete observation) and ``tether/RecallDict-v0`` (a
Dict of a Discrete cue and a Discrete phase), both with Recall's defaults (``delay=8``,
``num_cues=4``: a memoryless policy earns 0.25 in expectation, the bar is 0.9). Every cell
(task × variant × seed) trains ``tether.ppo.RecurrentPPO`` with the SETTINGS below in a fresh
subprocess with one torch thread, then runs the deterministic 20-episode evaluation (seed 10 000)
and records the mean return. ``--jobs`` cells run at once; finished cells are kept in the results
file and skipped when the script is run again with the same settings and tether revision.

Run: ``python benchmarks/learning_obs.py --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 2``; it writes
``benchmarks/results/learning_obs.json`` (per-cell records, settings, versions, hardware, commit)
and ``benchmarks/results/learning_obs.md`` (the table).

Evaluation: the trainer's ``evaluate`` turns observations into one float array, which a Dict
observation is not, so for the Dict task this script evaluates with :func:`evaluate`, the same
protocol (episodes spread over 8 envs, deterministic, seed 10 000) with the observations handed
to the policy as the collector hands them (``tether.rollout._obs.to_tensor``). On the Discrete
task both are run and must agree (recorded as ``eval_check``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import tether
import tether.envs  # registers the tether/ ids (also in the spawned cells)
from tether.envs import make_vector_env
from tether.modes import mode
from tether.ppo import PPOConfig, RecurrentPPO
from tether.rollout import TrackedVectorEnv
from tether.rollout._obs import to_tensor

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "learning_obs"
TASKS = {"discrete": "tether/RecallDiscrete-v0", "dict": "tether/RecallDict-v0"}
VARIANTS = ("recurrent", "memoryless")
BAR = 0.9

#: The settings of every cell (the proposed ``recall-discrete`` / ``recall-dict`` presets): the
#: Recall preset's, with only the env id changed.
SETTINGS: dict[str, Any] = {"total_steps": 50_000, "n_steps": 64, "minibatch_envs": 2, "gae_lambda": 0.95,
                            "ent_coef": 0.01, "learning_rate": 1e-3}


def evaluate(trainer: RecurrentPPO, episodes: int = 20, *, seed: int = 10_000) -> dict[str, Any]:
    """The trainer's deterministic evaluation, with tree observations passed through ``to_tensor``."""
    c = trainer.config
    envs = max(1, min(8, episodes))
    tracked = TrackedVectorEnv(make_vector_env(c.env_id, envs))
    wanted = np.array([(episodes + i) // envs for i in range(envs)])
    done_count = np.zeros(envs, dtype=np.int64)
    running = np.zeros(envs)
    returns: list[float] = []
    trainer.policy.eval()
    with torch.no_grad(), mode(c.mode):  # type: ignore[arg-type]
        obs, _ = tracked.reset(seed=seed)
        state = trainer.policy.initial_state(envs, tracked.clock)
        while (done_count < wanted).any():
            result = trainer.policy.act(to_tensor(obs, trainer.device, torch.float32), state, None, True)
            step = tracked.step(trainer.policy.env_actions(result.actions))
            running += np.where(step.valid, step.reward, 0.0)
            for row in np.flatnonzero(step.done):
                if done_count[row] < wanted[row]:
                    returns.append(float(running[row]))
                    done_count[row] += 1
                running[row] = 0.0
            state = result.state.reset(step.episode_starts)
            obs = step.obs
    tracked.close()
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)), "returns": returns}


def run_cell(task: str, variant: str, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one cell (in this process); return its record."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = PPOConfig(env_id=TASKS[task], seed=seed, recurrent=variant == "recurrent", progress=False,
                           run_dir=tmp, **settings)
        trainer = RecurrentPPO(config)
        summary = trainer.train()
        result = evaluate(trainer)
        record: dict[str, Any] = {}
        if task == "discrete":  # the trainer's own evaluation must agree with this script's
            record["eval_check"] = trainer.evaluate(20)["returns"] == result["returns"]
        trainer.close()
    record.update({
        "task": task, "env_id": TASKS[task], "variant": variant, "seed": seed,
        "eval_mean": result["mean_return"], "eval_std": result["std_return"], "returns": result["returns"],
        "passed": result["mean_return"] >= BAR, "train_seconds": summary["time"],
        "steps_per_second": summary["steps_per_second"],
    })
    return record


def environment() -> dict[str, Any]:
    """Versions, hardware and the tether revision of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=False, cwd=Path(tether.__file__).parent)
        revision = done.stdout.strip() or None
    except OSError:
        revision = None
    return {"tether": tether.__version__, "tether_revision": revision, "torch": torch.__version__,
            "gymnasium": gym.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": 1}


def table(cells: list[dict[str, Any]]) -> str:
    """A markdown table: per task and variant, the evaluation of each seed and the seeds at the bar."""
    lines = ["| task | policy | seeds | eval mean per seed (20 episodes, deterministic) | seeds >= "
             f"{BAR} | median steps/s |", "|---|---|---|---|---|---|"]
    for task, env_id in TASKS.items():
        for variant in VARIANTS:
            rows = sorted((c for c in cells if c["task"] == task and c["variant"] == variant),
                          key=lambda c: c["seed"])
            if rows:
                evals = ", ".join(f"{c['eval_mean']:.2f}" for c in rows)
                speed = np.median([c["steps_per_second"] for c in rows])
                lines.append(f"| {env_id} | {variant} | {len(rows)} | {evals} |"
                             f" {sum(c['passed'] for c in rows)}/{len(rows)} | {speed:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the missing cells, then write the results file and the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="cells at once (each in its own process)")
    parser.add_argument("--name", default=NAME, help="results file stem under benchmarks/results/")
    parser.add_argument("--total-steps", type=int, default=SETTINGS["total_steps"],
                        help="training budget per cell (the other settings stay SETTINGS')")
    args = parser.parse_args()
    settings = {**SETTINGS, "total_steps": args.total_steps}
    path = RESULTS / f"{args.name}.json"
    env = environment()
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    same = old.get("settings") == settings and old.get("environment", {}).get("tether_revision") == env[
        "tether_revision"]
    cells: list[dict[str, Any]] = old.get("cells", []) if same else []
    done = {(c["task"], c["variant"], c["seed"]) for c in cells}
    todo = [(t, v, s) for s in args.seeds for t in args.tasks for v in args.variants if (t, v, s) not in done]
    RESULTS.mkdir(parents=True, exist_ok=True)
    ctx = __import__("multiprocessing").get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run_cell, *cell, settings) for cell in todo]
        for future in futures:
            record = future.result()
            cells.append(record)
            print(f"{record['env_id']} {record['variant']} seed {record['seed']}: eval"
                  f" {record['eval_mean']:.2f} ({record['steps_per_second']:.0f} steps/s)", flush=True)
            path.write_text(json.dumps({"settings": settings, "bar": BAR, "environment": env,
                                        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                                        "cells": cells}, indent=2), encoding="utf-8")
    text = table(cells)
    (RESULTS / f"{args.name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
