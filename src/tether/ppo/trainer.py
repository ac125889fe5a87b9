"""RecurrentPPO: PPO-clip for recurrent policies, on the collector, the buffer and evaluate_actions.

One update: collect ``n_steps × num_envs`` steps with no autograd graph, compute GAE (bootstrap on
truncation, none on termination), then ``n_epochs`` passes over shuffled minibatches of
env-sequences. Each minibatch replays its sequences from the stored state snapshots with the
current weights (``evaluate_actions`` restarts rows at their episode starts), so hidden states are
recomputed every epoch. Seeded runs are reproducible; checkpoints are atomic, hold tensors and
plain data only, and a resumed run continues exactly as an uninterrupted one would (the envs'
live episodes are replayed: see ``tether.envs.factory`` and docs/training.md).

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

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tether import distributed
from tether.envs import factory
from tether.envs.factory import env_state, load_env_state, make_vector_env, obs_normalizer
from tether.errors import CheckpointError, ConfigError
from tether.modes import mode
from tether.nets import FactoredRecurrentActorCritic
from tether.nets.memoryless import MemorylessPolicy
from tether.ppo.checkpoint import load_checkpoint, save_checkpoint
from tether.ppo.config import PPOConfig
from tether.ppo.evaluation import EvalSummary, evaluate_policy
from tether.ppo.loss import PPOLoss, ppo_loss
from tether.ppo.metrics import MetricsLogger, check_update_finite
from tether.rollout import RecurrentRolloutBuffer, RolloutCollector, SequenceMinibatch
from tether.train.run_folder import RunFolder, claim_run_folder

__all__ = ["RecurrentPPO"]

_CHECKPOINT_KEYS = ("config", "policy", "optimizer", "update", "steps", "elapsed", "rng", "collector", "envs")
# What `resume` may change: everything else would make it another run.
_RESUMABLE = frozenset({"total_steps", "progress", "checkpoint_every", "eval_episodes", "mode"})


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _layout_mismatch(saved: dict[str, Any], expected: dict[str, torch.Tensor]) -> str | None:
    """One line saying how a saved state dict differs from the network's (None when it fits)."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    def shape(value: Any) -> str:
        return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__

    shapes = [f"{k} {shape(saved[k])} vs {list(v.shape)}" for k, v in expected.items()
              if k in saved and shape(saved[k]) != str(list(v.shape))]
    parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
             f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
             f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
    found = "; ".join(p for p in parts if p)
    return found or None


class RecurrentPPO:
    """Recurrent PPO on a gymnasium task, with checked hidden states throughout.

    Args:
        config: every setting (:class:`~tether.ppo.PPOConfig`).
        policy: a policy following :class:`~tether.policy.RecurrentPolicy`; built from the config
            (a :class:`~tether.nets.FactoredRecurrentActorCritic`) when ``None``.
        progress: override ``config.progress``.
        overwrite: a fresh run may replace the run its folder holds (else :meth:`train` refuses it).

    Raises:
        ConfigError: for an unknown env id (or a module that cannot be imported, or env kwargs the
            env does not take), or a setting the task cannot take (e.g. a Box action space with a
            discrete-only setting).

    Example::

        trainer = RecurrentPPO(PPOConfig(total_steps=50_000))
        summary = trainer.train()
        print(trainer.evaluate(20)["mean_return"])
    """

    def __init__(self, config: PPOConfig, *, policy: nn.Module | None = None,
                 progress: bool | None = None, overwrite: bool = False) -> None:
        self.config = config
        self.overwrite = overwrite
        self._folder: RunFolder | None = None  # claimed (locked) by the first train()
        self._resumed_from: Path | None = None  # the folder load() read the checkpoint from
        self.dist = distributed.init(config.device)  # one process: nothing to join
        self.progress = (config.progress if progress is None else progress) and self.dist.is_main
        self.run_dir = Path(config.run_dir)
        _seed_everything(distributed.rank_seed(config.seed))
        torch.set_num_threads(config.torch_threads)
        self.device = self.dist.device
        self.venv = make_vector_env(config.env_id, config.num_envs, vector=config.vector,
                                    normalize_obs=config.normalize_obs, env_kwargs=config.env_kwargs,
                                    env_imports=config.env_imports)
        if config.action_masks and not _has_discrete(self.venv.single_action_space):
            self.venv.close()
            raise ConfigError(
                f"action_masks: masks apply to discrete actions, but {config.env_id} has the action space"
                f" {self.venv.single_action_space}; drop --action-masks for this task"
            )
        # A module following RecurrentPolicy: the protocol's methods and nn.Module's both.
        self.policy: Any = cast(Any, policy if policy is not None else self._build_policy())
        self.policy.to(self.device)
        distributed.broadcast_module(self.policy)  # every rank starts from rank 0's weights
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate, eps=1e-5,
                                          foreach=True)
        self.collector = RolloutCollector(self.venv, self.policy, config.n_steps,
                                          chunk_len=config.seq_len or None, device=self.device,
                                          action_mask="action_mask" if config.action_masks else None,
                                          seed=distributed.env_seed(config.seed, config.num_envs))
        self.generator = torch.Generator().manual_seed(distributed.rank_seed(config.seed))
        norm = obs_normalizer(self.venv)
        self._obs_sync = None if norm is None else distributed.RunningStatsSync(norm.obs_rms)
        self.update = 0
        self.steps = 0
        self._elapsed = 0.0
        self._logger: MetricsLogger | None = None

    def _build_policy(self) -> nn.Module:
        c = self.config
        space = self.venv.single_action_space
        policy: nn.Module = FactoredRecurrentActorCritic(
            self.venv.single_observation_space, space,
            hidden_sizes=(c.encoder_size,) if c.encoder_size else (), core=c.core,
            core_hidden_size=c.hidden_size, num_layers=c.num_layers, shared_core=c.shared_core,
        )
        return policy if c.recurrent else MemorylessPolicy(policy)

    @property
    def num_updates(self) -> int:
        """Updates in the whole run: ``ceil(total_steps / (n_steps × num_envs × ranks))``."""
        per = self._steps_per_update
        return -(-self.config.total_steps // per)

    @property
    def _steps_per_update(self) -> int:
        return self.config.n_steps * self.config.num_envs * self.dist.world_size

    # ------------------------------------------------------------------------------------------
    def train(self, *, max_updates: int | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` (or ``max_updates`` more updates); return a summary.

        Metrics go to ``<run_dir>/metrics.jsonl``; a checkpoint is written every
        ``checkpoint_every`` updates and when the call ends, so a stopped run can be resumed.

        Args:
            max_updates: stop after this many updates in this call (``None``: run to the end).

        The first call claims (locks, until :meth:`close`) the run folder.

        Returns:
            ``{"steps", "updates", "time", "steps_per_second", "last_return"}``; ``time`` counts
            this run's training seconds (across resumes), not the evaluation.

        Raises:
            RunFolderError: the folder is taken, holds another run, or refuses a write.
            NonFiniteError: NaN / inf rewards, or a loss or weight after an update (not saved).
        """
        c = self.config
        if self._folder is None:  # one trainer per folder; a fresh run never appends to an old one
            self._folder = claim_run_folder(self.run_dir, resume_from=self._resumed_from,
                                            overwrite=self.overwrite, main=self.dist.is_main)
        started = time.perf_counter() - self._elapsed
        if self.dist.is_main:  # the other ranks write nothing
            self._logger = MetricsLogger(self.run_dir, total_steps=self.num_updates * self._steps_per_update,
                                         progress=self.progress, start_step=self.steps,
                                         elapsed=self._elapsed, truncate=self.steps > 0)
        stop = self.num_updates if max_updates is None else min(self.num_updates, self.update + max_updates)
        last_return = None
        try:
            with mode(c.mode):
                while self.update < stop:
                    record = self._one_update()
                    if record.get("ep_return") is not None:
                        last_return = record["ep_return"]
                    if self.update % c.checkpoint_every == 0 and self.update < stop:
                        self.save(self.run_dir / "checkpoint.pt")
            self.save(self.run_dir / "checkpoint.pt")
        finally:
            self._elapsed = time.perf_counter() - started if self._logger is None else self._logger.elapsed
            if self._logger is not None:
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
        if self._obs_sync is not None:
            self._obs_sync.sync()  # every rank continues with all ranks' observation statistics
        if c.reward_scale != 1.0:
            buffer.rewards.mul_(c.reward_scale)  # the value head learns scaled returns throughout
        self.steps += self._steps_per_update
        self.policy.train()
        buffer.compute_advantages(c.gamma, c.gae_lambda)
        stats = self._optimise(buffer)
        self.update += 1
        check_update_finite(self.update, stats, self.policy.named_parameters())  # before any save
        tallies = distributed.all_gather_objects((self.collector.episode_returns,
                                                  self.collector.episode_lengths))
        returns = [r for rank_returns, _ in tallies for r in rank_returns]
        lengths = [n for _, rank_lengths in tallies for n in rank_lengths]
        record = {
            "update": self.update,
            "ep_return": float(np.mean(returns)) if returns else None,
            "ep_length": float(np.mean(lengths)) if returns else None,
            "episodes": len(returns),
            "lr": self.optimizer.param_groups[0]["lr"],
            "update_seconds": time.perf_counter() - started,
            **stats,
        }
        return record if self._logger is None else self._logger.log(self.steps, record)

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
                losses = self._learn_minibatch(mb)
                parts = losses._asdict()
                for key, values in totals.items():
                    values.append(float(parts[key]))
                kls.append(float(losses.approx_kl))
            # Every rank takes the same decision, or one would wait for the others' all-reduce.
            kl = distributed.mean_across_ranks([float(np.mean(kls))])[0]
            if c.target_kl is not None and distributed.any_rank(kl > 1.5 * c.target_kl):
                break
        names = list(totals)
        means = distributed.mean_across_ranks([float(np.mean(totals[k])) for k in names])
        return {**dict(zip(names, means, strict=True)), "epochs": epochs,
                "explained_variance": self._explained_variance(buffer)}

    def _learn_minibatch(self, mb: SequenceMinibatch) -> PPOLoss:
        """One optimiser step on a minibatch (on N ranks: on the union of the ranks' minibatches)."""
        c = self.config
        out = self.policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state,
                                           mb.action_masks)
        advantages, normalize, weight = mb.advantages, c.normalize_advantage, 1.0
        if self.dist.world_size > 1:
            # The mean / std over all ranks' minibatches (one process normalises over its own).
            if normalize:
                mean, std, _ = distributed.masked_mean_std(mb.advantages, mb.loss_mask)
                advantages, normalize = (mb.advantages - mean) / (std + 1e-8), False
            weight = float(mb.loss_mask.sum())  # each loss is a mean over this rank's real steps
        losses = ppo_loss(
            log_probs=out.log_prob, old_log_probs=mb.log_probs, advantages=advantages,
            values=out.value, old_values=mb.values, returns=mb.returns, entropy=out.entropy,
            loss_mask=mb.loss_mask, clip_range=c.clip_range, clip_range_vf=c.clip_range_vf,
            vf_coef=c.vf_coef, ent_coef=c.ent_coef, normalize_advantage=normalize)
        self.optimizer.zero_grad(set_to_none=True)
        losses.loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        distributed.average_gradients(self.policy.parameters(), weight=weight)
        nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        return losses

    def _explained_variance(self, buffer: RecurrentRolloutBuffer) -> float:
        assert buffer.returns is not None
        valid = torch.from_numpy(buffer.valid).to(buffer.device)  # the flags live on the host
        predicted, returns = buffer.values[valid], buffer.returns[valid]
        if self.dist.world_size > 1:  # over every rank's steps
            ones = torch.ones_like(returns, dtype=torch.bool)
            _, std, _ = distributed.masked_mean_std(returns, ones)
            _, rstd = distributed.masked_mean_std(returns - predicted, ones)[:2]
            return float("nan") if float(std) == 0 else 1.0 - float(rstd) ** 2 / float(std) ** 2
        var = float(returns.var()) if returns.numel() > 1 else 0.0
        return float("nan") if var == 0 else 1.0 - float((returns - predicted).var()) / var

    # ------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int = 20, *, seed: int = 10_000, deterministic: bool = True,
                 num_envs: int | None = None) -> EvalSummary:
        """Run ``episodes`` full episodes in fresh envs and report their returns.

        Episodes are spread evenly over the envs (env ``i`` runs ``(episodes + i) // E`` of them) so
        short episodes are not over-counted. Observation statistics are frozen
        (see :func:`~tether.ppo.evaluation.evaluate_policy`).

        Returns:
            ``{"episodes", "mean_return", "std_return", "returns", "deterministic"}``.
        """
        return evaluate_policy(self.policy, self.config, episodes, seed=seed, deterministic=deterministic,
                               num_envs=num_envs, obs_stats_from=self.venv, device=self.device)

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
        own = self._rank_state()
        parts = distributed.gather_objects(own if self.dist.world_size == 1 else _to_cpu(own))
        try:
            if parts is None:  # not rank 0: its part goes into rank 0's file
                return Path(path)
            return self._write(own, parts[1:], path)
        finally:
            distributed.barrier()  # no rank reads the file before it is whole

    def _write(self, own: dict[str, Any], others: list[Any], path: str | Path) -> Path:
        payload = {
            "config": self.config.to_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "update": self.update,
            "steps": self.steps,
            "elapsed": self._logger.elapsed if self._logger is not None else self._elapsed,
            **own,
            "world_size": self.dist.world_size,
            "ranks": others,
        }
        return save_checkpoint(payload, path)

    def _rank_state(self) -> dict[str, Any]:
        """What is this rank's own: its RNGs, its collector's live run and its envs' episodes."""
        return {
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(legacy=False),
                    "python": random.getstate(), "generator": self.generator.get_state(),
                    # actions sampled on a GPU draw from its generator
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "collector": self.collector.state_dict(),
            "envs": env_state(self.venv, self.collector.venv.autoreset_pending),
        }

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
        source = Path(path)
        if source.is_dir():
            source = source / "checkpoint.pt"
        elif not source.exists():
            raise FileNotFoundError(f"no checkpoint at {source} (expected a run folder holding checkpoint.pt,"
                                    " or a checkpoint file)")
        data = load_checkpoint(source, required=_CHECKPOINT_KEYS)
        if not isinstance(data["config"], dict) or not isinstance(data["policy"], dict):
            raise CheckpointError(f"{source}: the payload is corrupt (its config or policy is not a table)")
        settings = {**data["config"], "run_dir": str(source.parent), **overrides}
        config = PPOConfig.from_dict(settings, source=str(source))
        factory.check_import_consent(config.env_id, config.env_imports, source=source,
                             allowed=[*allow_imports, *overrides.get("env_imports", [])])
        saved, now = data.get("world_size", 1), distributed.init(config.device).world_size
        if saved != now:
            raise ConfigError(
                f"{source}: this run was trained on {saved} rank(s) and cannot continue on {now};"
                f" resume it on {saved} (tether train --resume DIR --nproc {saved})")
        trainer = cls(config, progress=progress)
        trainer._resumed_from = source.parent
        try:
            trainer._restore(data, source)
        except BaseException:
            trainer.close()
            raise
        return trainer

    def _restore(self, data: dict[str, Any], source: Path) -> None:
        mismatch = _layout_mismatch(data["policy"], self.policy.state_dict())
        if mismatch:
            raise CheckpointError(f"{source}: the saved network does not fit the one its settings build:"
                                  f" {mismatch}")
        try:
            self.policy.load_state_dict(data["policy"])
            self.optimizer.load_state_dict(data["optimizer"])
            self.update, self.steps = int(data["update"]), int(data["steps"])
            self._elapsed = float(data["elapsed"])
            own = data if self.dist.rank == 0 else data["ranks"][self.dist.rank - 1]
            self.collector.load_state_dict(own["collector"])
            load_env_state(self.venv, own["envs"])
            if self._obs_sync is not None:
                self._obs_sync.rebase()
            rng = own["rng"]
            torch.set_rng_state(rng["torch"])
            np.random.set_state(rng["numpy"])
            random.setstate(_as_tuples(rng["python"]))
            self.generator.set_state(rng["generator"])
            if rng.get("cuda") and self.device.type == "cuda":
                torch.cuda.set_rng_state_all(rng["cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{source}: the payload is corrupt ({type(err).__name__}:"
                                  f" {_first_line(err)})") from err

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
        changed = sorted(set(overrides) - _RESUMABLE)
        if changed:
            raise ConfigError(
                f"resume: the settings {changed} cannot change mid-run (only {sorted(_RESUMABLE)})")
        return cls.load(run_dir, allow_imports=allow_imports, **overrides)

    def close(self) -> None:
        """Close the envs and the metrics file, and release the run folder."""
        if self._logger is not None:
            self._logger.close()
            self._logger = None
        if self._folder is not None:
            self._folder.release()
        self.collector.venv.close()


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor on the CPU (what rank 0 gathers and writes)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants the tuples ``getstate`` gave (a checkpoint may hold lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value
