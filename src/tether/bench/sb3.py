"""One grid cell trained by sb3-contrib's RecurrentPPO, writing the files ``tether train`` writes.

``python -m tether.bench.sb3 train --config CELL.toml --run-dir DIR [--preset NAME]`` reads the
same settings as ``tether train`` (the preset, then the TOML), maps each onto sb3-contrib's
``RecurrentPPO("MlpLstmPolicy", ...)``, trains, evaluates deterministically and leaves
``metrics.jsonl`` (one record per rollout: step, seconds, mean return of the episodes finished) and
``eval.json``. A setting sb3-contrib has no counterpart for is refused in one line, not dropped.
Needs the ``compare`` extra (``pip install 'tether-rl[compare]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tether._toml import tomllib
from tether.bench._extras import require
from tether.errors import ConfigError, TetherError

__all__ = ["main", "sb3_kwargs"]

EVAL_SEED = 10_000  # tether's evaluate() default: env i resets with seed EVAL_SEED + i
_PURPOSE = "an sb3-contrib variant"


def _refuse(config: Any) -> None:
    """Settings with no sb3-contrib counterpart: refuse rather than train something else."""
    problems = {
        "core": (config.core != "lstm", "sb3-contrib's RecurrentPPO has only an LSTM core"),
        "recurrent": (not config.recurrent, "use a tether memoryless variant (sb3's PPO is not wired in)"),
        "seq_len": (config.seq_len != 0, "sb3-contrib replays whole rollouts; set seq_len = 0"),
        "reward_scale": (config.reward_scale != 1.0, "sb3-contrib has no reward scale; set 1.0"),
        "action_masks": (config.action_masks, "sb3-contrib's RecurrentPPO takes no action masks"),
    }
    for key, (bad, why) in problems.items():
        if bad:
            raise ConfigError(f"sb3-contrib variant: {key} = {getattr(config, key)!r} has no sb3-contrib"
                              f" counterpart ({why})")


class _LinearDecay:
    """sb3 schedule equal to tether's ``anneal_lr``: ``lr0 * (1 - u / N)`` before update ``u``.

    sb3 calls it after rollout ``u + 1`` with ``progress_remaining = 1 - (u + 1) / N``.
    """

    def __init__(self, initial: float, updates: int) -> None:
        self.initial, self.updates = initial, updates

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * min(1.0, max(0.0, progress_remaining + 1.0 / self.updates))


def sb3_kwargs(config: Any) -> dict[str, Any]:
    """sb3-contrib ``RecurrentPPO`` keyword arguments equal to a tether config's settings.

    Raises:
        ConfigError: for a setting sb3-contrib cannot mirror.
    """
    _refuse(config)
    updates = -(-config.total_steps // (config.n_steps * config.num_envs))
    width = [config.encoder_size] if config.encoder_size else []
    return {
        "n_steps": config.n_steps, "batch_size": config.minibatch_envs * config.n_steps,
        "n_epochs": config.n_epochs, "gamma": config.gamma, "gae_lambda": config.gae_lambda,
        "clip_range": config.clip_range, "clip_range_vf": config.clip_range_vf,
        "ent_coef": config.ent_coef, "vf_coef": config.vf_coef, "max_grad_norm": config.max_grad_norm,
        "target_kl": config.target_kl, "normalize_advantage": config.normalize_advantage,
        "learning_rate": (_LinearDecay(config.learning_rate, updates) if config.anneal_lr
                          else config.learning_rate),
        "policy_kwargs": {"lstm_hidden_size": config.hidden_size, "n_lstm_layers": config.num_layers,
                          "shared_lstm": config.shared_core, "enable_critic_lstm": not config.shared_core,
                          "net_arch": {"pi": width, "vf": width}},
        "device": config.device, "seed": config.seed, "verbose": 0,
    }


def _callback_class() -> Any:
    base = require("stable_baselines3.common.callbacks", extra="compare", purpose=_PURPOSE).BaseCallback

    class MetricsLog(base):  # type: ignore[misc,valid-type]  # sb3 is untyped and optional
        """One ``metrics.jsonl`` record per rollout, stamped when its update is done (as tether's)."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.file = path.open("w", encoding="utf-8")
            self.returns: list[float] = []
            self.pending: dict[str, Any] | None = None
            self.start = 0.0

        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_rollout_start(self) -> None:
            self._stamp()

        def _on_step(self) -> bool:
            self.returns += [float(i["episode"]["r"]) for i in self.locals["infos"] if "episode" in i]
            return True

        def _on_rollout_end(self) -> None:
            self.pending = {"step": int(self.model.num_timesteps), "episodes": len(self.returns),
                            "ep_return": float(np.mean(self.returns)) if self.returns else None}
            self.returns = []

        def _on_training_end(self) -> None:
            self._stamp()
            self.file.close()

        def _stamp(self) -> None:
            if self.pending is not None:
                record = {**self.pending, "time": round(time.perf_counter() - self.start, 3)}
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
                self.pending = None

    return MetricsLog


def _train(config: Any, run_dir: Path) -> dict[str, Any]:
    import gymnasium as gym  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import tether.envs  # noqa: F401, PLC0415 (registers the tether/ tasks)

    contrib = require("sb3_contrib", extra="compare", purpose=_PURPOSE)
    env_util = require("stable_baselines3.common.env_util", extra="compare", purpose=_PURPOSE)
    vec_env = require("stable_baselines3.common.vec_env", extra="compare", purpose=_PURPOSE)
    evaluation = require("stable_baselines3.common.evaluation", extra="compare", purpose=_PURPOSE)
    torch.set_num_threads(config.torch_threads)
    kind = vec_env.SubprocVecEnv if config.vector == "async" else vec_env.DummyVecEnv

    def make(n: int, seed: int) -> Any:
        return env_util.make_vec_env(lambda: gym.make(config.env_id), n_envs=n, seed=seed, vec_env_cls=kind)

    venv = make(config.num_envs, config.seed)
    if config.normalize_obs:
        venv = vec_env.VecNormalize(venv, norm_obs=True, norm_reward=False)
    model = contrib.RecurrentPPO("MlpLstmPolicy", venv, **sb3_kwargs(config))
    model.learn(config.total_steps, callback=_callback_class()(run_dir / "metrics.jsonl"))
    episodes = config.eval_episodes
    eval_env = make(max(1, min(config.num_envs, episodes)), EVAL_SEED)
    if config.normalize_obs:
        eval_env = vec_env.VecNormalize(eval_env, norm_obs=True, norm_reward=False, training=False)
        eval_env.obs_rms = venv.obs_rms
    returns, _ = evaluation.evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True,
                                            return_episode_rewards=True)
    eval_env.close()
    venv.close()
    values = [float(r) for r in returns]
    return {"episodes": len(values), "mean_return": float(np.mean(values)),
            "std_return": float(np.std(values)), "returns": values, "deterministic": True,
            "library": f"sb3-contrib {contrib.__version__}"}


def main(argv: list[str] | None = None) -> int:
    """Train and evaluate one cell; bad settings print one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m tether.bench.sb3")
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--config", type=Path, required=True, help="the cell's TOML settings")
    parser.add_argument("--run-dir", type=Path, required=True, help="where metrics.jsonl and eval.json go")
    parser.add_argument("--preset", default=None, help="the task's preset (the TOML wins)")
    args = parser.parse_args(argv)
    from tether import PPOConfig  # noqa: PLC0415 (the same settings tether train reads)

    try:
        settings = tomllib.loads(args.config.read_text(encoding="utf-8"))
        settings["run_dir"] = str(args.run_dir)
        config = (PPOConfig.from_preset(args.preset, **settings) if args.preset
                  else PPOConfig.from_dict(settings, source=str(args.config)))
        args.run_dir.mkdir(parents=True, exist_ok=True)
        result = _train(config, args.run_dir)
    except TetherError as err:
        print(f"sb3-contrib cell: error: {err}", file=sys.stderr)
        return 2
    (args.run_dir / "eval.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"evaluation ({result['episodes']} episodes, deterministic):"
          f" mean return {result['mean_return']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
