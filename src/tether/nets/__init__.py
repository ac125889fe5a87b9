"""Recurrent actor-critic networks built on the tether core.

:class:`FactoredRecurrentActorCritic` (encoder -> tracked LSTM / GRU core -> factored action heads
and a value head) follows :class:`~tether.policy.RecurrentPolicy`; the pieces it is made of (the
action layout, the heads, the distributions) are importable from their modules.
"""

from tether._extras import require

require("gymnasium", "tether.nets")

from tether.nets.actor_critic import FactoredRecurrentActorCritic
from tether.nets.encoders import ObservationLayout
from tether.nets.factors import ActionFactor, ActionLayout
from tether.nets.heads import FactoredHeads
from tether.nets.masks import ActionMaskError

__all__ = [
    "ActionFactor",
    "ActionLayout",
    "ActionMaskError",
    "FactoredHeads",
    "FactoredRecurrentActorCritic",
    "ObservationLayout",
]
