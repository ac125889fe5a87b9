"""Evaluate an exported file on its run's env, episode for episode as ``tether eval`` runs the run.

The envs, seeds and episode counts are those of the trainer's evaluation (``min(8, episodes)`` envs,
env ``i`` counting its first ``(episodes + i) // E`` episodes, one ``reset(seed=seed)``); the file
gets the raw observations (its graph normalises them) and the episode-start flags of tether's
vector-env wrapper, which are right in every gymnasium autoreset mode. A deterministic file
therefore gives the returns ``tether eval RUN`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tether.envs.factory import make_vector_env
from tether.export.errors import ExportedFileError
from tether.export.metadata import space_to_json
from tether.export.parity import info_action_mask
from tether.export.runtime import ExportedPolicy
from tether.rollout import TrackedVectorEnv

__all__ = ["evaluate_exported"]


def _check_spaces(policy: ExportedPolicy, venv: Any, env_id: str) -> None:
    for what in ("observation_space", "action_space"):
        recorded = policy.metadata.get(what)
        actual = space_to_json(getattr(venv, f"single_{what}"))
        if recorded != actual:
            raise ExportedFileError(
                f"{policy.source} was exported for the {what.replace('_', ' ')} {recorded}, but {env_id} has"
                f" {actual}; evaluate it on the env it was exported from", path=policy.source)


def evaluate_exported(
    policy: ExportedPolicy, *, env_id: str, episodes: int, seed: int = 10_000, num_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None, env_imports: Sequence[str] = (), action_masks: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` whole episodes of an exported policy in fresh envs of ``env_id``.

    Args:
        policy: the exported policy.
        env_id / env_kwargs / env_imports: the env (made without a normaliser).
        episodes: how many episodes.
        seed: seed of the evaluation envs.
        num_envs: envs to run them in (default ``min(8, episodes)``; a fixed-batch file needs its own).
        action_masks: read ``info["action_mask"]`` (the file must take masks).

    Returns:
        ``{"episodes", "mean_return", "std_return", "returns", "deterministic"}`` as ``tether eval``.

    Raises:
        ExportedFileError: when the file's spaces are not the env's.
        ExportedInputError: when a fixed-batch file cannot run ``num_envs`` envs.
    """
    envs = max(1, min(num_envs or 8, episodes))
    fixed = policy.metadata["batch"]
    if num_envs is None and fixed != "dynamic":
        envs = int(fixed)
    tracked = TrackedVectorEnv(make_vector_env(env_id, envs, env_kwargs=env_kwargs, env_imports=env_imports))
    try:
        _check_spaces(policy, tracked, env_id)
        wanted = np.array([(episodes + i) // envs for i in range(envs)], dtype=np.int64)
        finished = np.zeros(envs, dtype=np.int64)
        running = np.zeros(envs, dtype=np.float64)
        returns: list[float] = []
        obs, info = tracked.reset(seed=seed)
        policy.reset(envs)
        starts = np.ones(envs, dtype=bool)
        masked = action_masks and bool(policy.metadata["inputs"]["action_mask"])
        while (finished < wanted).any():
            action = policy.act(obs, starts, info_action_mask(info, envs) if masked else None)
            step = tracked.step(action)
            running[step.valid] += step.reward[step.valid]
            for row in np.flatnonzero(step.done):
                if finished[row] < wanted[row]:
                    returns.append(float(running[row]))
                    finished[row] += 1
                running[row] = 0.0
            obs, info, starts = step.obs, step.info, step.episode_starts
    finally:
        tracked.close()
    return {"episodes": len(returns), "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "returns": returns, "deterministic": bool(policy.metadata["deterministic"])}
