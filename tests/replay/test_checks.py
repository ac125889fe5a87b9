"""The alignment checks: a correct buffer is silent (property), each injected fault names itself."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import mode
from tether.errors import GraphLeakError, LifecycleWarning, ReplayAlignmentError
from tether.replay import ReplayBatch, SequenceReplay, check_sequences

from .helpers import assert_row_matches, collect, expected_sequences, live_sequences

SPECS = [{"length": 3, "ending": "truncate"}, {"length": 2, "ending": "terminate"},
         {"length": 4, "ending": "truncate"}]


def _replay_and_batch() -> tuple[SequenceReplay, ReplayBatch]:
    """Sequences of 8 steps over 2-4 step episodes: every row crosses episode ends."""
    replay = SequenceReplay(30, 3, seq_len=6, burn_in=2, period=4)
    collect(replay, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=10, rounds=3)
    batch = replay.sample(16, generator=torch.Generator().manual_seed(0))
    assert batch.episode_starts[1:].any()
    return replay, batch


def _raises(batch: ReplayBatch, kind: str) -> ReplayAlignmentError:
    with pytest.raises(ReplayAlignmentError) as info:
        check_sequences(batch)
    assert info.value.kind == kind, str(info.value)
    return info.value


def test_correct_batch_is_silent_and_public_check_agrees() -> None:
    """The batch sample() returned passes check_sequences in strict mode."""
    _, batch = _replay_and_batch()
    check_sequences(batch)


def test_state_stored_one_step_late_in_storage() -> None:
    """Stored states stamped one tick after their first step: replay-state-tick, off by +1."""
    replay, _ = _replay_and_batch()
    assert replay._table is not None
    replay._table.ints["tick"][replay._table.live] += 1
    with pytest.raises(ReplayAlignmentError, match=r"off by \[1\]\): stored one step late") as info:
        replay.sample(4, generator=torch.Generator().manual_seed(0))
    assert info.value.kind == "replay-state-tick"
    assert info.value.off_by == [1, 1, 1, 1]  # type: ignore[attr-defined]


def test_state_stored_one_step_early_in_a_batch() -> None:
    """The same fault on a built batch, one tick early: off by -1."""
    _, batch = _replay_and_batch()
    state = attrs.evolve(batch.initial_state, row_ticks=batch.initial_state.ticks() - 1)
    error = _raises(batch._replace(initial_state=state), "replay-state-tick")
    assert "stored one step early" in str(error)


def test_state_of_another_episode() -> None:
    """A stored state whose episode id is not the first step's (no start there): replay-state-episode."""
    _, batch = _replay_and_batch()
    ids = batch.initial_state.episode_ids
    assert ids is not None
    state = attrs.evolve(batch.initial_state, episode_ids=ids + 1000)
    error = _raises(batch._replace(initial_state=state), "replay-state-episode")
    assert error.rows == np.flatnonzero(~batch.episode_starts[0]).tolist()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("shift", "mistake"), [(1, "shifted+1"), (-1, "shifted-1")])
def test_starts_shifted(shift: int, mistake: str) -> None:
    """Starts moved a step late or early: replay-starts naming the shift."""
    _, batch = _replay_and_batch()
    starts = np.zeros_like(batch.episode_starts)
    if shift == 1:
        starts[1:] = batch.episode_starts[:-1]
    else:
        starts[:-1] = batch.episode_starts[1:]
    error = _raises(batch._replace(episode_starts=starts), "replay-starts")
    assert error.mistake == mistake  # type: ignore[attr-defined]


def test_starts_zeroed() -> None:
    """All starts zero: replay-starts all-zero, with (batch row, tick) pairs."""
    _, batch = _replay_and_batch()
    error = _raises(batch._replace(episode_starts=np.zeros_like(batch.episode_starts)), "replay-starts")
    assert error.mistake == "all-zero"  # type: ignore[attr-defined]
    assert "they are all zero" in str(error)
    t, b = np.nonzero(batch.episode_starts[1:] & batch.mask[1:].numpy())
    assert sorted(error.pairs) == sorted(zip(b.tolist(), batch.ticks[t + 1, b].tolist(), strict=True))  # type: ignore[attr-defined]


def test_spliced_from_two_episodes_without_a_start() -> None:
    """A row's second half taken from another env's sequence of the same ticks: replay-splice."""
    _, batch = _replay_and_batch()
    first = batch.ticks[0]
    b, other = next((i, j) for i in range(16) for j in range(16)
                    if first[i] == first[j] and batch.initial_state.rows()[i] != batch.initial_state.rows()[j])
    k = next(k for k in range(2, 7) if not batch.episode_starts[k, other]
             and batch.episode_ids[k, other] != batch.episode_ids[k - 1, b])
    ids, starts = batch.episode_ids.copy(), batch.episode_starts.copy()
    ids[k:, b], starts[k:, b] = ids[k:, other], starts[k:, other]
    error = _raises(batch._replace(episode_ids=ids, episode_starts=starts), "replay-splice")
    assert "spliced from two episodes" in str(error)
    assert error.rows == [b]  # type: ignore[attr-defined]


def test_ticks_that_jump() -> None:
    """Ticks that skip inside a sequence: replay-splice naming the (row, tick)."""
    _, batch = _replay_and_batch()
    ticks = batch.ticks.copy()
    ticks[4:, 3] += 7
    error = _raises(batch._replace(ticks=ticks), "replay-splice")
    assert error.pairs == [(3, int(ticks[4, 3]))]  # type: ignore[attr-defined]
    assert "jump inside the sequence" in str(error)


def test_warn_mode_warns_and_off_mode_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warn mode: a LifecycleWarning per kind; off mode: the check never runs."""
    replay, _ = _replay_and_batch()
    assert replay._table is not None
    replay._table.ints["tick"][replay._table.live] += 1
    with mode("warn"), pytest.warns(LifecycleWarning, match="stored one step late"):
        replay.sample(4, generator=torch.Generator().manual_seed(0))

    def refuse(*args: object) -> None:
        raise AssertionError("the check ran in off mode")

    monkeypatch.setattr("tether.replay.buffer.check_host", refuse)
    with mode("off"):
        replay.sample(4, generator=torch.Generator().manual_seed(0))
        check_sequences(replay.sample(4, generator=torch.Generator().manual_seed(0)))


def test_a_state_with_a_graph_is_refused_and_nothing_is_written() -> None:
    """A state carrying an autograd graph at a sequence start: GraphLeakError, the buffer unchanged."""
    source = SequenceReplay(4, 3, seq_len=2)
    rec, _ = collect(source, mode=AutoresetMode.SAME_STEP, specs=SPECS, num_steps=1, rounds=1)
    step = rec.steps[0]
    live = attrs.evolve(step.state, tensors=tuple(t.clone().requires_grad_() * 2 for t in step.state.tensors))
    replay = SequenceReplay(4, 3, seq_len=2)
    with pytest.raises(GraphLeakError, match="stored in a buffer"):
        replay.write(step._replace(state=live))
    assert (replay.nbytes, len(replay)) == (0, 0)


@st.composite
def _setups(draw: st.DrawFn) -> dict[str, object]:
    envs = draw(st.integers(1, 3))
    specs = [{"length": draw(st.integers(1, 5)), "ending": draw(st.sampled_from(["truncate", "terminate"]))}
             for _ in range(envs)]
    seq_len, burn_in = draw(st.integers(1, 6)), draw(st.integers(0, 3))
    return {"specs": specs, "mode": draw(st.sampled_from([AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])),
            "capacity": draw(st.integers(1, 20)), "seq_len": seq_len, "burn_in": burn_in,
            "period": draw(st.integers(1, seq_len + burn_in)), "cut": draw(st.booleans()),
            "num_steps": draw(st.integers(1, 9)), "rounds": draw(st.integers(1, 3))}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=_setups())
def test_a_correct_buffer_is_silent_and_matches_the_stream(setup: dict[str, object]) -> None:
    """Random episodes, modes and settings: strict sampling never raises; every row equals the stream."""
    specs = setup["specs"]
    assert isinstance(specs, list)
    replay = SequenceReplay(setup["capacity"], len(specs), seq_len=setup["seq_len"],  # type: ignore[arg-type]
                            burn_in=setup["burn_in"], period=setup["period"],  # type: ignore[arg-type]
                            cut_at_episode_end=bool(setup["cut"]))
    rec, _ = collect(replay, mode=setup["mode"], specs=specs, num_steps=setup["num_steps"],  # type: ignore[arg-type]
                     rounds=setup["rounds"])  # type: ignore[arg-type]
    stream = expected_sequences(rec.column("episode_starts"), length=replay.length, period=replay.period,
                                cut=replay.cut_at_episode_end)
    live = live_sequences(replay, stream, len(rec.steps))
    assert len(replay) == len(live)
    if not live:
        return
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = replay.sample(8, generator=generator)
        check_sequences(batch)
        for b in range(8):
            assert_row_matches(batch, b, rec, length=replay.length)
        replay.episode_history(batch, max_steps=6)
