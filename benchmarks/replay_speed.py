"""What R2D2's sequence replay costs per learner batch: ``sample`` and ``update_priorities``.

A :class:`tether.replay.SequenceReplay` is filled with synthetic steps of ``E`` envs (a Box
observation, a Discrete action, an LSTM state stamped by a clock with random episode ends, 2 % per
step) until it holds ``capacity`` sequences, then timed per batch, rounds interleaved:

- ``sample``: draw ``B`` sequences of ``burn_in + seq_len`` steps (prioritised, sum tree) and
  gather them, with the alignment checks (strict mode) and without (off mode);
- ``update_priorities``: set ``B`` new priorities (the sum tree's update);
- ``episode_history``: the way back to the episodes' starts (``max_steps`` = 200), for Δq (the
  share of the batch's rows it covers is recorded with it).

Shapes: the paper's (seq_len 40, burn-in 40, so length 80, period 40, batch 64) and smaller ones.
Medians of the thread CPU time (what this thread computed, without the time it waited for a core
on a shared machine) and of the wall time, in milliseconds per batch.

Run: ``python benchmarks/replay_speed.py [--rounds N] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether import EpisodeClock, RecurrentState, mode
from tether.bench import provenance
from tether.replay import SequenceReplay
from tether.rollout import Transition

#: (seq_len, burn_in, period, batch, obs_dim): the paper's shape first.
SHAPES = [(40, 40, 40, 64, 4), (40, 40, 40, 32, 4), (40, 40, 40, 64, 64), (20, 10, 15, 32, 4)]
NUM_ENVS, HIDDEN, CAPACITY = 16, 64, 2000
HISTORY_STEPS = 200  # episode_history's max_steps (the R2D2 default staleness_history is 1 000)


def _fill(replay: SequenceReplay, obs_dim: int, seed: int) -> None:
    """Write synthetic steps until the buffer holds ``capacity`` sequences."""
    rng = np.random.default_rng(seed)
    clock = EpisodeClock(NUM_ENVS)
    starts = np.ones(NUM_ENVS, dtype=bool)
    replay.begin(0, clock)
    while len(replay) < replay.capacity:
        h, c = torch.randn(1, NUM_ENVS, HIDDEN), torch.randn(1, NUM_ENVS, HIDDEN)
        state = RecurrentState.from_tensors((h, c), clock=clock)
        done = rng.random(NUM_ENVS) < 0.02
        terminated = done & (rng.random(NUM_ENVS) < 0.5)
        obs = torch.randn(NUM_ENVS, obs_dim)
        replay.write(Transition(
            obs=obs, actions=torch.from_numpy(rng.integers(0, 4, NUM_ENVS)), rewards=rng.random(NUM_ENVS),
            terminated=terminated, truncated=done & ~terminated, episode_starts=starts,
            valid=np.ones(NUM_ENVS, dtype=bool), state=state, extras={},
            bootstrap_values=torch.zeros(NUM_ENVS), final_obs=obs.numpy(), action_masks=None))
        clock.advance(done)
        starts = done


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.thread_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3


def _measure(shape: tuple[int, int, int, int, int], rounds: int) -> dict[str, Any]:
    seq_len, burn_in, period, batch, obs_dim = shape
    replay = SequenceReplay(CAPACITY, NUM_ENVS, seq_len=seq_len, burn_in=burn_in, period=period)
    _fill(replay, obs_dim, seed=0)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(1)
    sampled = replay.sample(batch, generator=generator)

    def sample_strict() -> None:
        with mode("strict"):
            replay.sample(batch, generator=generator)

    def sample_off() -> None:
        with mode("off"):
            replay.sample(batch, generator=generator)

    def update() -> None:
        replay.update_priorities(sampled.indices, rng.random(batch))

    def history() -> None:
        replay.episode_history(sampled, max_steps=HISTORY_STEPS)

    cases = {"sample_strict": sample_strict, "sample_off": sample_off, "update_priorities": update,
             "episode_history": history}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(_timed(fn))
    covered = len(replay.episode_history(sampled, max_steps=HISTORY_STEPS).rows)
    result: dict[str, Any] = {"seq_len": seq_len, "burn_in": burn_in, "length": seq_len + burn_in,
                              "period": period, "batch": batch, "obs_dim": obs_dim, "num_envs": NUM_ENVS,
                              "hidden": HIDDEN, "capacity": CAPACITY, "replay_bytes": replay.nbytes,
                              "history_rows_covered": covered / batch}
    for name, values in times.items():
        result[f"{name}_cpu_ms"] = statistics.median(v[0] for v in values)
        result[f"{name}_wall_ms"] = statistics.median(v[1] for v in values)
    return result


def main() -> None:
    """Measure every shape, print a summary, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for shape in SHAPES:
        row = _measure(shape, args.rounds)
        rows.append(row)
        print(f"length {row['length']:3d} (burn-in {row['burn_in']}), batch {row['batch']:3d},"
              f" obs {row['obs_dim']:3d}:"
              f" sample {row['sample_strict_cpu_ms']:.3f} ms strict / {row['sample_off_cpu_ms']:.3f} ms off,"
              f" update_priorities {row['update_priorities_cpu_ms']:.3f} ms,"
              f" episode_history {row['episode_history_cpu_ms']:.3f} ms (thread CPU, median)")
    result = {"benchmark": "replay_speed",
              "command": f"python benchmarks/replay_speed.py --rounds {args.rounds}",
              "rounds": args.rounds, "torch_threads": 1, "device": "cpu", "prioritized": True,
              "history_max_steps": HISTORY_STEPS, "shapes": rows,
              "provenance": provenance.collect()}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
