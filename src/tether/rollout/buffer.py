"""RecurrentRolloutBuffer: a rollout of ``T`` steps × ``E`` envs, its GAE and its sequence minibatches.

The buffer stores what a recurrent policy needs to replay a rollout exactly: per step the
observation, action, log-prob, value, reward, terminated / truncated flags, ``episode_starts``
(``obs[t, e]`` is the first observation of a new episode), the valid-step mask (next-step
autoreset steps are invalid), the truncation bootstrap ``V(final_obs)`` and optional action masks;
and the state the rollout started from, plus one at each chunk start. States are stored through
:meth:`~tether.RecurrentState.for_buffer`: detached snapshots, never a live graph.

Where things live: the tensors the loss reads (observations, actions, log-probs, values, rewards)
on the policy's device; the episode flags that steer the replay (``terminated``, ``truncated``,
``episode_starts``, ``valid``) in host memory, as numpy, so a minibatch's ``episode_starts`` reach
:func:`~tether.sequence.unroll`'s planner without a device round trip (on CUDA: no sync).

Names: one step's policy outputs are singular (``ActResult.log_prob``, ``.value``); what the buffer
stores over a rollout is plural (``log_probs``, ``values``, ``rewards``, ...), ``[T, E]`` each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.errors import StateMismatchError
from tether.rollout._obs import Tree, tree_map
from tether.rollout._storage import RolloutStorage, StepCheck, Stored, allocate, check_layout
from tether.rollout.gae import compute_gae
from tether.rollout.sink import Transition
from tether.state import RecurrentState

__all__ = ["RecurrentRolloutBuffer", "RolloutStorage", "SequenceMinibatch"]


class SequenceMinibatch(NamedTuple):
    """A minibatch of env-sequences, time-major: every tensor is ``[T, B_mb, ...]``.

    ``T`` is the chunk length (the rollout length without chunks). Steps past the rollout's end
    (padding of the last chunk) repeat the last real step, so every action stays legal under its
    mask, restart (``episode_starts`` True, so no state is carried past the end), and are
    switched off in ``loss_mask``.

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
    episode_starts: np.ndarray
    loss_mask: torch.Tensor
    action_masks: torch.Tensor | None
    initial_state: RecurrentState
    env_rows: torch.Tensor
    chunk_starts: torch.Tensor


class RecurrentRolloutBuffer:
    """Fixed-size storage for one rollout of ``num_steps × num_envs`` and its replay minibatches.

    Storage is allocated at the first :meth:`add` (shapes and dtypes from that step) and reused by
    every later rollout, so memory stays flat. Fill it with :meth:`add` once per step, close it
    with :meth:`finish`, then :meth:`compute_advantages` and iterate :meth:`minibatches`.

    Args:
        num_steps: ``T``, steps per rollout.
        num_envs: ``E``, env rows.
        seq_len: length ``L`` of the replay sequences; ``None`` replays the whole rollout per env.
            A state snapshot is stored at every chunk start (steps ``0, L, 2L, ...``).
        device: where the tensors live (the policy's device); CPU when ``None``.

    Attributes:
        obs, actions, log_probs, values, rewards, bootstrap_values, action_masks: the stored
            ``[T, E, ...]`` tensors on ``device`` (after the first :meth:`add`; ``action_masks`` is
            ``None`` unless masks were given).
        terminated, truncated, episode_starts, valid: the stored bool ``[T, E]`` flags, numpy.
        advantages / returns: ``[T, E]`` after :meth:`compute_advantages`.
        pos: steps added to the current rollout.

    Raises:
        ValueError: for non-positive sizes.

    Example:
        >>> buf = RecurrentRolloutBuffer(num_steps=128, num_envs=8, seq_len=32)
        >>> buf.num_chunks, buf.full
        (4, False)
    """

    obs: Stored[Tree] = Stored()
    actions: Stored[torch.Tensor] = Stored()
    log_probs: Stored[torch.Tensor] = Stored()
    values: Stored[torch.Tensor] = Stored()
    rewards: Stored[torch.Tensor] = Stored()
    bootstrap_values: Stored[torch.Tensor] = Stored()
    terminated: Stored[np.ndarray] = Stored()
    truncated: Stored[np.ndarray] = Stored()
    episode_starts: Stored[np.ndarray] = Stored()
    valid: Stored[np.ndarray] = Stored()
    action_masks: Stored[torch.Tensor | None] = Stored()

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        *,
        seq_len: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for name, value in (("num_steps", num_steps), ("num_envs", num_envs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"RecurrentRolloutBuffer: expected {name} to be a positive int, got {value!r}")
        if seq_len is not None and (not isinstance(seq_len, int) or seq_len < 1):
            raise ValueError(f"RecurrentRolloutBuffer: expected seq_len None or >= 1, got {seq_len!r}")
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.seq_len = min(seq_len or num_steps, num_steps)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.pos = 0
        self._storage: RolloutStorage | None = None
        self._snapshots: list[RecurrentState | None] = [None] * self.num_chunks
        self.last_value: torch.Tensor | None = None
        self.advantages: torch.Tensor | None = None
        self.returns: torch.Tensor | None = None

    @property
    def num_chunks(self) -> int:
        """Chunks per env: ``ceil(num_steps / seq_len)``."""
        return math.ceil(self.num_steps / self.seq_len)

    @property
    def full(self) -> bool:
        """Whether all ``num_steps`` steps were added."""
        return self.pos == self.num_steps

    @property
    def storage(self) -> RolloutStorage:
        """The stored arrays.

        Raises:
            RuntimeError: before the first :meth:`add` (storage takes its shapes from it).
        """
        if self._storage is None:
            raise RuntimeError("RecurrentRolloutBuffer: nothing was added yet; storage is allocated"
                               " at the first add()")
        return self._storage

    @property
    def initial_states(self) -> list[RecurrentState | None]:
        """The stored snapshots: the state fed at step ``k * seq_len``, one per chunk."""
        return list(self._snapshots)

    def clear(self) -> None:
        """Start a new rollout in the same storage."""
        self.pos = 0
        self.last_value = self.advantages = self.returns = None
        self._snapshots = [None] * self.num_chunks

    # ----------------------------------------------------------------------------------------
    # the RolloutSink side: what the collector calls
    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        """Start a rollout of ``num_steps × clock.num_envs`` steps (clears the last one).

        Raises:
            ValueError: when the rollout is not this buffer's size.
        """
        if (num_steps, clock.num_envs) != (self.num_steps, self.num_envs):
            raise ValueError(
                f"RolloutCollector.collect: expected a buffer of {num_steps} steps × {clock.num_envs}"
                f" envs, got {self.num_steps} × {self.num_envs}"
            )
        self.clear()

    def write(self, step: Transition) -> None:
        """Store one collected step: the transition, the policy's ``log_prob`` / ``value``, the bootstrap.

        Raises:
            KeyError: when the policy's act result has no ``log_prob`` or ``value``.
            (and as :meth:`add`)
        """
        extras = step.extras
        self.add(obs=step.obs, actions=step.actions, log_probs=extras["log_prob"], values=extras["value"],
                 rewards=step.rewards, terminated=step.terminated, truncated=step.truncated,
                 episode_starts=step.episode_starts, state=step.state, valid=step.valid,
                 bootstrap_values=step.bootstrap_values, action_masks=step.action_masks)

    def add(
        self,
        *,
        obs: Tree,
        actions: Any,
        log_probs: Any,
        values: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        episode_starts: Any,
        state: RecurrentState,
        valid: Any = None,
        bootstrap_values: Any = None,
        action_masks: Any = None,
    ) -> None:
        """Store one step for every env. All-or-nothing: a bad input raises before anything is written.

        Keyword-only, so ``terminated`` and ``truncated`` (two bool ``[E]`` arrays side by side)
        cannot be swapped by position.

        Args:
            obs: ``[E, ...]`` (or a dict / tuple of those) as fed to the policy.
            actions: ``[E, ...]`` as the policy returned them.
            log_probs / values: ``[E]`` at collection time (``ActResult.log_prob`` / ``.value``).
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
        step = StepCheck(E, self.device).validated(
            obs=obs, actions=actions, log_probs=log_probs, values=values, rewards=rewards,
            terminated=terminated, truncated=truncated, episode_starts=episode_starts, valid=valid,
            bootstrap_values=bootstrap_values, action_masks=action_masks)
        chunk, offset = divmod(self.pos, self.seq_len)
        snapshot = None
        if offset == 0:
            if not isinstance(state, RecurrentState) or state.batch_size != E:
                got = state.batch_size if isinstance(state, RecurrentState) else type(state).__name__
                raise StateMismatchError(
                    f"RecurrentRolloutBuffer.add: expected the state fed at this step with batch {E}"
                    f" (one row per env), got {got}", expected=str(E), got=str(got),
                )
            snapshot = state.for_buffer()  # strict mode refuses a live graph; never stores it
        if self._storage is None:
            self._storage = allocate(step, self.num_steps, self.device)
        check_layout(self._storage, step)
        t = self.pos
        for name, value in step.items():
            if value is not None:
                tree_map(lambda store, v: store.__setitem__(t, v), getattr(self._storage, name), value)
        if snapshot is not None:
            self._snapshots[chunk] = snapshot
        self.pos += 1
        self.advantages = self.returns = None

    def finish(self, last_value: Any) -> None:
        """Close the rollout with ``V(obs_T)`` ``[E]``, the value of the observation after the last step.

        Raises:
            RuntimeError: when fewer than ``num_steps`` steps were added.
            ValueError: when ``last_value`` is not ``[E]``.
        """
        if not self.full:
            raise RuntimeError(f"RecurrentRolloutBuffer.finish: only {self.pos} of {self.num_steps}"
                               " steps were added")
        self.last_value = StepCheck(self.num_envs, self.device).floats("last_value", last_value)

    def compute_advantages(self, gamma: float = 0.99,
                           gae_lambda: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(γ, λ) with the truncation bootstrap; see :func:`~tether.rollout.compute_gae`.

        Args:
            gamma: discount γ.
            gae_lambda: GAE λ.

        Returns:
            ``(advantages, returns)`` ``[T, E]`` each, also kept on the buffer.

        Raises:
            RuntimeError: before :meth:`finish`.
        """
        if self.last_value is None or self._storage is None:
            raise RuntimeError("RecurrentRolloutBuffer.compute_advantages: call finish(last_value) first")
        d = self._storage

        def flags(x: np.ndarray) -> torch.Tensor:  # one host-to-device copy per rollout
            return torch.from_numpy(x).to(self.device, non_blocking=True)

        self.advantages, self.returns = compute_gae(
            d.rewards, d.values, flags(d.terminated), flags(d.truncated), d.bootstrap_values,
            self.last_value, valid=flags(d.valid), gamma=gamma,
            gae_lambda=gae_lambda,
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
            :class:`SequenceMinibatch` of ``[seq_len, B_mb, ...]`` tensors.

        Raises:
            RuntimeError: before :meth:`compute_advantages`.
            ValueError: when ``num_minibatches`` is not in ``[1, E × num_chunks]``.

        Shapes:
            ``(T, E, ...) -> (num_chunks · E sequences of (seq_len, ...)) -> (seq_len, B_mb, ...)``.
        """
        if self.advantages is None or self.returns is None or self._storage is None:
            raise RuntimeError("RecurrentRolloutBuffer.minibatches: call compute_advantages() first")
        total = self.num_envs * self.num_chunks
        if not isinstance(num_minibatches, int) or not 1 <= num_minibatches <= total:
            raise ValueError(f"RecurrentRolloutBuffer.minibatches: expected num_minibatches in [1, {total}]"
                             f" ({self.num_envs} envs × {self.num_chunks} chunks), got {num_minibatches!r}")
        order = torch.randperm(total, generator=generator)
        for group in torch.tensor_split(order, num_minibatches):
            yield self._gather(group.numpy())

    def _gather(self, sequences: np.ndarray) -> SequenceMinibatch:
        L, T = self.seq_len, self.num_steps
        chunks, rows = sequences // self.num_envs, sequences % self.num_envs
        # Signpost: times[i, j] is the rollout step of position i in sequence j; past the end it
        # repeats the last step (a legal action under its mask) and is switched off in the loss.
        times = chunks[None, :] * L + np.arange(L)[:, None]
        real = times < T
        times = np.minimum(times, T - 1)
        cols = np.broadcast_to(rows[None, :], times.shape)
        d = self.storage
        advantages, returns = self.advantages, self.returns
        if advantages is None or returns is None:  # pragma: no cover - minibatches() checked
            raise RuntimeError("RecurrentRolloutBuffer: compute_advantages() first")
        # One host-to-device copy carries every index and the loss mask (the flags stay host-side).
        host = np.stack([times, cols, (d.valid[times, cols] & real).astype(np.int64)])
        index = torch.from_numpy(host).to(self.device, non_blocking=True)
        t_dev, c_dev = index[0], index[1]

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x[t_dev, c_dev]

        chunks_dev, rows_dev = c_dev.new_tensor(chunks), c_dev.new_tensor(rows)
        return SequenceMinibatch(
            obs=tree_map(pick, d.obs),
            actions=pick(d.actions),
            log_probs=pick(d.log_probs),
            values=pick(d.values),
            advantages=pick(advantages),
            returns=pick(returns),
            # Padding restarts too: it never carries a state past the rollout's end, and a replay
            # check never reads it as a missing episode start.
            episode_starts=d.episode_starts[times, cols] | ~real,
            loss_mask=index[2].bool(),
            action_masks=None if d.action_masks is None else pick(d.action_masks),
            initial_state=self._initial_state(chunks_dev, rows_dev),
            env_rows=rows_dev,
            chunk_starts=chunks_dev * L,
        )

    def _initial_state(self, chunks: torch.Tensor, rows: torch.Tensor) -> RecurrentState:
        missing = [k for k, s in enumerate(self._snapshots) if s is None]
        if missing:
            raise RuntimeError(f"RecurrentRolloutBuffer: no state stored for chunks {missing}")
        snaps: list[RecurrentState] = self._snapshots  # type: ignore[assignment]
        return RecurrentState.stack_snapshots(snaps, chunks, rows)
