"""What every trainer shares: settings by concern, the run, checkpoints, resume, metrics, evaluation.

A trainer (``tether.ppo.RecurrentPPO``; an off-policy one the same way) holds a :class:`Run` and
adds only its own: its sink, its loss, its update schedule. The rooms:

- :class:`Run` (``run.py``): the process's place in the job, seeds, the vector env, the policy and
  its optimiser, the rollout collector, counters, metrics, checkpoints with exact resume.
- :class:`EnvConfig`, :class:`NetworkConfig`, :class:`RunConfig` (``config.py``): the shared
  settings, composed with an algorithm's own into its config class; TOML tables by concern.
- :func:`save_checkpoint` / :func:`load_checkpoint` (``checkpoint.py``): versioned atomic files
  of tensors and plain data, read with ``torch.load(weights_only=True)``.
- ``resume.py`` / ``rng.py``: one rank's live run (collector, env episodes, every RNG) as plain
  data, restored in the order that makes a resumed run bit-identical.
- :class:`MetricsLogger` / :func:`read_metrics` (``metrics.py``): ``metrics.jsonl``, TensorBoard
  when installed, the progress bar; :func:`plot_runs` (``plotting.py``): learning curves.
- :func:`evaluate_policy` (``evaluation.py``): whole episodes on the collector's own step.
- :class:`RunFolder` (``run_folder.py``): a run folder owned by one trainer (a lock; a fresh run
  never appends to an old one; atomic writes with the user's umask).
- ``launcher.py``: ``tether train --nproc N``, torchrun as a child that never outlives tether.
"""

from tether._extras import require

require("gymnasium", "tether.train")

from tether.train.checkpoint import load_checkpoint, save_checkpoint
from tether.train.config import EnvConfig, NetworkConfig, RunConfig, TrainerSettings
from tether.train.evaluation import EvalSummary, evaluate_policy
from tether.train.metrics import MetricsLogger, read_metrics
from tether.train.plotting import plot_runs
from tether.train.run import Run
from tether.train.run_folder import RunFolder

__all__ = [
    "EnvConfig",
    "EvalSummary",
    "MetricsLogger",
    "NetworkConfig",
    "Run",
    "RunConfig",
    "RunFolder",
    "TrainerSettings",
    "evaluate_policy",
    "load_checkpoint",
    "plot_runs",
    "read_metrics",
    "save_checkpoint",
]
