"""The replay's staleness, measured as R2D2's paper defines it: Δq at the first and last trained step.

For a sampled sequence, ``ĥ`` is the state the learner replays from (the stored state or zeros,
then the burn-in) and ``h`` the state the *current* online network reaches when it is run from the
episode's true first step. Kapturowski et al. (ICLR 2019, section 3) measure

    Δq = ‖q(ĥ_t) − q(h_t)‖₂ / |max_a q(ĥ_t)_a|

at the first and the last trained step of each sequence. ``h`` needs the episode's steps before
the sequence: :meth:`tether.replay.SequenceReplay.episode_history` gives them while they are
still in the buffer and at most ``staleness_history`` steps back (a host scan back over the stored
episode ids per row); the recompute is one fused unroll of those steps, without gradient, on the
batches measured (``staleness_every``). Sequences whose episode start is gone are left out and
counted (``staleness/covered``).

Also reported: ``staleness/age_updates``, the mean age of the sampled sequences in learner updates
(the update count when their first step was collected, against now).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.replay import ReplayBatch, SequenceReplay

__all__ = ["delta_q", "measure_staleness"]

_TINY = 1e-8  # keeps |max q| away from 0 (a Q-network that outputs exactly 0 everywhere)


def delta_q(q_replayed: torch.Tensor, q_true: torch.Tensor) -> torch.Tensor:
    """``‖q(ĥ) − q(h)‖₂ / |max q(ĥ)|`` per row, over every head's actions (``-inf`` slots left out).

    Args:
        q_replayed / q_true: ``[B, K, N]`` Q-values from the replayed and the recomputed state.

    Returns:
        ``[B]`` the relative distance.

    >>> delta_q(torch.tensor([[[2.0, 1.0]]]), torch.tensor([[[2.0, 1.0]]])).tolist()
    [0.0]
    """
    finite = torch.isfinite(q_replayed) & torch.isfinite(q_true)
    diff = torch.where(finite, q_replayed - q_true, torch.zeros((), dtype=q_true.dtype))
    norm = diff.flatten(1).norm(dim=1)
    top = torch.where(finite, q_replayed, torch.full((), -torch.inf, dtype=q_replayed.dtype))
    out: torch.Tensor = norm / top.flatten(1).amax(dim=1).abs().clamp(min=_TINY)
    return out


def measure_staleness(online: Any, replay: SequenceReplay, batch: ReplayBatch, *, q_first: torch.Tensor,
                      q_last: torch.Tensor, first: torch.Tensor, last: torch.Tensor, trained: torch.Tensor,
                      update: int, max_steps: int) -> dict[str, float]:
    """Δq at the first and last trained step of a batch's sequences, and their age.

    Args:
        online: the online Q-network (its current weights recompute ``h``).
        replay: the buffer the batch was drawn from (it holds the episodes' earlier steps).
        batch: the sampled sequences.
        q_first / q_last: ``[B, K, N]`` the learner's online Q-values at those steps (from ``ĥ``).
        first / last: ``[B]`` those steps' indices in the trained part.
        trained: bool ``[B]``: which sequences have a trained step (the others are left out).
        update: the learner's update count now.
        max_steps: the longest way back to an episode's start that is recomputed.

    Returns:
        ``staleness/dq_first``, ``staleness/dq_last`` (``nan`` when no sequence is covered),
        ``staleness/age_updates`` and ``staleness/covered`` (the fraction of sequences measured).
    """
    age = float(np.mean(update - batch.versions))
    history = replay.episode_history(batch, max_steps=max_steps, device=q_first.device)
    keep = trained.cpu().numpy()[history.rows]
    rows = history.rows[keep]
    out = {"staleness/age_updates": age, "staleness/covered": rows.size / max(len(batch.versions), 1),
           "staleness/dq_first": float("nan"), "staleness/dq_last": float("nan")}
    if rows.size == 0:
        return out
    with torch.no_grad():
        q_true = online.q_values(history.obs, history.episode_starts, history.initial_state).q
    picks = torch.as_tensor(rows, device=q_first.device)
    offset = torch.as_tensor(history.offsets[keep], device=q_first.device) + batch.burn_in
    cols = torch.as_tensor(np.flatnonzero(keep), device=q_first.device)
    first_true = q_true[offset + first[picks], cols]
    last_true = q_true[offset + last[picks], cols]
    out["staleness/dq_first"] = float(delta_q(q_first[picks], first_true).mean())
    out["staleness/dq_last"] = float(delta_q(q_last[picks], last_true).mean())
    return out
