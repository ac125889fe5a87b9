"""tether's RecurrentPPO vs sb3-contrib's RecurrentPPO: same task, same hyperparameters, side by side.

Both libraries train on ``tether/CartPole-NoVel-v0`` (CartPole with the velocities read as 0) with
8 envs and the settings of sb3-contrib's own CartPoleNoVel performance test (``HYPER`` below), then
run a deterministic evaluation of 20 episodes. Each run is a fresh subprocess with one torch thread;
the libraries alternate run by run (tether seed 0, sb3 seed 0, tether seed 1, ...) so machine noise
hits both alike. Per run it measures the training wall-clock (``train()`` / ``learn()`` only: no
construction, no evaluation), steps/s, the evaluation returns, and the return curve per rollout.

Writes ``benchmarks/results/compare_sb3.{json,md,png}`` (``--out`` elsewhere). ``--quick`` is a
smoke run of 2 rollouts and one seed that writes to a temporary folder unless ``--out`` is given.
``--profile`` instead runs one tether training under cProfile and writes the 30 costliest calls by
cumulative time, with a breakdown by stage, to ``compare_sb3.profile.txt``.

Run: ``python benchmarks/compare_sb3.py [--steps 50000] [--seeds 3] [--quick] [--profile]``
(needs ``pip install 'tether-rl[compare]'``). The defaults took 19 minutes on two AMD EPYC cores
shared with other jobs, 85 % of it in sb3-contrib.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import tether
import tether.envs  # registers tether/CartPole-NoVel-v0 (also in the --run subprocesses)
from tether.bench.provenance import collect, measured_on
from tether.ppo import PPOConfig, RecurrentPPO
from tether.train import read_metrics

try:
    import sb3_contrib
    import stable_baselines3
    from sb3_contrib import RecurrentPPO as Sb3RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
except ImportError as err:  # pragma: no cover - only without the extra
    raise SystemExit(f"compare_sb3 needs sb3-contrib: pip install 'tether-rl[compare]' ({err})") from err

RESULTS = Path(__file__).resolve().parent / "results"
TASK = "tether/CartPole-NoVel-v0"
EVAL_SEED = 10_000  # both evaluations reset env i with seed EVAL_SEED + i: the same start states
SOLVED = 450.0  # an evaluation mean return at or above this counts as solved (the max is 500)
LIBRARIES = ("tether", "sb3-contrib")

# The PPO settings of sb3-contrib's CartPoleNoVel performance test (which also normalises
# observations and rewards, and shapes its network differently: see docs/compare_sb3.md); both
# libraries read their settings from here.
HYPER: dict[str, Any] = {
    "n_steps": 128, "learning_rate": 7e-4, "batch_size": 256, "n_epochs": 10, "max_grad_norm": 1.0,
    "gae_lambda": 0.98, "gamma": 0.99, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5,
}
HIDDEN = 64  # LSTM hidden size (both), and the width of the one dense layer (tether before, sb3 after)


@dataclasses.dataclass
class Args:
    """Every setting of the comparison (each is also a command-line flag)."""

    steps: int = 50_000  # env steps per run (all envs together), rounded up to whole rollouts
    seeds: int = 3  # runs per library, seeds 0 .. seeds-1
    num_envs: int = 8  # parallel envs (sync vector env on both sides)
    eval_episodes: int = 20  # deterministic evaluation episodes after training
    tether_mode: str = "warn"  # tether's check mode for the runs: warn (its default) or off
    quick: bool = False  # smoke run: 2 rollouts, one seed, output to a temporary folder
    profile: bool = False  # profile one tether run (seed 0) instead of comparing
    out: str = ""  # output folder ("" = benchmarks/results, or a temporary folder with --quick)
    run: str = ""  # internal: "<library>:<seed>" runs one training here and prints it as JSON


class LinearDecay:
    """sb3 learning-rate schedule equal to tether's ``anneal_lr`` at every update.

    tether sets ``lr0 * (1 - u / N)`` before update ``u = 0 .. N-1``; sb3 calls the schedule after
    rollout ``u + 1`` with ``progress_remaining = 1 - (u + 1) / N``, so adding ``1 / N`` gives the
    same value (a plain ``lambda f: lr0 * f`` runs one update behind, and below 0 on its last
    update when the steps are not a whole number of rollouts).
    """

    def __init__(self, initial: float, num_updates: int) -> None:
        self.initial, self.num_updates = initial, num_updates

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * min(1.0, max(0.0, progress_remaining + 1.0 / self.num_updates))


class ReturnLog(BaseCallback):
    """Record (env steps, seconds since training started, mean return of the episodes finished) per rollout.

    The time is stamped when the rollout's update is done (at the next rollout's start, or the end
    of training), as tether's ``metrics.jsonl`` does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[dict[str, Any]] = []
        self._returns: list[float] = []
        self._pending: dict[str, Any] | None = None
        self._start = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_rollout_start(self) -> None:
        self._stamp()

    def _on_step(self) -> bool:
        self._returns += [float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self) -> None:
        mean = float(np.mean(self._returns)) if self._returns else None
        self._pending = {"step": int(self.model.num_timesteps), "ep_return": mean,
                         "episodes": len(self._returns)}
        self._returns = []

    def _on_training_end(self) -> None:
        self._stamp()

    def _stamp(self) -> None:
        if self._pending is not None:
            self.curve.append({**self._pending, "time": round(time.perf_counter() - self._start, 3)})
            self._pending = None


# ------------------------------------------------------------------------------------------------
# one run of each library
def rollout_size(args: Args) -> int:
    return HYPER["n_steps"] * args.num_envs


def total_steps(args: Args) -> int:
    """``--steps`` rounded up to whole rollouts, so both libraries train on exactly the same count."""
    per = rollout_size(args)
    return -(-args.steps // per) * per


def tether_config(seed: int, args: Args, run_dir: str) -> PPOConfig:
    return PPOConfig(
        env_id=TASK, num_envs=args.num_envs, vector="sync", total_steps=total_steps(args), seed=seed,
        device="cpu", n_steps=HYPER["n_steps"], learning_rate=HYPER["learning_rate"], anneal_lr=True,
        gamma=HYPER["gamma"], gae_lambda=HYPER["gae_lambda"], n_epochs=HYPER["n_epochs"],
        # sb3's batch of 256 transitions = 2 whole env-sequences of 128 steps
        minibatch_envs=HYPER["batch_size"] // HYPER["n_steps"], seq_len=0,
        clip_range=HYPER["clip_range"], clip_range_vf=None, ent_coef=HYPER["ent_coef"],
        vf_coef=HYPER["vf_coef"], max_grad_norm=HYPER["max_grad_norm"], target_kl=None,
        normalize_advantage=True, normalize_obs=False, core="lstm", hidden_size=HIDDEN, num_layers=1,
        encoder_size=HIDDEN, shared_core=False, recurrent=True, run_dir=run_dir,
        eval_episodes=args.eval_episodes, progress=False, mode=args.tether_mode,
    )


def run_tether(seed: int, args: Args) -> dict[str, Any]:
    """Train and evaluate tether's RecurrentPPO; the run folder is temporary."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="compare_sb3_tether_") as run_dir:
        config = tether_config(seed, args, run_dir)
        trainer = RecurrentPPO(config)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        evaluation = trainer.evaluate(args.eval_episodes, seed=EVAL_SEED, num_envs=args.num_envs)
        curve = [{"step": r["step"], "time": r["time"], "ep_return": r.get("ep_return"),
                  "episodes": r.get("episodes")} for r in read_metrics(run_dir)]
        params = sum(p.numel() for p in trainer.policy.parameters())
        trainer.close()
    return {"config": config.to_dict() | {"run_dir": "<temporary>"}, "train_seconds": seconds,
            "train_cpu_seconds": cpu, "steps": trainer.steps, "eval_returns": evaluation["returns"],
            "curve": curve, "params": params}


def _make_task(**kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(TASK, **kwargs)


def sb3_kwargs(seed: int, args: Args) -> dict[str, Any]:
    """Everything passed to sb3-contrib's RecurrentPPO besides the policy name and the env."""
    return {
        **{k: v for k, v in HYPER.items() if k != "learning_rate"},
        "learning_rate": LinearDecay(HYPER["learning_rate"], total_steps(args) // rollout_size(args)),
        "policy_kwargs": {"lstm_hidden_size": HIDDEN, "n_lstm_layers": 1, "enable_critic_lstm": True,
                          "shared_lstm": False, "net_arch": {"pi": [HIDDEN], "vf": [HIDDEN]}},
        "device": "cpu", "seed": seed, "verbose": 0,
    }


def run_sb3(seed: int, args: Args) -> dict[str, Any]:
    """Train and evaluate sb3-contrib's RecurrentPPO (MlpLstmPolicy) on the same task."""
    torch.set_num_threads(1)
    kwargs = sb3_kwargs(seed, args)
    model = Sb3RecurrentPPO("MlpLstmPolicy", make_vec_env(_make_task, n_envs=args.num_envs, seed=seed),
                            **kwargs)
    log = ReturnLog()
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_steps(args), callback=log)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    eval_env = make_vec_env(_make_task, n_envs=min(args.num_envs, args.eval_episodes), seed=EVAL_SEED)
    # evaluate_policy carries the LSTM states and episode_starts for a recurrent model, and spreads
    # the episodes over the envs as tether's evaluate does.
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True,
                                 return_episode_rewards=True)
    eval_env.close()
    schedule = kwargs["learning_rate"]
    shown = {**kwargs, "learning_rate": f"LinearDecay({schedule.initial}, {schedule.num_updates})"}
    return {"config": shown, "train_seconds": seconds, "train_cpu_seconds": cpu,
            "steps": int(model.num_timesteps), "eval_returns": [float(r) for r in returns],
            "curve": log.curve, "params": sum(p.numel() for p in model.policy.parameters())}


def run_one(library: str, seed: int, args: Args) -> dict[str, Any]:
    result = run_tether(seed, args) if library == "tether" else run_sb3(seed, args)
    return {"library": library, "seed": seed, **result,
            "steps_per_second": result["steps"] / result["train_seconds"],
            "steps_per_cpu_second": result["steps"] / result["train_cpu_seconds"],
            "eval_mean": float(np.mean(result["eval_returns"]))}


def spawn(library: str, seed: int, args: Args) -> dict[str, Any]:
    """Run one training in a fresh interpreter (no shared caches, allocator or RNG state)."""
    argv = [sys.executable, __file__, "--run", f"{library}:{seed}", "--steps", str(args.steps),
            "--num-envs", str(args.num_envs), "--eval-episodes", str(args.eval_episodes),
            "--tether-mode", args.tether_mode]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{library} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# reporting
def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"tether": tether.__version__, "tether_revision": _revision(),
            "sb3_contrib": sb3_contrib.__version__, "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": 1}


def _revision() -> str | None:
    """``git describe --always --dirty`` of the tether source that ran (None outside a checkout)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=False, cwd=Path(tether.__file__).parent)
    except OSError:
        return None
    return done.stdout.strip() or None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for library in LIBRARIES:
        mine = sorted((r for r in runs if r["library"] == library), key=lambda r: r["seed"])
        rates = [r["steps_per_second"] for r in mine]
        cpu_rates = [r["steps_per_cpu_second"] for r in mine]
        evals = [r["eval_mean"] for r in mine]
        out[library] = {
            "median_steps_per_second": statistics.median(rates), "steps_per_second": rates,
            "median_steps_per_cpu_second": statistics.median(cpu_rates), "steps_per_cpu_second": cpu_rates,
            "median_train_seconds": statistics.median(r["train_seconds"] for r in mine),
            "eval_means": evals, "median_eval": statistics.median(evals),
            "solved": sum(e >= SOLVED for e in evals), "seeds": [r["seed"] for r in mine],
            "params": mine[0]["params"],
        }
    ours, theirs = out["tether"], out["sb3-contrib"]
    out["ratio_steps_per_second"] = ours["median_steps_per_second"] / theirs["median_steps_per_second"]
    out["ratio_per_seed"] = [a / b for a, b in zip(ours["steps_per_second"], theirs["steps_per_second"],
                                                   strict=True)]
    out["ratio_steps_per_cpu_second"] = (ours["median_steps_per_cpu_second"]
                                         / theirs["median_steps_per_cpu_second"])
    out["target_met"] = bool(out["ratio_steps_per_second"] >= 2.0 and ours["solved"] >= theirs["solved"]
                             and ours["median_eval"] >= theirs["median_eval"])
    return out


def table(summary: dict[str, Any], args: Args, env: dict[str, Any]) -> str:
    seeds = summary["tether"]["seeds"]
    lines = [
        f"`{TASK}`, {args.num_envs} envs, {total_steps(args)} env steps per run, {len(seeds)} seed(s)"
        f" ({', '.join(map(str, seeds))}), deterministic evaluation over {args.eval_episodes} episodes;"
        f" tether mode `{args.tether_mode}`.",
        "",
        f"| library | version | params | median steps/s (per seed) | median train s | median steps per"
        f" CPU-s | eval return per seed | median eval | seeds ≥ {SOLVED:.0f} |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    versions = {"tether": env["tether"], "sb3-contrib": env["sb3_contrib"]}
    for library in LIBRARIES:
        s = summary[library]
        per_seed = ", ".join(f"{v:.0f}" for v in s["steps_per_second"])
        evals = ", ".join(f"{v:.1f}" for v in s["eval_means"])
        lines.append(
            f"| {library} | {versions[library]} | {s['params']} | {s['median_steps_per_second']:.0f}"
            f" ({per_seed}) | {s['median_train_seconds']:.1f} | {s['median_steps_per_cpu_second']:.0f} |"
            f" {evals} | {s['median_eval']:.1f} |"
            f" {s['solved']}/{len(s['seeds'])} |"
        )
    ratios = ", ".join(f"{r:.2f}" for r in summary["ratio_per_seed"])
    verdict = "met" if summary["target_met"] else "not met"
    lines += [
        "",
        f"**tether / sb3-contrib steps/s: {summary['ratio_steps_per_second']:.2f}×** (ratio of medians;"
        f" per seed {ratios}); per CPU-second of the training process (leaves out time spent waiting"
        f" for a core): {summary['ratio_steps_per_cpu_second']:.2f}×. Target ≥ 2× steps/s at equal or"
        f" better return: {verdict}.",
        "",
        f"Measured with tether {env['tether']} ({env['tether_revision']}), sb3-contrib {env['sb3_contrib']},"
        f" stable-baselines3 {env['stable_baselines3']}, torch {env['torch']}, gymnasium {env['gymnasium']},"
        f" Python {env['python']}, {env['cpu']} ({env['logical_cpus']} logical CPUs), 1 torch thread a run.",
    ]
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path, args: Args) -> bool:
    try:
        import matplotlib  # noqa: PLC0415 - optional, only for the figure

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = dict(zip(LIBRARIES, ("C0", "C1"), strict=True))
    for run in runs:
        points = [p for p in run["curve"] if p["ep_return"] is not None]
        label = run["library"] if run["seed"] == 0 else None
        for ax, key in ((ax_steps, "step"), (ax_time, "time")):
            ax.plot([p[key] for p in points], [p["ep_return"] for p in points], color=colours[run["library"]],
                    lw=0.9, alpha=0.8, label=label)
    ax_steps.set(xlabel="env steps", ylabel="mean return of episodes finished in the rollout",
                 title="sample efficiency")
    ax_time.set(xlabel="training wall-clock (s)", ylabel="mean return of episodes finished in the rollout",
                title="wall-clock")
    for ax in (ax_steps, ax_time):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"RecurrentPPO on {TASK}, {args.num_envs} envs, one thin line per seed, 1 torch thread")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------
# profile
# (label, file suffix, function name) of the stages reported in the profile breakdown
_STAGES = (
    ("train (whole run)", "tether/ppo/trainer.py", "train"),
    ("  collect rollouts", "rollout/collector.py", "collect"),
    ("    policy.act", "nets/actor_critic.py", "act"),
    ("    TrackedVectorEnv.step", "rollout/vec.py", "step"),
    ("      gymnasium SyncVectorEnv.step", "vector/sync_vector_env.py", "step"),
    ("    buffer.write (the sink)", "rollout/buffer.py", "write"),
    ("    policy.value (bootstrap, last)", "nets/actor_critic.py", "value"),
    ("  compute_advantages (GAE)", "rollout/buffer.py", "compute_advantages"),
    ("  _optimise", "tether/ppo/trainer.py", "_optimise"),
    ("    buffer.minibatches", "rollout/buffer.py", "minibatches"),
    ("    evaluate_actions", "nets/actor_critic.py", "evaluate_actions"),
    ("      unroll", "sequence/_unroll.py", "unroll"),
    ("    ppo_loss", "tether/ppo/loss.py", "ppo_loss"),
    ("    backward", "torch/_tensor.py", "backward"),
    ("    clip_grad_norm_", "nn/utils/clip_grad.py", "clip_grad_norm_"),
    ("    Adam.step", "torch/optim/adam.py", "step"),
    ("  save (checkpoints)", "tether/ppo/trainer.py", "save"),
    ("  MetricsLogger.log", "tether/train/metrics.py", "log"),
)


def breakdown(stats: pstats.Stats) -> list[tuple[str, int, float]]:
    """(stage, calls, cumulative seconds) for each of ``_STAGES`` found in the profile."""
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    rows = []
    for label, suffix, name in _STAGES:
        hits = [v for (file, _, fn), v in entries.items() if fn == name and file.endswith(suffix)]
        if hits:
            rows.append((label, sum(v[1] for v in hits), sum(v[3] for v in hits)))
    return rows


def profile(args: Args, out: Path) -> None:
    """Profile one tether training (seed 0) and write the top 30 by cumulative time."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="compare_sb3_profile_") as run_dir:
        trainer = RecurrentPPO(tether_config(0, args, run_dir))
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.runcall(trainer.train)
        seconds = time.perf_counter() - start
        trainer.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    rows = breakdown(stats)
    whole = rows[0][2] if rows else seconds
    text.write(f"tether RecurrentPPO.train(), {trainer.steps} steps, mode {args.tether_mode}, 1 thread:"
               f" {seconds:.1f} s under cProfile ({trainer.steps / seconds:.0f} steps/s with profiling"
               f" overhead)\n{measured_on(collect())}\n\n")
    text.write("stage                                    calls   cum s   share\n")
    for label, calls, cum in rows:
        text.write(f"{label:<40} {calls:>6} {cum:>7.2f} {100 * cum / whole:>6.1f} %\n")
    text.write("\ntop 30 by cumulative time:\n")
    stats.strip_dirs().sort_stats("cumulative").print_stats(30)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_sb3.profile.txt").write_text(text.getvalue())
    print(text.getvalue())
    print(f"profile: {out / 'compare_sb3.profile.txt'}")


# ------------------------------------------------------------------------------------------------
# driver
def parse() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Args):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default)
    args = Args(**vars(parser.parse_args()))
    if args.tether_mode not in ("warn", "off", "strict"):
        parser.error(f"--tether-mode: expected warn, off or strict, got {args.tether_mode!r}")
    if args.quick:
        args.steps, args.seeds = min(args.steps, 2 * rollout_size(args)), 1
    return args


def compare(args: Args, out: Path) -> dict[str, Any]:
    """Alternate the libraries run by run, then write the JSON, the table and the plot."""
    runs = []
    for seed in range(args.seeds):
        for library in LIBRARIES:
            run = spawn(library, seed, args)
            print(f"{library:<12} seed {seed}: {run['steps_per_second']:7.0f} steps/s,"
                  f" {run['train_seconds']:6.1f} s, eval {run['eval_mean']:6.1f}", flush=True)
            runs.append(run)
    summary = summarise(runs)
    env = environment()
    text = table(summary, args, env)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_sb3.md").write_text(text + "\n")
    shown_args = {k: v for k, v in dataclasses.asdict(args).items() if k not in ("run", "out", "profile")}
    (out / "compare_sb3.json").write_text(json.dumps(
        {"args": shown_args | {"total_steps": total_steps(args)}, "task": TASK, "hyperparameters": HYPER,
         "environment": env, "summary": summary, "runs": runs, "provenance": collect()}, indent=1))
    if plot(runs, out / "compare_sb3.png", args):
        print(f"\nplot: {out / 'compare_sb3.png'}")
    print(f"results: {out}")
    return summary


def main() -> int:
    args = parse()
    torch.set_num_threads(1)
    if args.run:
        library, seed = args.run.split(":")
        print(json.dumps(run_one(library, int(seed), args)), flush=True)
        return 0
    out = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp(prefix="compare_sb3_")) if args.quick else RESULTS)
    if args.profile:
        profile(args, out)
    else:
        compare(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
