"""Rollouts for recurrent policies: a clock-advancing vector-env wrapper, a collector, a buffer, GAE.

- :class:`TrackedVectorEnv` wraps a gymnasium vector env (sync or async, any autoreset mode) and
  advances its :class:`~tether.EpisodeClock` every step; :class:`VecStep` says per row where
  episodes end (``terminated`` / ``truncated``), where they start (``episode_starts``) and which
  transitions are real (``valid``).
- :class:`RolloutCollector` runs any :class:`~tether.policy.RecurrentPolicy` for ``T × E`` steps
  without autograd graph, with the truncation bootstrap read from the pre-reset state, and writes
  each step, a :class:`Transition`, to a :class:`RolloutSink`.
- :class:`RecurrentRolloutBuffer` (the on-policy sink) stores the rollout with state snapshots at
  chunk starts, computes GAE (:func:`compute_gae`) and yields :class:`SequenceMinibatch` es for
  replay.
"""

from tether._extras import require

require("gymnasium", "tether.rollout")

from tether.rollout.buffer import RecurrentRolloutBuffer, RolloutStorage, SequenceMinibatch
from tether.rollout.collector import RolloutCollector
from tether.rollout.gae import compute_gae
from tether.rollout.sink import RolloutSink, Transition
from tether.rollout.vec import TrackedVectorEnv, VecStep

__all__ = [
    "RecurrentRolloutBuffer",
    "RolloutCollector",
    "RolloutSink",
    "RolloutStorage",
    "SequenceMinibatch",
    "TrackedVectorEnv",
    "Transition",
    "VecStep",
    "compute_gae",
]
