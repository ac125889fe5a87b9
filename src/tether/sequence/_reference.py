"""The per-step masked loop CleanRL and sb3-contrib write: the reference semantics of an unroll."""

from __future__ import annotations

from typing import Any

import torch

from tether.modes import mode
from tether.sequence._checks import check_inputs, host_starts
from tether.sequence._strategy import UnrollPlan
from tether.state import RecurrentState
from tether.tracking import TrackedRNN

__all__ = ["unroll_reference"]


def unroll_reference(
    core: TrackedRNN, x: torch.Tensor, episode_starts: Any, state: RecurrentState
) -> tuple[torch.Tensor, RecurrentState]:
    """The per-step masked loop (as CleanRL and sb3-contrib write it): the reference semantics.

    Before step ``t`` the state is multiplied by ``1 - episode_starts[t]``, then the core runs
    one step. Slow (one call per step) but obviously right; :func:`unroll` is checked against it.

    Args:
        core: a tracked sequence module (``nn.LSTM`` / ``nn.GRU``, ``batch_first=False``).
        x: the inputs.
        episode_starts: bool mask, True where ``x[t, b]`` starts a new episode (numpy or torch),
            or an :class:`UnrollPlan`.
        state: the state before step 0 (a stored snapshot for replay, or the live state).

    Returns:
        ``(y, final_state)``: the outputs and the state after step ``T - 1``, with the initial
        state's clock, episode ids and rows, ``T`` ticks later
        (:meth:`~tether.RecurrentState.advanced`).

    Raises:
        ValueError: for a malformed ``x`` or ``episode_starts``, or a batch-first / cell core.
        StateMismatchError: when the state does not fit the core or the batch.

    Shapes:
        ``x [T, B, in]``, ``episode_starts [T, B]``, state tensors ``[L, B, H]`` ->
        ``y [T, B, H]``.

    >>> import torch
    >>> from tether import track
    >>> core = track(torch.nn.GRU(3, 4))
    >>> starts = torch.zeros(5, 2, dtype=torch.bool)
    >>> y, final = unroll_reference(core, torch.randn(5, 2, 3), starts, core.initial_state(2))
    >>> tuple(y.shape), tuple(final.h.shape)
    ((5, 2, 4), (1, 2, 4))
    """
    T, B = check_inputs(core, x, state)
    given = episode_starts.episode_starts if isinstance(episode_starts, UnrollPlan) else episode_starts
    starts = torch.tensor(host_starts(given, T, B), device=x.device)
    keep = (~starts).to(x.dtype)
    tensors = state.tensors
    outputs = []
    for t in range(x.shape[0]):
        mask = keep[t].view(1, -1, 1)
        tensors = tuple(s * mask for s in tensors)
        with mode("off"):
            y, step_state = core(x[t : t + 1], RecurrentState.from_tensors(tensors))
        tensors = step_state.tensors
        outputs.append(y)
    return torch.cat(outputs, dim=0), state.advanced(tensors, T)
