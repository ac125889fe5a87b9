"""RecurrentPPO: PPO-clip for recurrent policies, on the collector, the buffer and evaluate_actions.

One update: collect ``n_steps × num_envs`` steps with no autograd graph, compute GAE (bootstrap on
truncation, none on termination), then ``n_epochs`` passes over shuffled minibatches of
env-sequences. Each minibatch replays its sequences from the stored state snapshots with the
current weights (``evaluate_actions`` restarts rows at their episode starts), so hidden states are
recomputed every epoch. Seeded runs are reproducible; checkpoints are atomic and a resumed run
continues exactly as an uninterrupted one would (with sync vector envs).
"""

from __future__ import annotations

import copy
import pickle
import random
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import tether.envs
from tether.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tether.config import ConfigError, PPOConfig
from tether.metrics import MetricsLogger
from tether.modes import mode
from tether.nets import FactoredRecurrentActorCritic
from tether.nets.memoryless import MemorylessPolicy
from tether.rollout import RecurrentRolloutBuffer, RolloutCollector, TrackedVectorEnv

__all__ = ["RecurrentPPO", "make_vector_env"]

_CHECKPOINT_KEYS = ("config", "policy", "optimizer", "update", "steps", "elapsed", "rng", "collector")


class _MakeEnv:
    """A picklable env factory (vector envs keep theirs; checkpoints pickle the envs)."""

    def __init__(self, env_id: str, kwargs: dict[str, Any]) -> None:
        self.env_id, self.kwargs = env_id, kwargs

    def __call__(self) -> gym.Env[Any, Any]:
        return gym.make(self.env_id, **self.kwargs)


def make_vector_env(env_id: str, num_envs: int, *, vector: str = "sync", normalize_obs: bool = False,
                    env_kwargs: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """Make a gymnasium vector env of ``env_id``, with a clear error for an unknown id.

    Raises:
        ValueError: when ``env_id`` is not registered (the ``tether/`` tasks always are).
    """
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        known = ", ".join(tether.envs.ENV_IDS)
        raise ValueError(f"unknown env id {env_id!r} ({err}); tether's own tasks: {known}") from err
    fns = [_MakeEnv(env_id, env_kwargs or {}) for _ in range(num_envs)]
    venv: gym.vector.VectorEnv = (gym.vector.AsyncVectorEnv(fns) if vector == "async"
                                  else gym.vector.SyncVectorEnv(fns))
    if normalize_obs:
        venv = gym.wrappers.vector.NormalizeObservation(venv)
    return venv


def _obs_stats(venv: Any) -> Any:
    while venv is not None:
        if isinstance(venv, gym.wrappers.vector.NormalizeObservation):
            return venv.obs_rms
        venv = getattr(venv, "env", None)
    return None


def _has_discrete(space: gym.Space[Any]) -> bool:
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return True
    if isinstance(space, gym.spaces.Dict):
        return any(_has_discrete(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(_has_discrete(s) for s in space.spaces)
    return False


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RecurrentPPO:
    """Recurrent PPO on a gymnasium task, with checked hidden states throughout.

    Args:
        config: every setting (:class:`~tether.config.PPOConfig`).
        policy: a policy following :class:`~tether.policy.RecurrentPolicy`; built from the config
            (a :class:`~tether.nets.FactoredRecurrentActorCritic`) when ``None``.
        progress: override ``config.progress``.

    Raises:
        ValueError: for an unknown env id, or a setting the task cannot take (e.g. a Box action
            space with a discrete-only setting).

    Example::

        trainer = RecurrentPPO(PPOConfig(total_steps=50_000))
        summary = trainer.train()
        print(trainer.evaluate(20)["mean_return"])
    """

    def __init__(self, config: PPOConfig, *, policy: nn.Module | None = None,
                 progress: bool | None = None) -> None:
        self.config = config
        self.progress = config.progress if progress is None else progress
        self.run_dir = Path(config.run_dir)
        _seed_everything(config.seed)
        torch.set_num_threads(config.torch_threads)
        self.device = torch.device(config.device)
        self.venv = make_vector_env(config.env_id, config.num_envs, vector=config.vector,
                                    normalize_obs=config.normalize_obs)
        if config.action_masks and not _has_discrete(self.venv.single_action_space):
            self.venv.close()
            raise ConfigError(
                f"action_masks: masks apply to discrete actions, but {config.env_id} has the action space"
                f" {self.venv.single_action_space}; drop --action-masks for this task"
            )
        self.policy: Any = policy if policy is not None else self._build_policy()
        self.policy.to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate, eps=1e-5,
                                          foreach=True)
        self.collector = RolloutCollector(self.venv, self.policy, config.n_steps,  # type: ignore[arg-type]
                                          chunk_len=config.seq_len or None, device=self.device,
                                          action_mask="action_mask" if config.action_masks else None,
                                          seed=config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.update = 0
        self.steps = 0
        self._elapsed = 0.0
        self._logger: MetricsLogger | None = None

    def _build_policy(self) -> nn.Module:
        c = self.config
        space = self.venv.single_action_space
        policy: nn.Module = FactoredRecurrentActorCritic(
            self.venv.single_observation_space, space,
            hidden_sizes=(c.encoder_size,) if c.encoder_size else (), core=c.core,  # type: ignore[arg-type]
            core_hidden_size=c.hidden_size, num_layers=c.num_layers, shared_core=c.shared_core,
        )
        return policy if c.recurrent else MemorylessPolicy(policy)

    @property
    def num_updates(self) -> int:
        """Updates in the whole run: ``ceil(total_steps / (n_steps × num_envs))``."""
        per = self.config.n_steps * self.config.num_envs
        return -(-self.config.total_steps // per)

    # ------------------------------------------------------------------------------------------
    def train(self, *, max_updates: int | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` (or ``max_updates`` more updates); return a summary.

        Metrics go to ``<run_dir>/metrics.jsonl``; a checkpoint is written every
        ``checkpoint_every`` updates and when the call ends, so a stopped run can be resumed.

        Args:
            max_updates: stop after this many updates in this call (``None``: run to the end).

        Returns:
            ``{"steps", "updates", "time", "steps_per_second", "last_return"}``; ``time`` counts
            this run's training seconds (across resumes), not the evaluation.
        """
        c = self.config
        self._logger = MetricsLogger(self.run_dir, total_steps=self.num_updates * c.n_steps * c.num_envs,
                                     progress=self.progress, start_step=self.steps, elapsed=self._elapsed)
        stop = self.num_updates if max_updates is None else min(self.num_updates, self.update + max_updates)
        last_return = None
        try:
            with mode(c.mode):  # type: ignore[arg-type]
                while self.update < stop:
                    record = self._one_update()
                    if record.get("ep_return") is not None:
                        last_return = record["ep_return"]
                    if self.update % c.checkpoint_every == 0 and self.update < stop:
                        self.save(self.run_dir / "checkpoint.pt")
            self.save(self.run_dir / "checkpoint.pt")
        finally:
            self._elapsed = self._logger.elapsed
            self._logger.close()
            self._logger = None
        return {"steps": self.steps, "updates": self.update, "time": self._elapsed,
                "steps_per_second": self.steps / max(self._elapsed, 1e-9), "last_return": last_return}

    def _one_update(self) -> dict[str, Any]:
        c = self.config
        if c.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = c.learning_rate * (1.0 - self.update / self.num_updates)
        started = time.perf_counter()
        self.policy.eval()
        buffer = self.collector.collect()
        if c.reward_scale != 1.0:
            buffer.rewards.mul_(c.reward_scale)  # the value head learns scaled returns throughout
        self.steps += c.n_steps * c.num_envs
        self.policy.train()
        buffer.compute_advantages(c.gamma, c.gae_lambda)
        stats = self._optimise(buffer)
        self.update += 1
        returns = self.collector.episode_returns
        record = {
            "update": self.update,
            "ep_return": float(np.mean(returns)) if returns else None,
            "ep_length": float(np.mean(self.collector.episode_lengths)) if returns else None,
            "episodes": len(returns),
            "lr": self.optimizer.param_groups[0]["lr"],
            "update_seconds": time.perf_counter() - started,
            **stats,
        }
        assert self._logger is not None
        return self._logger.log(self.steps, record)

    def _optimise(self, buffer: RecurrentRolloutBuffer) -> dict[str, float]:
        c = self.config
        sequences = buffer.num_envs * buffer.num_chunks
        num_minibatches = max(1, sequences // min(c.minibatch_envs, sequences))
        totals: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy",
                                                          "approx_kl", "clip_fraction")}
        epochs = 0
        for _ in range(c.n_epochs):
            epochs += 1
            kls = []
            for mb in buffer.minibatches(num_minibatches, generator=self.generator):
                out = self.policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts,
                                                   mb.initial_state, mb.action_masks)
                losses = self._losses(mb, out)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.optimizer.step()
                for key, values in totals.items():
                    values.append(float(losses[key]))
                kls.append(float(losses["approx_kl"]))
            if c.target_kl is not None and float(np.mean(kls)) > 1.5 * c.target_kl:
                break
        assert buffer.returns is not None
        valid = buffer.valid
        values, returns = buffer.values[valid], buffer.returns[valid]
        var = float(returns.var()) if returns.numel() > 1 else 0.0
        explained = float("nan") if var == 0 else 1.0 - float((returns - values).var()) / var
        return {**{k: float(np.mean(v)) for k, v in totals.items()}, "epochs": epochs,
                "explained_variance": explained}

    def _losses(self, mb: Any, out: Any) -> dict[str, torch.Tensor]:
        c = self.config
        mask = mb.loss_mask.to(out.log_prob.dtype)
        count = mask.sum().clamp(min=1.0)

        def mean(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / count

        adv = mb.advantages
        if c.normalize_advantage:
            centred = adv - mean(adv)
            adv = centred / (mean(centred.pow(2)).sqrt() + 1e-8)
        log_ratio = out.log_prob - mb.log_probs
        ratio = log_ratio.exp()
        policy_loss = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)))
        value = out.value
        if c.clip_range_vf is not None:
            value = mb.values + (value - mb.values).clamp(-c.clip_range_vf, c.clip_range_vf)
            value_loss = mean(torch.max((out.value - mb.returns).pow(2), (value - mb.returns).pow(2)))
        else:
            value_loss = mean((value - mb.returns).pow(2))
        entropy = mean(out.entropy)
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        with torch.no_grad():
            approx_kl = mean((ratio - 1) - log_ratio)
            clip_fraction = mean(((ratio - 1).abs() > c.clip_range).to(mask.dtype))
        return {"loss": loss, "policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                "entropy": entropy.detach(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}

    # ------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int = 20, *, seed: int = 10_000, deterministic: bool = True,
                 num_envs: int | None = None) -> dict[str, Any]:
        """Run ``episodes`` full episodes in fresh envs and report their returns.

        Episodes are spread evenly over the envs (env ``i`` runs ``(episodes + i) // E`` of them) so
        short episodes are not over-counted. Observation statistics are frozen.

        Returns:
            ``{"episodes", "mean_return", "std_return", "returns", "deterministic"}``.
        """
        c = self.config
        E = max(1, min(num_envs or 8, episodes))
        venv = make_vector_env(c.env_id, E, normalize_obs=c.normalize_obs)
        stats = _obs_stats(self.venv)
        if stats is not None:
            norm = venv  # the outermost wrapper is the normaliser
            norm.obs_rms = copy.deepcopy(stats)  # type: ignore[attr-defined]
            norm.update_running_mean = False  # type: ignore[attr-defined]
        tracked = TrackedVectorEnv(venv)
        wanted = np.array([(episodes + i) // E for i in range(E)])
        done_count = np.zeros(E, dtype=np.int64)
        running = np.zeros(E)
        returns: list[float] = []
        self.policy.eval()
        with torch.no_grad(), mode(c.mode):  # type: ignore[arg-type]
            obs, _ = tracked.reset(seed=seed)
            state = self.policy.initial_state(E, tracked.clock)
            while (done_count < wanted).any():
                x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
                result = self.policy.act(x, state, None, deterministic)
                step = tracked.step(self.policy.env_actions(result.actions))
                running += np.where(step.valid, step.reward, 0.0)
                for row in np.flatnonzero(step.done):
                    if done_count[row] < wanted[row]:
                        returns.append(float(running[row]))
                        done_count[row] += 1
                    running[row] = 0.0
                state = result.state.reset(step.episode_starts)
                obs = step.obs
        tracked.close()
        return {"episodes": len(returns), "mean_return": float(np.mean(returns)),
                "std_return": float(np.std(returns)), "returns": returns, "deterministic": deterministic}

    # ------------------------------------------------------------------------------------------
    def _collector_blob(self) -> bytes | None:
        """The collector's live run (envs, state, clock, episode tallies), or None for async envs."""
        if self.config.vector != "sync":
            return None
        policy, buffer = self.collector.policy, self.collector.buffer
        try:
            self.collector.policy = None  # type: ignore[assignment]
            self.collector.buffer = RecurrentRolloutBuffer(
                buffer.num_steps, buffer.num_envs, chunk_len=buffer.chunk_len, device=buffer.device)
            return pickle.dumps(self.collector)
        finally:
            self.collector.policy, self.collector.buffer = policy, buffer

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (the last good one survives a crash mid-write).

        Returns:
            The path written.
        """
        payload = {
            "config": self.config.to_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "update": self.update,
            "steps": self.steps,
            "elapsed": self._logger.elapsed if self._logger is not None else self._elapsed,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(), "generator": self.generator.get_state()},
            "collector": self._collector_blob(),
        }
        return save_checkpoint(payload, path)

    @classmethod
    def load(cls, path: str | Path, *, progress: bool | None = None, **overrides: Any) -> RecurrentPPO:
        """Rebuild a trainer from a checkpoint file (or a run folder holding ``checkpoint.pt``).

        Args:
            path: the checkpoint, or its run folder.
            progress: override the progress bar setting.
            overrides: settings to change (e.g. a larger ``total_steps`` to train on).

        Raises:
            FileNotFoundError: when there is no checkpoint there.
            CheckpointError: for a corrupt or foreign file.
            ConfigError: for an unknown override or a checkpoint whose settings are not valid.
        """
        source = Path(path)
        if source.is_dir():
            source = source / "checkpoint.pt"
        data = load_checkpoint(source, required=_CHECKPOINT_KEYS)
        settings = {**data["config"], **overrides}
        config = PPOConfig.from_dict(settings, source=str(source))
        trainer = cls(config, progress=progress)
        try:
            trainer.policy.load_state_dict(data["policy"])
            trainer.optimizer.load_state_dict(data["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{source}: the saved network does not fit its own settings: {err}") from err
        trainer.update, trainer.steps = int(data["update"]), int(data["steps"])
        trainer._elapsed = float(data["elapsed"])
        rng = data["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        trainer.generator.set_state(rng["generator"])
        if data["collector"] is not None:
            trainer.venv.close()
            collector = pickle.loads(data["collector"])
            collector.policy = trainer.policy
            collector.buffer = trainer.collector.buffer
            trainer.collector = collector
            trainer.venv = collector.venv.env
        return trainer

    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> RecurrentPPO:
        """Continue the run saved in ``run_dir`` (same results as if it had never stopped).

        Raises:
            ConfigError: when an override changes a setting that would make it a different run
                (only ``total_steps``, ``progress``, ``checkpoint_every``, ``eval_episodes`` and
                ``mode`` may change).
        """
        allowed = {"total_steps", "progress", "checkpoint_every", "eval_episodes", "mode"}
        changed = sorted(set(overrides) - allowed)
        if changed:
            raise ConfigError(
                f"resume: the settings {changed} cannot change mid-run (only {sorted(allowed)})")
        return cls.load(run_dir, **overrides)

    def close(self) -> None:
        """Close the envs and the metrics file."""
        if self._logger is not None:
            self._logger.close()
            self._logger = None
        self.collector.venv.close()
