"""The one file that touches PyTorch internals: the fused RNN ops, flat weights and hook dicts.

``nn.LSTM.forward`` / ``nn.GRU.forward`` re-validate in Python what tether's checks already
proved, then call an ATen op; calling the op directly is bit for bit the same and cheaper per step.
A single step without autograd on the CPU runs as the cell ops instead, where they are faster
(equal within float rounding; see :data:`LSTM_CELL_MAX_ROWS_X_HIDDEN`).
The lane strategies of :mod:`tether.sequence` also run single layers of the op with extra input
columns. Every private name they need lives here, so a torch upgrade that moves one breaks this
file alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import _VF, nn

_FUSED: dict[type[nn.Module], Callable[..., Any]] = {nn.LSTM: _VF.lstm, nn.GRU: _VF.gru}


def has_fused_op(module: nn.Module) -> bool:
    """Whether ``module`` is exactly ``nn.LSTM`` or ``nn.GRU`` (no subclass) with an ATen op."""
    return type(module) in _FUSED


def has_hooks(module: nn.Module) -> bool:
    """Whether a forward hook (the module's own or a global one) would be skipped by the op."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def flat_weights(module: nn.RNNBase) -> list[torch.Tensor]:
    """The module's weights in the op's order, refreshed when a parameter was replaced.

    The common case (every weight still the registered parameter the list holds) is checked on
    ``_parameters`` directly; anything else (a parameter replaced, deleted, or swapped for a plain
    tensor, as ``torch.func.functional_call`` does) takes ``nn.RNNBase``'s own refresh.
    """
    params = module._parameters
    for ref, name in zip(module._flat_weight_refs, module._flat_weights_names, strict=True):
        weight = params.get(name)
        if ref is None or weight is None or ref() is not weight:
            module._update_flat_weights()
            break
    return cast(list[torch.Tensor], module._flat_weights)


def run_sequence_module(
    module: nn.Module, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], *, has_c: bool, fuse: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One call of a sequence module ``(x, hx) -> (y, hx')``; straight to the ATen op when allowed.

    Args:
        module: ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` or a custom module with that protocol.
        x: the input as the module takes it.
        tensors: ``(h, c)`` when ``has_c`` (an LSTM-like module), else ``(h,)``.
        has_c: whether the module takes and returns an ``(h, c)`` pair.
        fuse: whether the caller has checked the shapes, so the op may be called directly; the op
            is used only for exactly ``nn.LSTM`` / ``nn.GRU`` without hooks, outside compilation.

    Returns:
        ``(y, new_tensors)``.
    """
    hx: Any = tensors if has_c else tensors[0]
    op = _FUSED.get(type(module)) if fuse else None
    if op is None or has_hooks(module) or torch.compiler.is_compiling():
        y, out = module(x, hx)
        return y, (tuple(out) if has_c else (out,))
    m: Any = module
    if x.shape[0] == 1 and _cell_step_wins(m, x, has_c):
        return _cell_step(m, x[0], tensors, has_c)
    y, *out = op(x, hx, flat_weights(m), m.bias, m.num_layers, m.dropout, m.training, m.bidirectional,
                 m.batch_first)
    return y, tuple(out)


# One step without autograd on the CPU: the cell ops (``lstm_cell`` / ``gru_cell``) against the
# sequence op. The LSTM's sequence op goes through oneDNN, whose fixed cost per call (~40 us: the
# primitive and a weight reorder) a single small step never earns back; the cell is 0.3-0.8x its
# time up to this many rows x hidden units a step, and slower beyond (benchmarks/step_kernels.py).
# The GRU's cell is a little faster than its sequence op at every size measured.
LSTM_CELL_MAX_ROWS_X_HIDDEN = 2048


def _cell_step_wins(m: Any, x: torch.Tensor, has_c: bool) -> bool:
    """Whether one step of ``m`` on ``x [1, B, in]`` should run as cell ops (see above)."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and not m.batch_first
            and not m.bidirectional and not (has_c and m.proj_size) and not (m.training and m.dropout)
            and (not has_c or x.shape[1] * m.hidden_size <= LSTM_CELL_MAX_ROWS_X_HIDDEN))


def _cell_step(
    m: Any, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], has_c: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of a unidirectional ``nn.LSTM`` / ``nn.GRU`` as cell ops, layer by layer.

    The same function as the sequence op, equal to it within float rounding (not bit for bit:
    the gate sums run in another order).
    """
    weights = flat_weights(m)
    per_layer = len(weights) // m.num_layers
    news: list[tuple[torch.Tensor, ...]] = []
    for layer in range(m.num_layers):
        w = weights[layer * per_layer:(layer + 1) * per_layer]
        if has_c:
            h, c = torch.lstm_cell(x, (tensors[0][layer], tensors[1][layer]), *w)
            news.append((h, c))
        else:
            h = torch.gru_cell(x, tensors[0][layer], *w)
            news.append((h,))
        x = h
    if m.num_layers == 1:
        # The cell returns one tensor as both y and the new h: y gets its own copy, as from the
        # sequence op, so that an in-place edit of y cannot reach the state.
        return x.unsqueeze(0).clone(), tuple(t.unsqueeze(0) for t in news[0])
    return x.unsqueeze(0), tuple(torch.stack(parts) for parts in zip(*news, strict=True))


def lstm_layer(
    x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor], weights: list[torch.Tensor], *, bias: bool,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One unidirectional LSTM layer over ``x [T, B, in]`` with the given weights: ``(y, h, c)``."""
    y, h, c = _VF.lstm(x, hx, weights, bias, 1, 0.0, training, False, False)
    return y, h, c


def gru_layer(
    x: torch.Tensor, h0: torch.Tensor, weights: list[torch.Tensor], *, bias: bool, training: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One unidirectional GRU layer over ``x [T, B, in]`` with the given weights: ``(y, h)``."""
    y, h = _VF.gru(x, h0, weights, bias, 1, 0.0, training, False, False)
    return y, h


def _save_as_child(inner: str, _: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + inner)]:
        state[prefix + key[len(prefix + inner):]] = state.pop(key)


def _load_as_child(inner: str, state: dict[str, Any], prefix: str, *_: Any) -> None:
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(prefix + inner)]:
        state[prefix + inner + key[len(prefix):]] = state.pop(key)


def hide_child_in_state_dict(module: nn.Module, child: str) -> None:
    """Give ``module`` the ``state_dict`` keys of its child ``child``, as if it were the child.

    A wrapper ``w`` holding ``w.<child> = lstm`` then saves ``weight_ih_l0`` where the plain
    module would (not ``<child>.weight_ih_l0``), and loads both spellings, so checkpoints move
    between a model holding the plain module and one holding the wrapper. The hooks are
    module-level partials, so the wrapper still pickles and deep-copies.
    """
    module._register_state_dict_hook(functools.partial(_save_as_child, child + "."))  # type: ignore[no-untyped-call]
    module._register_load_state_dict_pre_hook(  # type: ignore[no-untyped-call]
        functools.partial(_load_as_child, child + "."))


def owns_tensor(module: nn.Module, name: str) -> bool:
    """Whether ``name`` is one of ``module``'s own parameters or buffers (not a child's)."""
    return name in module._parameters or name in module._buffers


def set_own_tensor(module: nn.Module, name: str, value: Any) -> None:
    """Assign ``module``'s own parameter or buffer ``name``, as torch.func's functional_call does:
    a plain tensor may stand in for a parameter (``setattr`` would refuse it)."""
    if name in module._parameters and value is not None and not isinstance(value, nn.Parameter):
        module._parameters[name] = value
    else:
        setattr(module, name, value)


# oneDNN's float32 matmul (faster than torch.mm / MKL on some CPUs), used by the fast GRU.
def onednn_linear_available() -> bool:
    """Whether this torch build exposes oneDNN's linear op and its weight reorder."""
    return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
                and hasattr(torch.ops.mkldnn, "_linear_pointwise")
                and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def onednn_linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``a @ w.T + bias`` on oneDNN's matmul."""
    out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(a, w, bias, "none", [], "")
    return out


def onednn_linear_add_op() -> Callable[..., torch.Tensor]:
    """oneDNN's linear fused with an add (``_linear_pointwise.binary``), for a reordered weight."""
    op: Callable[..., torch.Tensor] = torch.ops.mkldnn._linear_pointwise.binary
    return op


def onednn_reorder_weight(w: torch.Tensor, batch: int) -> torch.Tensor:
    """``w`` in oneDNN's blocked layout for products with ``batch`` rows (once per call)."""
    out: torch.Tensor = torch.ops.mkldnn._reorder_linear_weight(w, batch)
    return out
