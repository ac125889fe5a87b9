"""The error kinds tether raises, and the helpers that make their messages teach.

Every error says what happened, where (env rows, episode ids, ticks, shapes) and the one-line fix,
and carries those facts as attributes too, so a caller can act on them programmatically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "ActionMaskError",
    "CheckpointError",
    "ConfigError",
    "GraphLeakError",
    "LifecycleError",
    "LifecycleWarning",
    "MissingDependencyError",
    "NonFiniteError",
    "ObservationError",
    "ReplayAlignmentError",
    "RunFolderError",
    "StaleStateError",
    "StateMismatchError",
    "TetherError",
    "context",
]

_SHOWN_ROWS = 8


class TetherError(Exception):
    """The root of every error tether raises for a user's input or usage.

    Each subclass also subclasses its matching builtin (``ValueError``, ``RuntimeError``), so code
    written against the builtin keeps working. The CLI turns exactly these into one line and exit
    status 2; anything else is a library bug and keeps its traceback.

    Messages come in two layers (as einops writes them): the inner check says what is wrong, and
    the public call it ran under adds where, through :func:`context`.

    Attributes:
        where: the public calls the error passed through, outermost first (empty when raised
            directly by one).
    """

    where: tuple[str, ...] = ()

    def add_context(self, where: str) -> None:
        """Prefix the message with the public call ``where`` (once per call)."""
        if where in self.where or not self.args:
            return
        self.where = (where, *self.where)
        self.args = (f"{where}: {self.args[0]}", *self.args[1:])


class ConfigError(TetherError, ValueError):
    """A configuration key or value is not valid (unknown key, bad value, setting changed on resume)."""


class CheckpointError(TetherError, ValueError):
    """A file is not a readable tether checkpoint (corrupt, truncated, foreign, too new or mismatched)."""


class RunFolderError(TetherError, ValueError):
    """A run folder cannot be used or read.

    It is a file, another trainer holds it, it holds a run that a fresh run would append to, the
    disk refuses a write (read-only, full), or its records are malformed or hold nothing to show.
    """


class NonFiniteError(TetherError, ValueError):
    """A number training depends on is NaN or inf: an env's rewards, or a loss or weight after an update.

    Attributes:
        quantity: what is not finite (``"reward"``, ``"value_loss"``, ``"parameter core.weight_hh_l0"``).
        rows / tick: for rewards, the env rows and the tick (else ``[]`` / ``None``).
        update: for a loss or a weight, the update that made it (else ``None``).
    """

    def __init__(self, message: str, *, quantity: str, rows: list[int] | None = None,
                 tick: int | None = None, update: int | None = None) -> None:
        super().__init__(message)
        self.quantity = quantity
        self.rows = rows or []
        self.tick = tick
        self.update = update


class MissingDependencyError(TetherError, ImportError):
    """An optional dependency a feature needs is not installed (the message names the extra)."""


class ActionMaskError(TetherError, ValueError):
    """An action mask leaves some rows with no allowed action.

    Attributes:
        head: the head's name.
        component: for a MultiDiscrete head, which of its sub-actions (else ``None``).
        rows: the rows at fault: ints for one step ``[B]``, ``(t, b)`` pairs for ``[T, B]``.
    """

    def __init__(self, message: str, *, head: str, component: int | None, rows: list[Any]) -> None:
        super().__init__(message)
        self.head = head
        self.component = component
        self.rows = rows


class ObservationError(TetherError, ValueError):
    """An observation does not fit the policy's observation space (structure, shape or value).

    Attributes:
        leaf: which part of the observation, as ``obs``, ``obs['cue']`` or ``obs[0]``.
        expected / got: what was expected and what was found, as text.
    """

    def __init__(self, message: str, *, leaf: str, expected: str, got: str) -> None:
        super().__init__(message)
        self.leaf = leaf
        self.expected = expected
        self.got = got


class LifecycleError(TetherError):
    """Base class of every hidden-state lifecycle error tether raises.

    Attributes:
        kind: a short machine-readable name of the misuse (``"stale-episode"``, ``"stale-tick"``,
            ``"copied-state"``, ``"graph-window"``, ``"graph-limit"``, ``"graph-stored"``,
            ``"spent-state"``, ``"replay-starts"``, ``"replay-after-rollout"``, ``"replay-state-tick"``,
            ``"replay-state-episode"``, ``"replay-splice"``, ``"mismatch"``).
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
    tick ``t`` is fed at tick ``t' != t`` (reused, forked or stored as the wrong step), when a
    state that came out of a bootstrap read is stepped again, or when a copied state is checked
    against the frozen copy of its clock (``"copied-state"``: ``state.bind(clock)``).

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
        bytes_held: for ``"graph-limit"``, a floor on the memory the graph holds (see
            :data:`tether.tracking.GRAPH_BYTES_PER_STATE_BYTE`).
    """

    kind = "graph"


class ReplayAlignmentError(LifecycleError, RuntimeError):
    """A replay from a snapshot does not line up with what the clock saw during the rollout.

    Raised when a sequence is replayed from a snapshot taken at the wrong tick (after the
    rollout instead of before it), or with ``episode_starts`` that miss episode starts the clock
    recorded (all zeros, or shifted by a step): the replay would carry memory across an episode
    boundary, or start from the wrong state, and train on hidden states collection never had.
    A sequence replay (:func:`tether.replay.check_sequences`) raises it too, against the stamps
    it stores: ``"replay-state-tick"`` (a state stored a step late or early: ``off_by``),
    ``"replay-state-episode"``, ``"replay-starts"`` and ``"replay-splice"`` (ticks that jump, or
    an episode id that changes with no start); there ``rows`` are batch rows and ``env_rows`` and
    ``pairs`` ``(batch row, tick)`` say where.

    Attributes:
        rows: env rows at fault. ticks: the ticks at fault (for ``"replay-starts"``).
        pairs: ``(row, tick)`` of each missed start (for ``"replay-starts"``).
        mistake: which it looks like (for ``"replay-starts"``): ``"all-zero"``, ``"shifted+1"``
            (one step late), ``"shifted-1"`` (one step early), ``"missing"`` or (a replay
            buffer's) ``"extra"``.
        snapshot_ticks / clock_tick: the snapshot's tick per row and the clock's now.
    """

    kind = "replay"


class StateMismatchError(LifecycleError, ValueError):
    """A state does not fit the module, the input or the clock it is used with.

    Batch size, number of layers, hidden size, number of tensors, device or dtype differ.

    Attributes:
        expected / got: what was expected and what was found, as text.
    """

    kind = "mismatch"


class LifecycleWarning(UserWarning):
    """The warning warn mode emits instead of raising; its text is the error's message."""


def format_rows(rows: Iterable[Any]) -> str:
    """Render rows (ints, or ``(t, b)`` pairs) as ``"[0, 3, 5]"``: the first eight, then ``"and N more"``.

    >>> format_rows(range(10))
    '[0, 1, 2, 3, 4, 5, 6, 7, and 2 more]'
    """
    items = [_plain(r) for r in rows]
    head = ", ".join(str(r) for r in items[:_SHOWN_ROWS])
    if len(items) > _SHOWN_ROWS:
        return f"[{head}, and {len(items) - _SHOWN_ROWS} more]"
    return f"[{head}]"


def _plain(item: Any) -> Any:
    if isinstance(item, tuple | list):
        return tuple(_plain(i) for i in item)
    return int(item)


@contextlib.contextmanager
def context(where: str) -> Iterator[None]:
    """Add ``where`` (a public call's name) to any :class:`TetherError` raised inside the block.

    >>> try:
    ...     with context("unroll"):
    ...         raise StateMismatchError("expected batch 4, got 3")
    ... except StateMismatchError as err:
    ...     str(err), err.where
    ('unroll: expected batch 4, got 3', ('unroll',))
    """
    try:
        yield
    except TetherError as err:
        err.add_context(where)
        raise
