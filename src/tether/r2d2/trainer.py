"""R2D2: recurrent experience replay in distributed DQN, on a Run: its replay, its learner, its schedule.

One iteration: set each env's ε, collect ``collect_steps`` steps per env into the sequence replay
(:class:`~tether.replay.SequenceReplay`, a sink of the shared collector), then, once
``learning_starts`` steps are collected, ``updates_per_collect`` learner updates: sample sequences
(by priority), replay them (burn-in without gradient through both networks, then the trained
part: :mod:`tether.r2d2.learner`), n-step double-Q targets, an importance-weighted TD loss, new
priorities; the target network follows every ``target_update_every`` updates. Every
``staleness_every`` updates the sampled batch's Δq is measured (:mod:`tether.r2d2.staleness`).
A metrics record is written every ``log_every`` iterations and a checkpoint every
``checkpoint_every`` records. What is not R2D2's (the env, the policy's placement, the collector,
counters, metrics, checkpoints, resume, RNGs, evaluation) is the :class:`~tether.train.Run`.

Checkpoints hold the target network and, with ``save_replay``, the replay: then a resumed run
continues exactly as an uninterrupted one would. Without it the replay starts empty after a
resume and learning waits until it holds a batch again.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tether import distributed
from tether.errors import ConfigError
from tether.modes import mode
from tether.nets import RecurrentQNetwork
from tether.r2d2.config import R2D2Config
from tether.r2d2.learner import learner_step
from tether.r2d2.staleness import measure_staleness
from tether.replay import ReplayBatch, SequenceReplay
from tether.train import Run
from tether.train.evaluation import EvalSummary
from tether.train.metrics import check_update_finite
from tether.train.run import check_resumable, load_trainer

__all__ = ["R2D2"]


class R2D2:
    """Recurrent off-policy Q-learning (R2D2) on a gymnasium task with discrete actions.

    Args:
        config: every setting (:class:`~tether.r2d2.R2D2Config`).
        policy: a Q-network like :class:`~tether.nets.RecurrentQNetwork`; built from the config
            when ``None``.
        progress: override ``config.progress``.
        overwrite: a fresh run may replace the run its folder holds (else :meth:`train` refuses it).

    Attributes:
        run: the shared half (:class:`~tether.train.Run`): ``run.policy`` is the online network.
        target: the target network (a copy of the online one, updated on its schedule).
        replay: the sequence replay the collector writes to.

    Raises:
        ConfigError: for an unknown env id, a device this machine cannot use, an action space
            that is not discrete, or more than one process (R2D2 trains on one).

    Example::

        trainer = R2D2(R2D2Config.from_preset("recall"))
        trainer.train()
        print(trainer.evaluate(20)["mean_return"])
    """

    def __init__(self, config: R2D2Config, *, policy: nn.Module | None = None,
                 progress: bool | None = None, overwrite: bool = False) -> None:
        if distributed.world_size() > 1:
            raise ConfigError("R2D2 trains on one process; drop --nproc / torchrun for --algo r2d2")
        self.config = c = config
        self.run = Run(config, algo="r2d2", build_policy=self._build_policy, policy=policy,
                       build_optimizer=lambda p: torch.optim.Adam(p.parameters(), lr=c.learning_rate,
                                                                  eps=c.adam_eps),
                       rollout_steps=c.collect_steps, progress=progress, overwrite=overwrite)
        self.target = copy.deepcopy(self.run.policy).requires_grad_(False)
        self.replay = SequenceReplay(c.capacity, c.num_envs, seq_len=c.seq_len, burn_in=c.burn_in,
                                     period=c.sequence_period, cut_at_episode_end=c.cut_at_episode_end,
                                     prioritized=c.prioritized, priority_exponent=c.priority_exponent,
                                     importance_exponent=c.importance_exponent)
        self.iteration = 0  # collections so far
        self._pending = _Pending()

    def _build_policy(self, venv: gym.vector.VectorEnv[Any, Any, Any]) -> nn.Module:
        c = self.config
        return RecurrentQNetwork(venv.single_observation_space, venv.single_action_space,
                                 hidden_sizes=(c.encoder_size,) if c.encoder_size else (), core=c.core,
                                 core_hidden_size=c.hidden_size, num_layers=c.num_layers, dueling=c.dueling,
                                 memoryless=not c.recurrent)

    policy = property(lambda self: self.run.policy, doc="The online Q-network (on its device).")
    run_dir = property(lambda self: self.run.run_dir, doc="The run folder.")
    update = property(lambda self: self.run.update, doc="Learner updates done so far.")
    steps = property(lambda self: self.run.steps, doc="Env steps taken so far.")

    @property
    def _steps_per_collect(self) -> int:
        return self.config.collect_steps * self.config.num_envs

    @property
    def num_iterations(self) -> int:
        """Collections in the whole run: ``ceil(total_steps / (collect_steps × num_envs))``."""
        return -(-self.config.total_steps // self._steps_per_collect)

    def epsilons(self) -> np.ndarray:
        """``[E]`` each env's ε now: the linear decay, spread over the envs by ``epsilon_alpha``."""
        c = self.config
        span = c.epsilon_decay * c.total_steps
        progress = 1.0 if span <= 0 else min(self.run.steps / span, 1.0)
        eps = c.epsilon_start + progress * (c.epsilon_end - c.epsilon_start)
        spread = np.arange(c.num_envs) / max(c.num_envs - 1, 1)
        return np.asarray(eps ** (1.0 + c.epsilon_alpha * spread), dtype=np.float64)

    # ------------------------------------------------------------------------------------------
    def train(self, *, max_iterations: int | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` (or ``max_iterations`` more collections); return a summary.

        Returns:
            ``{"steps", "updates", "time", "steps_per_second", "last_return"}``.

        Raises:
            RunFolderError: the folder is taken, holds another run, or refuses a write.
            NonFiniteError: NaN / inf rewards, or a loss or weight after an update (not saved).
        """
        c, run = self.config, self.run
        total = self.num_iterations
        stop = total if max_iterations is None else min(total, self.iteration + max_iterations)
        last_return = None
        with run.recording(total * self._steps_per_collect), mode(c.mode):
            while self.iteration < stop:
                self._iterate()
                if self.iteration % c.log_every == 0 or self.iteration == stop:
                    record = self._log()
                    if record.get("ep_return") is not None:
                        last_return = record["ep_return"]
                    if (self.iteration // c.log_every) % c.checkpoint_every == 0 and self.iteration < stop:
                        self.save(run.run_dir / "checkpoint.pt")
            self.save(run.run_dir / "checkpoint.pt")
        return {"steps": run.steps, "updates": run.update, "time": run.elapsed,
                "steps_per_second": run.steps / max(run.elapsed, 1e-9), "last_return": last_return}

    def _iterate(self) -> None:
        c, run, pending = self.config, self.run, self._pending
        started = time.perf_counter()
        run.policy.set_epsilon(torch.as_tensor(self.epsilons(), dtype=torch.float32))
        self.replay.policy_version = run.update
        run.policy.eval()
        run.collector.collect(self.replay)
        run.collected()
        run.steps += self._steps_per_collect
        self.iteration += 1
        pending.returns += run.collector.episode_returns
        pending.lengths += run.collector.episode_lengths
        if run.steps >= c.learning_starts and len(self.replay) >= c.batch_size:
            run.policy.train()
            for _ in range(c.updates_per_collect):
                self._learn()
        pending.seconds += time.perf_counter() - started
        pending.iterations += 1

    def _learn(self) -> None:
        c, run, pending = self.config, self.run, self._pending
        batch: ReplayBatch = self.replay.sample(c.batch_size, generator=run.generator, device=run.device)
        step = learner_step(run.policy, self.target, batch, c)
        if c.staleness_every and (run.update + 1) % c.staleness_every == 0:
            # before the optimiser step: q(h) must come from the weights that gave q(ĥ)
            pending.add(measure_staleness(
                run.policy, self.replay, batch, q_first=step.q_first, q_last=step.q_last, first=step.first,
                last=step.last, trained=step.trained, update=run.update, max_steps=c.staleness_history))
        run.optimizer.zero_grad(set_to_none=True)
        step.loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        grad_norm = float(nn.utils.clip_grad_norm_(run.policy.parameters(), c.max_grad_norm))
        run.optimizer.step()
        self.replay.update_priorities(batch.indices, step.priorities)
        run.update += 1
        stats = {"loss": float(step.loss.detach()), "td_abs": step.td_abs, "q_mean": step.q_mean,
                 "grad_norm": grad_norm}
        check_update_finite(run.update, stats, run.policy.named_parameters())
        pending.add(stats)
        if run.update % c.target_update_every == 0:
            self.update_target()

    def update_target(self) -> None:
        """Move the target network to the online one: a copy (``target_tau = 1``), else Polyak averaging."""
        tau = self.config.target_tau
        with torch.no_grad():
            for mine, theirs in zip(self.target.state_dict().values(), self.run.policy.state_dict().values(),
                                    strict=True):
                if mine.is_floating_point() and tau < 1.0:
                    mine.lerp_(theirs, tau)
                else:
                    mine.copy_(theirs)

    def _log(self) -> dict[str, Any]:
        run, pending = self.run, self._pending
        record: dict[str, Any] = {
            "update": run.update, "iteration": self.iteration,
            "ep_return": float(np.mean(pending.returns)) if pending.returns else None,
            "ep_length": float(np.mean(pending.lengths)) if pending.returns else None,
            "episodes": len(pending.returns), "epsilon": float(self.epsilons().mean()),
            "iteration_seconds": pending.seconds / max(pending.iterations, 1),
            **pending.means(), **self.replay.stats(),
        }
        self._pending = _Pending()
        return run.log(record)

    # ------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int = 20, *, seed: int = 10_000, deterministic: bool = True,
                 num_envs: int | None = None) -> EvalSummary:
        """Run ``episodes`` full episodes greedily in fresh envs and report their returns.

        Returns:
            ``{"episodes", "mean_return", "std_return", "returns", "deterministic"}``
            (``deterministic=False`` acts ε-greedily with ``epsilon_end`` in every env).
        """
        policy = self.run.policy
        saved = policy.epsilon.clone()
        policy.set_epsilon(self.config.epsilon_end)
        try:
            return self.run.evaluate(episodes, seed=seed, deterministic=deterministic, num_envs=num_envs)
        finally:
            policy.set_epsilon(saved)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically: the Run's parts, the target network, the replay if kept.

        Returns:
            The path written.
        """
        extra = {"target": self.target.state_dict(), "iteration": self.iteration,
                 "pending": self._pending.state_dict(),
                 "replay": self.replay.state_dict() if self.config.save_replay else None}
        return self.run.save(path, extra=extra)

    @classmethod
    def load(cls, path: str | Path, *, progress: bool | None = None, allow_imports: Sequence[str] = (),
             **overrides: Any) -> R2D2:
        """Rebuild a trainer from a checkpoint file (or a run folder holding ``checkpoint.pt``).

        Raises:
            FileNotFoundError: when there is no checkpoint there.
            CheckpointError: for a corrupt or foreign file, or a network that does not fit.
            ConfigError: for an unknown override or a checkpoint whose settings are not valid.
        """
        return load_trainer(cls, R2D2Config, path, progress=progress, allow_imports=allow_imports,
                            overrides=overrides, restore=cls._restore_own)

    def _restore_own(self, data: dict[str, Any]) -> None:
        """Restore what a checkpoint holds of R2D2's own: the target network, counters, the replay."""
        self.target.load_state_dict(data["target"])
        self.iteration = int(data["iteration"])
        self._pending = _Pending.from_state_dict(data["pending"])
        if data.get("replay") is not None:
            self.replay.load_state_dict(data["replay"])

    @classmethod
    def resume(cls, run_dir: str | Path, *, allow_imports: Sequence[str] = (), **overrides: Any) -> R2D2:
        """Continue the run saved in ``run_dir`` there (exactly, when its replay was saved).

        Raises:
            ConfigError: when an override changes a setting that would make it a different run.
        """
        check_resumable(overrides)
        return cls.load(run_dir, allow_imports=allow_imports, **overrides)

    def close(self) -> None:
        """Close the envs and the metrics file."""
        self.run.close()


class _Pending:
    """What the iterations since the last metrics record saw: episodes, update stats, seconds."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.seconds = 0.0
        self.iterations = 0
        self.stats: dict[str, list[float]] = {}

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.stats.setdefault(key, []).append(value)

    def means(self) -> dict[str, float]:
        """Each stat's mean over the updates that reported it (``nan`` values left out; a stat
        with none finite, such as Δq with no sequence covered, is not reported)."""
        out = {}
        for key, values in self.stats.items():
            finite = [v for v in values if np.isfinite(v)]
            if finite:
                out[key] = float(np.mean(finite))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths), "seconds": self.seconds,
                "iterations": self.iterations, "stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> _Pending:
        out = cls()
        out.returns, out.lengths = list(data["returns"]), list(data["lengths"])
        out.seconds, out.iterations = float(data["seconds"]), int(data["iterations"])
        out.stats = {k: list(v) for k, v in data["stats"].items()}
        return out
