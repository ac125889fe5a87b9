"""RecurrentPPO: PPO-clip for recurrent policies: its buffer, its loss and its update schedule on a Run.

One update: collect ``n_steps × num_envs`` steps with no autograd graph, compute GAE (bootstrap on
truncation, none on termination), then ``n_epochs`` passes over shuffled minibatches of
env-sequences. Each minibatch replays its sequences with the current weights
(``evaluate_actions`` restarts rows at their episode starts), so hidden states are recomputed every
epoch; where each ``seq_len`` chunk starts (the rollout's first state, the stored state, or a
burn-in) is ``sequence_start`` (:mod:`tether.ppo.starts`), and ``telemetry`` measures the states
and their staleness (:mod:`tether.ppo.monitor`). Seeded runs are reproducible; checkpoints are
atomic, hold tensors and plain data only, and a resumed run continues exactly as an
uninterrupted one would (the envs' live episodes are replayed: see ``tether.envs.factory`` and
docs/training.md). What is not PPO's (the env, the policy's placement, the collector, counters,
metrics, checkpoints, resume, RNGs, evaluation) is the :class:`~tether.train.Run` this trainer
holds.

Data-parallel (``torchrun --nproc-per-node N -m tether train``, see docs/scaling.md): each rank
runs ``num_envs`` envs of its own (torch seed ``seed + rank``, env seeds ``seed + rank × num_envs
+ i``), its own clock and hidden states, and the same weights; every minibatch's gradients are
averaged over the ranks by one explicit all-reduce of ``.grad`` after ``backward``, each rank
weighted by its minibatch's real steps, so an update equals one process's update on the union of
the ranks' minibatches. No DDP wrapper: the policy stays the plain module, with its lifecycle API
(``initial_state``, ``act``, ``evaluate_actions``) and the exact recurrent replay untouched.
Advantages are normalised per minibatch with the mean / std over all ranks' minibatches; the
observation normaliser's statistics are combined over the ranks after every rollout. Rank 0
alone writes metrics, checkpoints and plots; the checkpoint holds every rank's collector, env and
RNG state, and a run resumes only on as many ranks as it was trained on.
"""

from __future__ import annotations

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
from tether.nets import FactoredRecurrentActorCritic
from tether.nets.memoryless import MemorylessPolicy
from tether.ppo.config import PPOConfig
from tether.ppo.loss import PPOLoss, ppo_loss
from tether.ppo.monitor import UpdateTelemetry
from tether.ppo.starts import SequenceStart, burned_in_state, refreshed_chunk_states
from tether.rollout import RecurrentRolloutBuffer, SequenceMinibatch
from tether.train import Run
from tether.train.evaluation import EvalSummary
from tether.train.metrics import check_update_finite
from tether.train.run import check_resumable, load_trainer

__all__ = ["RecurrentPPO"]


def _has_discrete(space: gym.Space[Any]) -> bool:
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return True
    if isinstance(space, gym.spaces.Dict):
        return any(_has_discrete(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(_has_discrete(s) for s in space.spaces)
    return False


class RecurrentPPO:
    """Recurrent PPO on a gymnasium task, with checked hidden states throughout.

    Args:
        config: every setting (:class:`~tether.ppo.PPOConfig`).
        policy: a policy following :class:`~tether.policy.RecurrentPolicy`; built from the config
            (a :class:`~tether.nets.FactoredRecurrentActorCritic`) when ``None``.
        progress: override ``config.progress``.
        overwrite: a fresh run may replace the run its folder holds (else :meth:`train` refuses it).

    Attributes:
        run: the shared half (:class:`~tether.train.Run`); ``policy``, ``optimizer``,
            ``collector``, ``venv``, ``dist``, ``device``, ``run_dir``, ``update`` and ``steps``
            read through to it.
        buffer: the on-policy buffer the collector writes to (PPO's sink).

    Raises:
        ConfigError: for an unknown env id (or a module that cannot be imported, or env kwargs the
            env does not take), a device this machine cannot use, or a setting the task cannot
            take (e.g. a Box action space with a discrete-only setting).

    Example::

        trainer = RecurrentPPO(PPOConfig(total_steps=50_000))
        summary = trainer.train()
        print(trainer.evaluate(20)["mean_return"])
    """

    def __init__(self, config: PPOConfig, *, policy: nn.Module | None = None,
                 progress: bool | None = None, overwrite: bool = False) -> None:
        self.config = config
        self.run = Run(config, algo="ppo", build_policy=self._build_policy, policy=policy,
                       build_optimizer=lambda p: torch.optim.Adam(p.parameters(), lr=config.learning_rate,
                                                                  eps=1e-5, foreach=True),
                       rollout_steps=config.n_steps, progress=progress, overwrite=overwrite)
        space = self.run.venv.single_action_space
        if config.action_masks and not _has_discrete(space):
            self.run.close()
            raise ConfigError(
                f"action_masks: masks apply to discrete actions, but {config.env_id} has the action space"
                f" {space}; drop --action-masks for this task"
            )
        self.start = SequenceStart.parse(config.sequence_start)
        self.telemetry = UpdateTelemetry() if config.telemetry else None
        self.buffer = RecurrentRolloutBuffer(config.n_steps, config.num_envs, seq_len=config.seq_len or None,
                                             device=self.run.device, burn_in=self.start.burn_in,
                                             keep_states=config.telemetry)

    def _build_policy(self, venv: gym.vector.VectorEnv[Any, Any, Any]) -> nn.Module:
        c = self.config
        policy: nn.Module = FactoredRecurrentActorCritic(
            venv.single_observation_space, venv.single_action_space,
            hidden_sizes=(c.encoder_size,) if c.encoder_size else (), core=c.core,
            core_hidden_size=c.hidden_size, num_layers=c.num_layers, shared_core=c.shared_core,
        )
        return policy if c.recurrent else MemorylessPolicy(policy)

    # The shared half, read through (the names the trainer has always had).
    policy = property(lambda self: self.run.policy, doc="The policy (on its device).")
    optimizer = property(lambda self: self.run.optimizer, doc="The Adam optimiser of the policy.")
    collector = property(lambda self: self.run.collector, doc="The rollout collector (the envs' live run).")
    venv = property(lambda self: self.run.venv, doc="The vector env the collector steps.")
    dist = property(lambda self: self.run.dist, doc="This process's place in the job (a DistContext).")
    device = property(lambda self: self.run.device, doc="The policy's device.")
    run_dir = property(lambda self: self.run.run_dir, doc="The run folder.")
    progress = property(lambda self: self.run.progress, doc="Whether a progress bar is shown.")
    generator = property(lambda self: self.run.generator, doc="The minibatch-order generator.")
    update = property(lambda self: self.run.update, doc="Updates done so far.")
    steps = property(lambda self: self.run.steps, doc="Env steps taken so far (all ranks).")

    @property
    def num_updates(self) -> int:
        """Updates in the whole run: ``ceil(total_steps / (n_steps × num_envs × ranks))``."""
        per = self._steps_per_update
        return -(-self.config.total_steps // per)

    @property
    def _steps_per_update(self) -> int:
        return self.config.n_steps * self.config.num_envs * self.run.dist.world_size

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

        Raises:
            RunFolderError: the folder is taken, holds another run, or refuses a write.
            NonFiniteError: NaN / inf rewards, or a loss or weight after an update (not saved).
        """
        c, run = self.config, self.run
        stop = self.num_updates if max_updates is None else min(self.num_updates, run.update + max_updates)
        last_return = None
        with run.recording(self.num_updates * self._steps_per_update):
            with mode(c.mode):
                while run.update < stop:
                    record = self._one_update()
                    if record.get("ep_return") is not None:
                        last_return = record["ep_return"]
                    if run.update % c.checkpoint_every == 0 and run.update < stop:
                        self.save(run.run_dir / "checkpoint.pt")
            self.save(run.run_dir / "checkpoint.pt")
        return {"steps": run.steps, "updates": run.update, "time": run.elapsed,
                "steps_per_second": run.steps / max(run.elapsed, 1e-9), "last_return": last_return}

    def _one_update(self) -> dict[str, Any]:
        c, run = self.config, self.run
        if c.anneal_lr:
            for group in run.optimizer.param_groups:
                group["lr"] = c.learning_rate * (1.0 - run.update / self.num_updates)
        started = time.perf_counter()
        run.policy.eval()
        buffer = run.collector.collect(self.buffer)
        run.collected()
        if c.reward_scale != 1.0:
            buffer.rewards.mul_(c.reward_scale)  # the value head learns scaled returns throughout
        run.steps += self._steps_per_update
        run.policy.train()
        buffer.compute_advantages(c.gamma, c.gae_lambda)
        if self.telemetry is not None:
            self.telemetry.begin(run.policy, buffer)
        stats = self._optimise(buffer)
        run.update += 1
        check_update_finite(run.update, stats, run.policy.named_parameters())  # before any save
        record = {
            "update": run.update,
            **run.episode_stats(),
            "lr": run.optimizer.param_groups[0]["lr"],
            "update_seconds": time.perf_counter() - started,
            **stats,
            **({} if self.telemetry is None else self.telemetry.record()),
        }
        return run.log(record)

    def _optimise(self, buffer: RecurrentRolloutBuffer) -> dict[str, float]:
        c, dist = self.config, self.run.dist
        sequences = buffer.num_envs * buffer.num_chunks
        num_minibatches = max(1, sequences // min(c.minibatch_envs, sequences))
        totals: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy",
                                                          "approx_kl", "clip_fraction")}
        epochs = 0
        refresh = self.start.kind == "rollout" and buffer.num_chunks > 1
        for epoch in range(c.n_epochs):
            epochs += 1
            kls = []
            # rollout starts with chunks: each chunk starts where the current weights reach it.
            starts = refreshed_chunk_states(self.run.policy, buffer) if refresh else None
            for mb in buffer.minibatches(num_minibatches, generator=self.generator, chunk_states=starts):
                losses = self._learn_minibatch(mb, epoch)
                parts = losses._asdict()
                for key, values in totals.items():
                    values.append(float(parts[key]))
                kls.append(float(losses.approx_kl))
            # Every rank takes the same decision, or one would wait for the others' all-reduce.
            kl = dist.mean([float(np.mean(kls))])[0]
            if c.target_kl is not None and dist.any(kl > 1.5 * c.target_kl):
                break
        names = list(totals)
        means = dist.mean([float(np.mean(totals[k])) for k in names])
        return {**dict(zip(names, means, strict=True)), "epochs": epochs,
                "explained_variance": self._explained_variance(buffer)}

    def _learn_minibatch(self, mb: SequenceMinibatch, epoch: int = 0) -> PPOLoss:
        """One optimiser step on a minibatch (on N ranks: on the union of the ranks' minibatches)."""
        c, run = self.config, self.run
        start = burned_in_state(run.policy, mb) if mb.burn_in else mb.initial_state
        out = run.policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, start, mb.action_masks)
        if self.telemetry is not None:
            self.telemetry.minibatch(epoch, out, mb)
        advantages, normalize, weight = mb.advantages, c.normalize_advantage, 1.0
        if run.dist.world_size > 1:
            # The mean / std over all ranks' minibatches (one process normalises over its own).
            if normalize:
                mean, std, _ = run.dist.masked_mean_std(mb.advantages, mb.loss_mask)
                advantages, normalize = (mb.advantages - mean) / (std + 1e-8), False
            weight = float(mb.loss_mask.sum())  # each loss is a mean over this rank's real steps
        losses = ppo_loss(
            log_probs=out.log_prob, old_log_probs=mb.log_probs, advantages=advantages,
            values=out.value, old_values=mb.values, returns=mb.returns, entropy=out.entropy,
            loss_mask=mb.loss_mask, clip_range=c.clip_range, clip_range_vf=c.clip_range_vf,
            vf_coef=c.vf_coef, ent_coef=c.ent_coef, normalize_advantage=normalize)
        run.optimizer.zero_grad(set_to_none=True)
        losses.loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        distributed.average_gradients(run.policy.parameters(), weight=weight)
        nn.utils.clip_grad_norm_(run.policy.parameters(), c.max_grad_norm)
        run.optimizer.step()
        return losses

    def _explained_variance(self, buffer: RecurrentRolloutBuffer) -> float:
        assert buffer.returns is not None
        valid = torch.from_numpy(buffer.valid).to(buffer.device)  # the flags live on the host
        predicted, returns = buffer.values[valid], buffer.returns[valid]
        dist = self.run.dist
        if dist.world_size > 1:  # over every rank's steps
            ones = torch.ones_like(returns, dtype=torch.bool)
            _, std, _ = dist.masked_mean_std(returns, ones)
            _, rstd = dist.masked_mean_std(returns - predicted, ones)[:2]
            return float("nan") if float(std) == 0 else 1.0 - float(rstd) ** 2 / float(std) ** 2
        var = float(returns.var()) if returns.numel() > 1 else 0.0
        return float("nan") if var == 0 else 1.0 - float((returns - predicted).var()) / var

    # ------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int = 20, *, seed: int = 10_000, deterministic: bool = True,
                 num_envs: int | None = None) -> EvalSummary:
        """Run ``episodes`` full episodes in fresh envs and report their returns.

        Episodes are spread evenly over the envs (env ``i`` runs ``(episodes + i) // E`` of them) so
        short episodes are not over-counted. Observation statistics are frozen
        (see :func:`~tether.train.evaluate_policy`).

        Returns:
            ``{"episodes", "mean_return", "std_return", "returns", "deterministic"}``.
        """
        return self.run.evaluate(episodes, seed=seed, deterministic=deterministic, num_envs=num_envs)

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (the last good one survives a crash mid-write).

        The file holds tensors and plain data only (``torch.load(path, weights_only=True)`` reads
        it): the settings, the weights, the optimiser, counters, every RNG state, the collector's
        live run (hidden state, clock, last observation, tallies) and the envs' live episodes as
        replayable records (start and actions) with the observation statistics.

        On N ranks every rank must call it (their states are gathered to rank 0, which alone
        writes the file): the top-level ``rng`` / ``collector`` / ``envs`` are rank 0's, and
        ``ranks`` holds those of ranks 1 .. N-1.

        Returns:
            The path written (on every rank).
        """
        return self.run.save(path)

    @classmethod
    def load(cls, path: str | Path, *, progress: bool | None = None, allow_imports: Sequence[str] = (),
             **overrides: Any) -> RecurrentPPO:
        """Rebuild a trainer from a checkpoint file (or a run folder holding ``checkpoint.pt``).

        The envs are rebuilt from the recorded id, imports and kwargs, and their live episodes
        replayed; the run folder is where the checkpoint now is (unless ``run_dir`` is overridden).

        Args:
            path: the checkpoint, or its run folder.
            progress: override the progress bar setting.
            allow_imports: modules the checkpoint's env may import (it imports nothing else that
                only the checkpoint names; tether's and gymnasium's own ids need no consent).
            overrides: settings to change (e.g. a larger ``total_steps`` to train on).

        Raises:
            FileNotFoundError: when there is no checkpoint there.
            CheckpointError: for a corrupt or foreign file, or a network that does not fit.
            ConfigError: for an unknown override or a checkpoint whose settings are not valid.
        """
        return load_trainer(cls, PPOConfig, path, progress=progress, allow_imports=allow_imports,
                            overrides=overrides)

    @classmethod
    def resume(cls, run_dir: str | Path, *, allow_imports: Sequence[str] = (),
               **overrides: Any) -> RecurrentPPO:
        """Continue the run saved in ``run_dir`` there (same results as if it had never stopped).

        The run continues in ``run_dir`` wherever it now is (a moved folder, a relative path from
        another working directory); metrics records past the checkpoint (from updates a kill
        interrupted) are dropped, so the file keeps one record per update.

        Raises:
            ConfigError: when an override changes a setting that would make it a different run
                (only ``total_steps``, ``progress``, ``checkpoint_every``, ``eval_episodes`` and
                ``mode`` may change).
        """
        check_resumable(overrides)
        return cls.load(run_dir, allow_imports=allow_imports, **overrides)

    def close(self) -> None:
        """Close the envs and the metrics file."""
        self.run.close()
