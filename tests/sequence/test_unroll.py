"""Tests for tether.sequence.unroll: every strategy of unroll equals the per-step reference loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tether import EpisodeClock, RecurrentState, StateMismatchError, track
from tether.sequence import unroll, unroll_reference

STRATEGIES = ["auto", "spliced", "padded", "chunked"]
T, B = 7, 5


def _pattern(name: str, steps: int = T, batch: int = B) -> np.ndarray:
    """The reset patterns the brief names, as bool [T, B]."""
    starts = np.zeros((steps, batch), dtype=bool)
    if name == "at-t0":
        starts[0, ::2] = True
    elif name == "consecutive":
        starts[2:5, 1] = True
        starts[3:5, 3] = True
    elif name == "every-step":
        starts[:] = True
    elif name == "all-rows-at-once":
        starts[3] = True
    elif name == "one-row-only":
        starts[[1, 4, 5], 2] = True
    elif name == "random":
        starts = np.random.default_rng(0).random((steps, batch)) < 0.3
    return starts


PATTERNS = ["none", "at-t0", "consecutive", "every-step", "all-rows-at-once", "one-row-only", "random"]


def _run(
    fn: Callable[..., tuple[torch.Tensor, RecurrentState]], module: nn.Module, x: torch.Tensor,
    starts: object, initial: tuple[torch.Tensor, ...], **kwargs: object,
) -> list[torch.Tensor]:
    """Outputs, final state and the gradients w.r.t. x, the initial state and the parameters."""
    core = track(module)
    y, final = fn(core, x, starts, RecurrentState.from_tensors(initial), **kwargs)
    # Fixed random weights per output element, so that every element's gradient is checked.
    gen = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    for tensor in final.tensors:
        loss = loss + (tensor * torch.randn(tensor.shape, generator=gen, dtype=y.dtype)).sum()
    grads = torch.autograd.grad(loss, [x, *initial, *module.parameters()])
    return [y, *final.tensors, *grads]


def _inputs(
    module: nn.Module, steps: int, batch: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    x = torch.randn(steps, batch, module.input_size, dtype=dtype, requires_grad=True)
    count = 2 if isinstance(module, nn.LSTM) else 1
    layers = module.num_layers * (2 if module.bidirectional else 1)
    initial = tuple(torch.randn(layers, batch, module.hidden_size, dtype=dtype, requires_grad=True)
                    for _ in range(count))
    return x, initial


def _assert_equal_to_reference(
    module: nn.Module, starts: np.ndarray, strategy: str, dtype: torch.dtype = torch.float32,
    tol: float = 1e-5,
) -> None:
    x, initial = _inputs(module, *starts.shape, dtype=dtype)
    want = _run(unroll_reference, module, x, starts, initial)
    got = _run(unroll, module, x, starts, initial, strategy=strategy)
    names = ["y", *(f"final[{i}]" for i in range(len(initial))), "dx",
             *(f"d initial[{i}]" for i in range(len(initial))), *(f"d {n}" for n, _ in module.named_parameters())]
    for name, a, b in zip(names, got, want, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("kind", "layers"), [(nn.LSTM, 1), (nn.GRU, 2)])
def test_every_pattern_equals_reference(pattern: str, strategy: str, kind: type, layers: int) -> None:
    """Outputs, final state and all gradients equal the per-step loop within 1e-5 (float32)."""
    _assert_equal_to_reference(kind(3, 4, num_layers=layers), _pattern(pattern), strategy)


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 10), batch=st.integers(1, 6), layers=st.integers(1, 3),
    kind=st.sampled_from([nn.LSTM, nn.GRU]), bias=st.booleans(),
    density=st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]), seed=st.integers(0, 2**16),
    strategy=st.sampled_from(STRATEGIES),
)
def test_random_patterns_equal_reference(
    steps: int, batch: int, layers: int, kind: type, bias: bool, density: float, seed: int,
    strategy: str,
) -> None:
    """Property: any pattern, shape, depth and cell kind gives the reference's values and grads."""
    torch.manual_seed(seed)
    starts = np.random.default_rng(seed).random((steps, batch)) < density
    _assert_equal_to_reference(kind(2, 4, num_layers=layers, bias=bias), starts, strategy)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_float64_equals_reference_tightly(kind: type) -> None:
    """In float64 the fast path matches the reference to 1e-10."""
    module = kind(3, 4, num_layers=2).double()
    _assert_equal_to_reference(module, _pattern("random", 9, 4), "auto", torch.float64, tol=1e-10)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_bfloat16_runs_close_to_reference(kind: type) -> None:
    """bfloat16 runs (whatever strategy auto picks on this kernel) and stays close to the loop."""
    module = kind(3, 4).to(torch.bfloat16)
    starts = _pattern("random", 6, 3)
    x, initial = _inputs(module, 6, 3, torch.bfloat16)
    want = _run(unroll_reference, module, x, starts, initial)
    got = _run(unroll, module, x, starts, initial)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=0.1, rtol=0.05)


def test_no_start_is_the_plain_fused_call_bit_for_bit() -> None:
    """Without starts, unroll is exactly one call of the plain module."""
    module = nn.LSTM(3, 4, num_layers=2)
    x, (h, c) = _inputs(module, T, B)
    y, final = unroll(track(module), x, np.zeros((T, B), dtype=bool), RecurrentState.from_tensors((h, c)))
    y_plain, (h_plain, c_plain) = module(x, (h, c))
    assert torch.equal(y, y_plain)
    assert torch.equal(final.h, h_plain)
    assert torch.equal(final.c, c_plain)


@pytest.mark.parametrize(("kind", "grad"), [(nn.LSTM, True), (nn.GRU, False)])
def test_starts_only_at_t0_mask_the_initial_state_bit_for_bit(kind: type[nn.RNNBase], grad: bool) -> None:
    """Starts at t = 0 only: the plain call from the masked state, bit for bit (the fused path)."""
    module = kind(3, 4)
    x, initial = _inputs(module, T, B)
    starts = _pattern("at-t0")
    keep = torch.from_numpy(~starts[0]).float().view(1, -1, 1)
    with torch.set_grad_enabled(grad):
        y, final = unroll(track(module), x, torch.from_numpy(starts), RecurrentState.from_tensors(initial))
        masked = tuple(t * keep for t in initial)
        y_plain, out = module(x, masked if kind is nn.LSTM else masked[0])
    assert torch.equal(y, y_plain)
    assert torch.equal(final.h, out[0] if kind is nn.LSTM else out)


def test_a_gru_with_a_gradient_runs_the_fast_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU with a graph, auto runs a GRU through the fast GRU loop: equal to the reference."""
    import tether.sequence._unroll as engine  # noqa: PLC0415 (to spy on the kernel it calls)

    calls: list[int] = []
    real = engine.gru_unroll
    monkeypatch.setattr(engine, "gru_unroll", lambda *a: calls.append(1) or real(*a))
    module = nn.GRU(3, 4, num_layers=2)
    x, initial = _inputs(module, T, B)
    starts = _pattern("random")
    got = _run(unroll, module, x, starts, initial)
    assert calls
    want = _run(unroll_reference, module, x, starts, initial)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    calls.clear()
    _run(unroll, module, x, starts, initial, strategy="spliced")  # a forced strategy is kept
    assert not calls


@pytest.mark.parametrize("name", ["rnn", "lstm-subclass", "bidirectional", "hooked"])
def test_other_modules_fall_back_exactly(name: str) -> None:
    """nn.RNN, subclasses and hooked modules run chunked; bidirectional runs the reference."""
    calls: list[int] = []

    class MyLSTM(nn.LSTM):
        pass

    module = {"rnn": lambda: nn.RNN(3, 4, num_layers=2), "lstm-subclass": lambda: MyLSTM(3, 4),
              "bidirectional": lambda: nn.GRU(3, 4, bidirectional=True),
              "hooked": lambda: nn.LSTM(3, 4)}[name]()
    if name == "hooked":
        module.register_forward_hook(lambda *_: calls.append(1))
    _assert_equal_to_reference(module, _pattern("consecutive"), "auto")
    if name == "hooked":
        assert calls  # the hooks still run


def test_final_state_keeps_the_bookkeeping_of_the_reference() -> None:
    """The final state keeps clock and rows, T ticks later, with the reference's episode ids."""
    clock = EpisodeClock(4)
    core = track(nn.LSTM(3, 4))
    state = core.initial_state(4, clock)[[1, 3]]
    x = torch.randn(T, 2, 3, requires_grad=True)
    starts = _pattern("random", T, 2)
    ref = unroll_reference(core, x, starts, state)[1]
    fast = unroll(core, x, starts, state)[1]
    for field in ("clock", "tick", "window", "graph_steps", "is_snapshot", "spent"):
        assert getattr(fast, field) == getattr(ref, field), field
    assert fast.tick == state.tick + T
    assert fast.graph_steps == T
    np.testing.assert_array_equal(fast.episode_ids, ref.episode_ids)
    restarted = starts.any(axis=0)
    np.testing.assert_array_equal(fast.episode_ids[~restarted], state.episode_ids[~restarted])
    np.testing.assert_array_equal(fast.env_rows, state.env_rows)


def test_inference_mode_and_no_grad_work() -> None:
    """Without autograd the fast path runs, and the final state carries no graph."""
    core = track(nn.LSTM(3, 4, num_layers=2))
    x, starts = torch.randn(T, B, 3), _pattern("random")
    want = unroll_reference(core, x, starts, core.initial_state(B))[0]
    with torch.inference_mode():
        y, final = unroll(core, x, starts, core.initial_state(B))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-6)
    with torch.no_grad():
        _, final = unroll(core, x, starts, core.initial_state(B))
    assert not final.has_graph
    assert final.graph_steps == 0


def test_non_contiguous_input_and_global_rng_untouched() -> None:
    """A strided x works, and unroll (with its one-off kernel probe) leaves the global RNG alone."""
    core = track(nn.GRU(3, 4))
    x = torch.randn(B, T, 3).transpose(0, 1)
    starts = _pattern("consecutive")
    before = torch.random.get_rng_state()
    y, _ = unroll(core, x, starts, core.initial_state(B))
    assert torch.equal(before, torch.random.get_rng_state())
    want, _ = unroll_reference(core, x, starts, core.initial_state(B))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-6)


def test_dropout_between_layers_in_training() -> None:
    """With inter-layer dropout in training mode the fast path runs; in eval mode it is exact."""
    module = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    core, starts = track(module), _pattern("random")
    y, final = unroll(core, torch.randn(T, B, 3), starts, core.initial_state(B))
    assert y.shape == (T, B, 4)
    assert torch.isfinite(y).all()
    assert final.c.shape == (2, B, 4)
    module.eval()
    _assert_equal_to_reference(module, starts, "auto")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda c, x, s, st: unroll(c, x[0], s, st), r"expected x shaped \[T, B, in\]"),
        (lambda c, x, s, st: unroll(c, x[:0], s[:0], st), r"expected x shaped \[T, B, in\] with T >= 1"),
        (lambda c, x, s, st: unroll(c, x, s.astype(int), st), r"expected episode_starts as a bool mask"),
        (lambda c, x, s, st: unroll(c, x, torch.from_numpy(s).float(), st), r"got torch.float32"),
        (lambda c, x, s, st: unroll(c, x, s[:, :2], st), r"bool mask \[T=7, B=5\].*\(7, 2\)"),
        (lambda c, x, s, st: unroll(c, x, s, st, strategy="magic"), r"expected strategy in"),
        (lambda c, x, s, st: unroll(c, x.double(), s, st), r"expected x on cpu / torch.float32"),
        (lambda c, x, s, st: unroll_reference(c, x, s.astype(int), st), r"bool mask"),
    ],
)
def test_bad_input_says_what_was_expected(make: Callable[..., object], match: str) -> None:
    """Malformed x, starts or options raise ValueError naming what was expected."""
    core = track(nn.LSTM(3, 4))
    with pytest.raises(ValueError, match=match):
        make(core, torch.randn(T, B, 3), _pattern("random"), core.initial_state(B))


def test_state_mismatch_raises_state_mismatch_error() -> None:
    """A state of another batch, depth or kind raises StateMismatchError."""
    core = track(nn.LSTM(3, 4))
    x, starts = torch.randn(T, B, 3), _pattern("random")
    with pytest.raises(StateMismatchError, match=r"expected a state of batch 5.*got batch 3"):
        unroll(core, x, starts, core.initial_state(3))
    with pytest.raises(StateMismatchError, match=r"layers=1"):
        unroll(core, x, starts, RecurrentState.zeros(2, B, 4))
    with pytest.raises(StateMismatchError, match=r"\(h, c\) state"):
        unroll(core, x, starts, RecurrentState.zeros(1, B, 4, has_c=False))


@pytest.mark.parametrize(
    ("module", "strategy", "match"),
    [
        (nn.LSTM(3, 4, batch_first=True), "auto", r"batch_first=False.*a batch_first module"),
        (nn.GRUCell(3, 4), "auto", r"got a cell \(GRUCell\)"),
        (nn.RNN(3, 4), "spliced", r"'spliced' expects a plain unidirectional nn.LSTM"),
        (nn.LSTM(3, 4, bidirectional=True), "chunked", r"'chunked' expects a unidirectional"),
    ],
)
def test_unsupported_module_or_strategy_says_why(module: nn.Module, strategy: str, match: str) -> None:
    """Batch-first modules, cells and impossible strategy choices raise a clear ValueError."""
    core = track(module)
    state = core.initial_state(B)
    with pytest.raises(ValueError, match=match):
        unroll(core, torch.randn(T, B, 3), _pattern("random"), state, strategy=strategy)  # type: ignore[arg-type]


def test_not_a_tracked_module_or_state() -> None:
    """A plain module or a bare tensor state raise TypeError with the fix."""
    core = track(nn.GRU(3, 4))
    with pytest.raises(TypeError, match=r"tether.track\(module\)"):
        unroll(nn.GRU(3, 4), torch.randn(T, B, 3), _pattern("none"), core.initial_state(B))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a RecurrentState"):
        unroll(core, torch.randn(T, B, 3), _pattern("none"), torch.zeros(1, B, 4))  # type: ignore[arg-type]
