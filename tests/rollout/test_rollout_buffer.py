"""Tests for tether.rollout.buffer and tether.rollout.gae: GAE by hand, sequence minibatches, replay."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from tether import (
    EpisodeClock,
    GraphLeakError,
    LifecycleWarning,
    RecurrentState,
    ReplayAlignmentError,
    StateMismatchError,
    mode,
)
from tether.rollout import RecurrentRolloutBuffer, RolloutCollector, TrackedVectorEnv, compute_gae

from .helpers import TWO_ENVS, CounterPolicy, LSTMPolicy, make_vec

F, T = False, True


def test_gae_hand_computed() -> None:
    """γ = λ = 0.5 over 4 steps, a truncation + autoreset in column 0 and a termination in column 1."""
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    values = torch.tensor([[1.0, 0.5], [1.0, 0.5], [2.0, 0.5], [2.0, 0.5]])
    terminated = torch.tensor([[F, F], [F, T], [F, F], [F, F]])
    truncated = torch.tensor([[F, F], [T, F], [F, F], [F, F]])
    # The bootstrap of a terminated step (100 here) must be ignored.
    bootstrap = torch.tensor([[0.0, 0.0], [4.0, 100.0], [0.0, 0.0], [0.0, 0.0]])
    valid = torch.tensor([[T, T], [T, T], [F, T], [T, T]])
    last = torch.tensor([8.0, 2.0])
    adv, ret = compute_gae(rewards, values, terminated, truncated, bootstrap, last, valid=valid,
                           gamma=0.5, gae_lambda=0.5)
    # Column 0: t3: 4 + .5*8 - 2 = 6. t2 invalid: 0. t1 truncated: 2 + .5*4 - 1 = 3 (no carry).
    #           t0: (1 + .5*1 - 1) + .25*3 = 1.25.
    # Column 1: t3: 1 + .5*2 - .5 = 1.5. t2: (1 + .25 - .5) + .25*1.5 = 1.125. t1 terminated:
    #           1 - .5 = .5. t0: .75 + .25*.5 = .875.
    assert adv.T.tolist() == [[1.25, 3.0, 0.0, 6.0], [0.875, 0.5, 1.125, 1.5]]
    assert ret.T.tolist() == [[2.25, 4.0, 0.0, 8.0], [1.375, 1.0, 1.625, 2.0]]


def _reference_gae(r: list[float], v: list[float], term: list[bool], trunc: list[bool], boot: list[float],
                   valid: list[bool], last: float, gamma: float, lam: float) -> list[float]:
    """One env, written as the textbook recursion over episodes."""
    adv = [0.0] * len(r)
    future = 0.0
    for t in reversed(range(len(r))):
        if not valid[t]:
            future = 0.0
            continue
        if term[t]:
            nxt, carry = 0.0, 0.0
        elif trunc[t]:
            nxt, carry = boot[t], 0.0
        else:
            nxt, carry = (v[t + 1] if t + 1 < len(r) else last), future
        future = r[t] + gamma * nxt - v[t] + gamma * lam * carry
        adv[t] = future
    return adv


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_gae_matches_the_textbook_recursion(data: st.DataObject) -> None:
    """On random rollouts (with autoreset-step patterns) GAE equals a plain per-env recursion."""
    n = data.draw(st.integers(1, 12))
    floats = st.floats(-5, 5, allow_nan=False, width=32)
    r = data.draw(st.lists(floats, min_size=n, max_size=n))
    v = data.draw(st.lists(floats, min_size=n, max_size=n))
    boot = data.draw(st.lists(floats, min_size=n, max_size=n))
    kinds = data.draw(st.lists(st.sampled_from(["go", "term", "trunc"]), min_size=n, max_size=n))
    term = [k == "term" for k in kinds]
    trunc = [k == "trunc" for k in kinds]
    valid = [True] + [not (term[t - 1] or trunc[t - 1]) or data.draw(st.booleans()) for t in range(1, n)]
    last = data.draw(floats)
    gamma, lam = data.draw(st.floats(0, 1)), data.draw(st.floats(0, 1))
    col = lambda xs, dt=torch.float32: torch.tensor(xs, dtype=dt).view(n, 1)  # noqa: E731
    adv, ret = compute_gae(col(r), col(v), col(term, torch.bool), col(trunc, torch.bool), col(boot),
                           torch.tensor([last]), valid=col(valid, torch.bool), gamma=gamma, gae_lambda=lam)
    want = _reference_gae(r, v, term, trunc, boot, valid, last, gamma, lam)
    assert_close(adv[:, 0], torch.tensor(want), atol=1e-4, rtol=1e-4)
    assert_close(ret[:, 0], torch.where(col(valid, torch.bool)[:, 0], adv[:, 0] + col(v)[:, 0], 0.0))


def test_gae_rejects_bad_inputs() -> None:
    """Shapes and γ / λ are checked with messages that say what was expected."""
    z = torch.zeros(3, 2)
    b = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"expected values shaped \[3, 2\], got \[3, 1\]"):
        compute_gae(z, torch.zeros(3, 1), b, b, z, torch.zeros(2))
    with pytest.raises(ValueError, match=r"gamma and gae_lambda in \[0, 1\]"):
        compute_gae(z, z, b, b, z, torch.zeros(2), gamma=1.5)


def _collected(num_steps: int, seq_len: int | None, policy: Any = None,
               mode_: AutoresetMode = AutoresetMode.NEXT_STEP) -> RecurrentRolloutBuffer:
    venv = TrackedVectorEnv(make_vec("sync", mode_, TWO_ENVS))
    buf = RolloutCollector(venv, policy or CounterPolicy(), num_steps=num_steps, seq_len=seq_len).collect()
    venv.close()
    buf.compute_advantages(gamma=0.9, gae_lambda=0.8)
    return buf


def test_chunked_minibatches_with_snapshots_and_padding() -> None:
    """6 steps in chunks of 4: snapshots at steps 0 and 4, the second chunk padded by 2."""
    buf = _collected(6, 4)
    assert buf.num_chunks == 2
    # NEXT_STEP table: at step 4 env 0 is fed (1, 1) with h = 1, env 1 (1, 0) right after its reset.
    snaps = buf.initial_states
    assert snaps[0] is not None
    assert snaps[1] is not None
    assert snaps[0].h[0, :, 0].tolist() == [0, 0]
    assert snaps[1].h[0, :, 0].tolist() == [1, 0]
    (mb,) = list(buf.minibatches(1, generator=torch.Generator().manual_seed(0)))
    assert mb.obs.shape == (4, 4, 2)
    assert mb.episode_starts.shape == mb.loss_mask.shape == (4, 4)
    assert mb.initial_state.h.shape == (1, 4, 1)
    for j in range(4):
        env, start = int(mb.env_rows[j]), int(mb.chunk_starts[j])
        real = min(4, 6 - start)
        assert_close(mb.obs[:real, j], buf.obs[start:start + real, env])
        assert mb.episode_starts[:, j].tolist() == (buf.episode_starts[start:start + real, env].tolist()
                                                   + [True] * (4 - real))  # padding restarts
        assert mb.loss_mask[:, j].tolist() == (buf.valid[start:start + real, env].tolist()
                                              + [False] * (4 - real))
        assert mb.initial_state.h[0, j, 0].item() == snaps[start // 4].h[0, env, 0].item()
        # Padding repeats the last real step (its action stays legal) and is masked off.
        assert_close(mb.actions[real:, j], buf.actions[5, env].expand(4 - real))


def test_whole_rollout_sequences_and_reproducible_shuffle() -> None:
    """Without chunks a sequence is an env's whole rollout; a seeded generator fixes the order."""
    buf = _collected(6, None)
    order = [mb.env_rows.tolist() for mb in buf.minibatches(2, generator=torch.Generator().manual_seed(3))]
    again = [mb.env_rows.tolist() for mb in buf.minibatches(2, generator=torch.Generator().manual_seed(3))]
    assert order == again
    assert sorted(row for group in order for row in group) == [0, 1]
    mb = next(buf.minibatches(1))
    assert mb.obs.shape == (6, 2, 2)
    assert bool(mb.loss_mask.eq(torch.from_numpy(buf.valid[:, mb.env_rows.numpy()])).all())
    assert mb.action_masks is None
    seen = {tuple(mb.env_rows.tolist()) for seed in range(8)
            for mb in buf.minibatches(1, generator=torch.Generator().manual_seed(seed))}
    assert seen == {(0, 1), (1, 0)}


@pytest.mark.parametrize("mode_", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.name)
@pytest.mark.parametrize("seq_len", [None, 3, 4])
def test_replay_reproduces_collection(mode_: AutoresetMode, seq_len: int | None) -> None:
    """evaluate_actions from the stored snapshots and starts gives the collection-time numbers."""
    policy = LSTMPolicy()
    buf = _collected(10, seq_len, policy, mode_)
    for mb in buf.minibatches(2, generator=torch.Generator().manual_seed(0)):
        out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state, mb.action_masks)
        m = mb.loss_mask
        assert_close(out.value[m], mb.values[m], atol=1e-5, rtol=1e-5)
        assert_close(out.log_prob[m], mb.log_probs[m], atol=1e-5, rtol=1e-5)
        out.value[m].sum().backward()  # a replay builds a graph only now, for training


def test_storing_a_state_with_a_graph() -> None:
    """Strict mode refuses a live graph (nothing stored); warn mode warns and stores it detached."""
    clock = EpisodeClock(2)
    live = RecurrentState.from_tensors((torch.ones(1, 2, 3, requires_grad=True) * 2,), clock=clock)
    buf = RecurrentRolloutBuffer(2, 2)
    args = {"obs": torch.zeros(2, 2), "actions": torch.zeros(2, dtype=torch.int64), "log_probs": torch.zeros(2),
            "values": torch.zeros(2), "rewards": np.zeros(2), "terminated": [F, F], "truncated": [F, F],
            "episode_starts": [T, T]}
    with pytest.raises(GraphLeakError, match="stored in a buffer"):
        buf.add(**args, state=live)
    assert buf.pos == 0
    with mode("warn"), pytest.warns(LifecycleWarning, match="stored in a buffer"):
        buf.add(**args, state=live)
    assert buf.pos == 1
    stored = buf.initial_states[0]
    assert stored is not None
    assert not stored.has_graph
    assert stored.is_snapshot


def test_add_validates_and_is_all_or_nothing() -> None:
    """Wrong shapes raise naming expected and got; a full buffer and an early finish are refused."""
    state = RecurrentState.zeros(1, 2, 3)
    buf = RecurrentRolloutBuffer(1, 2)
    ok: dict[str, Any] = {"obs": torch.zeros(2, 2), "actions": torch.zeros(2, dtype=torch.int64),
          "log_probs": torch.zeros(2), "values": torch.zeros(2), "rewards": np.zeros(2),
          "terminated": [F, F], "truncated": [F, F], "episode_starts": [T, T]}
    with pytest.raises(ValueError, match=r"expected rewards shaped \[2\] \(one per env\), got \[3\]"):
        buf.add(**{**ok, "rewards": np.zeros(3)}, state=state)
    with pytest.raises(ValueError, match=r"expected obs with 2 rows"):
        buf.add(**{**ok, "obs": torch.zeros(3, 2)}, state=state)
    with pytest.raises(StateMismatchError, match="with batch 2"):
        buf.add(**ok, state=RecurrentState.zeros(1, 3, 3))
    assert buf.pos == 0
    with pytest.raises(RuntimeError, match=r"only 0 of 1 steps"):
        buf.finish(torch.zeros(2))
    buf.add(**ok, state=state)
    with pytest.raises(RuntimeError, match="full"):
        buf.add(**ok, state=state)
    with pytest.raises(RuntimeError, match=r"call finish"):
        buf.compute_advantages()
    buf.finish(torch.zeros(2))
    with pytest.raises(RuntimeError, match=r"compute_advantages\(\) first"):
        next(buf.minibatches(1))
    buf.compute_advantages()
    with pytest.raises(ValueError, match=r"num_minibatches in \[1, 2\]"):
        next(buf.minibatches(3))
    buf.clear()
    with pytest.raises(ValueError, match="does not match the storage"):
        buf.add(**{**ok, "obs": torch.zeros(2, 5)}, state=state)


def test_storage_is_reused_across_rollouts() -> None:
    """A second collect() writes into the same tensors (flat memory)."""
    venv = TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS))
    collector = RolloutCollector(venv, CounterPolicy(), num_steps=4)
    first = collector.collect().rewards
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = collector.collect().rewards
    assert first.data_ptr() == second.data_ptr()
    venv.close()


@pytest.mark.parametrize("mode_", list(AutoresetMode), ids=lambda m: m.name)
def test_long_strict_run_with_one_step_episodes(mode_: AutoresetMode) -> None:
    """Episodes of 1, 2 and 5 steps, three rollouts in strict mode: no false positive, exact replay."""
    specs = [{"length": 1}, {"length": 2, "ending": "terminate"}, {"length": 5}]
    policy = LSTMPolicy()
    with TrackedVectorEnv(make_vec("sync", mode_, specs)) as venv:
        collector = RolloutCollector(venv, policy, num_steps=20, seq_len=6)
        lengths: list[int] = []
        for _ in range(3):
            buf = collector.collect()
            lengths += collector.episode_lengths
            buf.compute_advantages()
            for mb in buf.minibatches(3, generator=torch.Generator().manual_seed(1)):
                out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state)
                assert_close(out.value[mb.loss_mask], mb.values[mb.loss_mask], atol=1e-5, rtol=1e-5)
            # Env 0's one-step episodes: every step starts one; in NEXT_STEP every other step is
            # the ignored autoreset step (invalid, not a start), so starts and valid alternate.
            starts = buf.episode_starts[:, 0]
            if mode_ is AutoresetMode.NEXT_STEP:
                assert starts.tolist() == buf.valid[:, 0].tolist()
                assert starts.tolist() == [True, False] * 10
            else:
                assert bool(starts.all())
        assert set(lengths) == {1, 2, 5}


@pytest.mark.parametrize("mode_", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.name)
def test_the_buffer_replay_is_checked(mode_: AutoresetMode) -> None:
    """A minibatch replay with zeroed starts raises through evaluate_actions; the stored one is silent."""
    policy = LSTMPolicy()
    specs: list[dict[str, Any]] = [{"length": 2}, {"length": 3, "ending": "terminate"}]
    with TrackedVectorEnv(make_vec("sync", mode_, specs)) as venv, mode("strict"):
        buf = RolloutCollector(venv, policy, num_steps=12, seq_len=4).collect()
        buf.compute_advantages()
        for mb in buf.minibatches(2):
            policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state)
        (mb,) = list(buf.minibatches(1))
        with pytest.raises(ReplayAlignmentError, match="episode_starts miss"):
            policy.evaluate_actions(mb.obs, mb.actions, np.zeros_like(mb.episode_starts), mb.initial_state)
