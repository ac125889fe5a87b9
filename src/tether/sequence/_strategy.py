"""Choosing how to unroll: the cheapest exact strategy for a module and a reset pattern."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch
from torch import nn

from tether import _aten
from tether.sequence._lanes import lane_index, run_chunked, run_lanes
from tether.sequence._plan import Lanes, plan_padded, plan_spliced

_PROBED: dict[tuple[bool, str, torch.dtype], bool] = {}


def lanes_supported(m: nn.RNNBase) -> bool:
    """Whether the lane strategies can run ``m``: a plain, unidirectional nn.LSTM / nn.GRU."""
    return (type(m) in (nn.LSTM, nn.GRU) and not m.bidirectional and not getattr(m, "proj_size", 0)
            and not _aten.has_hooks(m))


def saturates(has_c: bool, device: torch.device, dtype: torch.dtype) -> bool:
    """Probe once per (LSTM or GRU, device type, dtype) that reset / hold steps are exact here.

    The lane strategies rely on the fused kernel's sigmoid returning exactly 0 and 1 far from
    zero. Every kernel we know does; this tiny check (one device sync, once) keeps ``"auto"`` exact
    on any other, by falling back to ``"chunked"``.
    """
    key = (has_c, device.type, dtype)
    if key not in _PROBED:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(0)
            m = (nn.LSTM if has_c else nn.GRU)(3, 4, num_layers=2).to(device, dtype)
            starts = np.array([[0, 0], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=bool)
            x = torch.linspace(-2, 2, 30, device=device, dtype=dtype).view(5, 2, 3).requires_grad_()
            h0 = torch.full((2, 2, 4), 0.5, device=device, dtype=dtype)
            tensors = (h0, -h0) if has_c else (h0,)
            try:
                got = run_lanes(m, x, tensors, plan_spliced(starts, has_c))
                want = run_chunked(m, x, tensors, starts)
                tol = 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2
                pairs = [(got[0], want[0]), *zip(got[1], want[1], strict=True)]
                losses = [torch.stack([p[i].sum() for p in pairs]).sum() for i in (0, 1)]
                pairs.append((torch.autograd.grad(losses[0], x)[0], torch.autograd.grad(losses[1], x)[0]))
                _PROBED[key] = all(bool(torch.allclose(a, b, atol=tol, rtol=tol)) for a, b in pairs)
            except RuntimeError:  # the kernel does not support this dtype / device
                _PROBED[key] = False
    return _PROBED[key]


def choose(m: nn.RNNBase, device: torch.device, dtype: torch.dtype, starts: np.ndarray) -> str:
    """The cheapest exact strategy for this module and reset pattern."""
    count = np.count_nonzero(starts[1:], axis=0)  # starts after t = 0, per row
    most = int(count.max())
    if most == 0:
        return "fused"
    if not lanes_supported(m) or not saturates(isinstance(m, nn.LSTM), device, dtype):
        return "chunked"
    # Price both layouts in lanes x steps (the cost of one fused call); every row has a segment
    # of at least T / (k_b + 1) steps, a cheap lower bound on the padded layout.
    T, B = starts.shape
    spliced = B * (T + most)
    segments = B + int(count.sum())
    if segments * -(-T // (int(count.min()) + 1)) >= spliced:
        return "spliced"
    padded = plan_padded(starts, True)
    return "padded" if padded.length * padded.lanes < spliced else "spliced"


# ------------------------------------------------------------------------------------------------
# a plan: the choice and the lane layout, made once per reset pattern
#: How :func:`~tether.sequence.unroll` runs: ``"auto"`` picks the fastest exact one.
Strategy = Literal["auto", "spliced", "padded", "chunked", "reference"]
STRATEGIES = ("auto", "spliced", "padded", "chunked", "reference")


@attrs.frozen(eq=False)
class UnrollPlan:
    """An unroll planned once on the host: one reset pattern, one kind of core.

    Made by :func:`plan_unroll`. Pass it to :func:`~tether.sequence.unroll` in place of
    ``episode_starts`` to run several cores of the same kind over the same pattern (an actor and
    a critic core) with one plan, and one host-to-device copy of its indices per device.

    Attributes:
        episode_starts: host bool ``[T, B]``, read-only.
        strategy: ``"fused"`` (no start after ``t = 0``), ``"spliced"``, ``"padded"``,
            ``"chunked"`` or ``"reference"``.
        module_type: the type of module it was planned for (``nn.LSTM``, ``nn.GRU``, ...).
        lanes: the lane layout of ``"spliced"`` / ``"padded"``, else ``None``.
        auto: chosen by ``"auto"`` (then a GRU with a gradient on CPU runs the fast GRU loop, which
            beats every lane layout there; see :mod:`tether.sequence._gru`).
    """

    episode_starts: np.ndarray
    strategy: str
    module_type: type[nn.Module]
    lanes: Lanes | None
    auto: bool = True
    _index: dict[torch.device, torch.Tensor] = attrs.field(factory=dict, init=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, B)``."""
        T, B = self.episode_starts.shape
        return int(T), int(B)

    def index_on(self, device: torch.device) -> torch.Tensor:
        """The lane indices on ``device``, copied there once and kept."""
        if self.lanes is None:
            raise ValueError(f"UnrollPlan: strategy {self.strategy!r} has no lanes")
        if device not in self._index:
            self._index[device] = lane_index(self.lanes, device)
        return self._index[device]


def _module_meta(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in module.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def make_plan(module: nn.Module, starts: np.ndarray, strategy: str,
              device: torch.device | None = None, dtype: torch.dtype | None = None) -> UnrollPlan:
    """Plan ``starts`` (host bool ``[T, B]``) for ``module`` (see :func:`plan_unroll`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unroll: expected strategy in {STRATEGIES}, got {strategy!r}")
    starts = starts.copy() if starts.flags.writeable else starts
    starts.setflags(write=False)
    if not isinstance(module, nn.RNNBase) or module.bidirectional:
        if strategy not in ("auto", "reference"):
            raise ValueError(f"unroll: strategy {strategy!r} expects a unidirectional nn.LSTM /"
                             f" nn.GRU / nn.RNN, got {type(module).__name__}; use strategy='auto'")
        return UnrollPlan(starts, "reference", type(module), None, strategy == "auto")
    if device is None or dtype is None:
        device, dtype = _module_meta(module)
    chosen = choose(module, device, dtype, starts) if strategy == "auto" else strategy
    lanes = None
    if chosen in ("spliced", "padded"):
        if not lanes_supported(module):
            raise ValueError(f"unroll: strategy {strategy!r} expects a plain unidirectional nn.LSTM /"
                             f" nn.GRU without hooks, got {type(module).__name__}; use strategy='auto'")
        lanes = (plan_spliced if chosen == "spliced" else plan_padded)(starts, isinstance(module, nn.LSTM))
    return UnrollPlan(starts, chosen, type(module), lanes, strategy == "auto")
