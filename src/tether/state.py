"""RecurrentState: an LSTM ``(h, c)`` pair or a GRU ``h`` that knows its episodes and its tick.

Tensors are shaped ``[L, B, H]`` (layers, batch / env rows, hidden). Beside them a state keeps, in
host memory, the episode id of each row, the clock tick it is valid for, the training window its
graph belongs to and how many grad-carrying steps it has accumulated since the last cut. Every
operation returns a new state; tensors are never edited in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from tether._state_data import readonly, restored_fields, to_plain, validate_tensors
from tether._state_rows import StateRows
from tether.clock import EpisodeClock, any_row, as_row_mask
from tether.errors import GraphLeakError, StaleStateError, StateMismatchError, format_rows
from tether.modes import get_mode, report

__all__ = ["RecurrentState"]


@attrs.frozen(slots=True, eq=False, repr=False, kw_only=True)
class RecurrentState(StateRows):
    """The hidden state of a recurrent core, with the bookkeeping that makes misuse detectable.

    Build one with :meth:`zeros`, :meth:`from_tensors` or a tracked module's ``initial_state``;
    then only use the state a tracked module returns, :meth:`reset` rows whose episode ended,
    :meth:`detach` at a training boundary, and :meth:`snapshot` to store it.

    A state is frozen: every transition is a method here that returns a new state, and the rules
    of the bookkeeping live in these methods alone (:meth:`advanced` for a step or an unroll,
    :meth:`split_layers` / :meth:`stack_layers` for an actor and a critic core, :meth:`cat` for
    rows, :meth:`stack_snapshots` for a replay minibatch, :meth:`bind` for a copy; the row and
    layer transitions are inherited from :class:`~tether._state_rows.StateRows`).

    Attributes:
        tensors: ``(h,)`` or ``(h, c)``, each ``[L, B, H]``.
        clock: the :class:`EpisodeClock` this state is checked against, or ``None`` (unchecked).
        episode_ids: int64 ``[B]``: the episode each row belongs to (``None`` without a clock).
        env_rows: int64 ``[B]``: which clock rows the state's rows are (``None``: rows ``0..B-1``).
        tick: the clock tick this state is valid for (``None`` without a clock).
        window: the training window its graph belongs to.
        graph_steps: grad-carrying steps accumulated since the last detach.
        is_snapshot: a detached stored copy, exempt from the tick check (replay starts from it).
        spent: produced by a bootstrap read; it may not be stepped again.
        row_ticks: int64 ``[B]``, the tick of each row when they differ (a replay minibatch stacks
            snapshots taken at several chunk starts); ``tick`` is then ``None``. See :meth:`ticks`.
    """

    tensors: tuple[torch.Tensor, ...]
    clock: EpisodeClock | None = None
    episode_ids: np.ndarray | None = None
    env_rows: np.ndarray | None = None
    tick: int | None = None
    window: int = 0
    graph_steps: int = 0
    is_snapshot: bool = False
    spent: bool = False
    verified: int = -1  # clock.renewals at which the ids were last checked equal to the clock's
    row_ticks: np.ndarray | None = None  # int64 [B]: per-row ticks (a replay minibatch's snapshots)

    # ----------------------------------------------------------------------------------------
    # construction
    @classmethod
    def zeros(
        cls,
        num_layers: int,
        batch_size: int,
        hidden_size: int,
        *,
        has_c: bool = True,
        clock: EpisodeClock | None = None,
        env_rows: Sequence[int] | np.ndarray | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> RecurrentState:
        """A zero state ``[num_layers, batch_size, hidden_size]``, stamped with the clock's now.

        Args:
            num_layers: layers ``L`` (times 2 for a bidirectional module).
            batch_size: rows ``B``; equals ``clock.num_envs`` unless ``env_rows`` is given.
            hidden_size: ``H``.
            has_c: ``True`` for an LSTM ``(h, c)`` pair, ``False`` for a GRU / RNN ``h``.
            clock: the clock to check against; ``None`` makes an unchecked state.
            env_rows: which clock rows the state covers, when it is not all of them.
            device / dtype: of the tensors (torch defaults when ``None``).

        Raises:
            StateMismatchError: when ``batch_size`` does not match the clock / ``env_rows``.

        >>> s = RecurrentState.zeros(1, 4, 8, clock=EpisodeClock(4))
        >>> s.h.shape, s.tick, s.episode_ids.tolist()
        (torch.Size([1, 4, 8]), 0, [0, 1, 2, 3])
        """
        tensors = tuple(
            torch.zeros(num_layers, batch_size, hidden_size, device=device, dtype=dtype)
            for _ in range(2 if has_c else 1)
        )
        return cls.from_tensors(tensors, clock=clock, env_rows=env_rows)

    @classmethod
    def from_tensors(
        cls,
        tensors: torch.Tensor | Sequence[torch.Tensor],
        *,
        clock: EpisodeClock | None = None,
        env_rows: Sequence[int] | np.ndarray | None = None,
    ) -> RecurrentState:
        """Wrap existing ``(h, c)`` / ``h`` tensors ``[L, B, H]``, taken to be current on ``clock``.

        Raises:
            StateMismatchError: for malformed tensors or a batch that does not fit the clock.
        """
        tensors = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
        validate_tensors(tensors)
        batch = tensors[0].shape[1]
        if clock is None:
            return cls(tensors=tensors)
        rows = None if env_rows is None else np.asarray(env_rows, dtype=np.int64)
        expected = clock.num_envs if rows is None else rows.size
        if batch != expected or (rows is not None and (rows.min() < 0 or rows.max() >= clock.num_envs)):
            raise StateMismatchError(
                f"RecurrentState: expected batch {expected} to match the clock's {clock.num_envs}"
                f" rows{' (env_rows given)' if rows is not None else ''}, got batch {batch}",
                fix="build the state with batch_size=clock.num_envs, or pass env_rows",
                expected=str(expected), got=str(batch),
            )
        ids = clock.episode_ids if rows is None else readonly(clock.episode_ids[rows])
        return cls(tensors=tensors, clock=clock, episode_ids=ids,
                   env_rows=None if rows is None else readonly(rows), tick=clock.tick,
                   window=clock.window, verified=clock.renewals)

    # ----------------------------------------------------------------------------------------
    # steps: the rules of tick, window, graph age and verification, in one place
    def advanced(
        self,
        tensors: tuple[torch.Tensor, ...],
        steps: int,
        *,
        ids_verified: bool = False,
        bootstrap: bool = False,
        episode_ids: np.ndarray | None = None,
    ) -> RecurrentState:
        """The state after ``steps`` steps of a core from this one (a tracked step or an unroll).

        For tracked modules and sequence engines; a user's loop never calls it. The rules:

        - ``tick`` moves ``steps`` ahead; episode ids, rows and the snapshot flag are kept.
        - ``graph_steps`` grows by ``steps`` while the new tensors carry a graph, else is 0.
        - ``window`` is the window the graph started in: kept while a graph carries on from this
          state, else the clock's current window (a new graph, or none, belongs to now).
        - ``verified`` becomes the clock's renewal count when the step just checked the ids
          (``ids_verified``), else is kept: a step never changes the ids it verified.
        - ``spent`` marks the result of a bootstrap read, which may not be stepped again.
        - ``episode_ids``, when given, replace the ids (an unroll whose rows restarted inside
          the sequence: those rows now belong to the episode the clock gave them).

        Args:
            tensors: the core's new ``(h,)`` / ``(h, c)``, ``[L, B, H]`` each.
            steps: how many steps the core took.
            ids_verified: whether the step compared this state's ids with the clock's and found
                them current.
            bootstrap: whether the step was the truncation bootstrap read.
            episode_ids: int64 ``[B]`` ids for the new state (read-only), else the current ones.
        """
        clock = self.clock
        graph = tensors[0].requires_grad
        # Built directly, not through attrs.evolve: this runs once per step (half the cost).
        return RecurrentState(
            tensors=tensors,
            clock=clock,
            episode_ids=self.episode_ids if episode_ids is None else episode_ids,
            env_rows=self.env_rows,
            tick=None if self.tick is None else self.tick + steps,
            window=self._graph_window(carries_on=graph and self.graph_steps > 0),
            graph_steps=self.graph_steps + steps if graph else 0,
            is_snapshot=self.is_snapshot,
            spent=bootstrap,
            verified=clock.renewals if ids_verified and clock is not None else self.verified,
            row_ticks=None if self.row_ticks is None else readonly(self.row_ticks + steps),
        )

    def _graph_window(self, *, carries_on: bool) -> int:
        """The window of a state's graph: kept while it carries on, else the clock's now."""
        if carries_on or self.clock is None:
            return self.window
        return self.clock.window

    def split_layers(self, cut: int) -> tuple[RecurrentState, RecurrentState]:
        """The layers ``[:cut]`` and ``[cut:]`` as two states with this one's bookkeeping.

        A policy with a separate critic core keeps ONE state, the actor's layers first; each core
        steps (and is checked on) its own half, and :meth:`stack_layers` joins the halves again.

        Raises:
            ValueError: when ``cut`` does not leave layers on both sides.
        """
        if not 0 < cut < self.num_layers:
            raise ValueError(f"RecurrentState.split_layers: expected 0 < cut < {self.num_layers}, got {cut}")
        return (self._with_tensors(tuple(t[:cut] for t in self.tensors)),
                self._with_tensors(tuple(t[cut:] for t in self.tensors)))

    def _with_tensors(self, tensors: tuple[torch.Tensor, ...]) -> RecurrentState:
        # This state's bookkeeping on other tensors, built directly (attrs.evolve costs twice as
        # much, and act splits a separate critic's state every strict step).
        return RecurrentState(
            tensors=tensors, clock=self.clock, episode_ids=self.episode_ids, env_rows=self.env_rows,
            tick=self.tick, window=self.window, graph_steps=self.graph_steps,
            is_snapshot=self.is_snapshot, spent=self.spent, verified=self.verified,
            row_ticks=self.row_ticks,
        )

    @classmethod
    def stack_snapshots(
        cls, snapshots: Sequence[RecurrentState], chunks: torch.Tensor, rows: torch.Tensor
    ) -> RecurrentState:
        """The start state of a replay minibatch: row ``rows[j]`` of snapshot ``chunks[j]``.

        Args:
            snapshots: one stored snapshot per chunk of a rollout, ``[L, E, H]`` each.
            chunks / rows: int64 ``[B_mb]``: which chunk and which env row each sequence starts at.

        Returns:
            A snapshot ``[L, B_mb, H]``; when the snapshots share a clock, each row keeps its tick
            (:attr:`row_ticks`), env row and episode id, for the replay-alignment checks.

        Raises:
            StateMismatchError: when the snapshots differ in kind or shape.
        """
        if not snapshots:
            raise ValueError("RecurrentState.stack_snapshots: expected at least one snapshot, got none")
        first = snapshots[0]
        for snap in snapshots[1:]:
            if snap.has_c != first.has_c or snap.tensors[0].shape != first.tensors[0].shape:
                raise StateMismatchError(
                    "RecurrentState.stack_snapshots: expected snapshots of one kind and shape, got"
                    f" {list(first.tensors[0].shape)} and {list(snap.tensors[0].shape)}",
                    expected=str(list(first.tensors[0].shape)), got=str(list(snap.tensors[0].shape)),
                )
        tensors = []
        for i in range(len(first.tensors)):
            stacked = torch.stack([s.tensors[i] for s in snapshots]).to(rows.device)  # [K, L, E, H]
            tensors.append(stacked[chunks, :, rows].transpose(0, 1).contiguous())  # [L, B_mb, H]
        clock = first.clock
        if clock is None or any(s.clock is not clock or s.tick is None or s.episode_ids is None
                                for s in snapshots):
            return cls(tensors=tuple(tensors), is_snapshot=True)
        # With a clock, each row keeps the tick, env row and episode it was stored at, so a replay
        # can be checked against what the clock saw (tether.sequence.unroll does).
        k, r = chunks.cpu().numpy(), rows.cpu().numpy()
        ids = np.stack([s.episode_ids for s in snapshots])  # type: ignore[misc]  # [K, E]
        env_rows = np.stack([s.rows() for s in snapshots])
        ticks = np.array([s.tick for s in snapshots], dtype=np.int64)
        return cls(tensors=tuple(tensors), clock=clock, episode_ids=readonly(ids[k, r]),
                   env_rows=readonly(env_rows[k, r]), row_ticks=readonly(ticks[k]), is_snapshot=True)

    # ----------------------------------------------------------------------------------------
    # lifecycle
    def reset(self, mask: Any = None) -> RecurrentState:
        """Zero the masked rows (all rows when ``mask`` is ``None``) and adopt the clock's ids.

        Call it right after ``clock.advance(done)`` with the same ``done``: rows whose episode
        ended start the new one from zeros. Rows not in the mask keep their values and ids.

        Args:
            mask: bool ``[B]`` (numpy, torch or a sequence); ``None`` resets every row.

        Returns:
            A new state; this one is unchanged.

        Raises:
            ValueError: when ``mask`` is not a bool mask of shape ``(B,)``.
        """
        clock = self.clock
        if mask is None:
            tensors = tuple(torch.zeros_like(t, requires_grad=False) for t in self.tensors)
            ids = None
            if clock is not None:
                ids = clock.episode_ids if self.env_rows is None else readonly(
                    clock.episode_ids[self.env_rows])
            return attrs.evolve(self, tensors=tensors, episode_ids=ids, graph_steps=0,
                                verified=-1 if clock is None else clock.renewals,
                                window=self._graph_window(carries_on=False))
        flags = as_row_mask(mask, self.batch_size, "RecurrentState.reset(mask)")
        if not any_row(flags):
            return self
        keep = torch.from_numpy(~flags).to(self.device, non_blocking=True).view(1, -1, 1)
        tensors = tuple(torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))
                        for t in self.tensors)
        changes: dict[str, Any] = {}
        if clock is not None and self.episode_ids is not None:
            current = clock.episode_ids if self.env_rows is None else clock.episode_ids[self.env_rows]
            ids = self.episode_ids.copy()
            ids[flags] = current[flags]
            changes["episode_ids"] = readonly(ids)
            # Only still-valid if every row now matches the clock; otherwise recheck at next use.
            changes["verified"] = clock.renewals if np.array_equal(ids, current) else -1
        if flags.all():
            changes["graph_steps"] = 0
            tensors = tuple(t.detach() for t in tensors)
        return attrs.evolve(self, tensors=tensors, **changes)

    def detach(self) -> RecurrentState:
        """Cut the autograd graph; the state may now cross a training-window boundary.

        Returns:
            A new state with detached tensors, zero graph steps and the clock's current window.
        """
        return attrs.evolve(self, tensors=tuple(t.detach() for t in self.tensors), graph_steps=0,
                            window=self._graph_window(carries_on=False))

    def snapshot(self) -> RecurrentState:
        """A detached copy for storage (rollout buffers, replay), exempt from the tick check.

        Replay through a tracked module or :mod:`tether.sequence` may start from a snapshot at any
        later time; the copy owns its memory, so later in-place edits elsewhere cannot reach it.
        """
        return attrs.evolve(self, tensors=tuple(t.detach().clone() for t in self.tensors), graph_steps=0,
                            is_snapshot=True)

    def for_buffer(self) -> RecurrentState:
        """The state as a buffer must store it: a snapshot, refusing a live graph.

        A state that still carries an autograd graph would keep that whole graph alive for as long
        as the buffer holds it (the classic slow leak).

        Raises:
            GraphLeakError: in strict mode, when the state carries a graph (warn mode warns; both
                then store a detached snapshot, never the graph).
        """
        if self.has_graph and get_mode() != "off":
            report(GraphLeakError(
                f"a state carrying an autograd graph ({self.graph_steps} step(s)) was stored in a"
                " buffer; the buffer would keep the whole graph alive",
                kind="graph-stored", fix="store state.snapshot() (or state.detach()), not the live state",
                graph_steps=self.graph_steps,
            ))
        return self.snapshot()

    # ----------------------------------------------------------------------------------------
    # copies, devices, serialisation
    def bind(self, clock: EpisodeClock) -> RecurrentState:
        """This state, checked against ``clock`` from now on: how a copied state rejoins the live clock.

        ``copy.deepcopy(state)`` or a pickle round trip copies the state's clock too, and that
        copy never moves; ``state = copied.bind(clock)`` binds the copy to the clock the loop
        advances. (Copying the clock and the state together, and going on with the copied clock,
        needs no bind.) A state without a clock is taken to be current on ``clock``.

        Args:
            clock: the live clock.

        Returns:
            A new state on ``clock``; its ids are compared with the clock's at its next step.

        Raises:
            TypeError: when ``clock`` is not an :class:`EpisodeClock`.
            StateMismatchError: when the state's rows do not fit the clock, or it holds episode
                ids the clock has not given.
            StaleStateError: when a live state is for another tick than the clock's, or a
                snapshot for a later one.
        """
        if not isinstance(clock, EpisodeClock):
            raise TypeError(f"RecurrentState.bind: expected an EpisodeClock, got {type(clock).__name__}")
        rows = self.rows()
        if (self.env_rows is None and self.batch_size != clock.num_envs) or int(rows.max()) >= clock.num_envs:
            need = self.batch_size if self.env_rows is None else int(rows.max()) + 1
            raise StateMismatchError(
                f"RecurrentState.bind: expected a clock of {need} rows (the state's), got one of"
                f" {clock.num_envs}", fix="bind the state to the clock it was made with",
                expected=str(need), got=str(clock.num_envs),
            )
        if self.episode_ids is None:
            return RecurrentState.from_tensors(self.tensors, clock=clock, env_rows=self.env_rows)
        current = clock.episode_ids[rows]
        if (self.episode_ids > current).any():
            bad = np.flatnonzero(self.episode_ids > current)
            raise StateMismatchError(
                f"RecurrentState.bind: rows {format_rows(rows[bad])} hold episode ids"
                f" {format_rows(self.episode_ids[bad])} the clock has not given (its ids there are"
                f" {format_rows(current[bad])}): the state belongs to another clock",
                fix="bind the state to the clock it was made with", expected=str(current[bad].tolist()),
                got=str(self.episode_ids[bad].tolist()),
            )
        ticks = self.ticks()
        if (not self.is_snapshot and self.tick != clock.tick) or int(ticks.max()) > clock.tick:
            raise StaleStateError(
                f"RecurrentState.bind: the state is for tick {int(ticks.max())}, the clock is at tick"
                f" {clock.tick}", kind="stale-tick",
                fix="bind the state the loop holds now to the clock the loop advances",
                state_tick=int(ticks.max()), clock_tick=clock.tick,
            )
        return attrs.evolve(self, clock=clock, verified=-1,
                            window=self.window if self.has_graph else clock.window)

    def clone(self) -> RecurrentState:
        """A copy with cloned tensors (the graph is kept, as :meth:`torch.Tensor.clone` keeps it).

        For storage use :meth:`snapshot`, which also detaches.
        """
        return attrs.evolve(self, tensors=tuple(t.clone() for t in self.tensors))

    def to(self, *args: Any, **kwargs: Any) -> RecurrentState:
        """Move / cast the tensors like :meth:`torch.Tensor.to`; the bookkeeping is kept."""
        return attrs.evolve(self, tensors=tuple(t.to(*args, **kwargs) for t in self.tensors))

    def state_dict(self) -> dict[str, Any]:
        """Tensors and bookkeeping as tensors and plain Python values (the clock is not included).

        The dict loads under ``torch.load(weights_only=True)``: the per-row ids, rows and ticks are
        int64 tensors, the rest ints, bools and ``None``.
        """
        return to_plain(self.tensors, self.episode_ids, self.env_rows, self.tick, self.window,
                        self.is_snapshot, self.row_ticks)

    @classmethod
    def from_state_dict(
        cls, data: dict[str, Any], *, clock: EpisodeClock | None = None,
        device: torch.device | str | None = None,
    ) -> RecurrentState:
        """Rebuild a state saved by :meth:`state_dict`, bound to ``clock`` (checked at next use).

        Raises:
            ValueError: when ``data`` misses a key.
            StateMismatchError: when its tensors are malformed.
        """
        return cls(**restored_fields(data, clock, device))

    def __getstate__(self) -> dict[str, Any]:
        # A pickled state never carries its graph: the tensors are stored detached.
        return {**self.state_dict(), "clock": self.clock, "spent": self.spent}

    def __setstate__(self, data: dict[str, Any]) -> None:
        fields = {**restored_fields(data, data["clock"], None), "spent": bool(data["spent"])}
        for field in attrs.fields(RecurrentState):
            object.__setattr__(self, field.name, fields.get(field.name, field.default))

    def __repr__(self) -> str:
        kind = "lstm" if self.has_c else "gru"
        extra = " snapshot" if self.is_snapshot else ""
        extra += " spent" if self.spent else ""
        return (f"RecurrentState({kind}, L={self.num_layers}, B={self.batch_size},"
                f" H={self.hidden_size}, tick={self.tick}, window={self.window},"
                f" graph_steps={self.graph_steps}, {self.dtype}, {self.device}{extra})")
