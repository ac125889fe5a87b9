"""SequenceReplay as a collector's sink: sequences equal the recorded stream, eviction, resume, bad input."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tests.rollout.helpers import DictCountingEnv, LSTMPolicy

from tether.errors import CheckpointError, ConfigError
from tether.nets import FactoredRecurrentActorCritic
from tether.replay import SequenceReplay
from tether.replay.table import SequenceTable
from tether.rollout import RolloutSink
from tether.sequence import unroll

from .helpers import assert_row_matches, collect, expected_sequences, live_sequences

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]
#: env 0: 3-step episodes truncated; env 1: 5-step episodes terminated; env 2: 4-step truncated.
SPECS = [{"length": 3, "ending": "truncate"}, {"length": 5, "ending": "terminate"},
         {"length": 4, "ending": "truncate"}]


def _check_against_stream(replay: SequenceReplay, rec: object, *, draws: int = 8, batch: int = 16) -> None:
    starts = rec.column("episode_starts")  # type: ignore[attr-defined]
    stream = expected_sequences(starts, length=replay.length, period=replay.period,
                                cut=replay.cut_at_episode_end)
    written = len(rec.steps)  # type: ignore[attr-defined]
    live = live_sequences(replay, stream, written)
    assert len(replay) == len(live)
    generator = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(draws):
        sample = replay.sample(batch, generator=generator)
        for b in range(batch):
            n_valid = assert_row_matches(sample, b, rec, length=replay.length)  # type: ignore[arg-type]
            first = int(np.flatnonzero(rec.ticks() == sample.ticks[0, b])[0])  # type: ignore[attr-defined]
            key = (int(sample.initial_state.rows()[b]), first, n_valid)
            assert key in live, f"sampled {key}, which the replay must not hold"
            seen.add(key)
    assert seen  # something was compared


def test_is_a_rollout_sink() -> None:
    """The collector's sink protocol is met."""
    assert isinstance(SequenceReplay(4, 1, seq_len=2), RolloutSink)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", [False, True])
def test_counting_env_sequences_equal_the_stream(mode: AutoresetMode, cut: bool) -> None:
    """Across 3 collects of 7 steps (sequences span collects), every sampled row equals the stream."""
    replay = SequenceReplay(40, 3, seq_len=4, burn_in=2, period=3, cut_at_episode_end=cut)
    rec, _ = collect(replay, mode=mode, specs=SPECS, num_steps=7, rounds=3)
    _check_against_stream(replay, rec)


@pytest.mark.parametrize("mode", MODES)
def test_counter_state_is_the_step_of_the_first_obs(mode: AutoresetMode) -> None:
    """CounterPolicy's h counts the steps since the reset: the stored state equals obs[0]'s step."""
    replay = SequenceReplay(30, 3, seq_len=5, burn_in=1, period=2)
    collect(replay, mode=mode, specs=SPECS, num_steps=9, rounds=2)
    batch = replay.sample(32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.initial_state.h[0, :, 0], batch.obs[0, :, 1])
    assert batch.initial_state.is_snapshot


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", [False, True])
def test_gymnasium_cartpole_sequences_equal_the_stream(mode: AutoresetMode, cut: bool) -> None:
    """A real vector env (terminations, and truncations at 15 steps), an LSTM policy, 3 collects."""
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=15)] * 2,
                                    autoreset_mode=mode)
    replay = SequenceReplay(50, 2, seq_len=6, burn_in=3, period=4, cut_at_episode_end=cut)
    rec, _ = collect(replay, mode=mode, specs=[], num_steps=11, rounds=3, policy=LSTMPolicy(obs_dim=4),
                     venv=venv)
    assert rec.column("truncated").any()
    _check_against_stream(replay, rec)
    venv.close()


def test_eviction_keeps_the_newest_and_memory_is_flat() -> None:
    """When full the oldest sequences go; nbytes is fixed at the first write; stats report it."""
    replay = SequenceReplay(5, 3, seq_len=3, burn_in=1, period=2)
    assert replay.nbytes == 0
    rec, collector = collect(replay, mode=MODES[0], specs=SPECS, num_steps=1, rounds=1)
    allocated = replay.nbytes
    assert allocated > 0
    for r in range(1, 12):
        replay.policy_version = r
        collector.collect(rec)
        assert replay.nbytes == allocated
    assert len(replay) == 5
    _check_against_stream(replay, rec, draws=4)
    stats = replay.stats()
    assert stats["replay/sequences"] == 5.0
    assert stats["replay/bytes"] == float(allocated)
    assert stats["replay/sequences_added"] == stats["replay/sequences_evicted"] + 5
    assert stats["replay/steps"] == 12 * 3


def test_nbytes_follows_the_memory_formula() -> None:
    """Streams, table, open sequences and sum tree, by the module docstring's formula."""
    replay = SequenceReplay(10, 3, seq_len=4, burn_in=2, period=3)
    collect(replay, mode=MODES[0], specs=SPECS, num_steps=2, rounds=1)
    S, E, C = replay.ring_steps, 3, 10
    assert math.ceil(C / E) * 3 + 6 == S
    obs_bytes, action_bytes, state_bytes = 2 * 4, 8, 1 * 1 * 1 * 4  # Box(2) float32, int64, GRU-like h
    streams = S * E * (2 * obs_bytes + action_bytes + 4 + 4 + 8) + 8 * S
    table = C * (state_bytes + 57) + E * replay.open_slots * (state_bytes + 32) + 8 * E
    tree = 16 * 2 ** math.ceil(math.log2(C))
    assert replay.nbytes == streams + table + tree


def test_sampling_is_deterministic_in_the_generator() -> None:
    """The same generator state gives the same batch; another state another one."""
    replay = SequenceReplay(30, 3, seq_len=3, period=2)
    collect(replay, mode=MODES[0], specs=SPECS, num_steps=12, rounds=1)
    a = replay.sample(8, generator=torch.Generator().manual_seed(5))
    b = replay.sample(8, generator=torch.Generator().manual_seed(5))
    c = replay.sample(8, generator=torch.Generator().manual_seed(6))
    np.testing.assert_array_equal(a.indices, b.indices)
    torch.testing.assert_close(a.obs, b.obs)
    assert not np.array_equal(a.indices, c.indices)


def _saved(replay: SequenceReplay) -> dict[str, object]:
    buffer = io.BytesIO()
    torch.save(replay.state_dict(), buffer)
    buffer.seek(0)
    loaded: dict[str, object] = torch.load(buffer, weights_only=True)
    return loaded


@pytest.mark.parametrize("cut", [False, True])
def test_state_dict_round_trip_samples_bit_identically(cut: bool) -> None:
    """Saved mid-stream (open sequences), loaded in a fresh buffer: same batches, same later writes."""
    replay = SequenceReplay(12, 3, seq_len=4, burn_in=2, period=3, cut_at_episode_end=cut)
    collect(replay, mode=MODES[0], specs=SPECS, num_steps=10, rounds=2)
    more, _ = collect(SequenceReplay(12, 3, seq_len=4, burn_in=2, period=3, cut_at_episode_end=cut),
                      mode=MODES[0], specs=SPECS, num_steps=30, rounds=1)
    replay.update_priorities(np.array([0, 3]), np.array([2.5, 0.1]))
    twin = SequenceReplay(12, 3, seq_len=4, burn_in=2, period=3, cut_at_episode_end=cut)
    assert twin.nbytes == 0
    twin.load_state_dict(_saved(replay))
    assert twin.nbytes == replay.nbytes
    for target in (replay, twin):
        for step in more.steps[20:]:  # the stream goes on where it was saved
            target.write(step)
    for seed in range(3):
        a = replay.sample(6, generator=torch.Generator().manual_seed(seed))
        b = twin.sample(6, generator=torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(a.indices, b.indices)
        torch.testing.assert_close(a.obs, b.obs, rtol=0, atol=0)
        torch.testing.assert_close(a.initial_state.h, b.initial_state.h, rtol=0, atol=0)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
        np.testing.assert_array_equal(a.ticks, b.ticks)
    assert replay.stats() == twin.stats()


def test_load_refuses_a_payload_that_does_not_fit() -> None:
    """Another capacity or another env count is refused in one line; the buffer is unchanged."""
    replay = SequenceReplay(12, 3, seq_len=4)
    collect(replay, mode=MODES[0], specs=SPECS, num_steps=8, rounds=1)
    saved = _saved(replay)
    other = SequenceReplay(13, 3, seq_len=4)
    with pytest.raises(CheckpointError, match=r"^SequenceReplay.load_state_dict: the saved buffer does not fit: "
                                              r"the buffer was saved with .*'capacity': 12"):
        other.load_state_dict(saved)
    assert other.nbytes == 0
    with pytest.raises(CheckpointError, match="does not fit"):
        SequenceReplay(12, 3, seq_len=4).load_state_dict({"config": saved["config"]})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"capacity": 0}, "expected capacity an int >= 1, got 0"),
    ({"seq_len": 0}, "expected seq_len an int >= 1, got 0"),
    ({"burn_in": -1}, "expected burn_in an int >= 0, got -1"),
    ({"period": 0}, "expected period an int >= 1, got 0"),
    ({"period": 9}, r"expected period <= burn_in \+ seq_len = 6 \(no step left out between sequences\), got 9"),
    ({"priority_exponent": -1.0}, "expected priority_exponent a finite number >= 0, got -1.0"),
    ({"num_envs": 0}, "expected num_envs an int >= 1, got 0"),
])
def test_bad_settings_are_one_config_error(kwargs: dict[str, object], message: str) -> None:
    """Each out-of-range setting is one ConfigError line."""
    settings: dict[str, object] = {"capacity": 4, "num_envs": 2, "seq_len": 4, "burn_in": 2, **kwargs}
    with pytest.raises(ConfigError, match=message):
        SequenceReplay(**settings)  # type: ignore[arg-type]


def test_bad_use_is_one_value_error() -> None:
    """Empty buffer, batch size, another number of envs: one line each; nothing is written."""
    replay = SequenceReplay(4, 2, seq_len=4)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"holds no complete sequence yet; collect at least 4 steps"):
        replay.sample(2, generator=generator)
    with pytest.raises(ValueError, match="expected a collector of 2 envs"):
        collect(replay, mode=MODES[0], specs=SPECS, num_steps=2, rounds=1)
    rec, _ = collect(SequenceReplay(4, 3, seq_len=4), mode=MODES[0], specs=SPECS, num_steps=2, rounds=1)
    with pytest.raises(ValueError, match=r"expected step.state a RecurrentState of batch 2 \(one row per env\), got 3"):
        replay.write(rec.steps[0])
    assert replay.nbytes == 0
    with pytest.raises(ValueError, match="expected batch_size an int >= 1, got 0"):
        replay.sample(0, generator=generator)


@pytest.mark.parametrize("cut", [False, True])
def test_batches_replay_through_unroll_in_strict_mode(cut: bool) -> None:
    """The trainer's path: burn-in then the trained part, unrolled from the stored state, checks on."""
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=9)] * 2,
                                    autoreset_mode=AutoresetMode.NEXT_STEP)
    policy = LSTMPolicy(obs_dim=4)
    replay = SequenceReplay(50, 2, seq_len=5, burn_in=3, period=4, cut_at_episode_end=cut)
    collect(replay, mode=AutoresetMode.NEXT_STEP, specs=[], num_steps=12, rounds=2, policy=policy, venv=venv)
    batch = replay.sample(8, generator=torch.Generator().manual_seed(0))
    x = torch.tanh(policy.encoder(batch.obs))
    with torch.no_grad():
        _, state = unroll(policy.core, x[:3], batch.episode_starts[:3], batch.initial_state)
    y, _ = unroll(policy.core, x[3:], batch.episode_starts[3:], state)
    whole, _ = unroll(policy.core, x, batch.episode_starts, batch.initial_state)
    torch.testing.assert_close(y, whole[3:])
    venv.close()


def test_a_sequence_whose_first_step_the_ring_overwrites_is_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bursts of cut sequences can outlive the ring: such a sequence goes with its step, never sampled."""
    evicted: list[int] = []
    original = SequenceTable.evict_older

    def spy(self: SequenceTable, first_kept: int) -> np.ndarray:
        gone = original(self, first_kept)
        evicted.extend(gone.tolist())
        return gone

    monkeypatch.setattr(SequenceTable, "evict_older", spy)
    replay = SequenceReplay(2, 2, seq_len=3, burn_in=2, period=1, cut_at_episode_end=True)
    specs = [{"length": 2, "ending": "truncate"}, {"length": 9, "ending": "truncate"}]
    rec, _ = collect(replay, mode=AutoresetMode.NEXT_STEP, specs=specs, num_steps=10, rounds=3)
    assert evicted  # the ring did overwrite a live sequence's first step
    _check_against_stream(replay, rec)


def test_dict_observations_and_action_masks_are_kept() -> None:
    """A Dict observation comes back as a dict of [T, B, ...]; action masks as the collector had them."""
    venv = SyncVectorEnv([lambda: DictCountingEnv(length=3, masks=True)] * 2,
                         autoreset_mode=AutoresetMode.SAME_STEP)
    policy = FactoredRecurrentActorCritic(venv.single_observation_space, venv.single_action_space)
    replay = SequenceReplay(20, 2, seq_len=4, period=2)
    rec, _ = collect(replay, mode=AutoresetMode.SAME_STEP, specs=[], num_steps=9, rounds=1, policy=policy,
                     venv=venv)
    batch = replay.sample(6, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch.obs, dict)
    assert batch.action_masks is not None
    ticks = rec.ticks()
    for b in range(6):
        e, first = int(batch.initial_state.rows()[b]), int(np.flatnonzero(ticks == batch.ticks[0, b])[0])
        steps = rec.steps[first:first + 4]
        for key in ("pos", "flag"):
            torch.testing.assert_close(batch.obs[key][:, b], torch.stack([s.obs[key][e] for s in steps]))
        torch.testing.assert_close(batch.action_masks[:, b],
                                   torch.stack([s.action_masks[e] for s in steps]))  # type: ignore[index]
        # CountingEnv's mask allows only action (step % 2)
        assert bool(batch.action_masks[torch.arange(4), b, batch.obs["pos"][:, b, 1].long() % 2].all())
    venv.close()
