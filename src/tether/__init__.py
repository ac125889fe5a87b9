"""tether: hidden-state lifecycle for recurrent reinforcement learning in PyTorch.

An LSTM's ``(h, c)`` (a GRU's ``h``) is wrapped in a :class:`RecurrentState` that knows which
episode and which step each row belongs to, checked against an :class:`EpisodeClock` fed by the
environment. Misuse (a missed reset, a graph kept across a training boundary, an old state fed
again) raises in ``strict`` mode, warns in ``warn`` mode (the default) and is skipped in ``off``.
"""

from typing import Any

from tether.clock import EpisodeClock
from tether.errors import (
    GraphLeakError,
    LifecycleError,
    LifecycleWarning,
    StaleStateError,
    StateMismatchError,
)
from tether.modes import get_mode, mode, set_mode
from tether.modules import StateSpec, TrackedRNN, track
from tether.state import RecurrentState

__version__ = "0.1.0"

__all__ = [
    "EpisodeClock",
    "FactoredRecurrentActorCritic",
    "GraphLeakError",
    "LifecycleError",
    "LifecycleWarning",
    "PPOConfig",
    "RecurrentPPO",
    "RecurrentState",
    "StaleStateError",
    "StateMismatchError",
    "StateSpec",
    "TrackedRNN",
    "__version__",
    "get_mode",
    "mode",
    "set_mode",
    "track",
]

# The layers built on the core pull in gymnasium and the trainer; load them on first use so that
# `import tether` stays light for users who only want the state container.
_LAZY = {
    "FactoredRecurrentActorCritic": "tether.nets",
    "PPOConfig": "tether.ppo",
    "RecurrentPPO": "tether.ppo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tether' has no attribute {name!r}")
