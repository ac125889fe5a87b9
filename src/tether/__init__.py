"""tether: hidden-state lifecycle for recurrent reinforcement learning in PyTorch.

An LSTM's ``(h, c)`` (a GRU's ``h``) is wrapped in a :class:`RecurrentState` that knows which
episode and which step each row belongs to, checked against an :class:`EpisodeClock` fed by the
environment. Misuse (a missed reset, a graph kept across a training boundary, an old state fed
again) raises in ``strict`` mode, warns in ``warn`` mode (the default) and is skipped in ``off``.

``import tether`` is light: the errors and the modes load at once, everything that needs torch
(or gymnasium, for the layers built on the core) on first use. So the pytest plugin tether
installs costs a test session that never uses tether nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tether.errors import (
    GraphLeakError,
    LifecycleError,
    LifecycleWarning,
    ObservationError,
    ReplayAlignmentError,
    StaleStateError,
    StateMismatchError,
    TetherError,
)
from tether.modes import get_mode, mode, set_mode

if TYPE_CHECKING:
    from tether.clock import EpisodeClock
    from tether.nets import FactoredRecurrentActorCritic
    from tether.ppo import PPOConfig, RecurrentPPO
    from tether.r2d2 import R2D2, R2D2Config
    from tether.state import RecurrentState
    from tether.tracking import StateSpec, TrackedRNN, track

__version__ = "0.1.0"

__all__ = [
    "R2D2",
    "EpisodeClock",
    "FactoredRecurrentActorCritic",
    "GraphLeakError",
    "LifecycleError",
    "LifecycleWarning",
    "ObservationError",
    "PPOConfig",
    "R2D2Config",
    "RecurrentPPO",
    "RecurrentState",
    "ReplayAlignmentError",
    "StaleStateError",
    "StateMismatchError",
    "StateSpec",
    "TetherError",
    "TrackedRNN",
    "__version__",
    "get_mode",
    "mode",
    "set_mode",
    "track",
]

# Where each lazily loaded name lives; loaded once, on first access, then cached in this module.
_LAZY = {
    "EpisodeClock": "tether.clock",
    "RecurrentState": "tether.state",
    "StateSpec": "tether.tracking",
    "TrackedRNN": "tether.tracking",
    "track": "tether.tracking",
    "FactoredRecurrentActorCritic": "tether.nets",
    "PPOConfig": "tether.ppo",
    "RecurrentPPO": "tether.ppo",
    "R2D2": "tether.r2d2",
    "R2D2Config": "tether.r2d2",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tether' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
