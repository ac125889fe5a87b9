"""Sequence replay for recurrent off-policy learning (R2D2): stored start states that cannot go stale.

- :class:`SequenceReplay`, a :class:`~tether.rollout.RolloutSink`: fixed-length sequences (burn-in
  + train) with an overlap period, per-step episode ids, ticks and starts, each with its stored
  start state (a stamped snapshot) and the policy version that collected it; optionally cut at
  episode ends (padded, masked); prioritised (sum tree) or uniform sampling; bounded memory.
- :class:`ReplayBatch`: what :meth:`SequenceReplay.sample` returns, time-major.
- :class:`History`: the way back to each sampled sequence's true episode start (Δq staleness).
- :func:`check_sequences`: the alignment checks ``sample`` runs (stored state vs stamps, starts vs
  episode ids, ticks consecutive), raising :class:`~tether.errors.ReplayAlignmentError` in strict mode.
"""

from tether.replay.batch import History, ReplayBatch
from tether.replay.buffer import SequenceReplay
from tether.replay.checks import check_sequences

__all__ = ["History", "ReplayBatch", "SequenceReplay", "check_sequences"]
