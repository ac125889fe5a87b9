"""Exact resume: what one rank of a run must save to continue bit-identical, and its restore.

A rank's live run is three things, each saved by the room that owns its mechanics:

- the collector's run (hidden state, clock, last observation, tallies):
  :meth:`RolloutCollector.state_dict <tether.rollout.RolloutCollector.state_dict>`;
- the envs' live episodes as replayable records and the observation statistics:
  :func:`tether.envs.factory.env_state` (replayed by :func:`~tether.envs.factory.load_env_state`);
- every random generator: :func:`~tether.train.rng.capture_rng`.

This module puts them together and restores them in the one order that works: the collector
first (it resets the envs and binds its state to the restored clock), then the envs' episodes
(replayed into the reset envs), then the generators (the replay must not move them).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from tether.envs.factory import env_state, load_env_state
from tether.rollout import RolloutCollector
from tether.train.rng import capture_rng, restore_rng

__all__ = ["layout_mismatch", "rank_state", "restore_rank_state", "to_cpu"]


def rank_state(collector: RolloutCollector, venv: gym.vector.VectorEnv[Any, Any, Any],
               generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """This rank's own part of a checkpoint: ``{"rng", "collector", "envs"}``, plain data.

    Args:
        collector: the rank's collector.
        venv: the vector env the collector steps (as :func:`~tether.envs.make_vector_env` made it).
        generator: the trainer's own generator.
        device: the run's device.
    """
    return {"rng": capture_rng(generator, device), "collector": collector.state_dict(),
            "envs": env_state(venv, collector.venv.autoreset_pending)}


def restore_rank_state(own: dict[str, Any], collector: RolloutCollector,
                       venv: gym.vector.VectorEnv[Any, Any, Any], generator: torch.Generator,
                       device: torch.device) -> None:
    """Continue the rank's run saved by :func:`rank_state`, in fresh envs.

    Raises:
        KeyError / TypeError / ValueError / RuntimeError / IndexError: for a part that is not one
            :func:`rank_state` wrote (the caller names the file).
    """
    collector.load_state_dict(own["collector"])
    load_env_state(venv, own["envs"])
    restore_rng(own["rng"], generator, device)


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor on the CPU (what rank 0 gathers and writes)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def layout_mismatch(saved: dict[str, Any], expected: dict[str, torch.Tensor]) -> str | None:
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
