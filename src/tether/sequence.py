"""Reset-aware multi-step unroll of a recurrent core over ``[T, B, ...]`` with episode starts.

``episode_starts[t, b]`` is True when ``x[t, b]`` is the first observation of a new episode: the
state of row ``b`` restarts from zeros before step ``t``. :func:`unroll_reference` is the per-step
masked loop CleanRL and sb3-contrib write; :func:`unroll` computes the same outputs, final state
and gradients with one fused call of the module per layer.

How :func:`unroll` keeps one fused call with resets inside it (the ``"spliced"`` strategy): each
row of the batch is a *lane* of the call, and before every episode start a *reset step* is spliced
into that lane. A reset step feeds an extra input column whose weight drives the LSTM's input and
forget gates (the GRU's reset and update gates) to ``-1e30``; the sigmoids saturate to exactly 0,
so the step's state and output are exactly zero and no gradient crosses it: what multiplying the
state by 0 does in the reference loop. Lanes with fewer starts than the busiest one are padded at
the end with *hold* steps (forget gate exactly 1, input and output gates exactly 0), which keep the
LSTM cell state bit for bit; the final ``h`` is read from the output at each row's last real step.
Cost: one call per layer that is ``K`` steps longer than ``T`` (``K``: most starts in one row),
plus two gathers (into and out of lane order) whose gradients are gathers too.

The other strategies: ``"padded"`` (every episode segment its own lane, zero-padded; chosen when
starts are so dense that it pads less), ``"chunked"`` (one call between consecutive start times,
the state masked between; for ``nn.RNN``, subclasses and hooked modules) and ``"reference"``.
Planning reads the starts on the host, once per call, with numpy.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, cast

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import _VF, nn

from tether.errors import StateMismatchError
from tether.modes import mode
from tether.modules import TrackedRNN
from tether.state import RecurrentState

__all__ = ["Strategy", "unroll", "unroll_reference"]

#: How :func:`unroll` runs: ``"auto"`` picks the fastest exact one for the reset pattern.
Strategy = Literal["auto", "spliced", "padded", "chunked", "reference"]
_STRATEGIES = ("auto", "spliced", "padded", "chunked", "reference")


# ------------------------------------------------------------------------------------------------
# input checks
def _host_starts(episode_starts: Any, steps: int, batch: int) -> np.ndarray:
    """``episode_starts`` as a host bool array ``[T, B]`` (a CUDA tensor is copied: one sync)."""
    given: Any = episode_starts
    if isinstance(given, torch.Tensor):
        ok = given.dtype == torch.bool and given.shape == (steps, batch)
        array = given.detach().cpu().numpy() if ok else None
    else:
        array = given = np.asarray(given)
        ok = array.dtype == np.bool_ and array.shape == (steps, batch)
    if not ok:
        raise ValueError(
            f"unroll: expected episode_starts as a bool mask [T={steps}, B={batch}] (True where x[t, b]"
            f" starts a new episode), got {given.dtype} {tuple(given.shape)}; pass e.g."
            " `np.asarray(starts, bool)`"
        )
    return array  # type: ignore[return-value]


def _check_inputs(
    core: TrackedRNN, x: torch.Tensor, episode_starts: Any, state: RecurrentState
) -> np.ndarray:
    """Check every input of an unroll; return the starts as a host bool array ``[T, B]``."""
    if not isinstance(core, TrackedRNN):
        raise TypeError(f"unroll: expected a tracked module (tether.track(module)), got"
                        f" {type(core).__name__}")
    spec = core.spec
    if spec.style != "sequence" or spec.batch_first:
        what = "a cell" if spec.style != "sequence" else "a batch_first module"
        raise ValueError(
            f"unroll: expected a sequence module with batch_first=False (x shaped [T, B, in]), got"
            f" {what} ({type(core.module).__name__}); build it with batch_first=False"
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"unroll: expected x shaped [T, B, in] with T >= 1, got {shape}")
    T, B = int(x.shape[0]), int(x.shape[1])
    starts = _host_starts(episode_starts, T, B)
    if not isinstance(state, RecurrentState):
        raise TypeError(f"unroll: expected a RecurrentState, got {type(state).__name__}")
    if state.batch_size != B:
        raise StateMismatchError(
            f"unroll: expected a state of batch {B} (x is [T={T}, B={B}, ...]), got batch"
            f" {state.batch_size}", expected=str(B), got=str(state.batch_size),
        )
    core._check_fit(x, state)
    if x.dtype != state.dtype or x.device != state.device:
        raise ValueError(f"unroll: expected x on {state.device} / {state.dtype} (the state's),"
                         f" got {x.device} / {x.dtype}")
    return starts


def _final_state(state: RecurrentState, tensors: tuple[torch.Tensor, ...], steps: int) -> RecurrentState:
    """The state after the last step: the initial state's bookkeeping, ``steps`` ticks later."""
    graph = tensors[0].requires_grad
    return RecurrentState(
        tensors, state.clock, state.episode_ids, state.env_rows,
        None if state.tick is None else state.tick + steps,
        state.window, state.graph_steps + steps if graph else 0,
        state.is_snapshot, False, -1,
    )


# ------------------------------------------------------------------------------------------------
# the reference
def unroll_reference(
    core: TrackedRNN, x: torch.Tensor, episode_starts: Any, state: RecurrentState
) -> tuple[torch.Tensor, RecurrentState]:
    """The per-step masked loop (as CleanRL and sb3-contrib write it): the reference semantics.

    Before step ``t`` the state is multiplied by ``1 - episode_starts[t]``, then the core runs
    one step. Slow (one call per step) but obviously right; :func:`unroll` is checked against it.

    Args:
        core: a tracked sequence module (``nn.LSTM`` / ``nn.GRU``, ``batch_first=False``).
        x: the inputs.
        episode_starts: bool mask, True where ``x[t, b]`` starts a new episode (numpy or torch).
        state: the state before step 0 (a stored snapshot for replay, or the live state).

    Returns:
        ``(y, final_state)``: the outputs and the state after step ``T - 1``, with the initial
        state's clock, episode ids and rows, ``T`` ticks later.

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
    _check_inputs(core, x, episode_starts, state)
    starts = torch.as_tensor(episode_starts, device=x.device)
    keep = (~starts).to(x.dtype)
    tensors = state.tensors
    outputs = []
    for t in range(x.shape[0]):
        mask = keep[t].view(1, -1, 1)
        tensors = tuple(s * mask for s in tensors)
        with mode("off"):
            y, step_state = core(x[t : t + 1], RecurrentState(tensors))
        tensors = step_state.tensors
        outputs.append(y)
    return torch.cat(outputs, dim=0), _final_state(state, tensors, int(x.shape[0]))


# ------------------------------------------------------------------------------------------------
# planning: where every step (t, b) goes in the lanes of one fused call (host side, numpy)
@attrs.frozen
class _Lanes:
    """A layout of ``T x B`` steps into ``lanes`` lanes of ``length`` steps, plus reset / hold steps.

    Positions are flat, ``position * lanes + lane`` (the order of a ``[length, lanes]`` tensor).
    """

    length: int
    lanes: int
    source: np.ndarray  # int64 [length * lanes]: the step (t * B + b) each position runs, 0 if none
    out: np.ndarray  # int64 [T * B]: the position of step (t, b)
    pads: np.ndarray  # int64: the positions without a step (reset and hold steps)
    flags: np.ndarray  # float32 [length * lanes, 1 or 2]: reset flag, then hold flag (LSTM only)
    final_lane: np.ndarray | None  # int64 [B]: the lane that ends row b (None: lane b)
    init_row: np.ndarray | None  # int64 [lanes]: the row a lane starts from, B: zeros (None: row b)
    masks_start: bool  # whether a start at t = 0 is handled here (else: mask the initial state)


def _finish(
    length: int, lanes: int, out: np.ndarray, resets: np.ndarray, lstm: bool, masks_start: bool,
    final_lane: np.ndarray | None = None, init_row: np.ndarray | None = None,
) -> _Lanes:
    """Fill in the source of every position and the flags: reset steps at ``resets``, and hold
    (LSTM) or reset (GRU) steps at every other position without a step."""
    source = np.zeros(length * lanes, dtype=np.int64)
    source[out] = np.arange(out.size, dtype=np.int64)
    empty = np.ones(length * lanes, dtype=bool)
    empty[out] = False
    flags = np.zeros((length * lanes, 2 if lstm else 1), dtype=np.float32)
    flags[:, -1] = empty
    if lstm:
        flags[resets] = (1.0, 0.0)
    return _Lanes(length, lanes, source, out, np.flatnonzero(empty), flags, final_lane, init_row,
                  masks_start)


def _plan_padded(starts: np.ndarray, lstm: bool) -> _Lanes:
    """Each episode segment is its own lane, from the row's state (first) or zeros (the others)."""
    T, B = starts.shape
    begins = starts.copy()
    begins[0] = False
    within = np.cumsum(begins, axis=0)  # segment of (t, b) within row b
    count = within[-1] + 1
    first = np.cumsum(count) - count
    seg = first + within  # [T, B] global segment id
    lanes = int(count.sum())
    begins[0] = True
    t_idx, b_idx = np.nonzero(begins)
    seg_start = np.zeros(lanes, dtype=np.int64)
    seg_start[seg[t_idx, b_idx]] = t_idx
    pos = np.arange(T)[:, None] - seg_start[seg]
    out = (pos * lanes + seg).ravel()
    init_row = np.full(lanes, B, dtype=np.int64)
    init_row[first] = np.where(starts[0], B, np.arange(B))
    return _finish(int(pos.max()) + 1, lanes, out, out[:0], lstm, True, first + count - 1, init_row)


def _plan_spliced(starts: np.ndarray, lstm: bool) -> _Lanes:
    """Lane ``b`` is row ``b``, with a reset step spliced in before each start.

    A start at ``t = 0`` becomes a reset step too when its row has room before the busiest
    row's end (then the initial state needs no masking); otherwise the caller masks the state.
    """
    T, B = starts.shape
    before = np.cumsum(starts, axis=0, dtype=np.int64)  # reset steps before (t, b)
    fold = int(before[-1].max()) == int((before[-1] - starts[0]).max())
    if not fold:
        before -= starts[0]
    out = ((before + np.arange(T)[:, None]) * B + np.arange(B)).ravel()
    begins = starts if fold else starts[1:]
    resets = out[out.size - begins.size :][begins.ravel()] - B  # one position before each start
    return _finish(T + int(before[-1].max()), B, out, resets, lstm, fold)


# ------------------------------------------------------------------------------------------------
# execution
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
    def forward(ctx: Any, x: torch.Tensor, flags: torch.Tensor,  # type: ignore[override]
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
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        T, B, width = ctx.shape
        grad = grad.reshape(-1, grad.shape[2])[:, :width].index_select(0, ctx.out)
        return grad.view(T, B, width), None, None, None


class _FromLanes(torch.autograd.Function):
    """Lane outputs ``[length, lanes, H]`` back to step order ``[T, B, H]``, and ``h`` at each
    row's last step ``[1, B, H]``; the gradient is a gather back (no scatter-add)."""

    @staticmethod
    def forward(ctx: Any, lanes: torch.Tensor,  # type: ignore[override]
                where: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], steps: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        source, out, pads, last = where
        ctx.last, ctx.source, ctx.pads, ctx.shape = last, source, pads, lanes.shape
        ctx.set_materialize_grads(False)
        flat = lanes.reshape(-1, lanes.shape[2])
        y = flat.index_select(0, out)
        return y.view(steps, -1, y.shape[1]), flat.index_select(0, last).unsqueeze(0)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor | None, grad_h: torch.Tensor | None  # type: ignore[override]
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


def _run_lanes(
    m: nn.RNNBase, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], plan: _Lanes
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run ``plan`` with one fused call per layer; gather outputs and final states back."""
    T, B, _ = x.shape
    lstm, H, lanes, length = isinstance(m, nn.LSTM), m.hidden_size, plan.lanes, plan.length
    parts = [plan.source, plan.out, plan.pads]
    parts += [p for p in (plan.final_lane, plan.init_row) if p is not None]
    # One host-to-device copy for every index the plan needs.
    index = torch.from_numpy(np.concatenate(parts)).to(x.device, non_blocking=True)
    bounds = np.cumsum([0, *(p.size for p in parts)]).tolist()
    source, out, pads, *rest = (index[a:e] for a, e in itertools.pairwise(bounds))
    last = out[(T - 1) * B :]
    final_lane = rest[0] if plan.final_lane is not None else None
    if plan.init_row is not None:
        tensors = tuple(F.pad(s, (0, 0, 0, 1)).index_select(1, rest[-1]) for s in tensors)
    flags = torch.from_numpy(plan.flags).to(x.device, x.dtype, non_blocking=True)
    inp = _IntoLanes.apply(x, flags, (source, out, pads), lanes)
    per = 4 if m.bias else 2
    finals: list[list[torch.Tensor]] = [[] for _ in tensors]
    for layer in range(m.num_layers):
        if layer:
            # The lane's own final h may come after hold / pad steps: read h at the row's last step.
            finals[0].append(inp.reshape(-1, H).index_select(0, last).unsqueeze(0))
            if m.dropout and m.training:
                inp = F.dropout(inp, m.dropout, training=True)
            inp = torch.cat([inp, flags.view(length, lanes, -1)], dim=2)
        w = cast(list[torch.Tensor], m._flat_weights[per * layer : per * (layer + 1)])
        w = [torch.cat([w[0], _gate_columns(m, layer, w[0])], dim=1), *w[1:]]
        hx = tensors if m.num_layers == 1 else tuple(s[layer : layer + 1] for s in tensors)
        if lstm:
            inp, _, c = _VF.lstm(inp, hx, w, m.bias, 1, 0.0, m.training, False, False)
            finals[1].append(c if final_lane is None else c.index_select(1, final_lane))
        else:
            inp, _ = _VF.gru(inp, hx[0], w, m.bias, 1, 0.0, m.training, False, False)
    y, h = _FromLanes.apply(inp, (source, out, pads, last), T)
    finals[0].append(h)
    return y, tuple(f[0] if len(f) == 1 else torch.cat(f) for f in finals)


def _fused_call(m: nn.RNNBase, x: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> Any:
    """One call of the plain module over ``x`` (straight to the ATen op for nn.LSTM / nn.GRU)."""
    fused: Any = {nn.LSTM: _VF.lstm, nn.GRU: _VF.gru}.get(type(m))
    hx: Any = tensors if len(tensors) == 2 else tensors[0]
    if fused is None or _has_hooks(m):
        y, out = m(x, hx)
        return y, tuple(out) if len(tensors) == 2 else (out,)
    y, *out = fused(x, hx, m._flat_weights, m.bias, m.num_layers, m.dropout, m.training,
                    m.bidirectional, False)
    return y, tuple(out)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def _run_chunked(
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
        y, tensors = _fused_call(m, x[a:e], tensors)
        outputs.append(y)
    return torch.cat(outputs), tensors


# ------------------------------------------------------------------------------------------------
# choosing a strategy
_PROBED: dict[tuple[bool, str, torch.dtype], bool] = {}


def _lanes_supported(m: nn.RNNBase) -> bool:
    """Whether the lane strategies can run ``m``: a plain, unidirectional nn.LSTM / nn.GRU."""
    return (type(m) in (nn.LSTM, nn.GRU) and not m.bidirectional and not getattr(m, "proj_size", 0)
            and not _has_hooks(m))


def _saturates(lstm: bool, device: torch.device, dtype: torch.dtype) -> bool:
    """Probe once per (LSTM or GRU, device type, dtype) that reset / hold steps are exact here.

    The lane strategies rely on the fused kernel's sigmoid returning exactly 0 and 1 far from
    zero. Every kernel we know does; this tiny check (one device sync, once) keeps ``"auto"`` exact
    on any other, by falling back to ``"chunked"``.
    """
    key = (lstm, device.type, dtype)
    if key not in _PROBED:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(0)
            m = (nn.LSTM if lstm else nn.GRU)(3, 4, num_layers=2).to(device, dtype)
            starts = np.array([[0, 0], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=bool)
            x = torch.linspace(-2, 2, 30, device=device, dtype=dtype).view(5, 2, 3).requires_grad_()
            h0 = torch.full((2, 2, 4), 0.5, device=device, dtype=dtype)
            tensors = (h0, -h0) if lstm else (h0,)
            try:
                got = _run_lanes(m, x, tensors, _plan_spliced(starts, lstm))
                want = _run_chunked(m, x, tensors, starts)
                tol = 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2
                pairs = [(got[0], want[0]), *zip(got[1], want[1], strict=True)]
                losses = [torch.stack([p[i].sum() for p in pairs]).sum() for i in (0, 1)]
                pairs.append((torch.autograd.grad(losses[0], x)[0], torch.autograd.grad(losses[1], x)[0]))
                _PROBED[key] = all(bool(torch.allclose(a, b, atol=tol, rtol=tol)) for a, b in pairs)
            except RuntimeError:  # the kernel does not support this dtype / device
                _PROBED[key] = False
    return _PROBED[key]


def _choose(m: nn.RNNBase, x: torch.Tensor, starts: np.ndarray) -> str:
    """The cheapest exact strategy for this module and reset pattern."""
    count = np.count_nonzero(starts[1:], axis=0)  # starts after t = 0, per row
    most = int(count.max())
    if most == 0:
        return "fused"
    if not _lanes_supported(m) or not _saturates(isinstance(m, nn.LSTM), x.device, x.dtype):
        return "chunked"
    # Price both layouts in lanes x steps (the cost of one fused call); every row has a segment
    # of at least T / (k_b + 1) steps, a cheap lower bound on the padded layout.
    T, B = starts.shape
    spliced = B * (T + most)
    segments = B + int(count.sum())
    if segments * -(-T // (int(count.min()) + 1)) >= spliced:
        return "spliced"
    padded = _plan_padded(starts, True)
    return "padded" if padded.length * padded.lanes < spliced else "spliced"


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
    one fused call per layer (see the module docstring), or lays each episode segment out as its
    own lane when starts are so dense that this pads less.

    No lifecycle check is made here (the state is usually a stored snapshot replayed for
    training); the shapes, device and dtype are checked. Planning reads ``episode_starts`` on the
    host: pass it as a numpy array (or a CPU tensor); a CUDA tensor costs one device sync.

    Args:
        core: a tracked ``nn.LSTM`` or ``nn.GRU`` (any layers, ``batch_first=False``); another
            sequence module runs ``"chunked"`` (``nn.RNN``, subclasses, modules with hooks) or
            ``"reference"`` (bidirectional or custom modules).
        x: the inputs, on the state's device and dtype.
        episode_starts: bool mask, True where ``x[t, b]`` starts a new episode (numpy or torch).
        state: the state before step 0.
        strategy: ``"auto"`` (default): the fastest exact one. ``"spliced"``: resets spliced into
            each row's lane. ``"padded"``: one lane per episode segment. ``"chunked"``: one fused
            call between consecutive start times. ``"reference"``: the per-step loop.

    Returns:
        ``(y, final_state)``: the outputs and the state after step ``T - 1`` for every row, with
        the initial state's clock, episode ids and rows, ``T`` ticks later.

    Raises:
        ValueError: for a malformed ``x`` or ``episode_starts``, a batch-first or cell core, an
            unknown strategy, or a strategy the module cannot run.
        StateMismatchError: when the state does not fit the core or the batch.

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
    if strategy not in _STRATEGIES:
        raise ValueError(f"unroll: expected strategy in {_STRATEGIES}, got {strategy!r}")
    starts = _check_inputs(core, x, episode_starts, state)
    m = core.module
    if not isinstance(m, nn.RNNBase) or m.bidirectional:
        if strategy not in ("auto", "reference"):
            raise ValueError(f"unroll: strategy {strategy!r} expects a unidirectional nn.LSTM /"
                             f" nn.GRU / nn.RNN, got {type(m).__name__}; use strategy='auto'")
        return unroll_reference(core, x, episode_starts, state)
    chosen: str = _choose(m, x, starts) if strategy == "auto" else strategy
    if chosen in ("spliced", "padded") and not _lanes_supported(m):
        raise ValueError(f"unroll: strategy {strategy!r} expects a plain unidirectional nn.LSTM /"
                         f" nn.GRU without hooks, got {type(m).__name__}; use strategy='auto'")
    if chosen == "reference":
        return unroll_reference(core, x, episode_starts, state)
    plan = None
    if chosen in ("spliced", "padded"):
        plan = (_plan_spliced if chosen == "spliced" else _plan_padded)(starts, isinstance(m, nn.LSTM))
    tensors = state.tensors
    if starts[0].any() and not (plan is not None and plan.masks_start):
        keep = torch.from_numpy(~starts[0]).to(x.device, non_blocking=True).to(x.dtype)
        tensors = tuple(s * keep.view(1, -1, 1) for s in tensors)
    m._update_flat_weights()
    if plan is not None:
        y, tensors = _run_lanes(m, x, tensors, plan)
    elif chosen == "fused":
        y, tensors = _fused_call(m, x, tensors)
    else:
        y, tensors = _run_chunked(m, x, tensors, starts)
    return y, _final_state(state, tensors, int(x.shape[0]))
