"""``policy.act`` against a lean hand-written step of the same network, as ratios measured in one run.

The policy is a Discrete CartPole-like one (obs 4, 2 actions, hidden 64, a separate critic:
the trainer's default ``shared_core=False``). The lean step is what a user would write by hand
for that network: both encoders, both cores as plain ``nn.LSTM`` calls on ``(h, c)`` tuples,
``log_softmax`` and the same Gumbel-max draw as the library for the action, the log-prob gathered,
the value head; no distribution objects, no checks. ``act`` runs in strict mode (every lifecycle
check of the tracked cores) and in off mode. Only the call itself is timed (the clock is advanced
outside it; the mode is set once around each batch of calls, as a user sets it). The variants
are interleaved round by round, so machine noise hits all alike; the
medians of wall and thread CPU time are compared (thread CPU time leaves out the time this thread
waited for a core on a shared machine).

Run: ``python benchmarks/act_step.py [--rounds N] [--steps N] [--out benchmarks/results/act_step.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether import EpisodeClock, mode
from tether.bench import provenance
from tether.nets import FactoredRecurrentActorCritic

BATCHES = (8, 64)
Step = Callable[[], None]


def make_policy() -> FactoredRecurrentActorCritic:
    """The CartPole-like policy: obs 4, Discrete(2), hidden 64, a separate critic."""
    torch.manual_seed(0)
    return FactoredRecurrentActorCritic(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                                        gym.spaces.Discrete(2), shared_core=False)


def lean_step(policy: FactoredRecurrentActorCritic, batch: int) -> Step:
    """The same network's step written by hand on the plain modules."""
    obs = torch.randn(batch, 4)
    actor, critic = policy.actor_core.module, policy.critic_core.module  # type: ignore[union-attr]
    head: torch.nn.Module = policy.heads.heads[0].linear  # type: ignore[assignment]
    zeros = torch.zeros(1, batch, policy.hidden_size)
    hx_pi, hx_vf = (zeros, zeros), (zeros, zeros)

    @torch.no_grad()
    def step() -> None:
        nonlocal hx_pi, hx_vf
        z, zv = policy.encoder(obs), policy.critic_encoder(obs)  # type: ignore[misc]
        y, hx_pi = actor(z.unsqueeze(0), hx_pi)
        yv, hx_vf = critic(zv.unsqueeze(0), hx_vf)
        log_probs = torch.log_softmax(head(y[0]), dim=-1)
        uniform = torch.rand(log_probs.shape).clamp(min=torch.finfo(torch.float32).tiny, max=1.0 - 1e-7)
        action = (log_probs - torch.log(-torch.log(uniform))).argmax(dim=-1)
        log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        policy.value_head(yv[0]).squeeze(-1)

    return step


def lean_cell_step(policy: FactoredRecurrentActorCritic, batch: int) -> Step:
    """The hand-written step on the cell ops (``torch.lstm_cell``), which ``act`` itself runs where
    they beat the sequence op (see ``benchmarks/step_kernels.py``): the ratio to this one is
    tether's own overhead, with the kernel choice taken out."""
    obs = torch.randn(batch, 4)
    actor, critic = policy.actor_core.module, policy.critic_core.module  # type: ignore[union-attr]
    w_pi, w_vf = list(actor.parameters()), list(critic.parameters())
    head: torch.nn.Module = policy.heads.heads[0].linear  # type: ignore[assignment]
    zeros = torch.zeros(batch, policy.hidden_size)
    hx_pi, hx_vf = (zeros, zeros), (zeros, zeros)

    @torch.no_grad()
    def step() -> None:
        nonlocal hx_pi, hx_vf
        z, zv = policy.encoder(obs), policy.critic_encoder(obs)  # type: ignore[misc]
        hx_pi = torch.lstm_cell(z, hx_pi, *w_pi)
        hx_vf = torch.lstm_cell(zv, hx_vf, *w_vf)
        log_probs = torch.log_softmax(head(hx_pi[0]), dim=-1)
        uniform = torch.rand(log_probs.shape).clamp(min=torch.finfo(torch.float32).tiny, max=1.0 - 1e-7)
        action = (log_probs - torch.log(-torch.log(uniform))).argmax(dim=-1)
        log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        policy.value_head(hx_vf[0]).squeeze(-1)

    return step


def act_step(policy: FactoredRecurrentActorCritic, batch: int, check_mode: str) -> Step:
    """One ``policy.act`` call in ``check_mode`` from a state valid for the clock's tick."""
    obs = torch.randn(batch, 4)
    clock = EpisodeClock(batch)
    state = policy.initial_state(batch, clock)
    done = np.zeros(batch, dtype=bool)

    def step() -> None:
        nonlocal state
        state = policy.act(obs, state).state

    def advance() -> None:  # outside the timed call: the env step's bookkeeping
        clock.advance(done)

    step.advance = advance  # type: ignore[attr-defined]
    step.mode = check_mode  # type: ignore[attr-defined]
    return step


def measure(steps: dict[str, Step], rounds: int, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and thread-CPU seconds per call, interleaved round by round."""
    wall: dict[str, list[float]] = {n: [] for n in steps}
    cpu: dict[str, list[float]] = {n: [] for n in steps}
    for r in range(rounds + 2):  # two warm-up rounds
        for name, fn in steps.items():
            advance = getattr(fn, "advance", None)
            w = c = 0.0
            with mode(getattr(fn, "mode", "off")):  # set once around the calls, as a user sets it
                for _ in range(calls):
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    fn()
                    c += time.thread_time() - start_cpu
                    w += time.perf_counter() - start
                    if advance is not None:
                        advance()
            if r >= 2:
                wall[name].append(w / calls)
                cpu[name].append(c / calls)
    return ({n: statistics.median(v) for n, v in wall.items()},
            {n: statistics.median(v) for n, v in cpu.items()})


def main() -> None:
    """Measure, print a markdown table, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=50, help="calls per variant per round")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = make_policy()
    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        steps = {"lean": lean_step(policy, batch), "lean_cells": lean_cell_step(policy, batch),
                 "act_strict": act_step(policy, batch, "strict"),
                 "act_off": act_step(policy, batch, "off")}
        wall, cpu = measure(steps, args.rounds, args.steps)
        rows.append({"batch": batch, "wall_us": {k: v * 1e6 for k, v in wall.items()},
                     "cpu_us": {k: v * 1e6 for k, v in cpu.items()},
                     "ratio_cpu": {k: cpu[k] / cpu["lean"] for k in cpu},
                     "ratio_wall": {k: wall[k] / wall["lean"] for k in wall}})
    commit, cpu = provenance.git_state()["commit"] or "unknown", provenance.hardware()["cpu"]
    result = {"benchmark": "act_step", "commit": commit, "torch": torch.__version__,
              "gymnasium": gym.__version__, "python": platform.python_version(), "cpu": cpu,
              "threads": 1, "rounds": args.rounds, "calls_per_round": args.steps, "rows": rows,
              "provenance": provenance.collect()}
    print(f"commit {result['commit'][:12]}, torch {torch.__version__}, {cpu}, 1 thread,"
          f" {args.rounds} interleaved rounds x {args.steps} calls, medians")
    print("| B | lean (µs, cpu) | lean on cells | act strict | act off | strict / lean (cpu) |"
          " off / lean (cpu) | strict / lean (wall) | strict / lean on cells (cpu) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, q, w = r["cpu_us"], r["ratio_cpu"], r["ratio_wall"]
        print(f"| {r['batch']} | {c['lean']:.0f} | {c['lean_cells']:.0f} | {c['act_strict']:.0f} |"
              f" {c['act_off']:.0f} | {q['act_strict']:.2f}× | {q['act_off']:.2f}× |"
              f" {w['act_strict']:.2f}× | {c['act_strict'] / c['lean_cells']:.2f}× |")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
