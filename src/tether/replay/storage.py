"""The per-env step streams of a sequence replay: one circular stream of steps per env, ``[S, E, ...]``.

Every env writes one step per :meth:`StepStreams.put`, in lockstep, so absolute step ``n`` of every
env's stream lives at ring position ``n % S``. Overlapping sequences share these steps (a sequence
is only a start and a length into its env's stream, see :mod:`tether.replay.table`).

Where things live: what the learner's loss reads as tensors (observations, final observations,
actions, action masks) on the buffer's device; rewards and the per-step flags and stamps
(terminated, truncated, valid, episode starts, episode ids, ticks) on the host as numpy, so the
alignment checks and the unroll's planner read them without a device round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.rollout._obs import Tree, batch_rows, tree_leaves, tree_map

__all__ = ["StepStreams", "step_layout"]

_HOST = ("rewards", "terminated", "truncated", "valid", "episode_starts", "episode_ids")


def _leaf_layout(tree: Tree, skip: int = 1) -> list[tuple[tuple[int, ...], torch.dtype]]:
    return [(tuple(x.shape[skip:]), x.dtype) for x in tree_leaves(tree)]


def step_layout(step: dict[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes (without the env axis) of one step's device fields, to compare steps by."""
    masks = step["action_masks"]
    return {"obs": _leaf_layout(step["obs"]), "actions": _leaf_layout(step["actions"]),
            "action_masks": None if masks is None else _leaf_layout(masks)}


class StepStreams:
    """``S`` steps of ``E`` envs, allocated once from the first step's shapes and dtypes.

    Attributes:
        obs / final_obs: ``[S, E, ...]`` trees of tensors on ``device``.
        actions: ``[S, E, ...]`` tensor; action_masks: ``[S, E, ...]`` bool tensor or ``None``.
        rewards: float32 ``[S, E]``; terminated / truncated / valid / episode_starts: bool
            ``[S, E]``; episode_ids: int64 ``[S, E]``: host numpy.
        ticks: int64 ``[S]``: the clock tick of the step at each position (all envs share it).
    """

    def __init__(self, steps: int, num_envs: int, step: dict[str, Any], device: torch.device) -> None:
        self.steps, self.num_envs, self.device = steps, num_envs, device

        def ring(x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((steps, *x.shape), dtype=x.dtype, device=device)

        self.obs: Tree = tree_map(ring, step["obs"])
        self.final_obs: Tree = tree_map(ring, step["obs"])
        self.actions: torch.Tensor = ring(step["actions"])
        masks = step["action_masks"]
        self.action_masks: torch.Tensor | None = None if masks is None else ring(masks)
        self.layout = step_layout(step)
        shape = (steps, num_envs)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)
        self.episode_starts = np.zeros(shape, dtype=bool)
        self.episode_ids = np.full(shape, -1, dtype=np.int64)
        self.ticks = np.full(steps, -1, dtype=np.int64)

    # ----------------------------------------------------------------------------------------
    def put(self, position: int, step: dict[str, Any]) -> None:
        """Write one step of every env at ring ``position``."""
        p = position
        tree_map(lambda store, x: store[p].copy_(x), self.obs, step["obs"])
        tree_map(lambda store, x: store[p].copy_(x), self.final_obs, step["final_obs"])
        self.actions[p].copy_(step["actions"])
        if self.action_masks is not None:
            self.action_masks[p].copy_(step["action_masks"])
        for name in _HOST:
            getattr(self, name)[p] = step[name]
        self.ticks[p] = step["tick"]

    @property
    def nbytes(self) -> int:
        """Bytes the streams hold (device tensors and host arrays)."""
        tensors = [*tree_leaves(self.obs), *tree_leaves(self.final_obs), self.actions]
        if self.action_masks is not None:
            tensors.append(self.action_masks)
        host = [getattr(self, name) for name in _HOST] + [self.ticks]
        return int(sum(t.numel() * t.element_size() for t in tensors)) + sum(int(a.nbytes) for a in host)

    # ----------------------------------------------------------------------------------------
    # gathers: positions and env columns [T, B] -> [T, B, ...]
    def flat_index(self, positions: np.ndarray, envs: np.ndarray, device: torch.device) -> torch.Tensor:
        """The flat ``position * E + env`` index ``[T * B]`` of a gather, on ``device``."""
        flat = (positions * self.num_envs + envs).reshape(-1)
        return torch.from_numpy(flat).to(self.device, non_blocking=True)

    def gather(self, tree: Tree, index: torch.Tensor, shape: tuple[int, ...],
               device: torch.device) -> Tree:
        """Rows ``index`` (from :meth:`flat_index`) of a ``[S, E, ...]`` tree, as ``[*shape, ...]``."""

        def pick(x: torch.Tensor) -> torch.Tensor:
            rest = tuple(x.shape[2:])
            out = x.view(self.steps * self.num_envs, *rest).index_select(0, index)
            return out.view(*shape, *rest).to(device, non_blocking=True)

        return tree_map(pick, tree)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_saved(cls, steps: int, num_envs: int, data: dict[str, Any], device: torch.device) -> StepStreams:
        """Streams restored from :meth:`state_dict`'s ``data``.

        Raises:
            ValueError: when the saved streams do not fit ``steps`` × ``num_envs``.
        """
        masks = data["action_masks"]
        template = {"obs": tree_map(lambda x: x[0], data["obs"]), "actions": data["actions"][0],
                    "action_masks": None if masks is None else masks[0]}
        if batch_rows(template["actions"]) != num_envs:
            raise ValueError(f"expected streams of {num_envs} envs, got {batch_rows(template['actions'])}")
        streams = cls(steps, num_envs, template, device)
        streams.load_state_dict(data)
        return streams

    def state_dict(self) -> dict[str, Any]:
        """Every stream as tensors (loads with ``torch.load(weights_only=True)``)."""
        data: dict[str, Any] = {
            "obs": tree_map(lambda x: x.clone(), self.obs),
            "final_obs": tree_map(lambda x: x.clone(), self.final_obs),
            "actions": self.actions.clone(),
            "action_masks": None if self.action_masks is None else self.action_masks.clone(),
            "ticks": torch.from_numpy(self.ticks.copy()),
        }
        for name in _HOST:
            data[name] = torch.from_numpy(getattr(self, name).copy())
        return data

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Copy the streams saved by :meth:`state_dict` into this (same-shaped) storage.

        Raises:
            ValueError: when a saved stream's shape or dtype differs from this storage's.
        """
        saved = {"obs": _leaf_layout(data["obs"], 2), "actions": _leaf_layout(data["actions"], 2),
                 "action_masks": None if data["action_masks"] is None else
                 _leaf_layout(data["action_masks"], 2)}
        if saved != self.layout or batch_rows(data["actions"]) != self.steps:
            raise ValueError(f"expected streams of {self.steps} steps laid out as {self.layout}, got"
                             f" {batch_rows(data['actions'])} steps laid out as {saved}")
        tree_map(lambda store, x: store.copy_(x), self.obs, data["obs"])
        tree_map(lambda store, x: store.copy_(x), self.final_obs, data["final_obs"])
        self.actions.copy_(data["actions"])
        if self.action_masks is not None:
            self.action_masks.copy_(data["action_masks"])
        for name in _HOST:
            getattr(self, name)[...] = data[name].numpy()
        self.ticks[...] = data["ticks"].numpy()
