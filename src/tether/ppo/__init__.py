"""Recurrent PPO, and only what is PPO's: its trainer, its loss, its settings and presets.

- :class:`RecurrentPPO` (``trainer.py``): PPO-clip's update schedule on a
  :class:`~tether.train.Run` (env, policy, collector, checkpoints, metrics) and the on-policy
  buffer as the collector's sink.
- :func:`ppo_loss` (``loss.py``): the loss of one minibatch as a pure function, :class:`PPOLoss`.
- :class:`PPOConfig` (``config.py``) and :data:`PRESETS` (``presets.py``): every setting, the
  shared env / network / run concerns plus PPO's own.

Evaluation, checkpoints, metrics and plots are every trainer's: :mod:`tether.train`.
"""

from tether._extras import require

require("gymnasium", "tether.ppo")

from tether.ppo.config import PPOConfig
from tether.ppo.loss import PPOLoss, ppo_loss
from tether.ppo.presets import PRESETS
from tether.ppo.trainer import RecurrentPPO

__all__ = [
    "PRESETS",
    "PPOConfig",
    "PPOLoss",
    "RecurrentPPO",
    "ppo_loss",
]
