"""Conversions between tether's types and TorchRL's TensorDict keys.

Layouts: a :class:`~tether.RecurrentState` holds ``[L, B, H]`` tensors; a TensorDict holds the
same state per row as ``[B, L, H]`` (``[B, T, L, H]`` with time). tether's episode starts are
time-major ``[T, B]``; TorchRL's ``is_init`` is ``[B, T, 1]``. An :class:`~tether.EpisodeClock`'s
episode ids play the part of ``TrajCounter``'s ``traj_count``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from tether.clock import EpisodeClock
from tether.state import RecurrentState

__all__ = [
    "clock_entries",
    "episode_ids_from_traj_count",
    "episode_starts_from_is_init",
    "is_init_from_episode_starts",
    "state_from_tensordict",
    "state_to_tensordict",
]


def state_from_tensordict(
    td: TensorDictBase, keys: Sequence[NestedKey], *, clock: EpisodeClock | None = None
) -> RecurrentState:
    """The state under ``keys`` (``[B, L, H]`` each, e.g. ``("recurrent_state_h", "recurrent_state_c")``)
    as a :class:`~tether.RecurrentState` (``[L, B, H]``), checked against ``clock`` if given.

    Raises:
        KeyError: when a key is missing.
        StateMismatchError: for malformed tensors or a batch that does not fit the clock.

    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"h": torch.zeros(3, 2, 4), "c": torch.ones(3, 2, 4)}, batch_size=[3])
    >>> state = state_from_tensordict(td, ["h", "c"])
    >>> tuple(state.c.shape)
    (2, 3, 4)
    """
    tensors = tuple(td.get(key).reshape(-1, *td.get(key).shape[-2:]).transpose(0, 1) for key in keys)
    return RecurrentState.from_tensors(tensors, clock=clock)


def state_to_tensordict(
    state: RecurrentState, td: TensorDictBase, keys: Sequence[NestedKey]
) -> TensorDictBase:
    """Write ``state``'s tensors (``[L, B, H]``) into ``td`` under ``keys`` as ``[B, L, H]``; return ``td``.

    Raises:
        ValueError: when ``keys`` and the state's tensors differ in number.
    """
    if len(keys) != len(state.tensors):
        raise ValueError(f"state_to_tensordict: expected {len(state.tensors)} key(s) for the state's"
                         f" tensors, got {list(keys)}")
    for key, tensor in zip(keys, state.tensors, strict=True):
        td.set(key, tensor.transpose(0, 1))
    return td


def episode_starts_from_is_init(is_init: torch.Tensor) -> np.ndarray:
    """TorchRL's ``is_init`` ``[B, T]`` or ``[B, T, 1]`` as tether's host ``episode_starts [T, B]``.

    Raises:
        ValueError: for another shape or dtype.

    >>> episode_starts_from_is_init(torch.tensor([[True, False, True]]).unsqueeze(-1)).tolist()
    [[True], [False], [True]]
    """
    flags = is_init.squeeze(-1) if is_init.dim() == 3 else is_init
    if flags.dim() != 2 or flags.dtype != torch.bool:
        raise ValueError(f"episode_starts_from_is_init: expected a bool is_init [B, T] or [B, T, 1], got"
                         f" {flags.dtype} {tuple(is_init.shape)}")
    return np.ascontiguousarray(flags.detach().cpu().numpy().T)


def is_init_from_episode_starts(starts: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """tether's ``episode_starts [T, B]`` (numpy or torch) as TorchRL's ``is_init [B, T, 1]``.

    Raises:
        ValueError: for another shape or dtype.
    """
    array = starts.detach().cpu().numpy() if isinstance(starts, torch.Tensor) else np.asarray(starts)
    if array.ndim != 2 or array.dtype != np.bool_:
        raise ValueError(f"is_init_from_episode_starts: expected a bool [T, B], got {array.dtype}"
                         f" {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.T)).unsqueeze(-1).to(device)


def episode_ids_from_traj_count(traj_count: torch.Tensor) -> np.ndarray:
    """``TrajCounter``'s ``traj_count`` ``[B, T(, 1)]`` as host episode ids ``[T, B]`` (int64).

    Raises:
        ValueError: for another shape.
    """
    ids = traj_count.squeeze(-1) if traj_count.dim() == 3 else traj_count
    if ids.dim() != 2:
        raise ValueError(f"episode_ids_from_traj_count: expected traj_count [B, T] or [B, T, 1], got"
                         f" {tuple(traj_count.shape)}")
    return np.ascontiguousarray(ids.detach().cpu().numpy().T.astype(np.int64))


def clock_entries(clock: EpisodeClock, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The clock's now as TorchRL entries: ``is_init`` (rows whose episode began at this tick)
    and ``traj_count`` (the rows' episode ids), each ``[B, 1]``.

    >>> clock = EpisodeClock(2)
    >>> _ = clock.advance(np.array([False, True]))
    >>> {k: v.flatten().tolist() for k, v in clock_entries(clock).items()}
    {'is_init': [False, True], 'traj_count': [0, 2]}
    """
    if clock.tick == 0:
        began = np.ones(clock.num_envs, dtype=bool)
    else:
        recorded = clock.recorded_starts(np.array([clock.tick]), np.arange(clock.num_envs), 1)
        began = np.zeros(clock.num_envs, dtype=bool) if recorded is None else recorded[0][0]
    ids = torch.from_numpy(clock.episode_ids.copy()).view(-1, 1).to(device)
    return {"is_init": torch.from_numpy(began.copy()).view(-1, 1).to(device), "traj_count": ids}
