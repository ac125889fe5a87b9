"""Tests for tether.ppo.trainer.RecurrentPPO: reproducibility, resume, metrics and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tether.errors import CheckpointError, ConfigError
from tether.ppo import PPOConfig, RecurrentPPO


def tiny(tmp_path: Path, name: str, **overrides: object) -> PPOConfig:
    """A run of a few small updates."""
    settings = {"num_envs": 2, "n_steps": 16, "total_steps": 128, "n_epochs": 2, "minibatch_envs": 1,
                "hidden_size": 16, "encoder_size": 16, "progress": False, "run_dir": str(tmp_path / name),
                "mode": "strict", **overrides}
    return PPOConfig.from_dict(settings)


def _params(trainer: RecurrentPPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.policy.parameters()]


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "update_seconds")} for line in lines]


def test_seeded_runs_are_reproducible(tmp_path: Path) -> None:
    """Two runs with one seed give the same metrics and weights; another seed differs."""
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        trainer = RecurrentPPO(tiny(tmp_path, name, seed=seed))
        trainer.train()
        runs.append(_params(trainer))
        trainer.close()
    for p, q in zip(runs[0], runs[1], strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert any(not torch.equal(p, q) for p, q in zip(runs[0], runs[2], strict=True))


@pytest.mark.parametrize("seq_len", [0, 8])
def test_resume_continues_exactly(tmp_path: Path, seq_len: int) -> None:
    """A run stopped after 2 updates and resumed ends where an uninterrupted run ends."""
    whole = RecurrentPPO(tiny(tmp_path, "whole", seq_len=seq_len))
    whole.train()
    expected = _params(whole)
    whole.close()

    first = RecurrentPPO(tiny(tmp_path, "split", seq_len=seq_len))
    first.train(max_updates=2)
    assert first.update == 2
    first.close()
    resumed = RecurrentPPO.resume(tmp_path / "split")
    assert (resumed.update, resumed.steps) == (2, 64)
    resumed.train()
    for p, q in zip(_params(resumed), expected, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    resumed.close()
    assert _records(tmp_path / "split") == _records(tmp_path / "whole")


def test_metrics_and_evaluation(tmp_path: Path) -> None:
    """Each update writes one JSONL record with the losses; evaluate runs exactly N episodes."""
    trainer = RecurrentPPO(tiny(tmp_path, "m", anneal_lr=True))
    summary = trainer.train()
    records = _records(tmp_path / "m")
    assert len(records) == summary["updates"] == 4
    assert records[-1]["step"] == summary["steps"] == 128
    for key in ("ep_return", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "lr"):
        assert key in records[-1]
    assert records[-1]["lr"] < records[0]["lr"]  # linear decay
    result = trainer.evaluate(5, num_envs=2)
    assert result["episodes"] == len(result["returns"]) == 5
    assert all(r > 0 for r in result["returns"])
    trainer.close()


@pytest.mark.parametrize(
    "overrides",
    [{"core": "gru", "shared_core": True}, {"recurrent": False}, {"normalize_obs": True, "target_kl": 0.001},
     {"clip_range_vf": 0.2, "num_layers": 2}],
)
def test_variants_train(tmp_path: Path, overrides: dict) -> None:
    """GRU/shared core, the memoryless baseline, obs normalisation, value clipping all run."""
    trainer = RecurrentPPO(tiny(tmp_path, "v", **overrides))
    summary = trainer.train()
    assert summary["steps"] == 128
    assert np.isfinite(trainer.evaluate(2, num_envs=2)["mean_return"])
    trainer.close()


def test_continuous_task_trains(tmp_path: Path) -> None:
    """A Box-action task (Pendulum-NoVel) trains with a Gaussian head."""
    trainer = RecurrentPPO(tiny(tmp_path, "p", env_id="tether/Pendulum-NoVel-v0"))
    trainer.train()
    trainer.close()


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    """Unknown env id, a discrete-only setting on a continuous task, a changed setting on resume."""
    with pytest.raises(ValueError, match=r"unknown env id 'tether/Nope-v0'.*tether's own tasks: tether/CartPole-NoVel-v0"):
        RecurrentPPO(tiny(tmp_path, "x", env_id="tether/Nope-v0"))
    with pytest.raises(ConfigError, match="action_masks: masks apply to discrete actions, but tether/Pendulum-NoVel-v0"):
        RecurrentPPO(tiny(tmp_path, "x", env_id="tether/Pendulum-NoVel-v0", action_masks=True))
    trainer = RecurrentPPO(tiny(tmp_path, "r"))
    trainer.train(max_updates=1)
    trainer.close()
    with pytest.raises(ConfigError, match=r"the settings \['learning_rate'\] cannot change mid-run"):
        RecurrentPPO.resume(tmp_path / "r", learning_rate=0.1)


@pytest.mark.parametrize("overrides", [{"normalize_obs": True, "seq_len": 8}, {"vector": "async"},
                                       {"env_id": "tether/Recall-v0", "env_kwargs": {"delay": 3}}])
def test_resume_is_exact_across_env_kinds(tmp_path: Path, overrides: dict) -> None:
    """Normalised observations, async envs and env kwargs resume bit-exactly too (envs are replayed)."""
    whole = RecurrentPPO(tiny(tmp_path, "whole", **overrides))
    whole.train()
    expected = _params(whole)
    whole.close()
    first = RecurrentPPO(tiny(tmp_path, "split", **overrides))
    first.train(max_updates=3)
    first.close()
    resumed = RecurrentPPO.resume(tmp_path / "split")
    resumed.train()
    for p, q in zip(_params(resumed), expected, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    resumed.close()
    assert _records(tmp_path / "split") == _records(tmp_path / "whole")


def test_checkpoint_is_tensors_and_plain_data(tmp_path: Path) -> None:
    """The checkpoint loads with weights_only=True and holds no env, wrapper or callable."""
    trainer = RecurrentPPO(tiny(tmp_path, "w"))
    trainer.train(max_updates=1)
    trainer.close()
    data = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    allowed = (torch.Tensor, str, int, float, bool, type(None))

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        else:
            assert isinstance(value, allowed), type(value)

    walk(data)
    assert set(data["envs"]) == {"episodes", "obs_rms"}
    assert len(data["envs"]["episodes"]) == 2


def test_a_checkpoint_with_a_non_tensor_weight_is_refused(tmp_path: Path) -> None:
    """A weight that is not a tensor is named, as a layout mismatch (CheckpointError)."""
    trainer = RecurrentPPO(tiny(tmp_path, "n"))
    trainer.train(max_updates=1)
    trainer.close()
    data = torch.load(tmp_path / "n" / "checkpoint.pt", weights_only=True)
    name = next(iter(data["policy"]))
    data["policy"][name] = "not a tensor"
    torch.save(data, tmp_path / "n" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=rf"1 of another shape \(e.g. {name} str vs \["):
        RecurrentPPO.load(tmp_path / "n")
