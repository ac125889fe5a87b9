"""Gathering sampled sequences from the step streams into a :class:`~tether.replay.ReplayBatch`.

One index ``[T, B]`` of ring positions and env columns (``position * E + env``) is built on the host
and sent to the device once; every device stream is then one ``index_select``; the host streams
(rewards, flags, stamps) are numpy fancy indexing. No Python loop over steps or rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.replay.batch import ReplayBatch
from tether.replay.storage import StepStreams
from tether.replay.table import SequenceTable
from tether.state import RecurrentState

__all__ = ["gather_batch"]


def _readonly(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


def stored_state(table: SequenceTable, slots: np.ndarray, clock: EpisodeClock | None,
                 device: torch.device) -> RecurrentState:
    """The stored start states of ``slots`` as one snapshot ``[L, B, H]`` with per-row stamps."""
    slots_dev = torch.from_numpy(slots).to(table.states[0].device)
    tensors = tuple(x.index_select(0, slots_dev).transpose(0, 1).contiguous().to(device)
                    for x in table.states)
    return RecurrentState(tensors=tensors, clock=clock,
                          episode_ids=_readonly(table.ints["episode_id"][slots]),
                          env_rows=_readonly(table.ints["env"][slots]),
                          row_ticks=_readonly(table.ints["tick"][slots]), is_snapshot=True)


def gather_batch(streams: StepStreams, table: SequenceTable, slots: np.ndarray, weights: np.ndarray, *,
                 clock: EpisodeClock | None, length: int, burn_in: int,
                 device: torch.device) -> tuple[ReplayBatch, np.ndarray]:
    """The batch of table ``slots``, ``length`` steps each (and its host mask ``[T, B]``, for the checks)."""
    T, B = length, slots.size
    env, start, real = table.ints["env"][slots], table.ints["start"][slots], table.ints["length"][slots]
    t = np.arange(T)[:, None]
    mask = t < real[None, :]
    # padding repeats the last real step (its observation, action and action mask)
    positions = (start[None, :] + np.minimum(t, real[None, :] - 1)) % streams.steps  # [T, B]
    envs = np.broadcast_to(env[None, :], (T, B))
    index = streams.flat_index(positions, envs, device)
    truncated = streams.truncated[positions, envs] & mask
    trunc_steps = np.argwhere(truncated).astype(np.int64)  # [M, 2] (t, b), time-major
    trunc_index = index.view(T, B)[torch.from_numpy(trunc_steps[:, 0]),
                                   torch.from_numpy(trunc_steps[:, 1])]

    def host(array: np.ndarray, fill: Any) -> np.ndarray:
        picked: np.ndarray = np.where(mask, array[positions, envs], fill)
        return picked

    def dev(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device, non_blocking=True)

    masks = streams.action_masks
    batch = ReplayBatch(
        obs=streams.gather(streams.obs, index, (T, B), device),
        actions=streams.gather(streams.actions, index, (T, B), device),
        rewards=dev(host(streams.rewards, np.float32(0))), terminated=dev(host(streams.terminated, False)),
        truncated=dev(truncated), valid=dev(host(streams.valid, False)), mask=dev(mask),
        episode_starts=host(streams.episode_starts, True),
        initial_state=stored_state(table, slots, clock, device),
        episode_ids=host(streams.episode_ids, -1), ticks=np.where(mask, streams.ticks[positions], -1),
        truncation_steps=trunc_steps,
        final_obs=streams.gather(streams.final_obs, trunc_index, (trunc_steps.shape[0],), device),
        action_masks=None if masks is None else streams.gather(masks, index, (T, B), device),
        versions=table.ints["version"][slots], indices=slots,
        weights=dev(weights.astype(np.float32)), burn_in=burn_in)
    return batch, mask
