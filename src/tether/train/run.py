"""Run: what every trainer shares, held by composition (a trainer has a ``Run``; it is not one).

A :class:`Run` owns the process's place in the job (:class:`~tether.distributed.DistContext`),
the seeds, the vector env, the policy and its optimiser (built by the trainer's callbacks), the
rollout collector, the trainer's generator, the counters (updates, env steps, seconds), the
metrics logger with its progress bar, checkpoints with exact resume, and evaluation. A trainer
adds only what is its own: its sink (the on-policy buffer, a replay buffer), its loss and its
update schedule. See docs/architecture.md for the way a transition travels through these rooms.

Checkpoints: rank 0 writes one file holding the settings (flat), the trainer's ``algo`` name, the
weights, the optimiser, the counters, and every rank's own part (RNGs, collector, envs: see
:mod:`tether.train.resume`); a trainer adds its own entries through ``extra``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tether import distributed
from tether.envs.factory import check_import_consent, make_vector_env, obs_normalizer
from tether.errors import CheckpointError, ConfigError
from tether.rollout import RolloutCollector
from tether.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from tether.train.config import RunSettings
from tether.train.evaluation import EvalSummary, evaluate_policy
from tether.train.metrics import MetricsLogger
from tether.train.resume import layout_mismatch, rank_state, restore_rank_state, to_cpu
from tether.train.rng import seed_everything
from tether.train.run_folder import RunFolder, claim_run_folder

__all__ = ["CHECKPOINT_KEYS", "RESUMABLE", "Run", "check_resumable", "load_trainer"]

CHECKPOINT_KEYS = ("config", "policy", "optimizer", "update", "steps", "elapsed", "rng", "collector", "envs")
#: What a resumed run may change: everything else would make it another run.
RESUMABLE = frozenset({"total_steps", "progress", "checkpoint_every", "eval_episodes", "mode"})


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Run:
    """The shared half of a trainer: env, policy, optimiser, collector, counters, logs, checkpoints.

    Args:
        config: the trainer's settings (env and run concerns are read here).
        algo: the trainer's name in checkpoints (``"ppo"``).
        build_policy: makes the policy from the vector env (its spaces); not called when
            ``policy`` is given.
        build_optimizer: makes the optimiser of the policy (after it is on its device).
        rollout_steps: steps per env of one ``collector.collect``.
        policy: a ready policy following :class:`~tether.policy.RecurrentPolicy`.
        progress: override ``config.progress`` (only rank 0 ever shows a bar).
        overwrite: a fresh run may replace the run its folder holds (else :meth:`recording`
            refuses it).

    Attributes:
        resumed_from: the folder the checkpoint was read from, for a loaded run (set by the
            trainer's ``load``): a run continues in its own folder, and is fresh anywhere else.

    Raises:
        ConfigError: for a device this machine cannot use, an unknown env id, env kwargs the env
            does not take, or a module that cannot be imported.
    """

    def __init__(self, config: RunSettings, *, algo: str,
                 build_policy: Callable[[gym.vector.VectorEnv[Any, Any, Any]], nn.Module],
                 build_optimizer: Callable[[nn.Module], torch.optim.Optimizer], rollout_steps: int,
                 policy: nn.Module | None = None, progress: bool | None = None,
                 overwrite: bool = False) -> None:
        self.config, self.algo = config, algo
        self.overwrite = overwrite
        self.resumed_from: Path | None = None
        self._folder: RunFolder | None = None  # claimed (locked) by the first recording()
        self.dist = distributed.init(config.device)  # one process: nothing to join
        self.progress = (config.progress if progress is None else progress) and self.dist.is_main
        self.run_dir = Path(config.run_dir)
        self.device = self.dist.device
        seed_everything(distributed.rank_seed(config.seed))
        torch.set_num_threads(config.torch_threads)
        self.venv = make_vector_env(config.env_id, config.num_envs, vector=config.vector,
                                    normalize_obs=config.normalize_obs, env_kwargs=config.env_kwargs,
                                    env_imports=config.env_imports)
        try:
            built = policy if policy is not None else build_policy(self.venv)
        except BaseException:
            self.venv.close()
            raise
        # A module following RecurrentPolicy: the protocol's methods and nn.Module's both.
        self.policy: Any = cast(Any, built.to(self.device))
        distributed.broadcast_module(self.policy)  # every rank starts from rank 0's weights
        self.optimizer = build_optimizer(self.policy)
        self.collector = RolloutCollector(self.venv, self.policy, rollout_steps, device=self.device,
                                          action_mask="action_mask" if config.action_masks else None,
                                          seed=distributed.env_seed(config.seed, config.num_envs))
        self.generator = torch.Generator().manual_seed(distributed.rank_seed(config.seed))
        norm = obs_normalizer(self.venv)
        self._obs_sync = None if norm is None else distributed.RunningStatsSync(norm.obs_rms)
        self.update = 0
        self.steps = 0
        self.elapsed = 0.0
        self.logger: MetricsLogger | None = None

    # ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def recording(self, total_steps: int) -> Iterator[None]:
        """Claim the run folder, open the metrics (rank 0) for a training call; keep the seconds spent.

        The first call claims the folder for this trainer's life (one trainer per folder; a fresh
        run never appends to an old one: see :func:`~tether.train.run_folder.claim_run_folder`).

        Args:
            total_steps: the run's steps, for the progress bar.

        Raises:
            RunFolderError: the folder is taken, holds another run, or refuses a write.
        """
        if self._folder is None:
            self._folder = claim_run_folder(self.run_dir, resume_from=self.resumed_from,
                                            overwrite=self.overwrite, dist=self.dist)
        started = time.perf_counter() - self.elapsed
        if self.dist.is_main:  # the other ranks write nothing
            self.logger = MetricsLogger(self.run_dir, total_steps=total_steps, progress=self.progress,
                                        start_step=self.steps, elapsed=self.elapsed, truncate=self.steps > 0)
        try:
            yield
        finally:
            self.elapsed = time.perf_counter() - started if self.logger is None else self.logger.elapsed
            if self.logger is not None:
                self.logger.close()
                self.logger = None

    def log(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write one update's record at the current step (rank 0); return it as written."""
        return record if self.logger is None else self.logger.log(self.steps, record)

    def collected(self) -> None:
        """After each collection: every rank continues with all ranks' observation statistics."""
        if self._obs_sync is not None:
            self._obs_sync.sync()

    def episode_stats(self) -> dict[str, Any]:
        """The mean return and length of the episodes that ended in the last collection, over ranks."""
        tallies = self.dist.all_gather((self.collector.episode_returns, self.collector.episode_lengths))
        returns = [r for rank_returns, _ in tallies for r in rank_returns]
        lengths = [n for _, rank_lengths in tallies for n in rank_lengths]
        return {"ep_return": float(np.mean(returns)) if returns else None,
                "ep_length": float(np.mean(lengths)) if returns else None, "episodes": len(returns)}

    def evaluate(self, episodes: int, *, seed: int, deterministic: bool, num_envs: int | None) -> EvalSummary:
        """Whole episodes of the policy in fresh envs (see :func:`~tether.train.evaluate_policy`)."""
        return evaluate_policy(self.policy, self.config, episodes, seed=seed, deterministic=deterministic,
                               num_envs=num_envs, obs_stats_from=self.venv, device=self.device)

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint atomically; a collective (every rank calls it, rank 0 writes).

        Args:
            path: the file.
            extra: the trainer's own entries (tensors and plain data).

        Returns:
            The path written (on every rank).
        """
        own = rank_state(self.collector, self.venv, self.generator, self.device)
        parts = self.dist.gather(own if self.dist.world_size == 1 else to_cpu(own))
        try:
            if parts is None:  # not rank 0: its part goes into rank 0's file
                return Path(path)
            payload = {
                "algo": self.algo,
                "config": self.config.to_dict(),
                "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "update": self.update,
                "steps": self.steps,
                "elapsed": self.logger.elapsed if self.logger is not None else self.elapsed,
                **own,
                "world_size": self.dist.world_size,
                "ranks": parts[1:],
                **(extra or {}),
            }
            return save_checkpoint(payload, path)
        finally:
            self.dist.barrier()  # no rank reads the file before it is whole

    @staticmethod
    def read(path: str | Path, algo: str) -> tuple[Path, dict[str, Any]]:
        """Read a run's checkpoint (a file, or a run folder holding ``checkpoint.pt``) for ``algo``.

        Returns:
            The file read and its payload.

        Raises:
            FileNotFoundError: when there is no checkpoint there.
            CheckpointError: for a corrupt or foreign file, or another algorithm's.
        """
        source = checkpoint_path(path)
        data = load_checkpoint(source, required=CHECKPOINT_KEYS)
        if not isinstance(data["config"], dict) or not isinstance(data["policy"], dict):
            raise CheckpointError(f"{source}: the payload is corrupt (its config or policy is not a table)")
        saved_algo = data.get("algo", "ppo")  # checkpoints before the algo key are PPO's
        if saved_algo != algo:
            raise CheckpointError(f"{source}: this is a {saved_algo!r} run, not {algo!r};"
                                  f" use tether train --algo {saved_algo}")
        return source, data

    @staticmethod
    def check_imports(source: Path, config: RunSettings, allowed: Sequence[str]) -> None:
        """Refuse a saved run whose env would import a module only its checkpoint names.

        Raises:
            ConfigError: naming the module and ``--env-import NAME`` (see
                :func:`~tether.envs.factory.check_import_consent`).
        """
        check_import_consent(config.env_id, config.env_imports, source=source, allowed=allowed)

    @staticmethod
    def check_ranks(source: Path, data: dict[str, Any], device: str) -> None:
        """Refuse to continue a run on another number of ranks than it was trained on.

        Joins the job's process group for ``device`` (as the run will) to count the ranks.

        Raises:
            ConfigError: naming both counts and the command that resumes it.
        """
        saved, now = data.get("world_size", 1), distributed.init(device).world_size
        if saved != now:
            raise ConfigError(
                f"{source}: this run was trained on {saved} rank(s) and cannot continue on {now};"
                f" resume it on {saved} (tether train --resume DIR --nproc {saved})")

    def restore(self, data: dict[str, Any], source: Path) -> None:
        """Continue the run saved in ``data`` (read from ``source``): weights, optimiser, counters, ranks.

        Raises:
            CheckpointError: for a network that does not fit, or a corrupt payload.
        """
        mismatch = layout_mismatch(data["policy"], self.policy.state_dict())
        if mismatch:
            raise CheckpointError(f"{source}: the saved network does not fit the one its settings build:"
                                  f" {mismatch}")
        try:
            self.policy.load_state_dict(data["policy"])
            self.optimizer.load_state_dict(data["optimizer"])
            self.update, self.steps = int(data["update"]), int(data["steps"])
            self.elapsed = float(data["elapsed"])
            own = data if self.dist.rank == 0 else data["ranks"][self.dist.rank - 1]
            restore_rank_state(own, self.collector, self.venv, self.generator, self.device)
            if self._obs_sync is not None:
                self._obs_sync.rebase()
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{source}: the payload is corrupt ({type(err).__name__}:"
                                  f" {_first_line(err)})") from err

    def close(self) -> None:
        """Close the metrics file and the envs, and release the run folder."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        if self._folder is not None:
            self._folder.release()
        self.collector.venv.close()


class _Trainer(Protocol):
    run: Run

    def close(self) -> None: ...


_T = TypeVar("_T", bound=_Trainer)


def load_trainer(trainer: Callable[..., _T], settings: Any, path: str | Path, *, progress: bool | None,
                 allow_imports: Sequence[str], overrides: dict[str, Any],
                 restore: Callable[[_T, dict[str, Any]], None] | None = None) -> _T:
    """A trainer rebuilt from a checkpoint file (or a run folder holding ``checkpoint.pt``).

    What every trainer's ``load`` does: read the file for the settings class's ``ALGO``, rebuild
    the settings (``overrides`` win; the run folder is where the file now is), refuse imports the
    checkpoint alone names and another number of ranks, build the trainer, restore the shared
    half, then the trainer's own entries (``restore(trainer, data)``); on any failure the trainer
    is closed.

    Args:
        trainer: the trainer class (called as ``trainer(config, progress=progress)``).
        settings: its settings class (``ALGO``, ``from_dict``).
        path: the checkpoint, or its run folder.
        progress: override the progress bar setting.
        allow_imports: modules the checkpoint's env may import.
        overrides: settings to change.
        restore: restores the trainer's own checkpoint entries.

    Raises:
        FileNotFoundError: when there is no checkpoint there.
        CheckpointError: for a corrupt or foreign file, or a network that does not fit.
        ConfigError: for an unknown override, invalid saved settings, a refused import or another
            number of ranks.
    """
    source, data = Run.read(path, settings.ALGO)
    config = settings.from_dict({**data["config"], "run_dir": str(source.parent), **overrides},
                                source=str(source))
    Run.check_imports(source, config, [*allow_imports, *overrides.get("env_imports", [])])
    Run.check_ranks(source, data, config.device)
    built = trainer(config, progress=progress)
    built.run.resumed_from = source.parent
    try:
        built.run.restore(data, source)
        if restore is not None:
            restore(built, data)
    except BaseException:
        built.close()
        raise
    return built


def check_resumable(overrides: dict[str, Any]) -> None:
    """Refuse overrides a resumed run cannot take (only :data:`RESUMABLE` settings may change).

    Raises:
        ConfigError: naming the settings and those that may change.
    """
    changed = sorted(set(overrides) - RESUMABLE)
    if changed:
        raise ConfigError(f"resume: the settings {changed} cannot change mid-run (only {sorted(RESUMABLE)})")
