"""Recurrent PPO: a trainer, a pure loss, evaluation, settings, checkpoints, metrics and plots.

- :class:`RecurrentPPO` (``trainer.py``): PPO-clip on the rollout collector and buffer, with
  checkpoint / exact resume.
- :func:`ppo_loss` (``loss.py``): the loss of one minibatch as a pure function, :class:`PPOLoss`.
- :func:`evaluate_policy` (``evaluation.py``): whole episodes on the collector's own step.
- :class:`PPOConfig` (``config.py``) and :data:`PRESETS` (``presets.py``): every setting.
- :func:`save_checkpoint` / :func:`load_checkpoint` (``checkpoint.py``): atomic files of tensors and
  plain data, read with ``torch.load(weights_only=True)``.
- :class:`MetricsLogger` / :func:`read_metrics` (``metrics.py``) and :func:`plot_runs`
  (``plotting.py``): the run's records and its learning curves.
"""

from tether._extras import require

require("gymnasium", "tether.ppo")

from tether.ppo.checkpoint import load_checkpoint, save_checkpoint
from tether.ppo.config import PPOConfig
from tether.ppo.evaluation import EvalSummary, evaluate_policy
from tether.ppo.loss import PPOLoss, ppo_loss
from tether.ppo.metrics import MetricsLogger, RunFolderError, read_metrics
from tether.ppo.plotting import MissingDependencyError, plot_runs
from tether.ppo.presets import PRESETS
from tether.ppo.trainer import RecurrentPPO

__all__ = [
    "PRESETS",
    "EvalSummary",
    "MetricsLogger",
    "MissingDependencyError",
    "PPOConfig",
    "PPOLoss",
    "RecurrentPPO",
    "RunFolderError",
    "evaluate_policy",
    "load_checkpoint",
    "plot_runs",
    "ppo_loss",
    "read_metrics",
    "save_checkpoint",
]
