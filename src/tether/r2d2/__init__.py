"""R2D2, and only what is R2D2's: recurrent off-policy Q-learning from a sequence replay of stored states.

- :class:`R2D2` (``trainer.py``): the schedule on a :class:`~tether.train.Run` (env, collector,
  checkpoints, metrics): collect into the :class:`~tether.replay.SequenceReplay`, learn from
  sampled sequences, follow with the target network, measure the replay's staleness.
- ``learner.py``: one learner step (start state, burn-in through both networks, the trained
  replay, the truncation bootstrap, targets, loss, priorities); ``staleness.py``: Δq.
- :mod:`tether.r2d2.loss`: n-step double-Q targets, value rescaling, the TD loss and sequence
  priorities as pure functions of tensors.
- :class:`R2D2Config` (``config.py``) and :data:`PRESETS` (``presets.py``): every setting, the
  shared env / network / run concerns plus R2D2's own (``[r2d2]``).

The Q-network is :class:`tether.nets.RecurrentQNetwork`; evaluation, checkpoints, metrics and plots
are every trainer's (:mod:`tether.train`).
"""

from tether._extras import require

require("gymnasium", "tether.r2d2")

from tether.r2d2.config import R2D2Config
from tether.r2d2.presets import PRESETS
from tether.r2d2.trainer import R2D2

__all__ = ["PRESETS", "R2D2", "R2D2Config"]
