"""Learning tests (slow): the recurrent policy solves the memory tasks, a memoryless twin cannot.

Deselected by ``make test`` (``-m "not slow"``); run with ``pytest -m slow``. The full multi-seed
numbers come from ``tether bench`` over ``benchmarks/grids/learning.toml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.ppo import PPOConfig, RecurrentPPO

pytestmark = pytest.mark.slow


def _train_and_eval(tmp_path: Path, preset: str, **overrides: object) -> float:
    config = PPOConfig.from_preset(preset, progress=False, run_dir=str(tmp_path), **overrides)
    trainer = RecurrentPPO(config)
    trainer.train()
    mean = float(trainer.evaluate(20)["mean_return"])
    trainer.close()
    return mean


def test_recall_needs_memory(tmp_path: Path) -> None:
    """Recall (delay 8, 4 cues): the recurrent policy answers right; the memoryless one guesses."""
    assert _train_and_eval(tmp_path / "rnn", "recall") >= 0.9
    assert _train_and_eval(tmp_path / "ff", "recall", recurrent=False) <= 0.5


def test_cartpole_novel_needs_memory(tmp_path: Path) -> None:
    """CartPole-NoVel, 8 envs, 50 000 steps: >= 450 with memory; the memoryless twin stays far below."""
    assert _train_and_eval(tmp_path / "rnn", "cartpole") >= 450
    assert _train_and_eval(tmp_path / "ff", "cartpole", recurrent=False) < 200
