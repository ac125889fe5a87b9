"""The typed storage of a rollout buffer, and the checks one step's inputs pass before it is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import attrs
import numpy as np
import torch

from tether.rollout._obs import Tree, batch_rows, tree_leaves, tree_map
from tether.state import RecurrentState


class ReplayWindow(NamedTuple):
    """Stored steps of some env rows, time-major ``[T, B, ...]``, and the snapshot before their first step.

    What a replay needs besides a minibatch: a burn-in ahead of a chunk, or a refresh of the chunk
    starts (see :meth:`RecurrentRolloutBuffer.window`). Every step is real (no padding).
    """

    obs: Tree
    actions: torch.Tensor
    episode_starts: np.ndarray
    action_masks: torch.Tensor | None
    initial_state: RecurrentState


class BurnInGroup(NamedTuple):
    """The sequences of a minibatch that share one burn-in length, and their burn-in window.

    Attributes:
        positions: int64 ``[B_g]``: the columns of the minibatch these sequences are.
        window: their ``K_g`` steps before the chunk start, from the snapshot stored ``K_g`` steps
            earlier; ``None`` when ``K_g = 0`` (a chunk at the rollout's start: no burn-in).
    """

    positions: np.ndarray
    window: ReplayWindow | None


def replay_window(storage: RolloutStorage, snapshots: dict[int, RecurrentState], rows: np.ndarray,
                  first: np.ndarray, length: int, device: torch.device) -> ReplayWindow:
    """The ``length`` steps of env ``rows[j]`` from step ``first[j]``, from the snapshot stored there."""
    steps = sorted(snapshots)
    times = first[None, :] + np.arange(length)[:, None]
    cols = np.broadcast_to(rows[None, :], times.shape)
    index = torch.from_numpy(np.stack([times, cols])).to(device, non_blocking=True)

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x[index[0], index[1]]

    which = torch.from_numpy(np.searchsorted(steps, first)).to(device)
    state = RecurrentState.stack_snapshots([snapshots[k] for k in steps], which, index[1, 0])
    return ReplayWindow(obs=tree_map(pick, storage.obs), actions=pick(storage.actions),
                        episode_starts=storage.episode_starts[times, cols],
                        action_masks=None if storage.action_masks is None else pick(storage.action_masks),
                        initial_state=state)


def burn_in_groups(window: Callable[[np.ndarray, np.ndarray, int], ReplayWindow], starts: np.ndarray,
                   rows: np.ndarray, burn_in: int) -> tuple[BurnInGroup, ...]:
    """A minibatch's sequences grouped by burn-in length (clamped at the rollout's start), with windows."""
    lengths = np.minimum(starts, burn_in)
    groups = []
    for k in np.unique(lengths).tolist():
        positions = np.flatnonzero(lengths == k)
        span = None if k == 0 else window(rows[positions], starts[positions] - k, k)
        groups.append(BurnInGroup(positions=positions, window=span))
    return tuple(groups)


def keep_state(store: tuple[torch.Tensor, ...] | None, t: int, tensors: tuple[torch.Tensor, ...],
               num_steps: int) -> tuple[torch.Tensor, ...]:
    """Copy the state fed at step ``t`` into ``store`` (``[T, L, E, H]`` per tensor, allocated once)."""
    if store is None:
        store = tuple(torch.zeros((num_steps, *x.shape), dtype=x.dtype, device=x.device) for x in tensors)
    for kept, x in zip(store, tensors, strict=True):
        kept[t].copy_(x)
    return store


_FLAGS = ("terminated", "truncated", "episode_starts", "valid")
_FLOATS = ("log_probs", "values", "rewards", "bootstrap_values")
_V = TypeVar("_V")


@attrs.define(slots=True, kw_only=True)
class RolloutStorage:
    """The arrays of one rollout, ``[T, E, ...]``: device tensors for the loss, host flags for replay.

    Allocated by the buffer at its first ``add`` from that step's shapes and dtypes, and reused.
    """

    obs: Tree
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    bootstrap_values: torch.Tensor
    terminated: np.ndarray
    truncated: np.ndarray
    episode_starts: np.ndarray
    valid: np.ndarray
    action_masks: torch.Tensor | None


class Stored(Generic[_V]):
    """A read-only buffer attribute that reads the field of the same name from its storage."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, buffer: Any, owner: type | None = None) -> _V:
        storage = buffer._storage
        if storage is None:
            raise AttributeError(f"RecurrentRolloutBuffer.{self.name}: nothing was added yet (storage is"
                                 " allocated at the first add())")
        value: _V = getattr(storage, self.name)
        return value


# --------------------------------------------------------------------------------------------
# one step's inputs: checked and converted before anything is written
class StepCheck:
    """Converts one step's inputs to their stored form, refusing any that is not one per env."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.num_envs, self.device = num_envs, device

    def floats(self, name: str, value: Any) -> torch.Tensor:
        tensor = torch.as_tensor(value).to(self.device, torch.float32)
        self._shape(name, tuple(tensor.shape))
        return tensor

    def flags(self, name: str, value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value).astype(bool, copy=False)
        self._shape(name, array.shape)
        return array

    def _shape(self, name: str, shape: tuple[int, ...]) -> None:
        if shape != (self.num_envs,):
            raise ValueError(f"RecurrentRolloutBuffer.add: expected {name} shaped [{self.num_envs}]"
                             f" (one per env), got {list(shape)}")

    def validated(self, *, obs: Tree, actions: Any, action_masks: Any, valid: Any,
                  bootstrap_values: Any, **per_env: Any) -> dict[str, Any]:
        E = self.num_envs
        obs = tree_map(lambda x: torch.as_tensor(x).to(self.device), obs)
        actions = torch.as_tensor(actions).to(self.device)
        for name, value in (("obs", obs), ("actions", actions)):
            if batch_rows(value) != E:
                raise ValueError(f"RecurrentRolloutBuffer.add: expected {name} with {E} rows (one per"
                                 f" env), got {batch_rows(value)}")
        step: dict[str, Any] = {"obs": obs, "actions": actions}
        per_env["bootstrap_values"] = np.zeros(E) if bootstrap_values is None else bootstrap_values
        per_env["valid"] = np.ones(E, dtype=bool) if valid is None else valid
        for name in _FLOATS:
            step[name] = self.floats(name, per_env[name])
        for name in _FLAGS:
            step[name] = self.flags(name, per_env[name])
        step["action_masks"] = None
        if action_masks is not None:
            masks = torch.as_tensor(action_masks).to(self.device, torch.bool)
            if masks.dim() < 1 or masks.shape[0] != E:
                raise ValueError(f"RecurrentRolloutBuffer.add: expected action_masks [E={E}, ...], got"
                                 f" {list(masks.shape)}")
            step["action_masks"] = masks
        return step


def allocate(step: dict[str, Any], num_steps: int, device: torch.device) -> RolloutStorage:
    def storage(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return np.zeros((num_steps, *x.shape), dtype=x.dtype)
        return torch.zeros((num_steps, *x.shape), dtype=x.dtype, device=device)

    fields: dict[str, Any] = {name: None if value is None else tree_map(storage, value)
                              for name, value in step.items()}
    return RolloutStorage(**fields)


def check_layout(storage: RolloutStorage, step: dict[str, Any]) -> None:
    has_masks = storage.action_masks is not None
    if has_masks != (step["action_masks"] is not None):
        raise ValueError("RecurrentRolloutBuffer.add: expected action_masks in every step or in"
                         f" none; storage {'has' if has_masks else 'has no'} masks")
    for name, value in step.items():
        if value is None:
            continue
        stored, given = tree_leaves(getattr(storage, name)), tree_leaves(value)
        if len(stored) != len(given) or any(
                s.shape[1:] != g.shape or s.dtype != g.dtype for s, g in zip(stored, given, strict=True)):
            raise ValueError(
                f"RecurrentRolloutBuffer.add: {name} does not match the storage allocated at the"
                f" first step: expected {[(tuple(s.shape[1:]), s.dtype) for s in stored]}, got"
                f" {[(tuple(g.shape), g.dtype) for g in given]}"
            )
