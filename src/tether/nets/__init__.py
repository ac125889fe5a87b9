"""Recurrent actor-critic and Q-networks built on the tether core.

:class:`FactoredRecurrentActorCritic` (encoder -> tracked LSTM / GRU core -> factored action heads
and a value head) follows :class:`~tether.policy.RecurrentPolicy`; its ``export_step`` hands out a
:class:`PolicyStep`, one step as a plain module of tensors for ``torch.export`` / ONNX.
:class:`RecurrentQNetwork` (the same encoder and core -> a Q head, dueling optional) acts
ε-greedily on the same rollout path and replays sequences with ``q_values`` (:class:`QValues`).
The pieces they are made of (the cores, the heads, the distributions) are importable from their
modules.
"""

from tether._extras import require

require("gymnasium", "tether.nets")

from tether.nets.actor_critic import FactoredRecurrentActorCritic
from tether.nets.encoders import ObservationLayout
from tether.nets.factors import ActionLayout
from tether.nets.masks import ActionMaskError
from tether.nets.memoryless import MemorylessPolicy
from tether.nets.q_network import QActResult, QValues, RecurrentQNetwork
from tether.nets.step import ObservationNorm, PolicyStep

__all__ = [
    "ActionLayout",
    "ActionMaskError",
    "FactoredRecurrentActorCritic",
    "MemorylessPolicy",
    "ObservationLayout",
    "ObservationNorm",
    "PolicyStep",
    "QActResult",
    "QValues",
    "RecurrentQNetwork",
]
