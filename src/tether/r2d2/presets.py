"""Settings for tether's own tasks under R2D2 (``tether train --algo r2d2 --preset NAME``); flags win."""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, Any]] = {
    # CartPole with velocities masked: 500-step episodes, so sequences run across few ends; a
    # 20-step burn-in before 40 trained steps, periods of 20 (each step is trained on twice).
    "cartpole": {"env_id": "tether/CartPole-NoVel-v0", "total_steps": 100_000, "normalize_obs": True,
                 "seq_len": 40, "burn_in": 20, "period": 20, "batch_size": 32, "learning_rate": 1e-3,
                 "gamma": 0.99, "n_step": 5, "capacity": 4_000, "learning_starts": 5_000,
                 "collect_steps": 8, "updates_per_collect": 1, "target_update_every": 100,
                 "epsilon_decay": 0.3},
    # Recall: a cue, a delay of 8 steps, then the answer; 10-step episodes, so sequences cross
    # several episode ends and their starts matter.
    "recall": {"env_id": "tether/Recall-v0", "total_steps": 60_000, "seq_len": 20, "burn_in": 0,
               "batch_size": 32, "learning_rate": 1e-3, "gamma": 0.9, "n_step": 3, "capacity": 2_000,
               "learning_starts": 2_000, "collect_steps": 8, "updates_per_collect": 1,
               "target_update_every": 100, "epsilon_decay": 0.3},
}
"""The preset settings by name; ``R2D2Config.from_preset`` applies them."""
