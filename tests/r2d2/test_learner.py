"""Tests for tether.r2d2.learner and staleness: burn-in never trains, the truncation bootstrap, Δq."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import tether
from tether.nets import RecurrentQNetwork
from tether.r2d2 import R2D2Config
from tether.r2d2.learner import learner_step, replay_pass, start_state, truncation_values
from tether.r2d2.staleness import delta_q, measure_staleness
from tether.replay import ReplayBatch, SequenceReplay
from tether.rollout import RolloutCollector


def _filled(*, burn_in: int, seq_len: int = 6, core: str = "lstm", limit: int = 7,
            seed: int = 0) -> tuple[RecurrentQNetwork, SequenceReplay]:
    """A Q-network and a replay filled by the collector on CartPole cut at ``limit`` steps (truncations)."""
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=limit)] * 3)
    torch.manual_seed(seed)
    net = RecurrentQNetwork(venv.single_observation_space, venv.single_action_space, hidden_sizes=(8,),
                            core_hidden_size=8, core=core, dueling=True)
    net.set_epsilon(1.0)
    replay = SequenceReplay(64, 3, seq_len=seq_len, burn_in=burn_in, period=3)
    collector = RolloutCollector(venv, net, 16, seed=seed)
    with tether.mode("strict"):
        for _ in range(3):
            collector.collect(replay)
    return net, replay


def _batch(replay: SequenceReplay, size: int = 8) -> ReplayBatch:
    with tether.mode("strict"):
        return replay.sample(size, generator=torch.Generator().manual_seed(1))


def _config(**overrides: Any) -> R2D2Config:
    return R2D2Config(**{"n_step": 2, "gamma": 0.9, **overrides})


def test_burn_in_never_trains() -> None:
    """The loss has no gradient through the burn-in steps' observations, and has one through the rest."""
    net, replay = _filled(burn_in=3)
    batch = _batch(replay)
    obs = batch.obs.clone().requires_grad_(True)
    step = learner_step(net, net, batch._replace(obs=obs), _config())
    step.loss.backward()
    assert obs.grad is not None
    assert obs.grad[:3].abs().sum() == 0
    assert obs.grad[3:].abs().sum() > 0


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_the_truncation_bootstrap_reads_the_final_observation_after_the_step(core: str) -> None:
    """A truncated step's bootstrap is the target net's value of the final observation, fed after it."""
    net, replay = _filled(burn_in=2, core=core)
    batch = _batch(replay, 16)
    trained = batch.truncation_steps[batch.truncation_steps[:, 0] >= batch.burn_in]
    assert trained.size, "the batch should hold a truncation in its trained part"
    values = truncation_values(net, net, batch, "stored", double_q=False)
    expected = torch.zeros_like(values)
    for m, (t, b) in enumerate(batch.truncation_steps):
        if t < batch.burn_in:
            continue
        obs = torch.cat([batch.obs[:t + 1, b], batch.final_obs[m][None]])[:, None]
        starts = np.zeros((t + 2, 1), dtype=bool)
        starts[:t + 1, 0] = batch.episode_starts[:t + 1, b]
        with torch.no_grad():
            start = tether.RecurrentState.from_tensors(batch.initial_state.select_rows(np.array([b])).tensors)
            q = net.q_values(obs, starts, start).q
        expected[t - batch.burn_in, b] = q[-1, 0].amax(-1)
    torch.testing.assert_close(values, expected)
    outside = torch.ones_like(values, dtype=torch.bool)
    outside[trained[:, 0] - batch.burn_in, trained[:, 1]] = False
    assert (values[outside] == 0).all()


def test_a_zero_start_replays_from_zeros() -> None:
    """``initial_state = "zero"`` starts every sequence from zeros; ``"stored"`` from the snapshot."""
    _, replay = _filled(burn_in=0)
    batch = _batch(replay)
    assert all((t == 0).all() for t in start_state(batch, "zero").tensors)
    assert start_state(batch, "stored") is batch.initial_state


def test_delta_q_is_zero_from_the_exact_state_and_not_from_zeros() -> None:
    """With the weights that collected, the stored state is the true one (Δq 0); zeros are not."""
    net, replay = _filled(burn_in=0, limit=40)
    batch = _batch(replay, 16)
    for initial, exact in (("stored", True), ("zero", False)):
        with torch.no_grad():
            q = replay_pass(net, net, batch, initial).q
        mask = torch.ones(q.shape[:2], dtype=torch.bool)
        first, last = torch.zeros(16, dtype=torch.long), torch.full((16,), q.shape[0] - 1)
        cols = torch.arange(16)
        out = measure_staleness(net, replay, batch, q_first=q[first, cols], q_last=q[last, cols], first=first,
                                last=last, trained=mask.all(0), update=5, max_steps=100)
        assert out["staleness/covered"] == 1.0
        assert out["staleness/age_updates"] == 5.0
        if exact:
            assert out["staleness/dq_first"] == pytest.approx(0.0, abs=1e-5)
            assert out["staleness/dq_last"] == pytest.approx(0.0, abs=1e-5)
        else:
            mid_episode = ~batch.episode_starts[0]
            assert mid_episode.any()
            assert out["staleness/dq_first"] > 1e-3


def test_delta_q_formula() -> None:
    """Δq = ‖q(ĥ) − q(h)‖₂ / |max q(ĥ)| per row, over every head's actions, -inf slots left out."""
    replayed = torch.tensor([[[2.0, -1.0, -torch.inf]], [[-4.0, -2.0, 0.5]]])
    true = torch.tensor([[[1.0, 1.0, -torch.inf]], [[-4.0, -2.0, 0.5]]])
    torch.testing.assert_close(delta_q(replayed, true), torch.tensor([5.0 ** 0.5 / 2.0, 0.0]))
