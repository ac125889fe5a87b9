"""Tests for tether.r2d2.trainer.R2D2: a silent strict run, exact resume, metrics, schedules, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tether.errors import CheckpointError, ConfigError
from tether.r2d2 import R2D2, R2D2Config


def tiny(tmp_path: Path, name: str, **overrides: Any) -> R2D2Config:
    """A run of a few dozen small learner updates on CartPole-NoVel, in strict mode."""
    settings = {"num_envs": 2, "total_steps": 512, "collect_steps": 8, "seq_len": 8, "burn_in": 4,
                "capacity": 64, "batch_size": 4, "learning_starts": 64, "hidden_size": 16,
                "encoder_size": 16, "target_update_every": 5, "staleness_every": 2, "log_every": 4,
                "checkpoint_every": 2, "progress": False, "run_dir": str(tmp_path / name), "mode": "strict",
                **overrides}
    return R2D2Config.from_dict(settings)


def _params(trainer: R2D2) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.policy.parameters()]


def _records(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "iteration_seconds")}
            for line in lines]


def test_a_strict_run_is_silent_and_logs_what_it_learns(tmp_path: Path) -> None:
    """A correct run in strict mode raises nothing and logs the loss, the replay and the staleness."""
    trainer = R2D2(tiny(tmp_path, "run"))
    summary = trainer.train()
    assert summary["steps"] == 512
    assert summary["updates"] > 10
    records = _records(tmp_path / "run")
    assert len(records) == 512 // 16 // 4
    last = records[-1]
    for key in ("loss", "td_abs", "q_mean", "epsilon", "replay/sequences", "replay/bytes",
                "staleness/dq_first", "staleness/dq_last", "staleness/age_updates"):
        assert key in last, key
    assert last["staleness/age_updates"] >= 0
    assert np.isfinite(last["loss"])
    result = trainer.evaluate(3)
    assert result["episodes"] == 3
    epsilon = trainer.policy.epsilon.clone()
    assert trainer.evaluate(3, deterministic=False, num_envs=3)["deterministic"] is False
    torch.testing.assert_close(trainer.policy.epsilon, epsilon)  # the actors' ε is back
    trainer.close()


@pytest.mark.parametrize("overrides", [{}, {"core": "gru", "initial_state": "zero", "burn_in": 0},
                                       {"prioritized": False, "double_q": False, "dueling": False,
                                        "value_rescale": False, "target_tau": 0.5},
                                       {"recurrent": False}, {"cut_at_episode_end": True, "period": 4}])
def test_variants_train(tmp_path: Path, overrides: dict[str, Any]) -> None:
    """Every switch of the learner trains a few updates in strict mode."""
    trainer = R2D2(tiny(tmp_path, "v", total_steps=256, **overrides))
    assert trainer.train()["updates"] > 0
    trainer.close()


def test_delta_q_of_the_memoryless_twin_is_zero(tmp_path: Path) -> None:
    """The twin ignores its state, so the replayed and the recomputed state give the same Q: Δq is 0
    (measured with the weights of the update's own replay, before its optimiser step)."""
    trainer = R2D2(tiny(tmp_path, "twin", recurrent=False, staleness_every=1))
    trainer.train()
    trainer.close()
    records = [r for r in _records(tmp_path / "twin") if "staleness/dq_first" in r]
    assert records
    for record in records:
        assert record["staleness/dq_first"] == pytest.approx(0.0, abs=1e-6)
        assert record["staleness/dq_last"] == pytest.approx(0.0, abs=1e-6)


def test_seeded_runs_are_reproducible(tmp_path: Path) -> None:
    """Two runs with one seed give the same weights and metrics; another seed differs."""
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        trainer = R2D2(tiny(tmp_path, name, seed=seed, total_steps=256))
        trainer.train()
        runs.append(_params(trainer))
        trainer.close()
    for p, q in zip(runs[0], runs[1], strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert any(not torch.equal(p, q) for p, q in zip(runs[0], runs[2], strict=True))


def test_resume_with_the_replay_saved_is_exact(tmp_path: Path) -> None:
    """Stopped after 8 collections and resumed, a run saving its replay ends bit-identical."""
    whole = R2D2(tiny(tmp_path, "whole", save_replay=True))
    whole.train()
    expected = _params(whole)
    whole.close()
    first = R2D2(tiny(tmp_path, "split", save_replay=True))
    first.train(max_iterations=8)
    first.close()
    resumed = R2D2.resume(tmp_path / "split")
    assert resumed.steps == 8 * 16
    assert len(resumed.replay) > 0
    resumed.train()
    for p, q in zip(_params(resumed), expected, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    resumed.close()
    assert _records(tmp_path / "split") == _records(tmp_path / "whole")


def test_resume_without_the_replay_refills_it(tmp_path: Path) -> None:
    """Without --save-replay the checkpoint is small, and the resumed run refills its replay first."""
    first = R2D2(tiny(tmp_path, "small"))
    first.train(max_iterations=8)
    first.close()
    data = torch.load(tmp_path / "small" / "checkpoint.pt", weights_only=True)
    assert data["replay"] is None
    assert "target" in data
    resumed = R2D2.resume(tmp_path / "small")
    assert len(resumed.replay) == 0
    updates = resumed.update
    resumed.train()
    assert resumed.update > updates
    resumed.close()


def test_the_target_network_follows_on_its_schedule(tmp_path: Path) -> None:
    """With tau = 1 the target is the online network right after every target_update_every-th update."""
    trainer = R2D2(tiny(tmp_path, "t", target_update_every=1000))
    trainer.train(max_iterations=12)
    online, target = trainer.policy.state_dict(), trainer.target.state_dict()
    assert any(not torch.equal(online[k], target[k]) for k in online)
    trainer.update_target()
    assert all(torch.equal(online[k], target[k]) for k in online)
    assert not any(p.requires_grad for p in trainer.target.parameters())
    trainer.close()


def test_polyak_moves_the_target_by_tau(tmp_path: Path) -> None:
    """With tau < 1 the target moves tau of the way to the online network."""
    trainer = R2D2(tiny(tmp_path, "p", target_tau=0.25, target_update_every=1000))
    trainer.train(max_iterations=12)
    before = {k: v.clone() for k, v in trainer.target.state_dict().items()}
    online = trainer.policy.state_dict()
    trainer.update_target()
    for key, value in trainer.target.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, before[key] + 0.25 * (online[key] - before[key]))
    trainer.close()


def test_epsilon_decays_and_spreads_over_envs(tmp_path: Path) -> None:
    """ε decays linearly over epsilon_decay × total_steps; epsilon_alpha spreads it Ape-X style."""
    trainer = R2D2(tiny(tmp_path, "e", num_envs=4, epsilon_start=0.8, epsilon_end=0.2, epsilon_decay=0.5,
                        epsilon_alpha=7.0))
    torch.testing.assert_close(torch.tensor(trainer.epsilons()),
                               torch.tensor([0.8 ** (1 + 7 * i / 3) for i in range(4)], dtype=torch.float64))
    trainer.run.steps = 128  # half-way through the decay
    assert trainer.epsilons()[0] == pytest.approx(0.5)
    trainer.run.steps = 10_000
    assert trainer.epsilons()[0] == pytest.approx(0.2)
    trainer.close()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"period": 100}, r"period: expected at most burn_in \+ seq_len = 12"),
    ({"target_tau": 0.0}, r"target_tau: expected a value in \(0, 1\], got 0.0"),
    ({"initial_state": "random"}, r"initial_state: expected one of \['stored', 'zero'\]"),
    ({"action_masks": True}, r"action_masks: R2D2 does not read action masks yet"),
    ({"n_step": 0}, r"n_step: expected a positive value, got 0"),
])
def test_bad_settings_are_one_line(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    """A bad setting is one ConfigError line naming it."""
    with pytest.raises(ConfigError, match=message) as caught:
        tiny(tmp_path, "bad", **overrides)
    assert "\n" not in str(caught.value)


def test_a_continuous_task_is_refused(tmp_path: Path) -> None:
    """R2D2 takes discrete actions: a Box action space is one line, and no folder is left behind."""
    with pytest.raises(ConfigError, match=r"discrete"):
        R2D2(tiny(tmp_path, "box", env_id="tether/Pendulum-NoVel-v0"))
    assert not (tmp_path / "box").exists()


def test_a_ppo_checkpoint_is_not_r2d2s(tmp_path: Path) -> None:
    """Loading another trainer's run names the trainer to use."""
    from tether.ppo import PPOConfig, RecurrentPPO  # noqa: PLC0415

    ppo = RecurrentPPO(PPOConfig(num_envs=2, n_steps=8, total_steps=16, progress=False,
                                 run_dir=str(tmp_path / "ppo")))
    ppo.train()
    ppo.close()
    with pytest.raises(CheckpointError, match=r"this is a 'ppo' run, not 'r2d2'; use tether train --algo ppo"):
        R2D2.load(tmp_path / "ppo")
