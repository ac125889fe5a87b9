"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import tether

PUBLIC = {
    "EpisodeClock", "FactoredRecurrentActorCritic", "GraphLeakError", "LifecycleError", "LifecycleWarning",
    "PPOConfig", "RecurrentPPO", "RecurrentState", "StaleStateError", "StateMismatchError", "StateSpec",
    "TetherError", "TrackedRNN", "__version__", "get_mode", "mode", "set_mode", "track",
}


def test_public_names_are_pinned() -> None:
    """tether.__all__ is exactly the documented surface, and every name resolves."""
    assert set(tether.__all__) == PUBLIC
    for name in tether.__all__:
        assert getattr(tether, name) is not None


def test_public_callables_have_docstrings() -> None:
    """Every public class and function says what it does."""
    for name in tether.__all__:
        obj = getattr(tether, name)
        if callable(obj):
            assert obj.__doc__, name
            assert obj.__doc__.strip(), name
