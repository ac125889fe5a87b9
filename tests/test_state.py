"""Tests for tether.state.RecurrentState."""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from tether import (
    EpisodeClock,
    GraphLeakError,
    LifecycleWarning,
    RecurrentState,
    StaleStateError,
    StateMismatchError,
    mode,
    track,
)


def _filled(clock: EpisodeClock | None = None, *, cell: bool = True, grad: bool = False) -> RecurrentState:
    state = RecurrentState.zeros(2, 4, 3, has_c=cell, clock=clock)
    tensors = tuple(torch.randn_like(t, requires_grad=grad) * 1.0 for t in state.tensors)
    return RecurrentState.from_tensors(tensors, clock=clock)


def test_zeros_is_stamped_with_the_clock() -> None:
    """zeros() makes [L, B, H] tensors with the clock's ids, tick and window."""
    clock = EpisodeClock(4)
    clock.advance([True, False, False, False])
    clock.end_window()
    state = RecurrentState.zeros(2, 4, 3, clock=clock, dtype=torch.float64)
    assert state.h.shape == state.c.shape == (2, 4, 3)
    assert state.dtype == torch.float64
    assert (state.tick, state.window, state.batch_size, state.num_layers, state.hidden_size) == (1, 1, 4, 2, 3)
    assert state.episode_ids.tolist() == [4, 1, 2, 3]


def test_gru_state_has_no_c() -> None:
    """A GRU state holds h only; asking for c says so."""
    state = RecurrentState.zeros(1, 2, 3, has_c=False)
    assert not state.has_c
    with pytest.raises(AttributeError, match="GRU/RNN state"):
        _ = state.c


def test_batch_must_match_clock() -> None:
    """A state whose batch differs from the clock's rows is refused with both numbers."""
    with pytest.raises(StateMismatchError, match="expected batch 3 to match the clock's 3 rows, got batch 2"):
        RecurrentState.zeros(1, 2, 3, clock=EpisodeClock(3))


def test_malformed_tensors_are_refused() -> None:
    """Tensors must be [L, B, H] and h, c must agree."""
    with pytest.raises(StateMismatchError, match=r"\[layers, batch, hidden\]"):
        RecurrentState.from_tensors(torch.zeros(2, 3))
    with pytest.raises(StateMismatchError, match="h and c must share"):
        RecurrentState.from_tensors((torch.zeros(1, 2, 3), torch.zeros(1, 2, 4)))
    with pytest.raises(StateMismatchError, match="expected 1 tensor"):
        RecurrentState.from_tensors([torch.zeros(1, 2, 3)] * 3)


def test_reset_zeroes_masked_rows_and_adopts_ids() -> None:
    """reset(mask) zeroes exactly the masked rows, adopts the clock's ids there, edits nothing in place."""
    clock = EpisodeClock(4)
    state = _filled(clock)
    before = [t.clone() for t in state.tensors]
    done = np.array([False, True, False, True])
    clock.advance(done)
    new = state.reset(done)
    for old, t, t_new in zip(before, state.tensors, new.tensors, strict=True):
        assert_close(t, old)  # original untouched
        assert_close(t_new[:, [0, 2]], old[:, [0, 2]], rtol=0, atol=0)
        assert torch.count_nonzero(t_new[:, [1, 3]]) == 0
    assert new.episode_ids.tolist() == clock.episode_ids.tolist()
    assert state.episode_ids.tolist() == [0, 1, 2, 3]


def test_reset_all_and_reset_none_flagged() -> None:
    """reset() zeroes every row and cuts the graph; an all-False mask changes nothing."""
    clock = EpisodeClock(4)
    state = _filled(clock, grad=True)
    full = state.reset()
    assert not full.has_graph
    assert all(torch.count_nonzero(t) == 0 for t in full.tensors)
    assert state.reset(np.zeros(4, dtype=bool)) is state


def test_reset_refuses_bad_masks() -> None:
    """A malformed reset mask raises ValueError and leaves the state usable."""
    state = _filled(EpisodeClock(4))
    with pytest.raises(ValueError, match=r"RecurrentState.reset\(mask\): expected a bool mask of shape \(4,\)"):
        state.reset(np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="got dtype float64"):
        state.reset(np.ones(4))


def test_detach_and_snapshot() -> None:
    """detach() cuts the graph and adopts the window; snapshot() is a detached, owned copy."""
    clock = EpisodeClock(4)
    state = _filled(clock, grad=True)
    clock.end_window()
    detached = state.detach()
    assert not detached.has_graph
    assert detached.window == 1
    assert detached.graph_steps == 0
    snap = state.snapshot()
    assert snap.is_snapshot
    assert not snap.has_graph
    assert snap.h.data_ptr() != state.h.data_ptr()
    assert_close(snap.h, state.h.detach())


def test_for_buffer_refuses_a_live_graph_by_mode() -> None:
    """Storing a live graph: strict raises, warn warns, off stores detached; never the graph."""
    state = _filled(EpisodeClock(4), grad=True)
    with mode("strict"), pytest.raises(GraphLeakError, match="stored in a buffer") as info:
        state.for_buffer()
    assert "fix: store state.snapshot()" in str(info.value)
    with mode("warn"), pytest.warns(LifecycleWarning, match="stored in a buffer"):
        stored = state.for_buffer()
    assert not stored.has_graph
    with mode("off"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not state.for_buffer().has_graph
    with mode("strict"):
        assert state.detach().for_buffer().is_snapshot


def test_row_selection_and_cat_keep_bookkeeping() -> None:
    """state[rows] keeps the rows' ids and clock rows; cat puts them back together."""
    clock = EpisodeClock(4)
    state = _filled(clock)
    picked = state[[3, 1]]
    assert picked.batch_size == 2
    assert picked.episode_ids.tolist() == [3, 1]
    assert picked.rows().tolist() == [3, 1]
    assert_close(picked.h, state.h[:, [3, 1]])
    by_mask = state[np.array([True, False, False, True])]
    assert by_mask.rows().tolist() == [0, 3]
    whole = RecurrentState.cat([state[[0, 1]], state[[2, 3]]])
    assert_close(whole.c, state.c)
    assert whole.episode_ids.tolist() == [0, 1, 2, 3]
    assert state[[2]].batch_size == 1
    assert state.select_rows(2).batch_size == 1


def test_cat_refuses_mismatched_states() -> None:
    """States of different ticks (or kinds) cannot be concatenated."""
    clock = EpisodeClock(2)
    a = RecurrentState.zeros(1, 2, 3, clock=clock)
    clock.advance([False, False])
    b = RecurrentState.zeros(1, 2, 3, clock=clock)
    with pytest.raises(StateMismatchError, match="one clock, tick and kind; got ticks 0 and 1"):
        RecurrentState.cat([a, b])
    with pytest.raises(ValueError, match="at least one state"):
        RecurrentState.cat([])


def test_to_changes_dtype_and_keeps_bookkeeping() -> None:
    """to() casts the tensors and keeps ticks and ids."""
    clock = EpisodeClock(4)
    state = _filled(clock).to(torch.float64)
    assert state.dtype == torch.float64
    assert state.tick == 0
    assert state.episode_ids.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("cell", [True, False])
def test_pickle_and_state_dict_round_trip(cell: bool) -> None:
    """Pickle and state_dict round-trips keep tensors and bookkeeping, never a graph."""
    clock = EpisodeClock(4)
    state = _filled(clock, cell=cell, grad=True)
    copy_clock, copy = pickle.loads(pickle.dumps((clock, state)))
    assert copy.clock is copy_clock
    assert not copy.has_graph
    assert_close(copy.h, state.h.detach())
    assert copy.episode_ids.tolist() == state.episode_ids.tolist()
    rebuilt = RecurrentState.from_state_dict(state.state_dict(), clock=clock)
    assert rebuilt.clock is clock
    assert rebuilt.tick == state.tick
    for a, b in zip(rebuilt.tensors, state.tensors, strict=True):
        assert_close(a, b.detach())
    with pytest.raises(ValueError, match="missing keys"):
        RecurrentState.from_state_dict({"tensors": []})


# ------------------------------------------------------------------------------------------------
# the transition rules, one test per rule
def test_state_is_frozen_and_built_by_keyword() -> None:
    """No field can be assigned, and the constructor takes keywords only."""
    state = RecurrentState.zeros(1, 2, 3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.tick = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        RecurrentState(state.tensors)  # type: ignore[misc]


def test_advanced_moves_the_tick_and_keeps_ids_and_rows() -> None:
    """A step of T moves the tick T ahead; episode ids, rows and the snapshot flag stay."""
    clock = EpisodeClock(4)
    state = RecurrentState.zeros(1, 4, 3, clock=clock)[[1, 3]]
    after = state.advanced(state.tensors, 5)
    assert after.tick == state.tick + 5
    assert after.episode_ids.tolist() == [1, 3]
    assert after.env_rows.tolist() == [1, 3]
    assert after.is_snapshot == state.is_snapshot


def test_advanced_graph_age_grows_only_while_a_graph_is_carried() -> None:
    """graph_steps grows by the steps taken while the new tensors carry a graph, and is 0 otherwise."""
    state = RecurrentState.zeros(1, 2, 3, clock=EpisodeClock(2))
    live = tuple(t + torch.ones(1, requires_grad=True) for t in state.tensors)
    once = state.advanced(live, 3)
    assert once.graph_steps == 3
    assert once.advanced(live, 2).graph_steps == 5
    assert once.advanced(tuple(t.detach() for t in live), 2).graph_steps == 0


def test_advanced_window_is_where_the_graph_started() -> None:
    """A graph that carries on keeps its window; a new graph (or none) takes the clock's window."""
    clock = EpisodeClock(2)
    state = RecurrentState.zeros(1, 2, 3, clock=clock)
    live = tuple(t + torch.ones(1, requires_grad=True) for t in state.tensors)
    started = state.advanced(live, 1)
    clock.end_window()
    assert started.advanced(live, 1).window == 0  # the graph carries on from window 0
    assert started.detach().advanced(live, 1).window == 1  # cut, then a new graph in window 1
    assert started.advanced(tuple(t.detach() for t in live), 1).window == 1  # no graph: now


def test_advanced_verified_is_set_only_by_a_check() -> None:
    """verified becomes the clock's renewal count when the step checked the ids, else it is kept."""
    clock = EpisodeClock(2)
    state = RecurrentState.zeros(1, 2, 3, clock=clock)
    clock.advance(np.array([True, False]))
    fresh = state.reset(np.array([True, False]))
    assert fresh.advanced(fresh.tensors, 1, ids_verified=True).verified == clock.renewals
    assert state.advanced(state.tensors, 1).verified == state.verified


def test_advanced_marks_a_bootstrap_read_spent() -> None:
    """Only the result of a bootstrap read is spent."""
    state = RecurrentState.zeros(1, 2, 3)
    assert state.advanced(state.tensors, 1, bootstrap=True).spent
    assert not state.advanced(state.tensors, 1).spent


def test_split_and_stack_layers_round_trip() -> None:
    """split_layers(k) then stack_layers gives back the tensors and bookkeeping."""
    clock = EpisodeClock(4)
    state = _filled(clock)
    actor, critic = state.split_layers(1)
    assert actor.num_layers == critic.num_layers == 1
    assert_close(actor.h, state.h[:1])
    assert_close(critic.c, state.c[1:])
    joined = RecurrentState.stack_layers((actor, critic))
    for a, b in zip(joined.tensors, state.tensors, strict=True):
        assert torch.equal(a, b)
    assert (joined.tick, joined.window, joined.verified) == (state.tick, state.window, state.verified)
    with pytest.raises(ValueError, match=r"expected 0 < cut < 2, got 2"):
        state.split_layers(2)


def test_joined_states_are_as_old_as_their_oldest_part() -> None:
    """stack_layers and cat take the most graph steps, the earliest window, the least verification."""
    clock = EpisodeClock(2)
    base = RecurrentState.zeros(1, 2, 3, clock=clock)
    live = tuple(t + torch.ones(1, requires_grad=True) for t in base.tensors)
    old = base.advanced(live, 2)
    clock.end_window()
    old = old.advanced(live, 2)  # 4 graph steps, begun in window 0
    dead = tuple(t.detach() for t in live)
    young = base.advanced(dead, 2).advanced(live, 2)  # 2 graph steps, begun in window 1
    joined = RecurrentState.stack_layers((old, young))
    assert (joined.graph_steps, joined.window, joined.verified) == (4, 0, min(old.verified, young.verified))
    spent = young.advanced(young.tensors, 0, bootstrap=True)
    assert RecurrentState.stack_layers((old, spent)).spent


def test_stack_layers_refuses_other_rows() -> None:
    """Layers of different rows cannot be stacked."""
    state = RecurrentState.zeros(1, 4, 3, clock=EpisodeClock(4))
    with pytest.raises(StateMismatchError, match="expected states of the same rows"):
        RecurrentState.stack_layers((state[[0, 1]], state[[2, 3]]))


def test_stack_snapshots_picks_each_sequence_start() -> None:
    """Sequence j starts from row rows[j] of snapshot chunks[j], as an unchecked snapshot."""
    snaps = [RecurrentState.from_tensors((torch.full((1, 3, 2), float(10 * k)) + torch.arange(3.0).view(1, 3, 1),))
             .snapshot() for k in range(2)]
    picked = RecurrentState.stack_snapshots(snaps, torch.tensor([1, 0, 1]), torch.tensor([2, 0, 1]))
    assert picked.is_snapshot
    assert picked.clock is None
    assert picked.h[0, :, 0].tolist() == [12.0, 0.0, 11.0]
    with pytest.raises(StateMismatchError, match="one kind and shape"):
        RecurrentState.stack_snapshots([snaps[0], RecurrentState.zeros(1, 4, 2, has_c=False)],
                                       torch.tensor([0]), torch.tensor([0]))


# ------------------------------------------------------------------------------------------------
# never a tuple by accident
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_unpacking_and_iteration_are_refused_at_every_batch(batch: int) -> None:
    """h, c = state (which walked rows) raises at B = 1, 2, 3, naming state.h / state.c."""
    state = RecurrentState.zeros(1, batch, 3)
    with pytest.raises(TypeError, match=r"not an \(h, c\) tuple.*state\.h, state\.c.*select_rows"):
        _h, _c = state  # type: ignore[misc]
    with pytest.raises(TypeError, match="unpacking or iterating it is refused"):
        (_only,) = state  # type: ignore[misc]
    with pytest.raises(TypeError, match="walk the batch rows"):
        list(state)
    with pytest.raises(TypeError, match=r"len\(state\).*state.batch_size"):
        len(state)
    assert bool(state)


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("index", [0, 1, -1, slice(0, 1), (0, slice(None))])
def test_tuple_style_indexing_is_refused(batch: int, index: object) -> None:
    """state[0], state[:1] and state[0, :] read as tuple indices: refused with the right spellings."""
    state = RecurrentState.zeros(1, batch, 3)
    with pytest.raises(TypeError, match=r"not an \(h, c\) tuple.*state\.h / state\.c.*select_rows\(rows\)"):
        state[index]


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_rows_are_selected_by_name_or_by_array(batch: int) -> None:
    """select_rows takes ints, slices, arrays and masks; state[array] and state[mask] stay row selection."""
    clock = EpisodeClock(batch)
    state = _filled_batch(clock, batch)
    last = state.select_rows(batch - 1)
    assert last.batch_size == 1
    assert_close(last.h, state.h[:, batch - 1 :])
    assert state.select_rows(slice(0, batch)).batch_size == batch
    assert state[[0]].env_rows.tolist() == [0]
    mask = np.zeros(batch, dtype=bool)
    mask[-1] = True
    assert state[mask].env_rows.tolist() == [batch - 1]
    assert state[torch.tensor([0])].batch_size == 1


def _filled_batch(clock: EpisodeClock, batch: int) -> RecurrentState:
    state = RecurrentState.zeros(2, batch, 3, clock=clock)
    return RecurrentState.from_tensors(tuple(torch.randn_like(t) for t in state.tensors), clock=clock)


def test_tensor_like_conveniences() -> None:
    """clone(), shape, device and dtype behave as a porting user expects of tensors."""
    state = _filled(EpisodeClock(4), grad=True)
    copy = state.clone()
    assert copy.shape == state.h.shape == (2, 4, 3)
    assert (copy.device, copy.dtype) == (state.h.device, state.h.dtype)
    assert copy.h is not state.h
    assert_close(copy.c, state.c)
    assert copy.has_graph  # clone keeps the graph, as Tensor.clone does; snapshot() detaches
    assert (copy.tick, copy.episode_ids.tolist()) == (state.tick, state.episode_ids.tolist())


# ------------------------------------------------------------------------------------------------
# copies, binding, serialisation
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_checked_against_its_frozen_clock_says_it_is_a_copy(how: str) -> None:
    """A state copied alone carries a copy of its clock that does not move: the check says so and
    names state.bind(clock), not "the clock was not advanced"."""
    core = track(nn.LSTM(3, 4))
    clock = EpisodeClock(2)
    state = core.initial_state(2, clock)
    copied = copy.deepcopy(state) if how == "deepcopy" else pickle.loads(pickle.dumps(state))
    with mode("strict"):
        _, copied = core(torch.randn(1, 2, 3), copied)
        clock.advance(np.zeros(2, dtype=bool))
        with pytest.raises(StaleStateError, match=r"(?s)a copy .*state\.bind\(clock\)") as info:
            core(torch.randn(1, 2, 3), copied)
        assert info.value.kind == "copied-state"
        assert "was not advanced" not in str(info.value)
        core(torch.randn(1, 2, 3), copied.bind(clock))  # bound to the live clock, it runs


def test_a_state_copied_with_its_clock_keeps_working() -> None:
    """Copying the clock and the state together gives a pair that runs on, checked."""
    core = track(nn.GRU(3, 4))
    clock = EpisodeClock(2)
    state = core.initial_state(2, clock)
    clock2, state2 = copy.deepcopy((clock, state))
    with mode("strict"):
        for _ in range(3):
            _, state2 = core(torch.randn(1, 2, 3), state2)
            clock2.advance(np.array([True, False]))
            state2 = state2.reset(np.array([True, False]))
        _, state2 = core(torch.randn(1, 2, 3), state2)
        with pytest.raises(StaleStateError, match="the clock was not advanced"):
            core(torch.randn(1, 2, 3), state2)


def test_bind_checks_rows_tick_and_ids() -> None:
    """bind() refuses a clock the state cannot belong to, in one line each."""
    clock = EpisodeClock(3)
    state = RecurrentState.zeros(1, 3, 2, clock=clock)
    with pytest.raises(StateMismatchError, match="expected a clock of 3 rows"):
        state.bind(EpisodeClock(2))
    ahead = EpisodeClock(3)
    ahead.advance(np.zeros(3, dtype=bool))
    with pytest.raises(StaleStateError, match="state is for tick 0, the clock is at tick 1"):
        state.bind(ahead)
    assert state.snapshot().bind(ahead).clock is ahead  # a snapshot may be older than the clock
    later = EpisodeClock(3)
    later.advance(np.ones(3, dtype=bool))
    newer = RecurrentState.zeros(1, 3, 2, clock=later)
    with pytest.raises(StateMismatchError, match=r"episode ids .* the clock has not given"):
        newer.bind(clock)
    with pytest.raises(TypeError, match="expected an EpisodeClock"):
        state.bind(None)  # type: ignore[arg-type]
    assert RecurrentState.zeros(1, 2, 2).bind(EpisodeClock(2)).tick == 0  # an unchecked state joins


def test_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    """state_dict holds tensors and plain Python only: it round-trips under weights_only=True."""
    clock = EpisodeClock(4)
    state = _filled(clock, cell=True, grad=False)[[1, 3]].snapshot()
    path = tmp_path / "state.pt"
    torch.save(state.state_dict(), path)
    data = torch.load(path, weights_only=True)
    assert not any(isinstance(v, np.ndarray) for v in data.values())
    rebuilt = RecurrentState.from_state_dict(data, clock=clock)
    assert rebuilt.episode_ids.tolist() == state.episode_ids.tolist()
    assert rebuilt.rows().tolist() == [1, 3]
    assert (rebuilt.tick, rebuilt.is_snapshot) == (state.tick, True)
    for a, b in zip(rebuilt.tensors, state.tensors, strict=True):
        assert_close(a, b)


def test_has_c_names_the_kind() -> None:
    """has_c is the one name for "an (h, c) pair": on zeros() and on the state."""
    assert RecurrentState.zeros(1, 2, 3, has_c=False).has_c is False
    assert RecurrentState.zeros(1, 2, 3).has_c is True
    with pytest.raises(TypeError):
        RecurrentState.zeros(1, 2, 3, cell=False)  # type: ignore[call-arg]
