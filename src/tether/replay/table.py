"""The sequence table of a replay: where each sequence starts in its env's stream, and its stored state.

A sequence is open while its steps are still being written (per env, in a small ring of
``ceil(length / period)`` open slots) and enters the table of ``capacity`` slots when it is
complete (its ``length`` steps are written, or it was cut at an episode end). The table is a FIFO
over completion order: a new sequence takes the slot of the oldest one, which is evicted with it.
A slot holds (env, first absolute step, valid length, policy version, the stored start state with
its stamps: tick and episode id).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SequenceTable"]

_TABLE_INTS = ("env", "start", "length", "version", "tick", "episode_id")
_OPEN_INTS = ("start", "tick", "episode_id", "version")


class SequenceTable:
    """Complete sequences (``capacity`` slots) and open ones (``open_slots`` per env).

    Args:
        capacity: table slots ``C``.
        num_envs: envs ``E``.
        open_slots: open sequences an env can have at once, ``ceil(length / period)``.
        state: one stored state's tensors ``[L, E, H]`` (their layout, dtype and device are used).
        device: where the stored states live.
    """

    def __init__(self, capacity: int, num_envs: int, open_slots: int,
                 state: tuple[torch.Tensor, ...], device: torch.device) -> None:
        self.capacity, self.num_envs, self.open_slots = capacity, num_envs, open_slots
        L, _, H = state[0].shape
        self.state_layout = (len(state), int(L), int(H), state[0].dtype)
        self.ints = {name: np.full(capacity, -1, dtype=np.int64) for name in _TABLE_INTS}
        self.live = np.zeros(capacity, dtype=bool)
        self.states = tuple(torch.zeros((capacity, L, H), dtype=x.dtype, device=device) for x in state)
        self.open_ints = {name: np.full((num_envs, open_slots), -1, dtype=np.int64) for name in _OPEN_INTS}
        self.open_states = tuple(torch.zeros((num_envs, open_slots, L, H), dtype=x.dtype, device=device)
                                 for x in state)
        self.open_count = np.zeros(num_envs, dtype=np.int64)
        self.head = 0  # sequences that entered the table so far; the next goes to head % C
        self.evicted = 0
        self.oldest_start = 0  # a lower bound on the first step of every live sequence

    # ----------------------------------------------------------------------------------------
    def open(self, envs: np.ndarray, start: int, tick: int, episode_ids: np.ndarray, version: int,
             state: tuple[torch.Tensor, ...]) -> None:
        """Open a sequence at absolute step ``start`` in each env of ``envs`` (sorted int64).

        ``state`` is the stored snapshot of every env ``[L, E, H]``; the rows of ``envs`` are kept.
        """
        slots = self.open_count[envs] % self.open_slots
        self.open_count[envs] += 1
        values = {"start": start, "tick": tick, "episode_id": episode_ids[envs], "version": version}
        for name, value in values.items():
            self.open_ints[name][envs, slots] = value
        env_index = torch.from_numpy(envs).to(state[0].device)
        e_dev = torch.from_numpy(envs).to(self.open_states[0].device)
        s_dev = torch.from_numpy(slots).to(self.open_states[0].device)
        for store, x in zip(self.open_states, state, strict=True):
            rows = x.index_select(1, env_index).transpose(0, 1).to(store.device)  # [k, L, H]
            store[e_dev, s_dev] = rows

    def open_starts(self) -> np.ndarray:
        """First absolute step of each open sequence, int64 ``[E, O]`` (-1 where none is open)."""
        return self.open_ints["start"]

    def close(self, envs: np.ndarray, slots: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Move open sequences ``(envs[i], slots[i])`` of ``lengths[i]`` steps into the table.

        They take the slots of the oldest table entries, in the order given. Returns the table
        slots they took (int64 ``[k]``; with ``k > C`` only the last ``C`` are kept).
        """
        if envs.size == 0:
            return np.zeros(0, dtype=np.int64)
        if envs.size > self.capacity:
            envs, slots, lengths = envs[-self.capacity:], slots[-self.capacity:], lengths[-self.capacity:]
        taken = (self.head + np.arange(envs.size)) % self.capacity
        self.head += int(envs.size)
        self.evicted += int(self.live[taken].sum())
        self.ints["env"][taken] = envs
        self.ints["length"][taken] = lengths
        for name in _OPEN_INTS:
            self.ints[name][taken] = self.open_ints[name][envs, slots]
        self.open_ints["start"][envs, slots] = -1
        self.live[taken] = True
        self.oldest_start = min(self.oldest_start, int(self.ints["start"][taken].min()))
        device = self.open_states[0].device
        e_dev, s_dev = torch.from_numpy(envs).to(device), torch.from_numpy(slots).to(device)
        t_dev = torch.from_numpy(taken).to(device)
        for store, opened in zip(self.states, self.open_states, strict=True):
            store[t_dev] = opened[e_dev, s_dev]
        return taken

    def drop_open(self, envs: np.ndarray | None = None) -> None:
        """Forget the open sequences of ``envs`` (all envs when ``None``): their stream broke off."""
        if envs is None:
            self.open_ints["start"][:] = -1
        else:
            self.open_ints["start"][envs] = -1

    def evict_older(self, first_kept: int) -> np.ndarray:
        """Evict live sequences that start before absolute step ``first_kept``; return their slots.

        Cheap when nothing needs evicting: it only scans the table when ``first_kept`` passes the
        lower bound it keeps on the oldest live start.
        """
        if first_kept <= self.oldest_start:
            return np.zeros(0, dtype=np.int64)
        starts = np.where(self.live, self.ints["start"], np.iinfo(np.int64).max)
        gone = np.flatnonzero(starts < first_kept)
        self.live[gone] = False
        self.evicted += int(gone.size)
        remaining = starts[self.live]
        self.oldest_start = int(remaining.min()) if remaining.size else first_kept
        return gone

    @classmethod
    def from_saved(cls, capacity: int, num_envs: int, open_slots: int, data: dict[str, Any],
                   device: torch.device) -> SequenceTable:
        """A table restored from :meth:`state_dict`'s ``data``.

        Raises:
            ValueError: when the saved table does not fit these sizes.
        """
        template = tuple(torch.zeros((x.shape[1], num_envs, x.shape[2]), dtype=x.dtype)
                         for x in data["states"])
        table = cls(capacity, num_envs, open_slots, template, device)
        table.load_state_dict(data)
        return table

    # ----------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held by the table and the open sequences."""
        host = [*self.ints.values(), self.live, *self.open_ints.values(), self.open_count]
        tensors = [*self.states, *self.open_states]
        return sum(int(a.nbytes) for a in host) + sum(t.numel() * t.element_size() for t in tensors)

    def state_dict(self) -> dict[str, Any]:
        """The table and the open sequences as tensors and ints."""
        def host(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.copy())

        return {
            "ints": {k: host(v) for k, v in self.ints.items()}, "live": host(self.live),
            "states": [x.clone() for x in self.states],
            "open_ints": {k: host(v) for k, v in self.open_ints.items()},
            "open_states": [x.clone() for x in self.open_states], "open_count": host(self.open_count),
            "head": self.head, "evicted": self.evicted, "oldest_start": self.oldest_start,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved into this (same-shaped) table.

        Raises:
            ValueError: when a saved state's layout differs from this table's.
        """
        saved = [(tuple(x.shape), x.dtype) for x in (*data["states"], *data["open_states"])]
        mine = [(tuple(x.shape), x.dtype) for x in (*self.states, *self.open_states)]
        if saved != mine:
            raise ValueError(f"expected stored states laid out as {mine}, got {saved}")
        for name in _TABLE_INTS:
            self.ints[name][...] = data["ints"][name].numpy()
        for name in _OPEN_INTS:
            self.open_ints[name][...] = data["open_ints"][name].numpy()
        self.live[...] = data["live"].numpy()
        self.open_count[...] = data["open_count"].numpy()
        for store, x in zip((*self.states, *self.open_states), (*data["states"], *data["open_states"]),
                            strict=True):
            store.copy_(x)
        self.head, self.evicted = int(data["head"]), int(data["evicted"])
        self.oldest_start = int(data["oldest_start"])
