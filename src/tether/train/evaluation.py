"""Evaluation: whole episodes of a policy in fresh envs, on the rollout collector's own step.

No second rollout loop: the episodes run through :meth:`RolloutCollector.run_episodes`, so
evaluation converts observations, reads action masks and checks the policy exactly as training
does. Observation-normalisation statistics come from the training envs and stay frozen.
"""

from __future__ import annotations

import copy
from typing import Any, TypedDict

import numpy as np
import torch

from tether.envs.factory import make_vector_env, obs_normalizer
from tether.modes import mode
from tether.policy import RecurrentPolicy
from tether.rollout import RolloutCollector
from tether.train.config import RunSettings

__all__ = ["EvalSummary", "evaluate_policy"]


class EvalSummary(TypedDict):
    """What :func:`evaluate_policy` returns (and ``eval.json`` holds)."""

    episodes: int
    mean_return: float
    std_return: float
    returns: list[float]
    deterministic: bool


def evaluate_policy(
    policy: RecurrentPolicy,
    config: RunSettings,
    episodes: int,
    *,
    seed: int = 10_000,
    deterministic: bool = True,
    num_envs: int | None = None,
    obs_stats_from: Any = None,
    device: torch.device | str = "cpu",
) -> EvalSummary:
    """Run ``episodes`` episodes of ``policy`` in fresh envs of ``config``'s task.

    Episodes are spread evenly over the envs (env ``i`` runs ``(episodes + i) // E`` of them).

    Args:
        policy: the policy (put in eval mode here).
        config: the run's settings (env id, imports, kwargs, normalisation, action masks, mode).
        episodes: how many episodes.
        seed: seed of the evaluation envs.
        deterministic: the policy's most likely action, instead of a sample.
        num_envs: envs to run them in (default ``min(8, episodes)``).
        obs_stats_from: the training vector env whose observation statistics to use (frozen).
        device: where the policy runs.

    Returns:
        An :class:`EvalSummary`.
    """
    envs = max(1, min(num_envs or 8, episodes))
    venv = make_vector_env(config.env_id, envs, normalize_obs=config.normalize_obs,
                           env_kwargs=config.env_kwargs, env_imports=config.env_imports)
    source, target = obs_normalizer(obs_stats_from), obs_normalizer(venv)
    if target is not None:
        if source is not None:
            target.obs_rms = copy.deepcopy(source.obs_rms)
        target.update_running_mean = False
    collector = RolloutCollector(venv, policy, 1, device=device,
                                 action_mask="action_mask" if config.action_masks else None)
    if isinstance(policy, torch.nn.Module):
        policy.eval()
    try:
        with mode(config.mode):
            returns = collector.run_episodes([(episodes + i) // envs for i in range(envs)], seed=seed,
                                             deterministic=deterministic)
    finally:
        venv.close()
    return {"episodes": len(returns), "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)), "returns": returns, "deterministic": deterministic}
