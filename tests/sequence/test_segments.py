"""Tests for tether.sequence.unroll_segments: each segment restarts from the state given for its first step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tether import RecurrentState, track
from tether.sequence import unroll, unroll_segments


def _by_segment(m: nn.RNNBase, x: torch.Tensor, starts: np.ndarray, restarts: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The obvious reference: every segment its own call from its restart state (time-major)."""
    T, B = starts.shape
    y = torch.zeros(T, B, m.hidden_size)
    ends = [torch.zeros_like(s) for s in restarts]
    for b in range(B):
        cuts = [0, *[t for t in range(1, T) if starts[t, b]], T]
        for a, e in itertools.pairwise(cuts):
            hx = tuple(s[a, :, b : b + 1] for s in restarts)
            out, new = m(x[a:e, b : b + 1], hx if len(hx) == 2 else hx[0])
            new = new if isinstance(new, tuple) else (new,)
            y = y.index_put((torch.arange(a, e), torch.tensor([b])), out[:, 0])
            for k, s in enumerate(new):
                ends[k] = ends[k].index_put((torch.tensor([e - 1]), torch.arange(m.num_layers), torch.tensor([b])),
                                            s[:, 0])
    return y, tuple(ends)


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, tensors)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["lstm", "gru"]), layers=st.integers(1, 2), steps=st.integers(1, 7),
       rows=st.integers(1, 4),
       seed=st.integers(0, 2**16), density=st.sampled_from([0.0, 0.2, 0.6]))
def test_equals_running_each_segment_by_itself(
        kind: str, layers: int, steps: int, rows: int, seed: int, density: float) -> None:
    """Outputs, segment-end states and every gradient equal the per-segment reference."""
    torch.manual_seed(seed)
    m = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 4, num_layers=layers)
    starts = np.random.default_rng(seed).random((steps, rows)) < density
    x = torch.randn(steps, rows, 3, requires_grad=True)
    restarts = tuple(torch.randn(steps, layers, rows, 4, requires_grad=True) for _ in range(2 if kind == "lstm" else 1))
    y, ends = unroll_segments(m, x, starts, restarts)
    y_ref, ends_ref = _by_segment(m, x, starts, restarts)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for got, want in zip(ends, ends_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(y)
    weights = [torch.randn_like(e) for e in ends]
    inputs = [x, *restarts, *m.parameters()]
    got = _grads((y * w).sum() + sum((e * v).sum() for e, v in zip(ends, weights, strict=True)), inputs)
    want = _grads((y_ref * w).sum() + sum((e * v).sum() for e, v in zip(ends_ref, weights, strict=True)), inputs)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_zero_restarts_equal_unroll() -> None:
    """With zeros stored at the starts it is unroll from the state at t = 0 (final state included)."""
    torch.manual_seed(0)
    core = track(nn.LSTM(3, 4, num_layers=2))
    starts = np.zeros((6, 3), dtype=bool)
    starts[[2, 4], [0, 2]] = True
    x = torch.randn(6, 3, 3)
    h0, c0 = torch.randn(2, 2, 3, 4)
    restarts = tuple(torch.zeros(6, 2, 3, 4).index_put((torch.tensor([0]),), s.unsqueeze(0)) for s in (h0, c0))
    y, (h, c) = unroll_segments(core, x, starts, restarts)
    y_ref, final = unroll(core, x, starts, RecurrentState.from_tensors((h0, c0)))
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(c[-1], final.c, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h[-1], final.h, atol=1e-6, rtol=1e-6)


def test_batch_first_modules_take_batch_first_inputs() -> None:
    """A batch-first module takes x [B, T, in] and returns y [B, T, H]; the states stay [T, L, B, H]."""
    torch.manual_seed(1)
    m = nn.GRU(3, 4, batch_first=True)
    tm = nn.GRU(3, 4)
    tm.load_state_dict(m.state_dict())
    starts = np.zeros((5, 2), dtype=bool)
    starts[3, 0] = True
    x, h = torch.randn(2, 5, 3), torch.randn(5, 1, 2, 4)
    y, (ends,) = unroll_segments(m, x, starts, (h,))
    y_tm, (ends_tm,) = unroll_segments(tm, x.transpose(0, 1), starts, (h,))
    torch.testing.assert_close(y, y_tm.transpose(0, 1))
    torch.testing.assert_close(ends, ends_tm)


def test_bad_input_says_what_was_expected() -> None:
    """Another module, malformed x, restarts or starts: one line naming what was expected."""
    lstm = nn.LSTM(3, 4)
    x, hc = torch.randn(5, 2, 3), (torch.zeros(5, 1, 2, 4), torch.zeros(5, 1, 2, 4))
    starts = np.zeros((5, 2), dtype=bool)
    with pytest.raises(ValueError, match=r"expected a unidirectional nn.LSTM / nn.GRU .* got RNN"):
        unroll_segments(nn.RNN(3, 4), x, starts, hc[:1])
    with pytest.raises(ValueError, match=r"expected x as \[T, B, in\] with in = 3, got shape \(5, 2, 4\)"):
        unroll_segments(lstm, torch.randn(5, 2, 4), starts, hc)
    with pytest.raises(ValueError, match=r"expected 2 restart tensor\(s\) of shape \[T, L, B, H\] = \[5, 1, 2, 4\]"):
        unroll_segments(lstm, x, starts, (hc[0],))
    with pytest.raises(ValueError, match=r"unroll_segments: expected episode_starts as a bool mask \[T=5, B=2\]"):
        unroll_segments(lstm, x, starts[:3], hc)


@pytest.mark.parametrize("batch_first", [False, True])
def test_long_gru_calls_take_the_fast_loop_and_stay_exact(batch_first: bool) -> None:
    """A GRU with long calls between restarts runs tether's fast GRU loop: still equal to the reference."""
    torch.manual_seed(2)
    m = nn.GRU(3, 4, num_layers=2, batch_first=batch_first)
    ref = nn.GRU(3, 4, num_layers=2)
    ref.load_state_dict(m.state_dict())
    starts = np.zeros((16, 3), dtype=bool)
    starts[8, 1] = True  # two calls of 8 steps
    x = torch.randn(16, 3, 3, requires_grad=True)
    restarts = (torch.randn(16, 2, 3, 4, requires_grad=True),)
    y, ends = unroll_segments(m, x.transpose(0, 1) if batch_first else x, starts, restarts)
    y = y.transpose(0, 1) if batch_first else y
    y_ref, ends_ref = _by_segment(ref, x, starts, restarts)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ends[0], ends_ref[0], atol=1e-5, rtol=1e-5)
    inputs = [x, restarts[0], *m.parameters()]
    got = _grads(y.sum() + ends[0].sum(), inputs)
    want = _grads(y_ref.sum() + ends_ref[0].sum(), [x, restarts[0], *ref.parameters()])
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
