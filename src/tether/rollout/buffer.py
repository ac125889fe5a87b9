"""RecurrentRolloutBuffer: a rollout of ``T`` steps × ``E`` envs, its GAE and its sequence minibatches.

The buffer stores what a recurrent policy needs to replay a rollout exactly: per step the
observation, action, log-prob, value, reward, terminated / truncated flags, ``episode_starts``
(``obs[t, e]`` is the first observation of a new episode), the valid-step mask (next-step
autoreset steps are invalid), the truncation bootstrap ``V(final_obs)`` and optional action masks;
and the state the rollout started from, plus one at each chunk start. States are stored through
:meth:`~tether.RecurrentState.for_buffer`: detached snapshots, never a live graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from tether.errors import StateMismatchError
from tether.rollout._obs import Tree, batch_rows, tree_leaves, tree_map
from tether.rollout.gae import compute_gae
from tether.state import RecurrentState

__all__ = ["RecurrentRolloutBuffer", "SequenceMinibatch"]


class SequenceMinibatch(NamedTuple):
    """A minibatch of env-sequences, time-major: every tensor is ``[T, B_mb, ...]``.

    ``T`` is the chunk length (the rollout length without chunks). Steps past the rollout's end
    (padding of the last chunk) repeat the last real step, so every action stays legal under its
    mask, and are switched off in ``loss_mask``.

    Attributes:
        obs / actions / action_masks: as stored (``action_masks`` is ``None`` when none were).
        log_probs / values: from collection time (``[T, B_mb]``).
        advantages / returns: from :meth:`RecurrentRolloutBuffer.compute_advantages`.
        episode_starts: bool ``[T, B_mb]``: reset the state before these steps.
        loss_mask: bool ``[T, B_mb]``: real, valid steps (not padding, not autoreset steps).
        initial_state: the state before step 0 of each sequence, a detached snapshot ``[L, B_mb, H]``.
        env_rows / chunk_starts: int64 ``[B_mb]``: which env and which rollout step each sequence
            starts at.
    """

    obs: Tree
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    episode_starts: torch.Tensor
    loss_mask: torch.Tensor
    action_masks: torch.Tensor | None
    initial_state: RecurrentState
    env_rows: torch.Tensor
    chunk_starts: torch.Tensor


_FLAGS = ("terminated", "truncated", "episode_starts", "valid")
_FLOATS = ("log_probs", "values", "rewards", "bootstrap_values")


class RecurrentRolloutBuffer:
    """Fixed-size storage for one rollout of ``num_steps × num_envs`` and its replay minibatches.

    Storage is allocated at the first :meth:`add` (shapes and dtypes from that step) and reused by
    every later rollout, so memory stays flat. Fill it with :meth:`add` once per step, close it
    with :meth:`finish`, then :meth:`compute_advantages` and iterate :meth:`minibatches`.

    Args:
        num_steps: ``T``, steps per rollout.
        num_envs: ``E``, env rows.
        chunk_len: length ``L`` of the replay sequences; ``None`` replays the whole rollout per env.
            A state snapshot is stored at every chunk start (steps ``0, L, 2L, ...``).
        device: where the tensors live (the policy's device); CPU when ``None``.

    Attributes:
        obs, actions, log_probs, values, rewards, bootstrap_values, terminated, truncated,
            episode_starts, valid, action_masks: the stored ``[T, E, ...]`` tensors (after the first
            :meth:`add`; ``action_masks`` only when masks were given).
        advantages / returns: ``[T, E]`` after :meth:`compute_advantages`.
        pos: steps added to the current rollout.

    Raises:
        ValueError: for non-positive sizes.

    Example:
        >>> buf = RecurrentRolloutBuffer(num_steps=128, num_envs=8, chunk_len=32)
        >>> buf.num_chunks, buf.full
        (4, False)
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        *,
        chunk_len: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for name, value in (("num_steps", num_steps), ("num_envs", num_envs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"RecurrentRolloutBuffer: expected {name} to be a positive int, got {value!r}")
        if chunk_len is not None and (not isinstance(chunk_len, int) or chunk_len < 1):
            raise ValueError(f"RecurrentRolloutBuffer: expected chunk_len None or >= 1, got {chunk_len!r}")
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.chunk_len = min(chunk_len or num_steps, num_steps)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.pos = 0
        self._data: dict[str, Any] | None = None
        self._snapshots: list[RecurrentState | None] = [None] * self.num_chunks
        self.last_value: torch.Tensor | None = None
        self.advantages: torch.Tensor | None = None
        self.returns: torch.Tensor | None = None

    @property
    def num_chunks(self) -> int:
        """Chunks per env: ``ceil(num_steps / chunk_len)``."""
        return math.ceil(self.num_steps / self.chunk_len)

    @property
    def full(self) -> bool:
        """Whether all ``num_steps`` steps were added."""
        return self.pos == self.num_steps

    def __getattr__(self, name: str) -> Any:
        # Stored fields ([T, E, ...] tensors) read as attributes: buf.rewards, buf.obs, ...
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"RecurrentRolloutBuffer has no attribute {name!r}"
                             + ("" if data is not None else " (nothing was added yet)"))

    @property
    def initial_states(self) -> list[RecurrentState | None]:
        """The stored snapshots: the state fed at step ``k * chunk_len``, one per chunk."""
        return list(self._snapshots)

    def clear(self) -> None:
        """Start a new rollout in the same storage."""
        self.pos = 0
        self.last_value = self.advantages = self.returns = None
        self._snapshots = [None] * self.num_chunks

    # ----------------------------------------------------------------------------------------
    def _tensor(self, name: str, value: Any, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        tensor = torch.as_tensor(value).to(self.device, dtype)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"RecurrentRolloutBuffer.add: expected {name} shaped {list(shape)} (one per env),"
                f" got {list(tensor.shape)}"
            )
        return tensor

    def _allocate(self, step: dict[str, Any]) -> dict[str, Any]:
        T = self.num_steps

        def storage(x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((T, *x.shape), dtype=x.dtype, device=self.device)

        return {name: tree_map(storage, value) for name, value in step.items()}

    def add(
        self,
        obs: Tree,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
        values: torch.Tensor,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        episode_starts: Any,
        *,
        state: RecurrentState,
        valid: Any = None,
        bootstrap_values: Any = None,
        action_masks: Any = None,
    ) -> None:
        """Store one step for every env. All-or-nothing: a bad input raises before anything is written.

        Args:
            obs: ``[E, ...]`` (or a dict / tuple of those) as fed to the policy.
            actions: ``[E, ...]`` as the policy returned them.
            log_probs / values: ``[E]`` at collection time.
            rewards: ``[E]``.
            terminated / truncated: bool ``[E]``: the episode ended at this step, and how.
            episode_starts: bool ``[E]``: ``obs`` is the first observation of a new episode.
            state: the state fed at this step (before it); snapshotted at chunk starts through
                ``state.for_buffer()``.
            valid: bool ``[E]``: False for next-step autoreset steps; all True when ``None``.
            bootstrap_values: ``[E]``: ``V(final_obs)`` from the pre-reset state where truncated.
            action_masks: bool ``[E, ...]`` or ``None`` (use masks in every step or in none).

        Raises:
            RuntimeError: when the buffer is full.
            ValueError: for a shape that is not one per env, or a field that differs from storage.
            StateMismatchError: when ``state`` does not have one row per env.
            GraphLeakError: in strict mode, for a state that still carries an autograd graph.
        """
        if self.full:
            raise RuntimeError(
                f"RecurrentRolloutBuffer.add: the buffer is full ({self.num_steps} steps);"
                " call clear() before the next rollout"
            )
        E = self.num_envs
        step = self._validated(obs, actions, log_probs, values, rewards, terminated, truncated,
                               episode_starts, valid, bootstrap_values, action_masks)
        chunk, offset = divmod(self.pos, self.chunk_len)
        snapshot = None
        if offset == 0:
            if not isinstance(state, RecurrentState) or state.batch_size != E:
                got = state.batch_size if isinstance(state, RecurrentState) else type(state).__name__
                raise StateMismatchError(
                    f"RecurrentRolloutBuffer.add: expected the state fed at this step with batch {E}"
                    f" (one row per env), got {got}", expected=str(E), got=str(got),
                )
            snapshot = state.for_buffer()  # strict mode refuses a live graph; never stores it
        if self._data is None:
            self._data = self._allocate(step)
        self._check_layout(step)
        t = self.pos
        for name, value in step.items():
            tree_map(lambda store, v: store.__setitem__(t, v), self._data[name], value)
        if snapshot is not None:
            self._snapshots[chunk] = snapshot
        self.pos += 1
        self.advantages = self.returns = None

    def _validated(self, obs: Tree, actions: Any, log_probs: Any, values: Any, rewards: Any,
                   terminated: Any, truncated: Any, episode_starts: Any, valid: Any,
                   bootstrap_values: Any, action_masks: Any) -> dict[str, Any]:
        E = self.num_envs
        obs = tree_map(lambda x: torch.as_tensor(x).to(self.device), obs)
        actions = torch.as_tensor(actions).to(self.device)
        for name, value in (("obs", obs), ("actions", actions)):
            if batch_rows(value) != E:
                raise ValueError(f"RecurrentRolloutBuffer.add: expected {name} with {E} rows (one per"
                                 f" env), got {batch_rows(value)}")
        ones = np.ones(E, dtype=bool)
        step: dict[str, Any] = {"obs": obs, "actions": actions}
        boot = np.zeros(E) if bootstrap_values is None else bootstrap_values
        for name, value in (("log_probs", log_probs), ("values", values), ("rewards", rewards),
                            ("bootstrap_values", boot)):
            step[name] = self._tensor(name, value, torch.float32, (E,))
        for name, value in (("terminated", terminated), ("truncated", truncated),
                            ("episode_starts", episode_starts), ("valid", ones if valid is None else valid)):
            step[name] = self._tensor(name, value, torch.bool, (E,))
        if action_masks is not None:
            masks = torch.as_tensor(action_masks).to(self.device, torch.bool)
            if masks.dim() < 1 or masks.shape[0] != E:
                raise ValueError(f"RecurrentRolloutBuffer.add: expected action_masks [E={E}, ...], got"
                                 f" {list(masks.shape)}")
            step["action_masks"] = masks
        return step

    def _check_layout(self, step: dict[str, Any]) -> None:
        assert self._data is not None
        has_masks = "action_masks" in self._data
        if has_masks != ("action_masks" in step):
            raise ValueError("RecurrentRolloutBuffer.add: expected action_masks in every step or in"
                             f" none; storage {'has' if has_masks else 'has no'} masks")
        for name, value in step.items():
            stored, given = tree_leaves(self._data[name]), tree_leaves(value)
            if len(stored) != len(given) or any(
                    s.shape[1:] != g.shape or s.dtype != g.dtype for s, g in zip(stored, given, strict=True)):
                raise ValueError(
                    f"RecurrentRolloutBuffer.add: {name} does not match the storage allocated at the"
                    f" first step: expected {[(tuple(s.shape[1:]), s.dtype) for s in stored]}, got"
                    f" {[(tuple(g.shape), g.dtype) for g in given]}"
                )

    def finish(self, last_value: Any) -> None:
        """Close the rollout with ``V(obs_T)`` ``[E]``, the value of the observation after the last step.

        Raises:
            RuntimeError: when fewer than ``num_steps`` steps were added.
            ValueError: when ``last_value`` is not ``[E]``.
        """
        if not self.full:
            raise RuntimeError(f"RecurrentRolloutBuffer.finish: only {self.pos} of {self.num_steps}"
                               " steps were added")
        self.last_value = self._tensor("last_value", last_value, torch.float32, (self.num_envs,))

    def compute_advantages(self, gamma: float = 0.99, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(γ, λ) with the truncation bootstrap; see :func:`~tether.rollout.compute_gae`.

        Returns:
            ``(advantages, returns)`` ``[T, E]`` each, also kept on the buffer.

        Raises:
            RuntimeError: before :meth:`finish`.
        """
        if self.last_value is None or self._data is None:
            raise RuntimeError("RecurrentRolloutBuffer.compute_advantages: call finish(last_value) first")
        d = self._data
        self.advantages, self.returns = compute_gae(
            d["rewards"], d["values"], d["terminated"], d["truncated"], d["bootstrap_values"],
            self.last_value, valid=d["valid"], gamma=gamma, lam=lam,
        )
        return self.advantages, self.returns

    # ----------------------------------------------------------------------------------------
    def minibatches(
        self, num_minibatches: int, *, generator: torch.Generator | None = None
    ) -> Iterator[SequenceMinibatch]:
        """Shuffle the ``E × num_chunks`` env-sequences and yield them in ``num_minibatches`` groups.

        Args:
            num_minibatches: how many groups (sizes differ by at most one sequence).
            generator: a CPU ``torch.Generator`` for a reproducible order (global RNG when None).

        Yields:
            :class:`SequenceMinibatch` of ``[chunk_len, B_mb, ...]`` tensors.

        Raises:
            RuntimeError: before :meth:`compute_advantages`.
            ValueError: when ``num_minibatches`` is not in ``[1, E × num_chunks]``.

        Shapes:
            ``(T, E, ...) -> (num_chunks · E sequences of (chunk_len, ...)) -> (chunk_len, B_mb, ...)``.
        """
        if self.advantages is None or self.returns is None or self._data is None:
            raise RuntimeError("RecurrentRolloutBuffer.minibatches: call compute_advantages() first")
        total = self.num_envs * self.num_chunks
        if not isinstance(num_minibatches, int) or not 1 <= num_minibatches <= total:
            raise ValueError(f"RecurrentRolloutBuffer.minibatches: expected num_minibatches in [1, {total}]"
                             f" ({self.num_envs} envs × {self.num_chunks} chunks), got {num_minibatches!r}")
        order = torch.randperm(total, generator=generator)
        for group in torch.tensor_split(order, num_minibatches):
            yield self._gather(group.to(self.device))

    def _gather(self, sequences: torch.Tensor) -> SequenceMinibatch:
        L, T = self.chunk_len, self.num_steps
        chunks, rows = sequences // self.num_envs, sequences % self.num_envs
        # Signpost: times[i, j] is the rollout step of position i in sequence j; past the end it
        # repeats the last step (a legal action under its mask) and is switched off in the loss.
        times = chunks.view(1, -1) * L + torch.arange(L, device=self.device).view(-1, 1)
        real = times < T
        times = times.clamp(max=T - 1)
        cols = rows.view(1, -1).expand_as(times)
        d = self._data
        assert d is not None
        assert self.advantages is not None
        assert self.returns is not None

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x[times, cols]

        starts = pick(d["episode_starts"]) & real
        return SequenceMinibatch(
            obs=tree_map(pick, d["obs"]),
            actions=pick(d["actions"]),
            log_probs=pick(d["log_probs"]),
            values=pick(d["values"]),
            advantages=pick(self.advantages),
            returns=pick(self.returns),
            episode_starts=starts,
            loss_mask=pick(d["valid"]) & real,
            action_masks=pick(d["action_masks"]) if "action_masks" in d else None,
            initial_state=self._initial_state(chunks, rows),
            env_rows=rows,
            chunk_starts=chunks * L,
        )

    def _initial_state(self, chunks: torch.Tensor, rows: torch.Tensor) -> RecurrentState:
        missing = [k for k, s in enumerate(self._snapshots) if s is None]
        if missing:
            raise RuntimeError(f"RecurrentRolloutBuffer: no state stored for chunks {missing}")
        snaps: list[RecurrentState] = self._snapshots  # type: ignore[assignment]
        tensors = []
        for i in range(len(snaps[0].tensors)):
            stacked = torch.stack([s.tensors[i] for s in snaps]).to(self.device)  # [K, L, E, H]
            tensors.append(stacked[chunks, :, rows].transpose(0, 1).contiguous())  # [L, B_mb, H]
        return RecurrentState(tuple(tensors), is_snapshot=True)
