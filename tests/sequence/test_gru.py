"""The fast GRU unroll: exact to nn.GRU and to the per-step masked loop, and clear about what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tether.sequence._gru as fast_gru
from tether.sequence._gru import fast_gru_wins, gru_unroll, unsupported_reason

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def masked_loop(m: nn.GRU, x: torch.Tensor, h: torch.Tensor, starts: np.ndarray | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: one nn.GRU step at a time, the state multiplied by 1 - start before it."""
    if starts is None:
        return m(x, h)  # type: ignore[no-any-return]
    keep = torch.from_numpy(~starts).to(x.dtype)
    ys = []
    for t in range(x.shape[0]):
        h = h * keep[t].view(1, -1, 1)
        y, h = m(x[t : t + 1], h)
        ys.append(y)
    return torch.cat(ys), h


def check_exact(m: nn.GRU, x: torch.Tensor, h0: torch.Tensor, starts: np.ndarray | None) -> None:
    """Outputs, final state and gradients w.r.t. x, h0 and every parameter match the reference."""
    wrt = [x, h0, *m.parameters()]
    y, h = gru_unroll(m, x, h0, starts)
    y_ref, h_ref = masked_loop(m, x, h0, starts)
    tol = TOL[x.dtype]
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(h, h_ref, atol=tol, rtol=tol)
    gen = torch.Generator().manual_seed(1)
    gy = torch.randn(y.shape, generator=gen, dtype=x.dtype)
    gh = torch.randn(h.shape, generator=gen, dtype=x.dtype)
    got = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), wrt)
    want = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), wrt)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def make(steps: int, batch: int, n_in: int, hidden: int, layers: int, bias: bool, dtype: torch.dtype,
         seed: int = 0) -> tuple[nn.GRU, torch.Tensor, torch.Tensor]:
    """A GRU and inputs / initial state that require grad."""
    torch.manual_seed(seed)
    m = nn.GRU(n_in, hidden, num_layers=layers, bias=bias).to(dtype)
    x = torch.randn(steps, batch, n_in, dtype=dtype, requires_grad=True)
    h0 = torch.randn(layers, batch, hidden, dtype=dtype, requires_grad=True)
    return m, x, h0


@pytest.fixture(params=["fold", "no fold", "tanh via sigmoid", "onednn"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way the kernel can run: backward recurrence with the z term folded into the matmul
    or not, tanh taken through sigmoid (wide steps), every float32 matmul on oneDNN."""
    if request.param == "fold":
        monkeypatch.setattr(fast_gru, "_FOLD_BELOW", 1 << 30)
        monkeypatch.setattr(fast_gru, "_WIDE", 1 << 30)
    if request.param == "no fold":
        monkeypatch.setattr(fast_gru, "_FOLD_BELOW", 0)
    if request.param == "tanh via sigmoid":
        monkeypatch.setattr(fast_gru, "_WIDE", 0)
    if request.param == "onednn":
        if not fast_gru._onednn_ok:
            pytest.skip("torch built without oneDNN")
        monkeypatch.setattr(fast_gru, "_ONEDNN_FLOPS", 0)
        monkeypatch.setattr(fast_gru, "_ONEDNN_STEP_FLOPS", 0)
        monkeypatch.setattr(fast_gru, "_ONEDNN_MIN_STEPS", 1)
    return str(request.param)


@settings(max_examples=20, deadline=None)
@given(
    steps=st.integers(1, 6), batch=st.integers(1, 4), n_in=st.integers(1, 5), hidden=st.integers(1, 6),
    layers=st.integers(1, 3), bias=st.booleans(), rate=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16), double=st.booleans(),
)
def test_matches_masked_loop_property(steps: int, batch: int, n_in: int, hidden: int, layers: int,
                                      bias: bool, rate: float, seed: int, double: bool) -> None:
    """Any shape, layer count, bias and start pattern: equal to the masked loop, gradients included."""
    dtype = torch.float64 if double else torch.float32
    m, x, h0 = make(steps, batch, n_in, hidden, layers, bias, dtype, seed)
    starts = np.random.default_rng(seed).random((steps, batch)) < rate
    check_exact(m, x, h0, starts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_starts", [False, True])
def test_every_kernel_path_exact(kernel_path: str, dtype: torch.dtype, with_starts: bool) -> None:
    """Fold, no-fold and oneDNN paths all equal nn.GRU / the masked loop, two layers, with bias."""
    m, x, h0 = make(7, 3, 5, 6, 2, True, dtype)
    starts = None
    if with_starts:
        starts = np.zeros((7, 3), dtype=bool)
        starts[0, 1] = starts[3, 0] = starts[3, 2] = starts[6, 1] = True
    check_exact(m, x, h0, starts)


def test_no_starts_equals_nn_gru_float32() -> None:
    """Without starts the result is nn.GRU's own, at a size where gradients accumulate over many steps."""
    m, x, h0 = make(40, 4, 16, 32, 2, True, torch.float32)
    check_exact(m, x, h0, None)


def test_bias_false_and_start_at_every_row() -> None:
    """bias=False with every row starting at t = 0: h0 gets exactly zero gradient."""
    m, x, h0 = make(5, 3, 4, 5, 2, False, torch.float64)
    starts = np.zeros((5, 3), dtype=bool)
    starts[0] = True
    check_exact(m, x, h0, starts)
    y, h = gru_unroll(m, x, h0, starts)
    (grad,) = torch.autograd.grad(y.sum() + h.sum(), [h0])
    assert torch.equal(grad, torch.zeros_like(grad))


def test_starts_as_torch_tensor_and_h0_none() -> None:
    """A bool torch mask works like numpy; h0=None means zeros."""
    m, x, _ = make(4, 2, 3, 4, 1, True, torch.float64)
    starts = torch.tensor([[0, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    y, h = gru_unroll(m, x, None, starts)
    y_ref, h_ref = masked_loop(m, x, torch.zeros(1, 2, 4, dtype=torch.float64), starts.numpy())
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)


def test_zero_length_returns_initial_state() -> None:
    """T = 0: an empty output and the initial state, gradient passing straight to h0."""
    m, _, h0 = make(1, 2, 3, 4, 2, True, torch.float32)
    y, h = gru_unroll(m, torch.zeros(0, 2, 3), h0, np.zeros((0, 2), dtype=bool))
    assert y.shape == (0, 2, 4)
    torch.testing.assert_close(h, h0)
    (grad,) = torch.autograd.grad(h.sum(), [h0])
    torch.testing.assert_close(grad, torch.ones_like(h0))


def test_single_step_inference_equals_nn_gru() -> None:
    """T = 1 under no_grad and under inference_mode (what policy.act runs) equals nn.GRU."""
    m, x, h0 = make(1, 8, 5, 6, 2, True, torch.float32)
    with torch.no_grad():
        y_ref, h_ref = m(x, h0)
        y, h = gru_unroll(m, x, h0)
    assert not y.requires_grad
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=1e-6)
    with torch.inference_mode():
        y2, h2 = gru_unroll(m, x, h0)
    torch.testing.assert_close(y2, y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h2, h_ref, atol=1e-6, rtol=1e-6)


def test_eval_mode_dropout_is_supported() -> None:
    """Dropout only acts in training mode, so an eval-mode module with dropout runs (and matches)."""
    m, x, h0 = make(4, 2, 3, 4, 2, True, torch.float64)
    m.dropout = 0.5
    m.eval()
    assert unsupported_reason(m) is None
    check_exact(m, x, h0, None)


class _MyGRU(nn.GRU):
    pass


@pytest.mark.parametrize(
    ("module", "error", "match"),
    [
        (nn.GRU(3, 4, bidirectional=True), ValueError, r"expects a unidirectional nn\.GRU, got bidirectional=True"),
        (nn.GRU(3, 4, batch_first=True), ValueError, r"expects batch_first=False .* got batch_first=True; transpose x"),
        (nn.GRU(3, 4, num_layers=2, dropout=0.5), ValueError, r"expects dropout=0 or eval mode, got dropout=0\.5"),
        (nn.LSTM(3, 4), TypeError, r"expects a plain nn\.GRU, got LSTM"),
        (_MyGRU(3, 4), TypeError, r"expects a plain nn\.GRU, got _MyGRU"),
    ],
)
def test_refuses_unsupported_modules(module: nn.Module, error: type[Exception], match: str) -> None:
    """Each unsupported configuration is refused with one line naming it and the fix."""
    with pytest.raises(error, match=match):
        gru_unroll(module, torch.zeros(2, 1, 3))  # type: ignore[arg-type]


def test_refuses_module_with_hooks() -> None:
    """A forward hook would silently not run, so a hooked module is refused."""
    m = nn.GRU(3, 4)
    m.register_forward_hook(lambda *_: None)
    with pytest.raises(ValueError, match=r"without forward hooks"):
        gru_unroll(m, torch.zeros(2, 1, 3))


@pytest.mark.parametrize(
    ("x", "h0", "starts", "match"),
    [
        (torch.zeros(2, 1, 5), None, None, r"expected x shaped \[T, B, in=3\], got \(2, 1, 5\)"),
        (torch.zeros(2, 3), None, None, r"expected x shaped \[T, B, in=3\], got \(2, 3\)"),
        (torch.zeros(2, 1, 3), torch.zeros(2, 1, 4), None, r"expected h0 shaped \[L=1, B=1, H=4\]"),
        (torch.zeros(2, 1, 3), torch.zeros(1, 1, 4, dtype=torch.float64), None, r"got \(1, 1, 4\) on cpu / torch.float64"),
        (torch.zeros(2, 1, 3), None, np.zeros((2, 1)), r"expected episode_starts as a bool mask \[T=2, B=1\]"),
        (torch.zeros(2, 1, 3), None, np.zeros((3, 1), dtype=bool), r"got bool \(3, 1\)"),
    ],
)
def test_refuses_malformed_inputs(x: torch.Tensor, h0: torch.Tensor | None, starts: np.ndarray | None,
                                  match: str) -> None:
    """Wrong shapes, dtypes or masks: one line saying what was expected."""
    with pytest.raises(ValueError, match=match):
        gru_unroll(nn.GRU(3, 4), x, h0, starts)


def test_selector_rule() -> None:
    """The measured rule: CPU with a gradient wins; inference and CUDA keep nn.GRU."""
    assert fast_gru_wins(128, 8, 64, 128, "cpu", True)
    assert fast_gru_wins(8, 8, 64, 64, torch.device("cpu"), True)
    assert not fast_gru_wins(1, 8, 64, 64, "cpu", False)
    assert not fast_gru_wins(128, 8, 64, 64, "cpu", False)
    assert not fast_gru_wins(128, 8, 64, 128, torch.device("cuda"), True)
