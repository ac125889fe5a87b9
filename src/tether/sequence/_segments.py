"""unroll_segments(): an unroll that restarts each segment from a given state at a given step.

:func:`~tether.sequence.unroll` restarts a row from zeros at an episode start. Some pipelines
restart from a *stored* state instead: a replay of slices cut from longer episodes restarts each
slice from the state stored at its first step, and TorchRL's recurrent mode restarts at every
``is_init`` from the state stored at that step (zero at a true episode start, because the env
wrote zeros there; the stored mid-episode state at a slice start). This is that unroll: every row
is cut into *segments* at ``t = 0`` and at each start, a segment runs from the state given for its
first step, and the state after a segment's last step is returned at that step.

It runs one fused call of the module between consecutive times where some row restarts (the
starting rows' states are swapped in with ``torch.where``, so gradients reach the given states
exactly as they reach a segment's initial state), and one call in all when nothing restarts
after ``t = 0``. No padding: the calls cover the ``T x B`` steps once.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tether import _aten
from tether.sequence._checks import host_starts
from tether.sequence._gru import fast_gru_wins, gru_unroll, unsupported_reason
from tether.tracking import TrackedRNN

__all__ = ["Segments", "unroll_segments"]


class Segments(NamedTuple):
    """What :func:`unroll_segments` returns.

    Attributes:
        y: the outputs, laid out as the module lays out its input (``[T, B, H]``, or
            ``[B, T, H]`` for a batch-first module).
        ends: ``(h,)`` or ``(h, c)``, each ``[T, L, B, H]``: at step ``t`` the state after step
            ``t`` for rows whose segment ends there (``t = T - 1``, or the row restarts at
            ``t + 1``); zeros at every other step.
    """

    y: torch.Tensor
    ends: tuple[torch.Tensor, ...]


def _module(core: nn.Module) -> nn.RNNBase:
    m: Any = core.module if isinstance(core, TrackedRNN) else core
    if type(m) not in (nn.LSTM, nn.GRU) or m.bidirectional or getattr(m, "proj_size", 0):
        raise ValueError(
            "unroll_segments: expected a unidirectional nn.LSTM / nn.GRU without projections"
            f" (plain or tracked), got {type(m).__name__}"
        )
    return m  # type: ignore[no-any-return]


def _check(m: nn.RNNBase, x: torch.Tensor, restarts: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    if x.dim() != 3 or x.shape[2] != m.input_size:
        layout = "[B, T, in]" if m.batch_first else "[T, B, in]"
        raise ValueError(f"unroll_segments: expected x as {layout} with in = {m.input_size},"
                         f" got shape {tuple(x.shape)}")
    T, B = (int(x.shape[1]), int(x.shape[0])) if m.batch_first else (int(x.shape[0]), int(x.shape[1]))
    want = 2 if isinstance(m, nn.LSTM) else 1
    shape = (T, m.num_layers, B, m.hidden_size)
    if len(restarts) != want or any(tuple(s.shape) != shape for s in restarts):
        raise ValueError(
            f"unroll_segments: expected {want} restart tensor(s) of shape [T, L, B, H] = {list(shape)},"
            f" got {[tuple(s.shape) for s in restarts]}"
        )
    return T, B


def unroll_segments(
    core: nn.Module, x: torch.Tensor, starts: Any, restarts: tuple[torch.Tensor, ...]
) -> Segments:
    """Unroll ``core`` over ``x``, restarting each row at ``t = 0`` and at its starts from ``restarts``.

    Row ``b`` is cut into segments at ``t = 0`` and at every ``t`` with ``starts[t, b]``; the
    segment that begins at step ``t`` runs from the state ``restarts[..][t, :, b]``. Outputs and
    gradients (with respect to ``x``, the parameters and the restart states) equal running each
    segment by itself from its restart state. With zero restart states at the starts this is
    :func:`~tether.sequence.unroll` from ``restarts[..][0]``; ``unroll`` is faster for that (it
    needs no state at the starts) and checks the lifecycle. This one checks shapes only: the
    states it restarts from are data (a replay's stored states), not a live state.

    Args:
        core: an ``nn.LSTM`` / ``nn.GRU`` (or a tracked one), unidirectional, without projections;
            batch-first or not.
        x: the inputs as the module takes them: ``[T, B, in]`` (``[B, T, in]`` batch-first).
        starts: bool ``[T, B]`` (numpy or torch; a CUDA tensor costs one sync): True where a
            segment starts; ``t = 0`` starts one whatever it holds.
        restarts: ``(h,)`` or ``(h, c)``, each ``[T, L, B, H]``: the state to restart from at each
            step (read only where a segment starts).

    Returns:
        A :class:`Segments` ``(y, ends)``; ``ends[..][T - 1]`` is every row's final state.

    Raises:
        ValueError: for another kind of module, or malformed ``x``, ``starts`` or ``restarts``.

    Shapes:
        ``x [T, B, in]``, ``starts [T, B]``, ``restarts [T, L, B, H]`` -> ``y [T, B, H]``,
        ``ends [T, L, B, H]`` (``x`` and ``y`` batch-first for a batch-first module).

    >>> import numpy as np, torch
    >>> lstm = torch.nn.LSTM(3, 4)
    >>> x, starts = torch.randn(5, 2, 3), np.zeros((5, 2), dtype=bool)
    >>> starts[3, 1] = True  # row 1 restarts at t = 3 from the state given for that step
    >>> h, c = torch.randn(5, 1, 2, 4), torch.randn(5, 1, 2, 4)
    >>> y, (h_end, c_end) = unroll_segments(lstm, x, starts, (h, c))
    >>> y2, (h2, c2) = lstm(x[3:, 1:], (h[3, :, 1:], c[3, :, 1:]))  # the segment by itself
    >>> torch.allclose(y[3:, 1:], y2, atol=1e-6), torch.allclose(c_end[4, :, 1:], c2, atol=1e-6)
    (True, True)
    >>> bool(h_end[1].any()), bool(h_end[2, :, 1].any())  # row 1's first segment ends at t = 2
    (False, True)
    """
    m = _module(core)
    restarts = tuple(restarts)
    T, B = _check(m, x, restarts)
    mask = host_starts(starts, T, B, "unroll_segments").copy()
    mask[0] = False
    times = np.flatnonzero(mask.any(axis=1))
    bounds = [0, *times.tolist(), T]
    # Which rows restart at each boundary, on the device in one copy (no sync in the loop).
    restarting = torch.from_numpy(mask[times]).to(x.device, non_blocking=True)
    run, inp = _runner(m, x, restarts, len(bounds) - 1)
    tensors = tuple(s[0] for s in restarts)
    outputs, finals = [], []
    for i, (a, e) in enumerate(itertools.pairwise(bounds)):
        if i:
            swap = restarting[i - 1].view(1, -1, 1)
            tensors = tuple(torch.where(swap, s[a], t) for s, t in zip(restarts, tensors, strict=True))
        y, tensors = run(inp, a, e, tensors)
        outputs.append(y)
        finals.append(tensors)
    dim = 1 if m.batch_first and inp is x else 0
    y = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=dim)
    if inp is not x:
        y = y.transpose(0, 1)  # the fast GRU ran time-major
    return Segments(y, _place_ends(finals, restarting, times, T))


_Run = Callable[[torch.Tensor, int, int, tuple[torch.Tensor, ...]],
                tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


#: The fast GRU loop pays a fixed cost per call that the fused op does not: with calls shorter than
#: this on average the fused op wins (measured with benchmarks/torchrl_speed.py on the CPU).
FAST_GRU_MIN_MEAN_STEPS = 4


def _runner(m: nn.RNNBase, x: torch.Tensor, restarts: tuple[torch.Tensor, ...], calls: int
            ) -> tuple[_Run, torch.Tensor]:
    """How to run steps ``[a, e)``: the fused op, or (a GRU building a graph on the CPU, in calls of
    several steps) the fast GRU loop, which beats it there (see :mod:`tether.sequence._gru`); and
    the input that runner reads."""
    steps = int(x.shape[1 if m.batch_first else 0])
    if (type(m) is nn.GRU and steps >= FAST_GRU_MIN_MEAN_STEPS * calls and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(x.device.type)
            and fast_gru_wins(0, 0, m.input_size, m.hidden_size, x.device, True)):
        alias: Any = m
        if m.batch_first:  # the same parameters, read time-major (built per call: never stale)
            alias = copy.copy(m)
            alias.batch_first = False
        graph = x.requires_grad or any(s.requires_grad for s in restarts) or any(
            p.requires_grad for p in m.parameters())
        if graph and unsupported_reason(alias) is None:
            def fast(inp: torch.Tensor, a: int, e: int, tensors: tuple[torch.Tensor, ...]
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
                y, h = gru_unroll(alias, inp[a:e], tensors[0])
                return y, (h,)
            return fast, (x.transpose(0, 1) if m.batch_first else x)
    has_c, dim = isinstance(m, nn.LSTM), 1 if m.batch_first else 0

    def fused(inp: torch.Tensor, a: int, e: int, tensors: tuple[torch.Tensor, ...]
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return _aten.run_sequence_module(m, inp.narrow(dim, a, e - a), tensors, has_c=has_c, fuse=True)
    return fused, x


def _place_ends(finals: list[tuple[torch.Tensor, ...]], restarting: torch.Tensor, times: np.ndarray,
                steps: int) -> tuple[torch.Tensor, ...]:
    """Each call's final state at its last step, kept for the rows whose segment ends there."""
    if len(finals) == 1:  # one segment per row: zeros, then the final state at the last step
        return tuple(F.pad(f.unsqueeze(0), (0, 0, 0, 0, 0, 0, steps - 1, 0)) for f in finals[0])
    ends = []
    last = torch.from_numpy(np.append(times - 1, steps - 1)).to(restarting.device, non_blocking=True)
    every = restarting.new_ones((1, restarting.shape[1]))
    keep = torch.cat([restarting, every]).view(len(finals), 1, -1, 1)
    for k in range(len(finals[0])):
        stacked = torch.stack([f[k] for f in finals])  # [calls, L, B, H]
        kept = torch.where(keep, stacked, torch.zeros((), dtype=stacked.dtype, device=stacked.device))
        ends.append(stacked.new_zeros((steps, *stacked.shape[1:])).index_copy(0, last, kept))
    return tuple(ends)
