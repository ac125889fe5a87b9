"""One policy step exported to ONNX / ``.pt2`` against the eager ``policy.act``, on the CPU, in one run.

The policy is the CartPole-like one of ``benchmarks/act_step.py`` (obs 4, Discrete(2), hidden 64,
an LSTM core, a separate critic: the trainer's default ``shared_core=False``), exported with a
dynamic batch. Timed per call, at B = 1 and B = 64:

- ``act_strict`` / ``act_off``: ``policy.act`` on its lifecycle-checked state (strict mode / off),
  the clock advanced outside the timed call (as in ``act_step.py``);
- ``ort_run``: one onnxruntime ``session.run`` of the ONNX file on prepared numpy feeds, the state
  fed back (1 intra-op thread, no spinning);
- ``runtime_onnx``: ``ExportedPolicy.act`` on that file: numpy observation and done flags in,
  env-ready actions out, the state kept (the whole deployment call);
- ``runtime_pt2``: ``ExportedPolicy.act`` on the ``.pt2`` file (torch runs the program).

The variants are interleaved round by round, so machine noise hits all alike; medians of thread
CPU time (and wall time) per call are compared as ratios within the run. torch runs on one thread.
Also recorded: the exported files' sizes and how long each export took.

Run: ``python benchmarks/export_latency.py [--rounds N] [--steps N]
[--out benchmarks/results/export_latency.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.act_step import measure  # the same interleaved rounds as the act step
from tether import EpisodeClock
from tether.bench import provenance
from tether.export import ExportedPolicy, export_policy
from tether.export._deps import load_onnx, ort_session
from tether.nets import FactoredRecurrentActorCritic

BATCHES = (1, 64)
Step = Callable[[], None]


def make_policy() -> FactoredRecurrentActorCritic:
    """The CartPole-like policy: obs 4, Discrete(2), hidden 64, an LSTM core, a separate critic."""
    torch.manual_seed(0)
    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                                          gym.spaces.Discrete(2), shared_core=False)
    return policy.eval()


def act_step(policy: FactoredRecurrentActorCritic, batch: int, check_mode: str) -> Step:
    """One ``policy.act`` call in ``check_mode`` from a state valid for the clock's tick."""
    obs = torch.randn(batch, 4)
    clock = EpisodeClock(batch)
    state = policy.initial_state(batch, clock)
    done = np.zeros(batch, dtype=bool)

    def step() -> None:
        nonlocal state
        state = policy.act(obs, state, deterministic=True).state

    def advance() -> None:  # outside the timed call: the env step's bookkeeping
        clock.advance(done)

    step.advance = advance  # type: ignore[attr-defined]
    step.mode = check_mode  # type: ignore[attr-defined]
    return step


def ort_step(path: Path, batch: int) -> Step:
    """One bare ``session.run`` on prepared feeds, the next state fed back."""
    session = ort_session(load_onnx(path), path, threads=1)
    rng = np.random.default_rng(0)
    feeds = {"obs": rng.normal(size=(batch, 4)).astype(np.float32),
             "h": np.zeros((2, batch, 64), np.float32), "c": np.zeros((2, batch, 64), np.float32),
             "episode_start": np.zeros(batch, dtype=bool)}
    names = [o.name for o in session.get_outputs()]

    def step() -> None:
        out = dict(zip(names, session.run(names, feeds), strict=True))
        feeds["h"], feeds["c"] = out["next_h"], out["next_c"]

    return step


def runtime_step(path: Path, batch: int) -> Step:
    """One ``ExportedPolicy.act``: numpy in, env actions out, the state kept."""
    policy = ExportedPolicy.load(path, threads=1)
    policy.reset(batch)
    obs = np.random.default_rng(0).normal(size=(batch, 4)).astype(np.float32)
    done = np.zeros(batch, dtype=bool)

    def step() -> None:
        policy.act(obs, done)

    return step


def export_files(policy: FactoredRecurrentActorCritic, folder: Path) -> dict[str, dict[str, Any]]:
    """Export the policy to ONNX and ``.pt2`` (dynamic batch); sizes and export times."""
    files: dict[str, dict[str, Any]] = {}
    for fmt in ("onnx", "pt2"):
        start = time.perf_counter()
        result = export_policy(policy, folder / f"policy.{fmt}")
        files[fmt] = {"path": str(result.path), "bytes": result.path.stat().st_size,
                      "export_s": time.perf_counter() - start, "exporter": result.exporter}
    return files


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
    with tempfile.TemporaryDirectory() as tmp:
        files = export_files(policy, Path(tmp))
        onnx_path, pt2_path = Path(files["onnx"]["path"]), Path(files["pt2"]["path"])
        for batch in BATCHES:
            steps = {"act_strict": act_step(policy, batch, "strict"),
                     "act_off": act_step(policy, batch, "off"),
                     "ort_run": ort_step(onnx_path, batch), "runtime_onnx": runtime_step(onnx_path, batch),
                     "runtime_pt2": runtime_step(pt2_path, batch)}
            wall, cpu = measure(steps, args.rounds, args.steps)
            rows.append({"batch": batch, "wall_us": {k: v * 1e6 for k, v in wall.items()},
                         "cpu_us": {k: v * 1e6 for k, v in cpu.items()},
                         "ratio_cpu": {k: cpu[k] / cpu["act_strict"] for k in cpu},
                         "ratio_wall": {k: wall[k] / wall["act_strict"] for k in wall}})
    sizes = {fmt: {k: v for k, v in info.items() if k != "path"} for fmt, info in files.items()}
    commit, cpu_name = provenance.git_state()["commit"] or "unknown", provenance.hardware()["cpu"]
    result = {"benchmark": "export_latency", "commit": commit, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "gymnasium": gym.__version__,
              "python": platform.python_version(), "cpu": cpu_name, "threads": 1, "rounds": args.rounds,
              "calls_per_round": args.steps, "rows": rows, "files": sizes, "provenance": provenance.collect()}
    print(f"commit {commit[:12]}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__},"
          f" {cpu_name}, 1 thread, {args.rounds} interleaved rounds x {args.steps} calls,"
          " medians of thread CPU time")
    print("| B | act strict (µs) | act off | ort run | runtime onnx | runtime pt2 |"
          " act strict / runtime onnx |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["cpu_us"]
        print(f"| {r['batch']} | {c['act_strict']:.0f} | {c['act_off']:.0f} | {c['ort_run']:.0f} |"
              f" {c['runtime_onnx']:.0f} | {c['runtime_pt2']:.0f} |"
              f" {c['act_strict'] / c['runtime_onnx']:.2f}× |")
    for fmt, info in sizes.items():
        print(f"{fmt}: {info['bytes'] / 1024:.1f} KiB, exported in {info['export_s']:.1f} s"
              f" ({info['exporter']})")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
