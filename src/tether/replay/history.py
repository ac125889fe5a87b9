"""The way back to a sampled sequence's true episode start, for R2D2's staleness measure (Δq).

Δq compares the state a replay starts from (stored or zero, plus burn-in) with the state the
current network would have at the same step had it run from the episode's true first step. The
buffer rebuilds that path from its streams: for each sampled sequence it scans the stored episode
ids back in the env's stream from the sequence's first step (the episode began where the id
changes, or where the stream's oldest step is an episode start), and gathers the steps from there
up to the sequence's last step. Cost: ``max_steps + 1`` host reads per row (vectorised over rows),
one gather of ``offset + length`` steps per covered row, and the caller's unroll of up to
``max_steps + length`` steps from a zero state.
"""

from __future__ import annotations

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.replay.batch import History, ReplayBatch
from tether.replay.storage import StepStreams
from tether.replay.table import SequenceTable
from tether.state import RecurrentState

__all__ = ["episode_history"]


def _readonly(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


def _first_steps(streams: StepStreams, table: SequenceTable, batch: ReplayBatch, written: int,
                 max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch row: its first step's absolute position, how far back its episode began, covered."""
    S = streams.steps
    slots = batch.indices
    env = batch.initial_state.rows()
    start = table.ints["start"][slots]
    oldest = max(0, written - S)
    tick0, id0 = batch.ticks[0], batch.episode_ids[0]
    # The slot still holds this sequence, and the stream still holds its first step.
    same = (table.live[slots] & (table.ints["env"][slots] == env) & (start >= oldest)
            & (streams.ticks[start % S] == tick0))
    back = np.arange(max_steps + 2)[:, None]  # [K, B]: k steps before the first
    at = start[None, :] - back
    pos = at % S
    match = ((at >= oldest) & (streams.episode_ids[pos, env[None, :]] == id0[None, :])
             & (streams.ticks[pos] == tick0[None, :] - back))
    ends = ~match
    found = ends.any(axis=0)
    offsets = np.where(found, ends.argmax(axis=0) - 1, max_steps + 1)
    first = start - offsets
    begins = streams.episode_starts[first % S, env]
    covered = same & found & (offsets >= 0) & (offsets <= max_steps) & begins
    return first, offsets, covered


def episode_history(streams: StepStreams, table: SequenceTable, batch: ReplayBatch, *, written: int,
                    max_steps: int, clock: EpisodeClock | None, device: torch.device) -> History:
    """The stored steps from each sampled sequence's episode start to its last step (see the module)."""
    first, offsets, covered = _first_steps(streams, table, batch, written, max_steps)
    rows = np.flatnonzero(covered)
    env = batch.initial_state.rows()[rows]
    lengths = offsets[rows] + (batch.ticks[:, rows] >= 0).sum(axis=0)
    Th = int(lengths.max()) if rows.size else 0
    t = np.arange(Th)[:, None]
    mask = t < lengths[None, :]
    positions = (first[rows][None, :] + np.minimum(t, lengths[None, :] - 1)) % streams.steps
    envs = np.broadcast_to(env[None, :], positions.shape)
    index = streams.flat_index(positions, envs, device)
    starts = np.where(mask, streams.episode_starts[positions, envs], True)
    stored = table.states
    zeros = tuple(torch.zeros((x.shape[1], rows.size, x.shape[2]), dtype=x.dtype, device=device)
                  for x in stored)
    state = RecurrentState(tensors=zeros, clock=clock, episode_ids=_readonly(batch.episode_ids[0, rows]),
                           env_rows=_readonly(env),
                           row_ticks=_readonly(batch.ticks[0, rows] - offsets[rows]), is_snapshot=True)
    return History(obs=streams.gather(streams.obs, index, positions.shape, device),
                   episode_starts=starts, mask=torch.from_numpy(mask).to(device),
                   rows=rows.astype(np.int64), offsets=offsets[rows].astype(np.int64), initial_state=state)
