"""Recurrent actor-critic networks built on the tether core.

:class:`FactoredRecurrentActorCritic` (encoder -> tracked LSTM / GRU core -> factored action heads
and a value head) follows :class:`~tether.policy.RecurrentPolicy`; its ``export_step`` hands out a
:class:`PolicyStep`, one step as a plain module of tensors for ``torch.export`` / ONNX. The pieces
it is made of (the cores, the heads, the distributions) are importable from their modules.
"""

from tether._extras import require

require("gymnasium", "tether.nets")

from tether.nets.actor_critic import FactoredRecurrentActorCritic
from tether.nets.encoders import ObservationLayout
from tether.nets.factors import ActionLayout
from tether.nets.masks import ActionMaskError
from tether.nets.memoryless import MemorylessPolicy
from tether.nets.step import ObservationNorm, PolicyStep

__all__ = [
    "ActionLayout",
    "ActionMaskError",
    "FactoredRecurrentActorCritic",
    "MemorylessPolicy",
    "ObservationLayout",
    "ObservationNorm",
    "PolicyStep",
]
