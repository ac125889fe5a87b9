"""unroll(): a reset-aware multi-step unroll at close to the speed of one fused call."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from tether import _aten
from tether.sequence._checks import check_core, check_inputs, host_starts
from tether.sequence._gru import fast_gru_wins, gru_unroll, unsupported_reason
from tether.sequence._lanes import run_chunked, run_lanes
from tether.sequence._lifecycle import check_replay, live_step
from tether.sequence._reference import reference_loop
from tether.sequence._strategy import Strategy, UnrollPlan, lanes_supported, make_plan, saturates
from tether.state import RecurrentState
from tether.tracking import TrackedRNN

__all__ = ["plan_unroll", "unroll", "unroll_reference"]


def plan_unroll(core: TrackedRNN, episode_starts: Any, *, strategy: Strategy = "auto") -> UnrollPlan:
    """Plan an unroll of ``core`` over a reset pattern once, to share between cores of one kind.

    An actor-critic with a separate critic core unrolls both cores over the same
    ``episode_starts``; planning reads the mask on the host and lays out the lanes, so doing it
    once per minibatch halves that work (and the host-to-device copies of the plan's indices).

    Args:
        core: a tracked sequence module (``batch_first=False``); the plan fits every core whose
            module has the same type.
        episode_starts: bool ``[T, B]`` (numpy, or a tensor: a CUDA tensor costs one sync).
        strategy: as for :func:`unroll`.

    Returns:
        An :class:`UnrollPlan` to pass to :func:`unroll` in place of ``episode_starts``.

    Raises:
        TypeError / ValueError: for a core that is not a tracked time-major sequence module, a
            malformed mask, an unknown strategy, or one the module cannot run.

    >>> import numpy as np, torch
    >>> from tether import track
    >>> actor, critic = track(torch.nn.LSTM(3, 4)), track(torch.nn.LSTM(3, 4))
    >>> starts = np.zeros((6, 2), dtype=bool)
    >>> starts[2, 1] = True
    >>> plan = plan_unroll(actor, starts)
    >>> plan.strategy, plan.shape
    ('spliced', (6, 2))
    >>> y, _ = unroll(critic, torch.randn(6, 2, 3), plan, critic.initial_state(2))
    """
    check_core(core)
    given = episode_starts
    shape = tuple(given.shape) if hasattr(given, "shape") else np.shape(given)
    if len(shape) != 2:
        raise ValueError(f"plan_unroll: expected episode_starts as a bool mask [T, B], got shape {shape}")
    return make_plan(core.module, host_starts(given, int(shape[0]), int(shape[1])), strategy)


def _plan_for(core: TrackedRNN, x: torch.Tensor, episode_starts: Any, strategy: str) -> UnrollPlan:
    T, B = int(x.shape[0]), int(x.shape[1])
    if not isinstance(episode_starts, UnrollPlan):
        return make_plan(core.module, host_starts(episode_starts, T, B), strategy, x.device, x.dtype)
    plan = episode_starts
    if plan.shape != (T, B):
        raise ValueError(f"unroll: the plan is for [T, B] = {list(plan.shape)}, but x is [T={T}, B={B}, ...]")
    if plan.module_type is not type(core.module):
        raise ValueError(f"unroll: the plan was made for a {plan.module_type.__name__} core, got a"
                         f" {type(core.module).__name__}; make one with plan_unroll(core, starts)")
    if strategy not in ("auto", plan.strategy):
        raise ValueError(f"unroll: strategy {strategy!r} differs from the plan's {plan.strategy!r};"
                         " pass the strategy to plan_unroll instead")
    return plan


def unroll(
    core: TrackedRNN,
    x: torch.Tensor,
    episode_starts: Any,
    state: RecurrentState,
    *,
    strategy: Strategy = "auto",
) -> tuple[torch.Tensor, RecurrentState]:
    """Unroll ``core`` over ``x`` from ``state``, restarting rows at their episode starts.

    Equal to :func:`unroll_reference` (outputs, final state and gradients with respect to ``x``,
    the initial state and the parameters) but close to the speed of one fused call: with no start
    after ``t = 0`` it is one fused call; otherwise ``"auto"`` splices the resets into the lanes of
    one fused call per layer (see :mod:`tether.sequence`), or lays each episode segment out as its
    own lane when starts are so dense that this pads less.

    The lifecycle is checked as for a tracked step, host side, with no device sync: from a live
    state the unroll is a step of ``T`` (:meth:`TrackedRNN.check <tether.TrackedRNN.check>`:
    rows restarting at ``t = 0`` may hold an ended episode; rows restarted inside take the clock's
    episode ids); from a snapshot it is a replay, checked against what the clock recorded (a
    snapshot taken after the rollout, or ``episode_starts`` that miss recorded starts, raise
    :class:`~tether.ReplayAlignmentError`). The shapes, device and dtype are checked too.
    Planning reads ``episode_starts`` on the host: pass it as a numpy array (or a CPU tensor, or a
    plan); a CUDA tensor costs one sync.

    Args:
        core: a tracked ``nn.LSTM`` or ``nn.GRU`` (any layers, ``batch_first=False``); another
            sequence module runs ``"chunked"`` (``nn.RNN``, subclasses, modules with hooks) or
            ``"reference"`` (bidirectional or custom modules).
        x: the inputs, on the state's device and dtype.
        episode_starts: bool mask, True where ``x[t, b]`` starts a new episode (numpy or torch),
            or an :class:`UnrollPlan` from :func:`plan_unroll`.
        state: the state before step 0.
        strategy: ``"auto"`` (default): the fastest exact one. ``"spliced"``: resets spliced into
            each row's lane. ``"padded"``: one lane per episode segment. ``"chunked"``: one fused
            call between consecutive start times. ``"reference"``: the per-step loop.

    Returns:
        ``(y, final_state)``: the outputs and the state after step ``T - 1`` for every row, with
        the initial state's clock, episode ids and rows, ``T`` ticks later
        (:meth:`~tether.RecurrentState.advanced`).

    Raises:
        ValueError: for a malformed ``x`` or ``episode_starts``, a batch-first or cell core, an
            unknown strategy, a strategy the module cannot run, or a plan made for another shape
            or module type.
        StateMismatchError: when the state does not fit the core or the batch.
        StaleStateError / GraphLeakError: from a live state, as for a tracked step (strict mode).
        ReplayAlignmentError: from a snapshot that does not line up with the clock (strict mode).

    Shapes:
        ``x [T, B, in]``, ``episode_starts [T, B]``, state tensors ``[L, B, H]`` ->
        ``y [T, B, H]``, final state tensors ``[L, B, H]``.

    >>> import numpy as np, torch
    >>> from tether import track
    >>> core = track(torch.nn.LSTM(3, 4, num_layers=2))
    >>> x, starts = torch.randn(6, 2, 3), np.zeros((6, 2), dtype=bool)
    >>> starts[2, 1] = True  # row 1 starts a new episode at t = 2
    >>> y, final = unroll(core, x, starts, core.initial_state(2))
    >>> y_ref, _ = unroll_reference(core, x, starts, core.initial_state(2))
    >>> torch.allclose(y, y_ref, atol=1e-6), tuple(final.c.shape)
    (True, (2, 2, 4))
    """
    T, _ = check_inputs(core, x, state)
    plan = _plan_for(core, x, episode_starts, strategy)
    ids, verified = None, False
    if state.is_snapshot:
        check_replay(state, plan.episode_starts)
    elif state.clock is not None:
        ids, verified = live_step(core, x, state, plan.episode_starts)
    y, tensors = _run(core, x, plan, state)
    return y, state.advanced(tensors, T, ids_verified=verified, episode_ids=ids)


def _run(core: TrackedRNN, x: torch.Tensor, plan: UnrollPlan, state: RecurrentState
         ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    if plan.strategy == "reference":
        return reference_loop(core, x, plan.episode_starts, state.tensors)
    m: nn.RNNBase = core.module  # type: ignore[assignment]
    starts, lanes = plan.episode_starts, plan.lanes
    if plan.auto and _fast_gru(m, x, state):
        y, h = gru_unroll(cast(nn.GRU, m), x, state.tensors[0], starts if starts.any() else None)
        return y, (h,)
    has_c = isinstance(m, nn.LSTM)
    if lanes is not None and not (lanes_supported(m) and saturates(has_c, x.device, x.dtype)):
        lanes = None  # a hook added since planning, or autocast to an unprobed dtype: exact fallback
    tensors = state.tensors
    if starts[0].any() and not (lanes is not None and lanes.masks_start):
        keep = torch.from_numpy(~starts[0]).to(x.device, non_blocking=True).to(x.dtype)
        tensors = tuple(s * keep.view(1, -1, 1) for s in tensors)
    if lanes is not None:
        y, tensors = run_lanes(m, x, tensors, lanes, plan.index_on(x.device))
    elif plan.strategy == "fused":
        y, tensors = _aten.run_sequence_module(m, x, tensors, has_c=len(tensors) == 2, fuse=True)
    else:
        y, tensors = run_chunked(m, x, tensors, starts)
    return y, tensors


def _fast_gru(m: nn.Module, x: torch.Tensor, state: RecurrentState) -> bool:
    """Whether the fast GRU loop beats the fused nn.GRU here (CPU, building a graph; not under
    autocast, whose casts only the ATen op knows)."""
    if (type(m) is not nn.GRU or not torch.is_grad_enabled() or unsupported_reason(m) is not None
            or torch.is_autocast_enabled(x.device.type)):
        return False
    graph = x.requires_grad or state.has_graph or any(p.requires_grad for p in m.parameters())
    return fast_gru_wins(int(x.shape[0]), int(x.shape[1]), m.input_size, m.hidden_size, x.device, graph)


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
        state: the state before step 0 (a stored snapshot for replay, or the live state); the
            lifecycle is :func:`unroll`'s.

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
    return unroll(core, x, episode_starts, state, strategy="reference")
