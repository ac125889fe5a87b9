"""A fast, reset-aware ``nn.GRU`` unroll for the CPU: exact to ``nn.GRU``, several times faster.

PyTorch's CPU ``nn.GRU`` runs its recurrence as a dozen small ATen ops per step and builds an
autograd graph of them, so its backward replays that graph op by op (the LSTM instead goes through
one fused oneDNN kernel; torch exposes no oneDNN GRU: ``aten::mkldnn_rnn_layer`` always builds the
LSTM primitive). :func:`gru_unroll` computes the same function with a hand-written autograd
``Function`` per layer:

* forward: the input projection of every step in one matmul, then five in-place ops a step
  (``addmm_`` of ``W_hh h`` onto the precomputed gate bases, one ``sigmoid_`` for ``r`` and ``z``,
  ``addcmul_`` + ``tanh_`` for ``n``, ``lerp`` for ``h'``), on views unbound once before the loop;
* backward: the gate derivatives of every step in a few batched ops (the forward saved ``r``,
  ``z``, ``n`` and ``W_hn h + b_hn``), then a recurrence that is linear in ``dh`` (two or three ops
  a step), then the gradients of ``x``, ``W_ih``, ``W_hh`` and both biases as ONE matmul (or sum)
  each over all steps stacked.

Two CPU details matter as much as the structure: float32 matmuls of more than a few Mflop go
through oneDNN's matmul (MKL's ``torch.mm`` runs at about half its speed on AMD CPUs), and on wide
steps ``tanh`` is ``2 sigmoid(2a) - 1`` (torch's CPU tanh is ~8x slower than its sigmoid). Dropped
after measuring (``benchmarks/gru_speed.py``): autograd through the hoisted loop (slower than
``nn.GRU``), ``torch.jit.script`` (deprecated), ``torch.compile`` of the loop (minutes per new T).

The math (PyTorch's GRU, gates stacked ``r, z, n`` in the weights)::

    r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 − z) ⊙ n + z ⊙ h

Resets: with ``episode_starts[t, b]`` the state of row ``b`` is multiplied by 0 before step ``t``,
as the per-step masked reference loop does (``h = h * (1 - start)``); the gradient through the
reset is exactly zero there too.

Supported: a plain ``nn.GRU`` (no subclass, no hooks), unidirectional, ``batch_first=False``, any
``num_layers``, with or without bias, dropout 0 (or eval mode), floating dtypes; no double backward.
:func:`unsupported_reason` says why another module is refused; :func:`fast_gru_wins` is the
measured rule for preferring this over ``nn.GRU`` (``benchmarks/gru_speed.py``).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from tether import _aten
from tether.sequence._checks import host_starts

__all__ = ["fast_gru_wins", "gru_unroll", "unsupported_reason"]

# Below this many hidden units times batch rows a step, the backward recurrence folds the
# ``dh * z`` term into its matmul (one op fewer a step, a third more matmul work): measured in
# benchmarks/gru_speed.py, it wins while per-op overhead dominates the step.
_FOLD_BELOW = 512

# From this many hidden units times batch rows a step, the forward takes tanh through sigmoid
# (see _forward): one op more a step, but torch's tanh costs ~2 ns an element against ~0.3.
_WIDE = 2048

# float32 matmuls of at least this many flops go through oneDNN's matmul rather than torch.mm
# (MKL, at half oneDNN's speed on AMD CPUs); oneDNN costs ~10 us more a call, paid off only on
# large products (sooner per step, where W_hh is reordered once). Measured: benchmarks/gru_speed.py.
_ONEDNN_FLOPS = 16_000_000
_ONEDNN_STEP_FLOPS = 4_000_000
_ONEDNN_MIN_STEPS = 8
_onednn_ok = _aten.onednn_linear_available()


def _onednn(a: torch.Tensor, n_out: int, least: int | None = None) -> bool:
    """Whether ``a @ W.T`` (``W`` with ``n_out`` rows) should run on oneDNN's matmul: float32 on
    CPU, at least ``least`` flops (default ``_ONEDNN_FLOPS``).

    Only at full float32 precision: a user who allowed bf16 / tf32 matmuls for oneDNN would get
    them here too, which torch.mm (MKL) would not have done, so we keep to torch.mm then.
    """
    if not (_onednn_ok and a.dtype == torch.float32 and a.device.type == "cpu"
            and 2 * a.shape[0] * a.shape[1] * n_out >= (_ONEDNN_FLOPS if least is None else least)):
        return False
    onednn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    return (torch.get_float32_matmul_precision() == "highest"
            and getattr(onednn_matmul, "fp32_precision", "none") in ("none", "ieee"))


def _linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ w.T + bias``, on oneDNN when it is faster (a private op; see _onednn)."""
    if _onednn(a, w.shape[0]):
        return _aten.onednn_linear(a, w, bias)
    return torch.mm(a, w.t()) if bias is None else torch.addmm(bias, a, w.t())


# ------------------------------------------------------------------------------------------------
# the recurrence, forward (no autograd: the Function below differentiates it by hand)
def _gate_bases(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None,
    b_hh: torch.Tensor | None, wide: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input projection of every step ``gi [T, B, 3H]``, the gate bases the loop adds
    ``W_hh h`` onto ``pre [T, B, 3H]``, and the ``W_hh`` to use (n rows doubled when ``wide``)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if wide:
        # tanh(a) = 2 sigmoid(2a) - 1, the 2a coming free from doubling the n rows.
        scale = w_hh.new_ones(3 * H)
        scale[2 * H :] = 2.0
        w_ih, w_hh = w_ih * scale.unsqueeze(1), w_hh * scale.unsqueeze(1)
        b_ih = None if b_ih is None else b_ih * scale
        b_hh = None if b_hh is None else b_hh * scale
    bias = b_ih
    if b_ih is not None and b_hh is not None:
        # b_hr and b_hz add to the same pre-activations as b_ir and b_iz: fold them in here.
        bias = b_ih.clone()
        bias[: 2 * H] += b_hh[: 2 * H]
    gi = _linear(x.reshape(T * B, -1), w_ih, bias).view(T, B, 3 * H)
    pre = torch.empty_like(gi)
    pre[..., : 2 * H] = gi[..., : 2 * H]
    if b_hh is None:
        pre[..., 2 * H :] = 0.0
    else:
        pre[..., 2 * H :] = b_hh[2 * H :]
    return gi, pre, w_hh


def _forward(
    x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
    b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, keep: list[torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one layer; return ``y [T, B, H]``, ``pre [T, B, 3H]`` (``r, z, W_hn h + b_hn``) and
    ``gi [T, B, 3H]`` whose last third holds ``n``. ``keep[t]`` masks the state before step t."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    # torch's CPU tanh runs ~8x slower than its sigmoid: on wide steps go through sigmoid.
    wide = B * H >= _WIDE
    gi, pre, w_hh = _gate_bases(x, w_ih, w_hh, b_ih, b_hh, wide)
    y = x.new_empty(T, B, H)
    # Unbind every view once: slicing inside the loop costs as much as the ops themselves.
    pres, rzs, rs = pre.unbind(0), pre[..., : 2 * H].unbind(0), pre[..., :H].unbind(0)
    zs, ghns = pre[..., H : 2 * H].unbind(0), pre[..., 2 * H :].unbind(0)
    ns, ys, w = gi[..., 2 * H :].unbind(0), y.unbind(0), w_hh.t()
    h = h0
    lerp, addcmul = torch.lerp, torch.addcmul
    # oneDNN's blocked layout for W_hh, once per call (a reorder per step costs a fifth more);
    # it pays off from a few steps on.
    onednn = T >= _ONEDNN_MIN_STEPS and _onednn(h0, 3 * H, _ONEDNN_STEP_FLOPS)
    if onednn:
        linear = _aten.onednn_linear_add_op()
        w = _aten.onednn_reorder_weight(w_hh, B)
    minus_one, two = (x.new_full((1,), -1.0), x.new_full((1,), 2.0)) if wide else (x, x)
    for p, rz, r, z, ghn, n, out, mask in zip(pres, rzs, rs, zs, ghns, ns, ys, keep, strict=True):
        if mask is not None:
            h = h * mask
        if onednn:
            p.copy_(linear(h, p, w, None, "add"))
        else:
            p.addmm_(h, w)
        rz.sigmoid_()
        if wide:
            addcmul(minus_one, n.addcmul_(r, ghn).sigmoid_(), two, out=n)
        else:
            n.addcmul_(r, ghn).tanh_()
        h = lerp(n, h, z, out=out)  # n + z * (h - n)
    if wide:
        pre[..., 2 * H :] *= 0.5  # back to W_hn h + b_hn for the backward
    return y, pre, gi


# ------------------------------------------------------------------------------------------------
# the recurrence, backward
def _coefficients(
    pre: torch.Tensor, gi: torch.Tensor, hp: torch.Tensor
) -> torch.Tensor:
    """``[T, B, 5, H]``: what ``dh'`` is multiplied by to give the gradient of each pre-activation.

    Slots: ``W_in x + b_in``, ``r``'s and ``z``'s pre-activations, ``W_hn h + b_hn``, then ``z``
    (``dh / dh'`` straight through the update). Slots 0-3 give the gradients of the input
    projection (0, 1, 2: n, r, z) and of ``W_hh h + b_hh`` (1, 2, 3: r, z, n) as two contiguous
    column ranges of one buffer; slots 1-4 drive the backward recurrence.
    """
    H = hp.shape[2]
    r, z, ghn, n = pre[..., :H], pre[..., H : 2 * H], pre[..., 2 * H :], gi[..., 2 * H :]
    coef = hp.new_empty(*hp.shape[:2], 5, H)
    # In place into the slots, one temporary: at training shapes these are megabytes each.
    one_minus_z = torch.sub(1.0, z)
    a_n = torch.mul(n, n, out=coef[:, :, 0]).sub_(1.0).neg_().mul_(one_minus_z)  # dh' -> pre-tanh n
    a_nr = torch.mul(a_n, r, out=coef[:, :, 3])
    c_r = torch.mul(a_nr, ghn, out=coef[:, :, 1])
    c_r.addcmul_(c_r, r, value=-1.0)  # times (1 - r)
    torch.sub(hp, n, out=coef[:, :, 2]).mul_(z).mul_(one_minus_z)
    coef[:, :, 4] = z
    return coef


def _recurrence(
    gy: torch.Tensor, coef: torch.Tensor, w_hh: torch.Tensor, keep: list[torch.Tensor | None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dh_t`` for every step (the gradient reaching ``y[t]``, future included) and ``dh0``.

    ``dh_{t-1} = gy_{t-1} + keep_t ⊙ (dh_t ⊙ z_t + (dh_t ⊙ c_t) W_hh)``, ``c_t`` the gate slots;
    ``keep[t]`` (``[B, 1]``, ``None`` where no row starts) cuts the carry at a reset.
    """
    T, B, _, H = coef.shape
    dh = torch.empty_like(gy)
    dh[T - 1] = gy[T - 1]
    dhs, gys, coefs = dh.unbind(0), gy.unbind(0), coef.unbind(0)
    dh0 = gy.new_empty(B, H)
    if B * H < _FOLD_BELOW:
        # Fold the dh * z term into the matmul: [dh*c_r, dh*c_z, dh*c_n, dh*z] @ [W_hh; I].
        w = torch.cat([w_hh, torch.eye(H, dtype=w_hh.dtype, device=w_hh.device)])
        g = gy.new_empty(B, 4, H)
        flat = g.view(B, 4 * H)
        mul, addmm = torch.mul, torch.addmm
        # Step t reads dh_t and writes dh_{t-1} = gy_{t-1} + ...; step 0 writes dh0 (no gy).
        for d, c, base, target, mask in zip(dhs[:0:-1], coefs[:0:-1], gys[-2::-1], dhs[-2::-1],
                                            keep[:0:-1], strict=True):
            mul(d.unsqueeze(1), c, out=g)
            if mask is not None:
                g.mul_(mask.unsqueeze(1))
            addmm(base, flat, w, out=target)
        torch.mul(dhs[0].unsqueeze(1), coefs[0], out=g)
        if keep[0] is not None:
            g.mul_(keep[0].unsqueeze(1))
        torch.mm(flat, w, out=dh0)
        return dh, dh0
    g = gy.new_empty(B, 3, H)
    flat, carry = g.view(B, 3 * H), gy.new_empty(B, H)
    onednn = T >= _ONEDNN_MIN_STEPS and _onednn(flat, H, _ONEDNN_STEP_FLOPS)
    linear = _aten.onednn_linear_add_op() if onednn else None
    if linear is not None:  # oneDNN takes W as [out, in], in its blocked layout: reorder once
        w_t = _aten.onednn_reorder_weight(w_hh.t().contiguous(), B)
    for t in range(T - 1, -1, -1):
        mask, target = keep[t], dhs[t - 1] if t else dh0
        torch.mul(dhs[t].unsqueeze(1), coefs[t][:, :3], out=g)
        if t and mask is None:  # gy_{t-1} + dh_t * z_t, the matmul added below
            base = torch.addcmul(gys[t - 1], dhs[t], coefs[t][:, 3], out=target)
        else:  # the carry alone: it is masked before gy_{t-1} joins it
            base = torch.mul(dhs[t], coefs[t][:, 3], out=carry if t else dh0)
        if linear is None:
            base.addmm_(flat, w_hh)
        else:
            base.copy_(linear(flat, base, w_t, None, "add"))
        if mask is not None:
            base.mul_(mask)
        if t and mask is not None:
            torch.add(gys[t - 1], carry, out=target)
    return dh, dh0


def _unpermute(grad: torch.Tensor, hidden: int) -> torch.Tensor:
    """Gate blocks ``(n, r, z)`` back to PyTorch's ``(r, z, n)`` along dim 0."""
    return torch.cat([grad[hidden:], grad[:hidden]])


class _GRULayer(torch.autograd.Function):
    """One GRU layer over ``x [T, B, in]`` from ``h0 [B, H]``; the backward is hand-written."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
        b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, keep: torch.Tensor | None,
        steps: list[torch.Tensor | None],
    ) -> torch.Tensor:
        y, pre, gi = _forward(x, h0, w_ih, w_hh, b_ih, b_hh, steps)
        ctx.save_for_backward(x, h0, w_ih, w_hh, y, pre, gi, keep)
        ctx.biases = (b_ih is not None, b_hh is not None)
        ctx.steps = steps  # rows of keep (no grad): the backward masks the carry where they start
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, h0, w_ih, w_hh, y, pre, gi, keep = ctx.saved_tensors
        T, B, H = y.shape
        need = ctx.needs_input_grad
        hp = torch.cat([h0.unsqueeze(0), y[:-1]])  # the state each step read: [T, B, H]
        if keep is not None:
            hp.mul_(keep)
        coef = _coefficients(pre, gi, hp)
        dh, dh0 = _recurrence(gy.contiguous(), coef[:, :, 1:], w_hh, ctx.steps)
        # Gradients of the pre-activations, all steps stacked: [T * B, 4H] = n (input side), r,
        # z, n (recurrent side); the input projection's are columns :3H, W_hh h's columns H:.
        TB = T * B
        flat = (dh.unsqueeze(2) * coef[:, :, :4]).view(TB, 4 * H)
        # oneDNN's matmul wants the reduction dim innermost: transpose once for both weights.
        cols = flat.t().contiguous() if _onednn(flat, x.shape[2]) else flat.t()
        d_in, d_rec = cols[: 3 * H], cols[H:]  # [3H, TB] each, gates (n, r, z) and (r, z, n)
        # x's gradient through [W_in; W_ir; W_iz; 0]: one matmul over the whole buffer.
        w_perm = torch.cat([w_ih[2 * H :], w_ih[: 2 * H], w_ih.new_zeros(H, w_ih.shape[1])])
        grads: list[torch.Tensor | None] = [
            _linear(flat, w_perm.t().contiguous()).view(x.shape) if need[0] else None,
            dh0 if need[1] else None,
            _unpermute(_linear(d_in, x.reshape(TB, -1).t()), H) if need[2] else None,
            _linear(d_rec, hp.view(TB, H).t()) if need[3] else None,
            _unpermute(d_in.sum(1), H) if need[4] and ctx.biases[0] else None,
            d_rec.sum(1) if need[5] and ctx.biases[1] else None,
        ]
        return (*grads, None, None)


# ------------------------------------------------------------------------------------------------
# the public entry points
def unsupported_reason(module: nn.Module) -> str | None:
    """Why :func:`gru_unroll` cannot run ``module`` (one line), or ``None`` when it can.

    Args:
        module: any module.

    Returns:
        ``None`` for a plain unidirectional ``nn.GRU`` with ``batch_first=False``, no hooks and
        dropout 0 (or in eval mode); otherwise what differs, with the fix.

    >>> unsupported_reason(torch.nn.GRU(3, 4)) is None
    True
    >>> unsupported_reason(torch.nn.GRU(3, 4, bidirectional=True))
    'expects a unidirectional nn.GRU, got bidirectional=True; use nn.GRU itself for it'
    """
    if type(module) is not nn.GRU:
        return f"expects a plain nn.GRU, got {type(module).__name__}; call the module itself"
    if module.bidirectional:
        return "expects a unidirectional nn.GRU, got bidirectional=True; use nn.GRU itself for it"
    if module.batch_first:
        return "expects batch_first=False (x shaped [T, B, in]), got batch_first=True; transpose x"
    if module.dropout and module.training:
        return (f"expects dropout=0 or eval mode, got dropout={module.dropout} in training mode;"
                " use nn.GRU itself for it")
    if _aten.has_hooks(module):
        return "expects a module without forward hooks (they would not run); call the module itself"
    return None


def fast_gru_wins(
    steps: int, batch: int, input_size: int, hidden_size: int, device: torch.device | str,
    requires_grad: bool,
) -> bool:
    """Whether :func:`gru_unroll` is faster than ``nn.GRU`` here (measured in benchmarks/gru_speed.py).

    On CPU with a gradient it wins at every measured shape (T from 8 to 130, B from 2 to 64, H
    from 64 to 256): 1.2-3x faster than ``nn.GRU``. Without a gradient it does not: ``nn.GRU``'s
    forward is as fast from T = 16 on and faster below (a single step: ``nn.GRU`` by ~1.5x, and
    ``torch.gru_cell`` faster still), so inference keeps ``nn.GRU``. On other devices never.

    Args:
        steps, batch, input_size, hidden_size: the shape ``(T, B, in, H)`` of the call.
        device: where the module lives.
        requires_grad: whether the call builds a graph (grad mode on and something requires grad).

    Returns:
        ``True`` when :func:`gru_unroll` should be used.

    >>> fast_gru_wins(128, 8, 64, 128, "cpu", True), fast_gru_wins(1, 8, 64, 64, "cpu", False)
    (True, False)
    """
    del steps, batch, input_size, hidden_size  # the measured rule does not depend on them
    return torch.device(device).type == "cpu" and requires_grad


def _keep_masks(
    episode_starts: np.ndarray | torch.Tensor | None, shape: tuple[int, int], like: torch.Tensor
) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """The starts as a ``[T, B, 1]`` keep mask (``None``: no start) and its rows per step."""
    T, B = shape
    if episode_starts is None:
        return None, [None] * T
    starts = host_starts(episode_starts, T, B, "gru_unroll")
    times = np.flatnonzero(starts.any(axis=1))
    if times.size == 0:
        return None, [None] * T
    keep = torch.from_numpy(~starts).to(like.device, like.dtype).unsqueeze(2)
    steps: list[torch.Tensor | None] = [None] * T
    for t in times.tolist():
        steps[t] = keep[t]
    return keep, steps


def _check(module: nn.Module, x: torch.Tensor, h0: torch.Tensor | None) -> nn.GRU:
    reason = unsupported_reason(module)
    if reason is not None:
        raise (TypeError if type(module) is not nn.GRU else ValueError)(f"gru_unroll: {reason}")
    module = cast(nn.GRU, module)
    L, H = module.num_layers, module.hidden_size
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != module.input_size:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"gru_unroll: expected x shaped [T, B, in={module.input_size}], got {shape}")
    B = x.shape[1]
    if h0 is not None and (h0.shape != (L, B, H) or h0.dtype != x.dtype or h0.device != x.device):
        raise ValueError(
            f"gru_unroll: expected h0 shaped [L={L}, B={B}, H={H}] on {x.device} / {x.dtype} (x's),"
            f" got {tuple(h0.shape)} on {h0.device} / {h0.dtype}")
    return module


def gru_unroll(
    module: nn.GRU,
    x: torch.Tensor,
    h0: torch.Tensor | None = None,
    episode_starts: np.ndarray | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``module`` over ``x`` from ``h0``, zeroing a row's state before each of its episode starts.

    Without starts this equals ``module(x, h0)``; with them, the per-step masked loop
    (``h = h * (1 - starts[t])`` before step ``t``): outputs, final state and gradients with
    respect to ``x``, ``h0`` and every parameter, within float rounding.

    Args:
        module: a plain unidirectional ``nn.GRU`` with ``batch_first=False`` (any layers, bias
            or not; dropout only in eval mode). See :func:`unsupported_reason`.
        x: the inputs, on the module's device and dtype.
        h0: the initial state (``None``: zeros).
        episode_starts: bool mask (numpy or torch), True where ``x[t, b]`` starts a new episode;
            ``None``: no start.

    Returns:
        ``(y, h_n)``: the top layer's output at every step and every layer's final state.

    Raises:
        TypeError: for a module that is not a plain ``nn.GRU``.
        ValueError: for an unsupported ``nn.GRU`` configuration, or malformed ``x``, ``h0`` or
            ``episode_starts``.

    Shapes:
        ``x [T, B, in]``, ``h0 [L, B, H]``, ``episode_starts [T, B]`` -> ``y [T, B, H]``,
        ``h_n [L, B, H]``.

    >>> gru = torch.nn.GRU(3, 4, num_layers=2)
    >>> x, h0 = torch.randn(5, 2, 3), torch.zeros(2, 2, 4)
    >>> y, h_n = gru_unroll(gru, x, h0)
    >>> y_ref, h_ref = gru(x, h0)
    >>> torch.allclose(y, y_ref, atol=1e-6), torch.allclose(h_n, h_ref, atol=1e-6)
    (True, True)
    """
    m = _check(module, x, h0)
    T, B, L, H = x.shape[0], x.shape[1], m.num_layers, m.hidden_size
    if h0 is None:
        h0 = x.new_zeros(L, B, H)
    keep, steps = _keep_masks(episode_starts, (T, B), x)
    if T == 0:
        return x.new_empty(0, B, H), h0 * 1
    weights: list[torch.Tensor] = list(_aten.flat_weights(m))
    per = 4 if m.bias else 2
    graph = torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or any(w.requires_grad for w in weights))
    inp, finals = x, []
    for layer in range(L):
        w_ih, w_hh, *b = weights[per * layer : per * (layer + 1)]
        b_ih, b_hh = (b[0], b[1]) if b else (None, None)
        if graph:
            inp = _GRULayer.apply(  # type: ignore[no-untyped-call]
                inp, h0[layer], w_ih, w_hh, b_ih, b_hh, keep, steps)
        else:
            inp = _forward(inp, h0[layer], w_ih, w_hh, b_ih, b_hh, steps)[0]
        finals.append(inp[T - 1])
    return inp, torch.stack(finals)
