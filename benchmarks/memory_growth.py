"""Process memory over many short episodes: tether's collector vs the same loop written naively.

Both variants run a grad-enabled recurrent policy (an LSTM whose parameters require grad) over
``--episodes`` short episodes (5-10 steps) in ``--num-envs`` envs:

- ``tether``: :class:`tether.rollout.RolloutCollector` (collection under ``torch.no_grad``, the state
  reset through the clock, stored as snapshots, carried across rollouts detached);
- ``naive``: the textbook loop without ``no_grad``, the state reset by multiplying with
  ``1 - done`` and never detached, so its autograd graph grows by one LSTM step per env step.

Each variant runs in a fresh subprocess (so one cannot reuse the other's freed memory). Samples of
RSS, of the autograd nodes reachable from the live state and of live tensors carrying a graph are
taken about 40 times; the script prints a markdown table, writes it with the samples to
``benchmarks/results/memory_growth.{md,json}`` and plots ``memory_growth.png`` (matplotlib).

Run: ``python benchmarks/memory_growth.py`` (about a minute on one core; ``--episodes`` to change).
Exits non-zero when the tether variant grows by 5 % or more after warm-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tether import EpisodeClock, RecurrentState, track
from tether.bench.provenance import collect
from tether.policy import ActResult, EvalResult
from tether.rollout import RolloutCollector
from tether.sequence import unroll
from tether.testing import graph_size, rss_bytes

RESULTS = Path(__file__).resolve().parent / "results"
# The naive variant's graph is parked here until the process exits: freeing an autograd chain of
# ~10^5 nodes recurses deep enough to overflow the C stack (one more cost of the naive loop).
_KEEP_ALIVE: list[Any] = []


@dataclasses.dataclass
class Args:
    """Every setting of the benchmark (each is also a command-line flag)."""

    episodes: int = 10_000  # finished episodes per variant
    num_envs: int = 8  # vector env rows
    num_steps: int = 128  # steps per collector rollout (and per naive "rollout" list)
    hidden: int = 64  # LSTM hidden size
    min_len: int = 5  # shortest episode
    max_len: int = 10  # longest episode
    samples: int = 40  # memory samples per variant
    warmup: float = 0.1  # fraction of the episodes before the baseline sample
    seed: int = 0
    variant: str = ""  # internal: run one variant in this process and print its samples as JSON
    out: str = str(RESULTS)  # where the PNG, JSON and markdown go


class ShortEnv(gym.Env[np.ndarray, np.int64]):
    """Episodes of a random length in [min_len, max_len], observations of 8 noisy floats."""

    def __init__(self, min_len: int, max_len: int) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.bounds = (min_len, max_len)
        self.left = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(self.bounds[0], self.bounds[1] + 1))
        return self.np_random.standard_normal(8).astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.left -= 1
        obs = self.np_random.standard_normal(8).astype(np.float32)
        return obs, float(action == 0), self.left == 0, False, {}


class Policy(nn.Module):
    """Linear encoder -> tracked LSTM -> categorical head and value head (the rollout protocol)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(8, hidden)
        self.core = track(nn.LSTM(hidden, hidden))
        self.pi = nn.Linear(hidden, 4)
        self.v = nn.Linear(hidden, 1)

    def initial_state(self, batch_size: int, clock: EpisodeClock | None = None) -> RecurrentState:
        return self.core.initial_state(batch_size, clock)

    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> ActResult:
        y, state = self.core(torch.tanh(self.encoder(obs)).unsqueeze(0), state)
        dist = torch.distributions.Categorical(logits=self.pi(y[0]))
        actions = dist.sample()
        return ActResult(actions, dist.log_prob(actions), self.v(y[0]).squeeze(-1), state)

    def value(self, obs: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        y, _ = self.core(torch.tanh(self.encoder(obs)).unsqueeze(0), state, bootstrap=bootstrap)
        return self.v(y[0]).squeeze(-1)

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        return actions.cpu().numpy()

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, episode_starts: Any,
                         initial_state: RecurrentState, masks: Any = None,
                         return_state: bool = False) -> EvalResult:
        y, final = unroll(self.core, torch.tanh(self.encoder(obs)), episode_starts, initial_state)
        dist = torch.distributions.Categorical(logits=self.pi(y))
        return EvalResult(dist.log_prob(actions), dist.entropy(), self.v(y).squeeze(-1),
                          final if return_state else None)


# ------------------------------------------------------------------------------------------------
# measurements
def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    return rss_bytes() / 2**20


def graph_nodes(tensors: tuple[torch.Tensor, ...]) -> int:
    """Autograd nodes reachable from the tensors' grad_fn (0 for detached tensors)."""
    return graph_size(tensors)


def grad_tensors() -> int:
    """Live Python tensor objects that carry an autograd graph (grad_fn set)."""
    with warnings.catch_warnings():  # touching every object wakes deprecated torch aliases
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)


def sample(episodes: int, state: tuple[torch.Tensor, ...]) -> dict[str, float]:
    gc.collect()
    return {"episodes": episodes, "rss_mb": rss_mb(), "graph_nodes": graph_nodes(state),
            "grad_tensors": grad_tensors()}


def make_env(args: Args) -> gym.vector.SyncVectorEnv:
    env = gym.vector.SyncVectorEnv([lambda: ShortEnv(args.min_len, args.max_len)] * args.num_envs)
    env.reset(seed=args.seed)
    return env


def run_tether(args: Args) -> list[dict[str, float]]:
    """The collector: rollouts of num_steps until `episodes` episodes finished."""
    policy = Policy(args.hidden)
    collector = RolloutCollector(make_env(args), policy, num_steps=args.num_steps, seed=args.seed)
    every = max(1, args.episodes // args.samples)
    out: list[dict[str, float]] = []
    while collector.num_episodes < args.episodes:
        collector.collect()
        if not out or collector.num_episodes >= out[-1]["episodes"] + every:
            assert collector.state is not None
            out.append(sample(collector.num_episodes, collector.state.tensors))
    assert collector.state is not None
    out.append(sample(collector.num_episodes, collector.state.tensors))
    return out


def run_naive(args: Args) -> list[dict[str, float]]:
    """The same loop, naively: grad on, state reset by `* (1 - done)`, never detached."""
    policy = Policy(args.hidden)
    lstm = policy.core.module  # the plain nn.LSTM: tether's checks would stop this loop
    env = make_env(args)
    obs, _ = env.reset(seed=args.seed)
    h = torch.zeros(1, args.num_envs, args.hidden)
    c = torch.zeros(1, args.num_envs, args.hidden)
    values: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []
    episodes, steps = 0, 0
    every = max(1, args.episodes // args.samples)
    out: list[dict[str, float]] = []
    while episodes < args.episodes:
        x = torch.tanh(policy.encoder(torch.as_tensor(obs))).unsqueeze(0)
        y, (h, c) = lstm(x, (h, c))
        dist = torch.distributions.Categorical(logits=policy.pi(y[0]))
        action = dist.sample()
        values.append(policy.v(y[0]).squeeze(-1))
        log_probs.append(dist.log_prob(action))
        obs, _, terminated, truncated, _ = env.step(action.numpy())
        done = torch.as_tensor(terminated | truncated, dtype=torch.float32).view(1, -1, 1)
        h, c = h * (1 - done), c * (1 - done)  # reset rows, but the graph behind them stays
        episodes += int((terminated | truncated).sum())
        steps += 1
        if steps % args.num_steps == 0:
            values.clear()  # the "buffer" is refilled every rollout, like the collector's
            log_probs.clear()
            if not out or episodes >= out[-1]["episodes"] + every:
                out.append(sample(episodes, (h, c)))
    out.append(sample(episodes, (h, c)))
    _KEEP_ALIVE.append((h, c))
    return out


# ------------------------------------------------------------------------------------------------
# driver
def summarise(name: str, samples: list[dict[str, float]], warmup: int, seconds: float) -> dict[str, Any]:
    base = next(s for s in samples if s["episodes"] >= warmup)
    end = samples[-1]
    return {
        "variant": name, "episodes": int(end["episodes"]), "seconds": round(seconds, 1),
        "rss_warm_mb": round(base["rss_mb"], 1), "rss_end_mb": round(end["rss_mb"], 1),
        "growth_mb": round(end["rss_mb"] - base["rss_mb"], 1),
        "growth_pct": round(100.0 * (end["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 2),
        "graph_nodes_end": int(end["graph_nodes"]), "grad_tensors_end": int(end["grad_tensors"]),
    }


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"torch {torch.__version__}, gymnasium {gym.__version__}, Python {platform.python_version()},"
            f" {cpu}, {torch.get_num_threads()} thread(s)")


def table(rows: list[dict[str, Any]], args: Args) -> str:
    lines = [
        f"Memory over {args.episodes} episodes of {args.min_len}-{args.max_len} steps, {args.num_envs} envs,"
        f" LSTM {args.hidden}, params require grad; baseline after {args.warmup:.0%} of the episodes.",
        "",
        "| variant | episodes | RSS after warm-up (MiB) | RSS at end (MiB) | growth | graph nodes at end"
        " | live graph tensors at end | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['episodes']} | {r['rss_warm_mb']} | {r['rss_end_mb']} |"
        f" {r['growth_mb']:+} MiB ({r['growth_pct']:+.2f} %) | {r['graph_nodes_end']} |"
        f" {r['grad_tensors_end']} | {r['seconds']} |" for r in rows
    ]
    lines += ["", f"Measured with {environment()}."]
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, float]]], path: Path, args: Args) -> bool:
    try:
        import matplotlib  # noqa: PLC0415 - optional, only for the figure

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, (ax_rss, ax_graph) = plt.subplots(1, 2, figsize=(11, 4))
    for name, samples in results.items():
        eps = [s["episodes"] for s in samples]
        ax_rss.plot(eps, [s["rss_mb"] for s in samples], marker=".", label=name)
        ax_graph.plot(eps, [s["graph_nodes"] for s in samples], marker=".", label=name)
    ax_rss.set(xlabel="finished episodes", ylabel="process RSS (MiB)", title="memory")
    ax_graph.set(xlabel="finished episodes", ylabel="autograd nodes behind the live state",
                 title="graph carried by the state")
    for ax in (ax_rss, ax_graph):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{args.num_envs} envs, episodes of {args.min_len}-{args.max_len} steps,"
                 f" LSTM {args.hidden}, grad-enabled policy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def parse() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Args):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    return Args(**vars(parser.parse_args()))


def main() -> int:
    args = parse()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if args.variant:
        samples = run_tether(args) if args.variant == "tether" else run_naive(args)
        print(json.dumps(samples), flush=True)
        sys.stderr.flush()
        os._exit(0)  # skip the teardown of the naive variant's graph (see _KEEP_ALIVE)
    results: dict[str, list[dict[str, float]]] = {}
    rows = []
    for name in ("tether", "naive"):
        argv = [sys.executable, __file__, "--variant", name]
        for field in dataclasses.fields(Args):
            if field.name not in ("variant",):
                argv += ["--" + field.name.replace("_", "-"), str(getattr(args, field.name))]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(summarise(name, results[name], int(args.warmup * args.episodes), seconds))
    text = table(rows, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_growth.md").write_text(text + "\n")
    (out / "memory_growth.json").write_text(json.dumps(
        # The output folder is recorded without this machine's path.
        {"args": {**dataclasses.asdict(args), "out": out.name}, "summary": rows, "samples": results,
         "environment": environment(), "provenance": collect()}, indent=1))
    if plot(results, out / "memory_growth.png", args):
        print(f"\nplot: {out / 'memory_growth.png'}")
    flat = rows[0]["growth_pct"] < 5.0
    print(f"tether variant {'flat' if flat else 'GREW'}: {rows[0]['growth_pct']:+.2f} % after warm-up")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
