"""The error kinds tether raises, and the helpers that make their messages teach.

Every error says what happened, where (env rows, episode ids, ticks, shapes) and the one-line fix,
and carries those facts as attributes too, so a caller can act on them programmatically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "GraphLeakError",
    "LifecycleError",
    "LifecycleWarning",
    "StaleStateError",
    "StateMismatchError",
]

_SHOWN_ROWS = 8


class LifecycleError(Exception):
    """Base class of every hidden-state lifecycle error tether raises.

    Attributes:
        kind: a short machine-readable name of the misuse (``"stale-episode"``, ``"stale-tick"``,
            ``"graph-window"``, ``"graph-limit"``, ``"graph-stored"``, ``"spent-state"``,
            ``"mismatch"``).
        fix: the one-line fix, also the last line of the message.
    """

    kind: str = "lifecycle"

    def __init__(self, message: str, *, kind: str | None = None, fix: str = "", **facts: Any):
        self.kind = kind or type(self).kind
        self.fix = fix
        for name, value in facts.items():
            setattr(self, name, value)
        text = message if not fix else f"{message}\n  fix: {fix}"
        super().__init__(text)


class StaleStateError(LifecycleError, RuntimeError):
    """A state (or some of its rows) belongs to an episode or a tick that is no longer current.

    Raised when a row is used after its env's episode ended without ``reset``, when a state from
    tick ``t`` is fed at tick ``t' != t`` (reused, forked or stored as the wrong step), or when a
    state that came out of a bootstrap read is stepped again.

    Attributes:
        rows: env rows at fault (for an episode error), else ``None``.
        state_ids / clock_ids: the episode ids the state holds and the clock's ids for those rows.
        state_tick / clock_tick: the tick the state is valid for and the clock's tick.
    """

    kind = "stale"


class GraphLeakError(LifecycleError, RuntimeError):
    """A state carries an autograd graph where it must not: across a window, too long, or stored.

    Attributes:
        state_window / clock_window: the training window of the state's graph and the clock's.
        graph_steps / limit: steps of graph carried and the configured limit.
    """

    kind = "graph"


class StateMismatchError(LifecycleError, ValueError):
    """A state does not fit the module, the input or the clock it is used with.

    Batch size, number of layers, hidden size, number of tensors, device or dtype differ.

    Attributes:
        expected / got: what was expected and what was found, as text.
    """

    kind = "mismatch"


class LifecycleWarning(UserWarning):
    """The warning warn mode emits instead of raising; its text is the error's message."""


def format_rows(rows: Iterable[int]) -> str:
    """Render env rows as ``"[0, 3, 5]"``, the first eight then ``"and N more"``."""
    rows = [int(r) for r in rows]
    head = ", ".join(str(r) for r in rows[:_SHOWN_ROWS])
    if len(rows) > _SHOWN_ROWS:
        return f"[{head}, and {len(rows) - _SHOWN_ROWS} more]"
    return f"[{head}]"
