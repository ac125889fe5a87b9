"""The tether.ppo package's public surface, and no trainer helper left at tether's top level."""

from __future__ import annotations

import importlib.util

import tether
import tether.ppo


def test_public_names_are_pinned() -> None:
    """tether.ppo exports exactly these names, each defined."""
    assert sorted(tether.ppo.__all__) == [
        "EvalSummary", "MetricsLogger", "MissingDependencyError", "PPOConfig", "PPOLoss", "PRESETS",
        "RecurrentPPO", "RunFolderError", "evaluate_policy", "load_checkpoint", "plot_runs", "ppo_loss",
        "read_metrics", "save_checkpoint",
    ]
    assert all(hasattr(tether.ppo, name) for name in tether.ppo.__all__)


def test_top_level_names_come_from_the_package() -> None:
    """tether.PPOConfig / tether.RecurrentPPO are the package's; the old modules are gone."""
    assert tether.PPOConfig is tether.ppo.PPOConfig
    assert tether.RecurrentPPO is tether.ppo.RecurrentPPO
    for old in ("config", "checkpoint", "metrics", "plotting"):
        assert importlib.util.find_spec(f"tether.{old}") is None, old
