"""The tether.ppo package holds only PPO; the run infrastructure is tether.train's."""

from __future__ import annotations

import importlib.util

import tether
import tether.ppo


def test_public_names_are_pinned() -> None:
    """tether.ppo exports exactly these names, each defined."""
    assert sorted(tether.ppo.__all__) == ["PPOConfig", "PPOLoss", "PRESETS", "RecurrentPPO", "ppo_loss"]
    assert all(hasattr(tether.ppo, name) for name in tether.ppo.__all__)


def test_top_level_names_come_from_the_package() -> None:
    """tether.PPOConfig / tether.RecurrentPPO are the package's; the old modules are gone."""
    assert tether.PPOConfig is tether.ppo.PPOConfig
    assert tether.RecurrentPPO is tether.ppo.RecurrentPPO
    for old in ("config", "checkpoint", "metrics", "plotting"):
        assert importlib.util.find_spec(f"tether.{old}") is None, old
    for moved in ("checkpoint", "metrics", "plotting", "evaluation"):  # every trainer's: tether.train
        assert importlib.util.find_spec(f"tether.ppo.{moved}") is None, moved
        assert importlib.util.find_spec(f"tether.train.{moved}") is not None, moved
