"""What a sequence replay hands out: :class:`ReplayBatch` (sampled sequences) and :class:`History`."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from tether.state import RecurrentState

__all__ = ["History", "ReplayBatch"]


class ReplayBatch(NamedTuple):
    """``B`` sampled sequences of ``length`` steps each, time-major ``[T, B, ...]``.

    Padding (the steps past a sequence cut at an episode end) repeats the sequence's last step's
    observation, action and action mask (so an action stays legal under its mask), with reward 0,
    every flag False, ``episode_starts`` True (no state is carried into it), episode id and tick
    -1, and ``mask`` False.

    Attributes:
        obs: ``[T, B, ...]`` tensor, or a dict / tuple of them (as the collector fed them).
        actions: ``[T, B, ...]`` as the policy returned them (int64 ``[T, B]`` for Discrete).
        rewards: float32 ``[T, B]``.
        terminated / truncated: bool ``[T, B]``: the episode ended at this step, and how.
        valid: bool ``[T, B]``: False at next-step autoreset steps (the env ignored the action).
        mask: bool ``[T, B]``: False on padding.
        episode_starts: bool ``[T, B]`` host: ``obs[t, b]`` is the first observation of an episode.
        initial_state: the stored snapshots ``[L, B, H]``, the state fed at each sequence's first
            step; ``is_snapshot``, with per-row stamps (``row_ticks``, ``episode_ids``,
            ``env_rows``) and the collector's clock (so :func:`tether.sequence.unroll` checks the
            replay against what the clock saw while its history reaches).
        episode_ids / ticks: int64 ``[T, B]`` host: each step's episode id and clock tick.
        truncation_steps: int64 ``[M, 2]`` host: ``(t, b)`` of every truncated step (in time order).
        final_obs: ``[M, ...]`` (tree like ``obs``): the ended episodes' last observations there.
        action_masks: bool ``[T, B, ...]`` when the collector had masks, else ``None``.
        versions: int64 ``[B]``: ``policy_version`` when each sequence's first step was written.
        indices: int64 ``[B]``: the table slots, for ``update_priorities``.
        weights: float32 ``[B]``: importance weights ``(N * P(i)) ** -beta``, divided by the batch's
            largest (ones when uniform or ``importance_exponent == 0``).
        burn_in: steps ``0 .. burn_in - 1`` are burn-in (no loss).
    """

    obs: Any
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    mask: torch.Tensor
    episode_starts: np.ndarray
    initial_state: RecurrentState
    episode_ids: np.ndarray
    ticks: np.ndarray
    truncation_steps: np.ndarray
    final_obs: Any
    action_masks: torch.Tensor | None
    versions: np.ndarray
    indices: np.ndarray
    weights: torch.Tensor
    burn_in: int


class History(NamedTuple):
    """The way back to sampled sequences' true episode starts (see ``SequenceReplay.episode_history``).

    Row ``j`` runs from the first step of the episode that sequence ``rows[j]`` starts in up to
    that sequence's last step; rows are left-aligned and padded at the end.

    Attributes:
        obs: ``[Th, B', ...]`` (tree like the batch's ``obs``).
        episode_starts: bool ``[Th, B']`` host: True at step 0 of every row (the episode's first
            step), where the sequence crosses into a later episode, and on padding.
        mask: bool ``[Th, B']``: False on padding.
        rows: int64 ``[B']``: the batch rows covered (the others' episode start is no longer in
            the buffer, or more than ``max_steps`` back).
        offsets: int64 ``[B']``: where each sequence's step 0 is in its history row.
        initial_state: a zero snapshot ``[L, B', H]`` stamped with each row's first tick, episode
            id and env row: the state an episode's first step is fed.
    """

    obs: Any
    episode_starts: np.ndarray
    mask: torch.Tensor
    rows: np.ndarray
    offsets: np.ndarray
    initial_state: RecurrentState
