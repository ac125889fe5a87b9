"""Reset-aware multi-step unroll of a recurrent core over ``[T, B, ...]`` with episode starts.

``episode_starts[t, b]`` is True when ``x[t, b]`` is the first observation of a new episode: the
state of row ``b`` restarts from zeros before step ``t``.
"""

from __future__ import annotations

from typing import Any

import torch

from tether.modes import mode
from tether.modules import TrackedRNN
from tether.state import RecurrentState

__all__ = ["unroll", "unroll_reference"]


def _check_inputs(x: torch.Tensor, episode_starts: Any, state: RecurrentState) -> torch.Tensor:
    if x.dim() < 3:
        raise ValueError(f"unroll: expected x shaped [T, B, ...], got {tuple(x.shape)}")
    T, B = int(x.shape[0]), int(x.shape[1])
    starts = torch.as_tensor(episode_starts, device=x.device)
    if starts.dtype != torch.bool or tuple(starts.shape) != (T, B):
        raise ValueError(
            f"unroll: expected episode_starts as bool [T={T}, B={B}], got"
            f" {starts.dtype} {tuple(starts.shape)}"
        )
    if state.batch_size != B:
        raise ValueError(f"unroll: expected a state of batch {B}, got {state.batch_size}")
    return starts


def unroll_reference(
    core: TrackedRNN, x: torch.Tensor, episode_starts: Any, state: RecurrentState
) -> tuple[torch.Tensor, RecurrentState]:
    """The per-step masked loop (as CleanRL and sb3-contrib write it): the reference semantics.

    Args:
        core: a tracked sequence-style module (``batch_first=False``).
        x: ``[T, B, in]``.
        episode_starts: bool ``[T, B]``.
        state: the state before step 0 (a snapshot for replay, or the live state).

    Returns:
        ``(y [T, B, H], final_state)``.
    """
    starts = _check_inputs(x, episode_starts, state)
    keep = (~starts).to(x.dtype)
    tensors = state.tensors
    outputs = []
    for t in range(x.shape[0]):
        mask = keep[t].view(1, -1, 1)
        tensors = tuple(s * mask for s in tensors)
        step_state = RecurrentState(tensors)
        with mode("off"):
            y, step_state = core(x[t : t + 1], step_state)
        tensors = step_state.tensors
        outputs.append(y)
    graph = tensors[0].requires_grad
    final = RecurrentState(
        tensors, state.clock, state.episode_ids, state.env_rows,
        None if state.tick is None else state.tick + int(x.shape[0]),
        state.window, state.graph_steps + int(x.shape[0]) if graph else 0,
        state.is_snapshot, False, -1,
    )
    return torch.cat(outputs, dim=0), final


def unroll(
    core: TrackedRNN, x: torch.Tensor, episode_starts: Any, state: RecurrentState
) -> tuple[torch.Tensor, RecurrentState]:
    """Unroll ``core`` over ``x`` from ``state``, restarting rows at their episode starts.

    Equal to :func:`unroll_reference` in outputs, final state and gradients.

    Args:
        core: a tracked sequence-style module (``batch_first=False``).
        x: ``[T, B, in]``.
        episode_starts: bool ``[T, B]``.
        state: the state before step 0.

    Returns:
        ``(y [T, B, H], final_state)``.
    """
    return unroll_reference(core, x, episode_starts, state)
