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
    lstm = isinstance(m, nn.LSTM)
    key = (lstm, H, w_ih.dtype, w_ih.device)
    if key not in _COLUMNS:
        # LSTM gates i, f, g, o; reset: i = f = 0; hold: f = 1, i = o = 0. GRU gates r, z: reset.
        signs = [[-1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, -1.0]] if lstm else [[-1.0, -1.0]]
        with torch.inference_mode(False):  # a constant that any later graph may use
            _COLUMNS[key] = (w_ih.new_tensor(signs) * big).t().repeat_interleave(H, dim=0)
    if lstm:
        return _COLUMNS[key]
    # GRU gate n: its pre-activation cancels b_in exactly, so h' = tanh(0) = 0.
    b_in = getattr(m, f"bias_ih_l{layer}")[2 * H :] if m.bias else w_ih.new_zeros(H)
    return torch.cat([_COLUMNS[key], -b_in.unsqueeze(1)])


class _IntoLanes(torch.autograd.Function):
    """``x [T, B, in]`` in lane order, with the flag columns: ``[length, lanes, in + flags]``.

    Every step goes to exactly one position, so the gradient is a gather too (no scatter-add).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, flags: torch.Tensor,
                where: tuple[torch.Tensor, torch.Tensor, torch.Tensor], lanes: int) -> torch.Tensor:
        source, out, pads = where  # (few arguments: Function.apply costs per argument)
        ctx.out, ctx.shape = out, x.shape
        width = x.shape[2]
        into = x.new_empty(source.shape[0], width + flags.shape[1])
        if x.is_cpu:  # gather straight into the strided slice (one pass)
            torch.index_select(x.reshape(-1, width), 0, source, out=into[:, :width])
        else:
            into[:, :width] = x.reshape(-1, width).index_select(0, source)
        into[:, :width].index_fill_(0, pads, 0.0)
        into[:, width:] = flags
        return into.view(-1, lanes, into.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        T, B, width = ctx.shape
        grad = grad.reshape(-1, grad.shape[2])[:, :width].index_select(0, ctx.out)
        return grad.view(T, B, width), None, None, None


class _FromLanes(torch.autograd.Function):
    """Lane outputs ``[length, lanes, H]`` back to step order ``[T, B, H]``, and ``h`` at each
    row's last step ``[1, B, H]``; the gradient is a gather back (no scatter-add)."""

    @staticmethod
    def forward(ctx: Any, lanes: torch.Tensor,
                where: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], steps: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        source, out, pads, last = where
        ctx.last, ctx.source, ctx.pads, ctx.shape = last, source, pads, lanes.shape
        ctx.set_materialize_grads(False)
        flat = lanes.reshape(-1, lanes.shape[2])
        y = flat.index_select(0, out)
        return y.view(steps, -1, y.shape[1]), flat.index_select(0, last).unsqueeze(0)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor | None, grad_h: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        length, lanes, H = ctx.shape
        if grad_y is not None:
            grad = grad_y.reshape(-1, H).index_select(0, ctx.source)
            grad.index_fill_(0, ctx.pads, 0.0)
        elif grad_h is not None:
            grad = grad_h.new_zeros(length * lanes, H)
        else:
            return None, None, None
        if grad_h is not None:
            grad.index_add_(0, ctx.last, grad_h[0])
        return grad.view(length, lanes, H), None, None


def _index_parts(plan: Lanes) -> list[np.ndarray]:
    parts = [plan.source, plan.out, plan.pads]
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
    T, B, _ = x.shape
    lstm, H, lanes, length = isinstance(m, nn.LSTM), m.hidden_size, plan.lanes, plan.length
    parts = _index_parts(plan)
    if index is None:
        index = lane_index(plan, x.device)
    bounds = np.cumsum([0, *(p.size for p in parts)]).tolist()
    source, out, pads, *rest = (index[a:e] for a, e in itertools.pairwise(bounds))
    last = out[(T - 1) * B :]
    final_lane = rest[0] if plan.final_lane is not None else None
    if plan.init_row is not None:
        tensors = tuple(F.pad(s, (0, 0, 0, 1)).index_select(1, rest[-1]) for s in tensors)
    flags = torch.from_numpy(plan.flags).to(x.device, x.dtype, non_blocking=True)
    inp = _IntoLanes.apply(  # type: ignore[no-untyped-call]
        x, flags, (source, out, pads), lanes)
    per = 4 if m.bias else 2
    weights = _aten.flat_weights(m)
    finals: list[list[torch.Tensor]] = [[] for _ in tensors]
    for layer in range(m.num_layers):
        if layer:
            # The lane's own final h may come after hold / pad steps: read h at the row's last step.
            finals[0].append(inp.reshape(-1, H).index_select(0, last).unsqueeze(0))
            if m.dropout and m.training:
                inp = F.dropout(inp, m.dropout, training=True)
            inp = torch.cat([inp, flags.view(length, lanes, -1)], dim=2)
        w = weights[per * layer : per * (layer + 1)]
        w = [torch.cat([w[0], _gate_columns(m, layer, w[0])], dim=1), *w[1:]]
        hx = tensors if m.num_layers == 1 else tuple(s[layer : layer + 1] for s in tensors)
        if lstm:
            inp, _, c = _aten.lstm_layer(inp, (hx[0], hx[1]), w, bias=m.bias, training=m.training)
            finals[1].append(c if final_lane is None else c.index_select(1, final_lane))
        else:
            inp, _ = _aten.gru_layer(inp, hx[0], w, bias=m.bias, training=m.training)
    y, h = _FromLanes.apply(  # type: ignore[no-untyped-call]
        inp, (source, out, pads, last), T)
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
        y, tensors = _aten.run_sequence_module(m, x[a:e], tensors, paired=len(tensors) == 2, fuse=True)
        outputs.append(y)
    return torch.cat(outputs), tensors
