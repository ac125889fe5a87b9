"""Tests for tether.tracking.track: equality with the plain module, and every check firing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from tether import (
    EpisodeClock,
    GraphLeakError,
    LifecycleWarning,
    RecurrentState,
    StaleStateError,
    StateMismatchError,
    StateSpec,
    mode,
    track,
)

SEQUENCE_MODULES = {
    "lstm": lambda: nn.LSTM(5, 7),
    "lstm2-batch-first": lambda: nn.LSTM(5, 7, num_layers=2, batch_first=True),
    "gru": lambda: nn.GRU(5, 7),
    "gru3": lambda: nn.GRU(5, 7, num_layers=3),
    "lstm-bidirectional": lambda: nn.LSTM(5, 7, bidirectional=True),
    "rnn": lambda: nn.RNN(5, 7, num_layers=2, batch_first=True),
}
CELL_MODULES = {"lstm-cell": lambda: nn.LSTMCell(5, 7), "gru-cell": lambda: nn.GRUCell(5, 7)}


def _plain_step(module: nn.Module, x: torch.Tensor, hx: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple]:
    """One step of the plain module with its own state layout."""
    if isinstance(module, nn.LSTMCell):
        h, c = module(x, (hx[0][0], hx[1][0]))
        return h, (h.unsqueeze(0), c.unsqueeze(0))
    if isinstance(module, nn.GRUCell | nn.RNNCell):
        h = module(x, hx[0][0])
        return h, (h.unsqueeze(0),)
    if isinstance(module, nn.LSTM):
        y, (h, c) = module(x, hx)
        return y, (h, c)
    y, h = module(x, hx[0])
    return y, (h,)


def _step_input(module: nn.Module, batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if isinstance(module, nn.LSTMCell | nn.GRUCell | nn.RNNCell):
        return torch.randn(batch, 5, dtype=dtype)
    if module.batch_first:
        return torch.randn(batch, 1, 5, dtype=dtype)
    return torch.randn(1, batch, 5, dtype=dtype)


@pytest.mark.parametrize("name", [*SEQUENCE_MODULES, *CELL_MODULES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_outputs_equal_plain_module_with_manual_masking(name: str, dtype: torch.dtype) -> None:
    """A tracked module's outputs equal the plain module with manual (1 - done) masking, bit for bit."""
    factory = {**SEQUENCE_MODULES, **CELL_MODULES}[name]
    plain = factory().to(dtype)
    tracked = track(plain)
    batch = 4
    clock = EpisodeClock(batch)
    rng = np.random.default_rng(0)
    with mode("strict"):
        state = tracked.initial_state(batch, clock)
        hx = tuple(t.clone() for t in state.tensors)
        for _ in range(12):
            x = _step_input(plain, batch, dtype)
            y, state = tracked(x, state)
            y_ref, hx = _plain_step(plain, x, hx)
            assert torch.equal(y, y_ref)
            done = rng.random(batch) < 0.3
            clock.advance(done)
            state = state.reset(done)
            keep = torch.from_numpy(~done).to(dtype).view(1, -1, 1)
            hx = tuple(t * keep for t in hx)
            for mine, ref in zip(state.tensors, hx, strict=True):
                assert torch.equal(mine, ref)
        assert state.tick == 12


def test_forward_hooks_still_run() -> None:
    """A forward hook on the plain module is honoured (the fused shortcut steps aside)."""
    plain = nn.LSTM(5, 7)
    calls: list[int] = []
    plain.register_forward_hook(lambda *_: calls.append(1))
    tracked = track(plain)
    state = tracked.initial_state(2)
    tracked(torch.randn(1, 2, 5), state)
    assert calls == [1]


def test_multi_step_input_advances_tick_by_t() -> None:
    """Feeding T steps at once stamps the state with tick + T and counts T graph steps."""
    tracked = track(nn.GRU(5, 7))
    state = tracked.initial_state(3, EpisodeClock(3))
    _, new = tracked(torch.randn(6, 3, 5), state)
    assert new.tick == 6
    assert new.graph_steps == 6


def test_custom_module_through_spec() -> None:
    """A custom module with the (x, hx) -> (y, hx) protocol works through a StateSpec."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(5, 7)

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y, h = self.gru(x, h)
            return 2 * y, h

    tracked = track(Twice(), spec=StateSpec(num_layers=1, hidden_size=7, has_c=False))
    clock = EpisodeClock(2)
    with mode("strict"):
        y, state = tracked(torch.randn(1, 2, 5), tracked.initial_state(2, clock))
    assert y.shape == (1, 2, 7)
    assert state.tick == 1
    with pytest.raises(TypeError, match="for a custom module pass spec=StateSpec"):
        track(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="proj_size"):
        track(nn.LSTM(3, 4, proj_size=2))


# ------------------------------------------------------------------------------------------------
# every check fires, with a message naming where and the fix
@pytest.fixture
def setup() -> tuple:
    tracked = track(nn.LSTM(5, 7))
    clock = EpisodeClock(10)
    return tracked, clock, tracked.initial_state(10, clock)


def test_missed_reset_names_rows_ids_and_fix(setup: tuple) -> None:
    """A row used after its episode ended without reset raises StaleStateError with rows, ids, fix."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    _, state = tracked(x, state)
    done = np.zeros(10, dtype=bool)
    done[[0, 1, 2, 3, 4, 5, 6, 7, 9]] = True
    clock.advance(done)
    with mode("strict"), pytest.raises(StaleStateError) as info:
        tracked(x, state)
    err = info.value
    assert err.kind == "stale-episode"
    assert err.rows == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert err.state_ids == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert err.clock_ids == [10, 11, 12, 13, 14, 15, 16, 17, 18]
    message = str(err)
    assert "rows [0, 1, 2, 3, 4, 5, 6, 7, and 1 more]" in message
    assert "now in episodes [10, 11, 12, 13, 14, 15, 16, 17, and 1 more]" in message
    assert "fix: call `state = state.reset(done)` right after `clock.advance(done)`" in message
    with mode("strict"):
        tracked(x, state.reset(done))  # the fix works


def test_reused_state_names_both_ticks(setup: tuple) -> None:
    """Feeding an old state again raises StaleStateError naming both ticks."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    _, new = tracked(x, state)
    clock.advance(np.zeros(10, dtype=bool))
    with mode("strict"), pytest.raises(StaleStateError, match="a state from tick 0 was used at tick 1") as info:
        tracked(x, state)
    assert (info.value.state_tick, info.value.clock_tick) == (0, 1)
    assert "fix: feed the state the module returned" in str(info.value)
    with mode("strict"):
        tracked(x, new)


def test_forgotten_advance_is_caught(setup: tuple) -> None:
    """Stepping twice without clock.advance raises StaleStateError saying to advance the clock."""
    tracked, _, state = setup
    x = torch.randn(1, 10, 5)
    _, state = tracked(x, state)
    with mode("strict"), pytest.raises(StaleStateError, match="state for tick 1 was used at tick 0") as info:
        tracked(x, state)
    assert "clock.advance(done)" in str(info.value)


def test_graph_across_window_boundary(setup: tuple) -> None:
    """A state carrying a graph used after end_window() without detach raises GraphLeakError."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    _, state = tracked(x, state)
    clock.advance(np.zeros(10, dtype=bool))
    clock.end_window()
    with mode("strict"), pytest.raises(GraphLeakError, match="from training window 0, but the clock is in window 1") as info:
        tracked(x, state)
    assert info.value.kind == "graph-window"
    assert "call `state = state.detach()` right after `clock.end_window()`" in info.value.fix
    assert "collect under `torch.no_grad()`" in info.value.fix
    with mode("strict"):
        tracked(x, state.detach())
        with torch.no_grad():  # a state without a graph may cross windows
            _, s2 = tracked(x, state.detach())
        clock.advance(np.zeros(10, dtype=bool))
        clock.end_window()
        tracked(x, s2)


def test_graph_step_limit() -> None:
    """A graph carried past max_graph_steps raises GraphLeakError with the count and the limit."""
    tracked = track(nn.GRU(5, 7), max_graph_steps=3)
    clock = EpisodeClock(2)
    state = tracked.initial_state(2, clock)
    x = torch.randn(1, 2, 5)
    with mode("strict"):
        for _ in range(3):
            _, state = tracked(x, state)
            clock.advance(np.zeros(2, dtype=bool))
        with pytest.raises(GraphLeakError, match=r"carried its autograd graph through 3 steps of earlier calls.*limit of 3.*without detach") as info:
            tracked(x, state)
        assert (info.value.graph_steps, info.value.limit) == (3, 3)
        tracked(x, state.detach())
        with torch.no_grad():
            for _ in range(5):  # without autograd there is no graph to count
                _, state = tracked(x, state.detach() if state.has_graph else state)
                clock.advance(np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="max_graph_steps >= 1"):
        track(nn.GRU(5, 7), max_graph_steps=0)


def test_shape_mismatches(setup: tuple) -> None:
    """Wrong batch, layers, hidden size or kind raise StateMismatchError saying expected and got."""
    tracked, clock, state = setup
    with mode("strict"):
        with pytest.raises(StateMismatchError, match=r"expected a \(h, c\) state shaped \[layers=1, batch=4, hidden=7\]"):
            tracked(torch.randn(1, 4, 5), state)
        gru_state = RecurrentState.zeros(1, 10, 7, has_c=False, clock=clock)
        with pytest.raises(StateMismatchError, match=r"got 1 tensor\(s\)"):
            tracked(torch.randn(1, 10, 5), gru_state)
        wide = RecurrentState.zeros(2, 10, 8, clock=clock)
        with pytest.raises(StateMismatchError, match=r"got 2 tensor\(s\) shaped \[2, 10, 8\]"):
            tracked(torch.randn(1, 10, 5), wide)
        with pytest.raises(StateMismatchError, match="expected a batched input with 3 dims"):
            tracked(torch.randn(10, 5), state)
        with pytest.raises(TypeError, match="expected a RecurrentState, got tuple"):
            tracked(torch.randn(1, 10, 5), state.tensors)


def test_dtype_and_device_mismatch(setup: tuple) -> None:
    """A state of another dtype than the module raises StateMismatchError naming both."""
    tracked, _, state = setup
    with mode("strict"), pytest.raises(StateMismatchError, match=r"expected a state on cpu with dtype torch.float32") as info:
        tracked(torch.randn(1, 10, 5), state.to(torch.float64))
    assert "torch.float64" in str(info.value)
    # after moving the module, the expectation follows it
    tracked.double()
    with mode("strict"):
        tracked(torch.randn(1, 10, 5, dtype=torch.float64), state.to(torch.float64))


def test_bootstrap_read_is_the_one_sanctioned_stale_read(setup: tuple) -> None:
    """bootstrap=True allows rows whose episode just ended; the result may not be stepped again."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    _, state = tracked(x, state)
    done = np.zeros(10, dtype=bool)
    done[2] = True
    clock.advance(done)
    with mode("strict"):
        _, spent = tracked(x, state, bootstrap=True)
        assert spent.spent
        with pytest.raises(StaleStateError, match="came out of a bootstrap read"):
            tracked(x, spent)
        # the read is allowed only at the tick the episode ended, not one step later
    with mode("off"):
        _, late = tracked(x, state)
    clock.advance(np.zeros(10, dtype=bool))
    with mode("strict"), pytest.raises(StaleStateError, match=r"rows \[2\] of the state still hold episodes \[2\]"):
        tracked(x, late, bootstrap=True)


def test_warn_mode_warns_once_and_carries_on(setup: tuple) -> None:
    """Warn mode warns once per kind and call site and still runs the step."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    _, state = tracked(x, state)
    clock.advance(np.ones(10, dtype=bool))
    with mode("warn"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            y, _ = tracked(x, state)
    assert len(caught) == 1
    assert caught[0].category is LifecycleWarning
    assert "state.reset(done)" in str(caught[0].message)
    assert y.shape == (1, 10, 7)


def test_off_mode_checks_nothing(setup: tuple) -> None:
    """Off mode runs a misused state without a word."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    clock.advance(np.ones(10, dtype=bool))
    clock.end_window()
    with mode("off"), warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _ = tracked(x, state)
    assert y.shape == (1, 10, 7)


def test_snapshot_is_exempt_from_the_tick_check(setup: tuple) -> None:
    """A snapshot replays at any later tick (that is what it is for)."""
    tracked, clock, state = setup
    x = torch.randn(1, 10, 5)
    snap = state.snapshot()
    for _ in range(3):
        _, state = tracked(x, state)
        clock.advance(np.ones(10, dtype=bool))
        state = state.reset(np.ones(10, dtype=bool))
    with mode("strict"):
        y, replayed = tracked(torch.randn(4, 10, 5), snap)
    assert replayed.is_snapshot
    assert y.shape == (4, 10, 7)


def test_row_subset_state_checks_its_own_rows() -> None:
    """A state of some clock rows is checked against exactly those rows."""
    tracked = track(nn.GRU(5, 7))
    clock = EpisodeClock(4)
    state = tracked.initial_state(4, clock)[[1, 3]]
    x = torch.randn(1, 2, 5)
    with mode("strict"):
        _, state = tracked(x, state)
        clock.advance(np.array([True, False, False, False]))  # not one of our rows
        _, state = tracked(x, state)
        clock.advance(np.array([False, False, False, True]))
        with pytest.raises(StaleStateError, match=r"rows \[3\] of the state still hold episodes \[3\]"):
            tracked(x, state)
        tracked(x, state.reset(np.array([False, True])))


# ------------------------------------------------------------------------------------------------
# transparent to a port: attributes read through, the plain module's state_dict keys
class _Net(nn.Module):
    """A model holding an LSTM, plain or tracked, as a ported script would."""

    def __init__(self, tracked: bool) -> None:
        super().__init__()
        lstm = nn.LSTM(3, 4, num_layers=2)
        self.lstm: nn.Module = track(lstm) if tracked else lstm
        self.head = nn.Linear(4, 1)


def test_wrapped_attributes_read_through() -> None:
    """hidden_size, num_layers, input_size and the weights of the plain module read through."""
    lstm = nn.LSTM(3, 4, num_layers=2)
    tracked = track(lstm)
    assert (tracked.hidden_size, tracked.num_layers, tracked.input_size) == (4, 2, 3)
    assert tracked.weight_ih_l0 is lstm.weight_ih_l0
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = tracked.no_such_thing


def test_checkpoints_move_between_plain_and_tracked_models() -> None:
    """A checkpoint of a model holding nn.LSTM loads into the tracked model and back, same keys."""
    torch.manual_seed(0)
    plain, tracked = _Net(False), _Net(True)
    assert list(tracked.state_dict()) == list(plain.state_dict())
    tracked.load_state_dict(plain.state_dict())
    for (name, a), (_, b) in zip(plain.state_dict().items(), tracked.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    back = _Net(False)
    back.load_state_dict(tracked.state_dict())
    assert torch.equal(back.lstm.weight_hh_l1, plain.lstm.weight_hh_l1)


def test_the_former_wrapped_keys_still_load() -> None:
    """A checkpoint written when the keys read lstm.module.* loads too."""
    plain, tracked = _Net(False), _Net(True)
    old = {k.replace("lstm.", "lstm.module.", 1): v for k, v in plain.state_dict().items()}
    tracked.load_state_dict(old)
    assert torch.equal(tracked.lstm.bias_ih_l1, plain.lstm.bias_ih_l1)


def test_tracking_a_tracked_module_returns_it() -> None:
    """track(track(m)) is track(m); other settings for a tracked module are refused."""
    tracked = track(nn.GRU(3, 4), max_graph_steps=10)
    assert track(tracked) is tracked
    assert track(tracked, max_graph_steps=10) is tracked
    with pytest.raises(ValueError, match="tracked already"):
        track(tracked, max_graph_steps=5)


ONE_STEP_MODULES = {
    "lstm": lambda: nn.LSTM(5, 7),
    "lstm2-no-bias": lambda: nn.LSTM(5, 7, num_layers=2, bias=False),
    "gru": lambda: nn.GRU(5, 7),
    "gru3": lambda: nn.GRU(5, 7, num_layers=3),
    "lstm-wide": lambda: nn.LSTM(5, 300),  # rows x hidden past the cell ops' limit: the sequence op
}


@pytest.mark.parametrize("name", ONE_STEP_MODULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_steps_equal_the_plain_module(name: str, dtype: torch.dtype) -> None:
    """Without autograd a single step may run as the cell ops: equal to the plain module within
    float rounding, step after step (the state fed back each time)."""
    torch.manual_seed(0)
    plain = ONE_STEP_MODULES[name]().to(dtype)
    tracked = track(plain)
    clock = EpisodeClock(8)
    with mode("strict"), torch.no_grad():
        state = tracked.initial_state(8, clock)
        hx = tuple(t.clone() for t in state.tensors)
        for _ in range(6):
            x = torch.randn(1, 8, 5, dtype=dtype)
            y, state = tracked(x, state)
            y_ref, hx = _plain_step(plain, x, hx)
            torch.testing.assert_close(y, y_ref)
            for mine, ref in zip(state.tensors, hx, strict=True):
                assert mine.shape == ref.shape
                torch.testing.assert_close(mine, ref)
            clock.advance(np.zeros(8, dtype=bool))


def test_a_replaced_parameter_is_used_by_the_next_step() -> None:
    """Assigning a new weight to the wrapped module (or swapping it through torch.func) reaches
    the fused call: no stale flat-weight list."""
    torch.manual_seed(0)
    plain = nn.LSTM(5, 7)
    tracked = track(plain)
    x, state = torch.randn(1, 3, 5), tracked.initial_state(3)
    with torch.no_grad():
        before, _ = tracked(x, state)
        plain.weight_ih_l0 = nn.Parameter(torch.randn(28, 5))
        after, _ = tracked(x, state)
        expected, _ = plain(x, tuple(t.clone() for t in state.tensors))
    torch.testing.assert_close(after, expected)
    assert not torch.allclose(before, after)
    swapped = {name: torch.zeros_like(p) for name, p in tracked.named_parameters()}
    with torch.no_grad():
        y, _ = torch.func.functional_call(tracked, swapped, (x, state))
    torch.testing.assert_close(y, torch.zeros_like(y))
    with torch.no_grad():
        again, _ = tracked(x, state)
    torch.testing.assert_close(again, expected)


@pytest.mark.parametrize("name", ["lstm", "gru", "gru3"])
def test_an_inference_step_output_does_not_alias_the_new_state(name: str) -> None:
    """As with the plain module, editing y in place leaves the returned state alone."""
    tracked = track(ONE_STEP_MODULES[name]())
    with torch.no_grad():
        y, state = tracked(torch.randn(1, 4, 5), tracked.initial_state(4))
        kept = tuple(t.clone() for t in state.tensors)
        y.mul_(0.0).add_(3.0)
    for now, before in zip(state.tensors, kept, strict=True):
        torch.testing.assert_close(now, before)


# ------------------------------------------------------------------------------------------------
# bootstrap reads and the graph limit; warn mode's leak reports; compile; parameter names
@pytest.mark.parametrize("limit", [8, 2048])
def test_a_bootstrap_read_at_the_last_step_of_a_full_window_is_silent(limit: int) -> None:
    """The truncation bootstrap read's result is discarded: it never counts toward the graph limit."""
    core = track(nn.LSTM(3, 8), max_graph_steps=limit)
    clock = EpisodeClock(2)
    s = core.initial_state(2, clock)
    with mode("strict"):
        for t in range(limit):
            _, s = core(torch.randn(1, 2, 3), s)
            truncated = np.array([t == limit - 1, False])
            clock.advance(truncated)
            if truncated.any():
                core(torch.randn(1, 1, 3), s[np.array([0])], bootstrap=True)
            s = s.reset(truncated)
        clock.end_window()
        core(torch.randn(1, 2, 3), s.detach())


def test_warn_mode_reports_a_growing_graph_at_each_doubling() -> None:
    """A never-detached state in warn mode warns at the limit and again at each doubling of its age,
    with the age and an estimate of the memory it holds; strict mode raises at the limit."""
    core = track(nn.GRU(3, 4), max_graph_steps=4)
    clock = EpisodeClock(2)
    state = core.initial_state(2, clock)
    with mode("warn"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(40):
            _, state = core(torch.randn(1, 2, 3), state)
            clock.advance(np.zeros(2, dtype=bool))
    texts = [str(w.message) for w in caught]
    assert [int(t.split("through ")[1].split(" steps")[0]) for t in texts] == [4, 8, 16, 32]
    assert all("holds at least" in t and "KiB" in t for t in texts)
    with mode("strict"), pytest.raises(GraphLeakError, match="limit of 4"):
        core(torch.randn(1, 2, 3), state)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_runs_with_the_checks() -> None:
    """torch.compile of a tracked module runs correct steps and still catches a missed reset."""
    core = track(nn.LSTM(3, 8))
    compiled = torch.compile(core)
    clock = EpisodeClock(2)
    state = core.initial_state(2, clock)
    eager = core.initial_state(2, clock)
    with mode("strict"):
        for t in range(3):
            x = torch.randn(1, 2, 3)
            y, state = compiled(x, state)
            y_eager, eager = core(x, eager)
            torch.testing.assert_close(y, y_eager)
            done = np.array([False, t == 1])
            clock.advance(done)
            state, eager = state.reset(done), eager.reset(done)
        _, state = compiled(torch.randn(1, 2, 3), state)
        clock.advance(np.array([True, False]))
        with pytest.raises(StaleStateError, match=r"rows \[0\] of the state still hold episodes"):
            compiled(torch.randn(1, 2, 3), state)


def test_parameter_names_are_the_plain_modules() -> None:
    """named_parameters / named_buffers of a tracked module (and of a model holding one) use the
    plain module's names, the same as its state_dict keys."""
    tracked = track(nn.LSTM(3, 4, num_layers=2))
    assert [n for n, _ in tracked.named_parameters()] == [n for n, _ in nn.LSTM(3, 4, num_layers=2).named_parameters()]
    net = _Net(tracked=True)
    names = [n for n, _ in net.named_parameters()]
    assert "lstm.weight_ih_l0" in names
    assert set(names) == set(net.state_dict())
    assert names == [n for n, _ in _Net(tracked=False).named_parameters()]
    assert len(list(net.parameters())) == len(names)
    assert any(isinstance(m, nn.LSTM) for m in net.modules())
    assert net.get_parameter("lstm.weight_ih_l0") is net.lstm.module.weight_ih_l0
    decay = [p for n, p in net.named_parameters() if "weight" in n]
    before = net.lstm.module.weight_ih_l0.detach().clone()
    optimizer = torch.optim.SGD([{"params": decay, "lr": 0.1, "weight_decay": 0.1}])
    clock = EpisodeClock(2)
    y, _ = net.lstm(torch.randn(1, 2, 3), net.lstm.initial_state(2, clock))
    net.head(y).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.lstm.module.weight_ih_l0)
    net.double()
    assert all(p.dtype == torch.float64 for _, p in net.named_parameters())
    bn = track(nn.GRU(3, 4))
    bn.module.register_buffer("scale", torch.ones(2))
    assert [n for n, _ in bn.named_buffers()] == ["scale"]
    assert "scale" in bn.state_dict()
