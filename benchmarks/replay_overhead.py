"""What replayable envs cost: per vector step, and once per resume (the replay).

``make_vector_env`` wraps every env in a recorder (it copies each action and hashes each
observation) so that checkpoints need no pickled env. This measures, in one run with the variants
interleaved round by round, one vector step of ``E`` envs of a task built by ``make_vector_env``
against the same ``SyncVectorEnv`` of plain ``gymnasium.make`` envs, and the time ``load_env_state``
takes to replay the live episodes into fresh envs. Writes ``benchmarks/results/replay_overhead.json``
and prints a markdown table with versions, CPU and commit.

Run: ``python benchmarks/replay_overhead.py [--env-id ID] [--envs 8] [--rounds 200]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import tether.envs  # noqa: F401  (registers the tether/ ids)
from tether.envs import make_vector_env
from tether.envs.factory import env_state, load_env_state

RESULTS = Path(__file__).resolve().parent / "results" / "replay_overhead.json"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _time_steps(venv: gym.vector.VectorEnv[Any, Any, Any], actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        venv.step(a)
    return (time.perf_counter() - start) / len(actions)


def main() -> None:
    """Measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="tether/CartPole-NoVel-v0")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=200, help="interleaved rounds")
    parser.add_argument("--inner", type=int, default=50, help="vector steps timed together per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {
        "gymnasium.make": gym.vector.SyncVectorEnv([lambda: gym.make(args.env_id)] * args.envs),
        "make_vector_env": make_vector_env(args.env_id, args.envs),
    }
    space = variants["make_vector_env"].action_space
    space.seed(0)
    for venv in variants.values():
        venv.reset(seed=0)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        actions = np.stack([space.sample() for _ in range(args.inner)])
        for name, venv in variants.items():
            times[name].append(_time_steps(venv, actions))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    # The replay a resume does: the live episodes of every env, into fresh envs.
    live = variants["make_vector_env"]
    lengths = [len(r["actions"]) for r in env_state(live, np.zeros(args.envs, dtype=bool))["episodes"]]
    replays = []
    for _ in range(20):
        saved = env_state(live, np.zeros(args.envs, dtype=bool))
        fresh = make_vector_env(args.env_id, args.envs)
        fresh.reset(seed=1)
        start = time.perf_counter()
        load_env_state(fresh, saved)
        replays.append(time.perf_counter() - start)
        fresh.close()
        live.step(space.sample())
    for venv in variants.values():
        venv.close()
    result = {
        "env_id": args.env_id, "num_envs": args.envs, "rounds": args.rounds, "inner": args.inner,
        "median_step_seconds": medians,
        "ratio": medians["make_vector_env"] / medians["gymnasium.make"],
        "replay_median_seconds": statistics.median(replays),
        "replayed_steps_per_env_at_first_measure": lengths,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "gymnasium": gym.__version__, "numpy": np.__version__},
        "cpu": platform.processor() or platform.machine(), "commit": _commit(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{args.env_id}, {args.envs} envs, gymnasium {gym.__version__}, torch {torch.__version__},"
          f" {result['cpu']}, commit {result['commit']}")
    print("| variant | median µs per vector step |")
    print("|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value * 1e6:.1f} |")
    print(f"ratio make_vector_env / gymnasium.make: {result['ratio']:.3f}")
    print(f"replay of the live episodes ({min(lengths)}-{max(lengths)} steps per env):"
          f" {result['replay_median_seconds'] * 1e3:.2f} ms (median of 20)")


if __name__ == "__main__":
    main()
