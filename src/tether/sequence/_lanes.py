"""Running a lane layout: one fused call per layer, with reset / hold steps as saturated gates.

A reset step feeds an extra input column whose weight drives the LSTM's input and forget gates
(the GRU's reset and update gates) to ``-big``; the sigmoids saturate to exactly 0, so the step's
state and output are exactly zero and no gradient crosses it. A hold step (LSTM) sets the forget
gate to exactly 1 and the input and output gates to 0, keeping the cell state bit for bit. The
gathers into and out of lane order are autograd functions whose gradients are gathers too.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tether import _aten
from tether.sequence._plan import Lanes


def _big(dtype: torch.dtype) -> float:
    # Large enough that sigmoid(pre - big) is exactly 0 for any sane pre-activation, small enough
    # that it stays finite in the dtype (float16 tops out at 65504).
    return 1e30 if torch.finfo(dtype).max > 1e35 else torch.finfo(dtype).max / 8


_COLUMNS: dict[tuple[bool, int, torch.dtype, torch.device], torch.Tensor] = {}


def _gate_columns(m: nn.RNNBase, layer: int, w_ih: torch.Tensor) -> torch.Tensor:
    """The extra input columns of ``w_ih`` that turn the reset / hold flags into saturated gates."""
    H, big = m.hidden_size, _big(w_ih.dtype)
    has_c = isinstance(m, nn.LSTM)
    key = (has_c, H, w_ih.dtype, w_ih.device)
    if key not in _COLUMNS:
        # LSTM gates i, f, g, o; reset: i = f = 0; hold: f = 1, i = o = 0. GRU gates r, z: reset.
        signs = [[-1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, -1.0]] if has_c else [[-1.0, -1.0]]
        with torch.inference_mode(False):  # a constant that any later graph may use
            _COLUMNS[key] = (w_ih.new_tensor(signs) * big).t().repeat_interleave(H, dim=0)
    if has_c:
        return _COLUMNS[key]
    # GRU gate n: its pre-activation cancels b_in exactly, so h' = tanh(0) = 0.
    b_in = getattr(m, f"bias_ih_l{layer}")[2 * H :] if m.bias else w_ih.new_zeros(H)
    return torch.cat([_COLUMNS[key], -b_in.unsqueeze(1)])


def _flag_rows(x: torch.Tensor, flags: int) -> torch.Tensor:
    """``x [T, B, in]`` as rows ``[T * B + flags, in + flags]``: each step with zero flag columns,
    then one row per kind of empty step (reset, then hold) holding only its flag."""
    steps, width = x.shape[0] * x.shape[1], x.shape[2]
    rows = torch.nn.functional.pad(x.reshape(steps, width), (0, flags, 0, flags))
    for kind in range(flags):
        rows[steps + kind, width + kind] = 1.0
    return rows


class _IntoLanes(torch.autograd.Function):
    """``x [T, B, in]`` in lane order with the flag columns: ``[length, lanes, in + flags]``.

    One gather from the flagged rows (reset and hold steps read the rows of their flags). Every
    step goes to exactly one position, so the gradient is a gather too (no scatter-add).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor], lanes: int,
                flags: int) -> torch.Tensor:
        source, out = index  # (few arguments: Function.apply costs per argument)
        ctx.out, ctx.shape = out, x.shape
        into = _flag_rows(x, flags).index_select(0, source)
        return into.view(-1, lanes, into.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        T, B, width = ctx.shape
        grad = grad.reshape(-1, grad.shape[2]).index_select(0, ctx.out)[:, :width]
        return grad.reshape(T, B, width), None, None, None


class _FromLanes(torch.autograd.Function):
    """Lane outputs ``[length, lanes, H]`` back to step order ``[T, B, H]``, and ``h`` at each
    row's last step ``[1, B, H]``; the gradient is one gather back (no scatter-add)."""

    @staticmethod
    def forward(ctx: Any, lanes: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor], steps: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        source, out = index
        ctx.source, ctx.shape, ctx.steps = source, lanes.shape, out.shape[0]
        ctx.set_materialize_grads(False)
        y = lanes.reshape(-1, lanes.shape[2]).index_select(0, out).view(steps, -1, lanes.shape[2])
        return y, y[-1:].clone()

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor | None, grad_h: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        length, lanes, H = ctx.shape
        if grad_y is None and grad_h is None:
            return None, None, None
        # Step order, then two zero rows that the reset and hold positions read.
        n = ctx.steps
        ref: torch.Tensor = grad_y if grad_y is not None else grad_h  # type: ignore[assignment]
        rows = F.pad(grad_y.reshape(n, H), (0, 0, 0, 2)) if grad_y is not None else ref.new_zeros(n + 2, H)
        if grad_h is not None:
            rows[n - grad_h.shape[1] : n] += grad_h[0]  # h is y at the last step
        return rows.index_select(0, ctx.source).view(length, lanes, H), None, None


class _LastStep(torch.autograd.Function):
    """``h`` at each row's last step ``[1, B, H]`` from lane outputs ``[length, lanes, H]`` (a lower
    layer's final h); the positions are distinct, so the gradient is a copy into zeros."""

    @staticmethod
    def forward(ctx: Any, lanes: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        ctx.last, ctx.shape = last, lanes.shape
        return lanes.reshape(-1, lanes.shape[2]).index_select(0, last).unsqueeze(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        length, lanes, H = ctx.shape
        out = grad.new_zeros(length * lanes, H).index_copy_(0, ctx.last, grad[0])
        return out.view(length, lanes, H), None


def _index_parts(plan: Lanes) -> list[np.ndarray]:
    parts = [plan.source, plan.out]
    return parts + [p for p in (plan.final_lane, plan.init_row) if p is not None]


def lane_index(plan: Lanes, device: torch.device) -> torch.Tensor:
    """Every index the plan needs, in one int64 tensor on ``device`` (one host-to-device copy)."""
    return torch.from_numpy(np.concatenate(_index_parts(plan))).to(device, non_blocking=True)


def run_lanes(
    m: nn.RNNBase, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], plan: Lanes,
    index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run ``plan`` with one fused call per layer; gather outputs and final states back.

    ``index`` is :func:`lane_index` of the plan on ``x``'s device, when the caller keeps one.
    """
    T, width = x.shape[0], x.shape[2]
    has_c, lanes = isinstance(m, nn.LSTM), plan.lanes
    parts = _index_parts(plan)
    if index is None:
        index = lane_index(plan, x.device)
    bounds = np.cumsum([0, *(p.size for p in parts)]).tolist()
    source, out, *rest = (index[a:e] for a, e in itertools.pairwise(bounds))
    final_lane = rest[0] if plan.final_lane is not None else None
    if plan.init_row is not None:
        tensors = tuple(F.pad(s, (0, 0, 0, 1)).index_select(1, rest[-1]) for s in tensors)
    inp = _IntoLanes.apply(  # type: ignore[no-untyped-call]
        x, (source, out), lanes, 2 if has_c else 1)
    flags = inp[:, :, width:]  # the flag columns, for the layers above too
    per = 4 if m.bias else 2
    weights = _aten.flat_weights(m)
    finals: list[list[torch.Tensor]] = [[] for _ in tensors]
    for layer in range(m.num_layers):
        if layer:
            # The lane's own final h may come after hold / pad steps: read h at the row's last step.
            finals[0].append(_LastStep.apply(inp, out[out.shape[0] - x.shape[1] :]))  # type: ignore[no-untyped-call]
            if m.dropout and m.training:
                inp = F.dropout(inp, m.dropout, training=True)
            inp = torch.cat([inp, flags], dim=2)
        w = weights[per * layer : per * (layer + 1)]
        w = [torch.cat([w[0], _gate_columns(m, layer, w[0])], dim=1), *w[1:]]
        hx = tensors if m.num_layers == 1 else tuple(s[layer : layer + 1] for s in tensors)
        if has_c:
            inp, _, c = _aten.lstm_layer(inp, (hx[0], hx[1]), w, bias=m.bias, training=m.training)
            finals[1].append(c if final_lane is None else c.index_select(1, final_lane))
        else:
            inp, _ = _aten.gru_layer(inp, hx[0], w, bias=m.bias, training=m.training)
    y, h = _FromLanes.apply(  # type: ignore[no-untyped-call]
        inp, (source, out), T)
    finals[0].append(h)
    return y, tuple(f[0] if len(f) == 1 else torch.cat(f) for f in finals)


def run_chunked(
    m: nn.RNNBase, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], starts: np.ndarray
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One fused call between consecutive times where some row starts; mask the state between."""
    times = np.flatnonzero(starts[1:].any(axis=1)) + 1
    bounds = [0, *times.tolist(), int(x.shape[0])]
    keep = torch.from_numpy(~starts[times]).to(x.device, non_blocking=True).to(x.dtype)
    outputs = []
    for i, (a, e) in enumerate(itertools.pairwise(bounds)):
        if i:
            mask = keep[i - 1].view(1, -1, 1)
            tensors = tuple(s * mask for s in tensors)
        y, tensors = _aten.run_sequence_module(m, x[a:e], tensors, has_c=len(tensors) == 2, fuse=True)
        outputs.append(y)
    return torch.cat(outputs), tensors
