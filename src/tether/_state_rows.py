"""The rows and layers of a RecurrentState: selection, concatenation, and joining layer halves.

:class:`StateRows` is a mixin of :class:`~tether.RecurrentState`: these transitions return a new
state of the same class, and the rules for joining bookkeeping (a joined state is as old and as
unverified as its worst part) live in :meth:`StateRows._combined`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import attrs
import numpy as np
import torch

from tether._state_data import StateViews, readonly, validate_tensors
from tether.clock import EpisodeClock
from tether.errors import StateMismatchError

__all__ = ["StateRows"]

_S = TypeVar("_S", bound="StateRows")


class StateRows(StateViews):
    """Row selection, concatenation and layer stacking of a state (see :class:`~tether.RecurrentState`)."""

    __slots__ = ()
    clock: EpisodeClock | None
    episode_ids: np.ndarray | None
    graph_steps: int
    window: int
    verified: int
    spent: bool
    is_snapshot: bool

    def _evolve(self: _S, **changes: Any) -> _S:
        """This state with ``changes`` to its fields (the subclass is an attrs class)."""
        return attrs.evolve(self, **changes)  # type: ignore[misc]

    @classmethod
    def stack_layers(cls, states: Sequence[_S]) -> _S:
        """Stack states of the same rows along the layer axis (the inverse of :meth:`split_layers`).

        The result's graph is as old as the oldest part's, its window the earliest part's, and its
        ids verified only as recently as the least recently verified part.

        Raises:
            StateMismatchError: when the states do not share clock, rows, tick and kind.
        """
        first = cls._compatible(states, "stack_layers")
        for s in states[1:]:
            if not np.array_equal(s.rows(), first.rows()) or s.batch_size != first.batch_size:
                raise StateMismatchError(
                    "RecurrentState.stack_layers: expected states of the same rows, got batch"
                    f" {first.batch_size} and {s.batch_size}",
                    expected=str(first.batch_size), got=str(s.batch_size),
                )
        tensors = tuple(torch.cat([s.tensors[i] for s in states], dim=0) for i in range(len(first.tensors)))
        return first._evolve(tensors=tensors, **cls._combined(states))

    @staticmethod
    def _combined(states: Sequence[StateRows]) -> dict[str, Any]:
        # The joined state is as old and as unverified as its worst part.
        return {"graph_steps": max(s.graph_steps for s in states),
                "window": min(s.window for s in states),
                "verified": min(s.verified for s in states),
                "spent": any(s.spent for s in states)}

    @staticmethod
    def _compatible(states: Sequence[_S], what: str) -> _S:
        if not states:
            raise ValueError(f"RecurrentState.{what}: expected at least one state, got none")
        first = states[0]
        for s in states[1:]:
            ticks_differ = s.tick != first.tick and s.row_ticks is None and first.row_ticks is None
            if (s.clock is not first.clock or ticks_differ or s.has_c != first.has_c
                    or s.is_snapshot != first.is_snapshot):
                hint = ("; snapshots of different ticks form a replay minibatch through"
                        " RecurrentState.stack_snapshots" if s.tick != first.tick else "")
                raise StateMismatchError(
                    f"RecurrentState.{what}: expected states of one clock, tick and kind; got ticks"
                    f" {first.tick} and {s.tick}, has_c={first.has_c} and has_c={s.has_c}{hint}",
                    expected=f"tick {first.tick}", got=f"tick {s.tick}",
                )
        return first

    def select_rows(self: _S, index: Any) -> _S:
        """The state of some rows: an int array / list / tensor, a bool mask ``[B]``, or a slice.

        ``state[rows]`` does the same for an array, list, tensor or mask (not for an int or a
        slice, which a ``(h, c)`` tuple would read as "tensor i": see :meth:`__getitem__`).

        Raises:
            ValueError: for a selection that is not one-dimensional.
        """
        if isinstance(index, int | np.integer):
            index = [int(index)]
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        positions = np.arange(self.batch_size, dtype=np.int64)[index]
        if positions.ndim != 1:
            raise ValueError(f"RecurrentState.select_rows: expected a 1-d row selection, got {index!r}")
        picker = torch.from_numpy(positions).to(self.device)
        tensors = tuple(t.index_select(1, picker) for t in self.tensors)
        changes: dict[str, Any] = {}
        if self.row_ticks is not None:
            changes["row_ticks"] = readonly(self.row_ticks[positions])
        if self.clock is not None and self.episode_ids is not None:
            changes["env_rows"] = readonly(self.rows()[positions])
            changes["episode_ids"] = readonly(self.episode_ids[positions])
        return self._evolve(tensors=tensors, **changes)

    def __getitem__(self: _S, index: Any) -> _S:
        """Rows by an int array, list, tensor or bool mask ``[B]`` (see :meth:`select_rows`).

        A state is not a tuple: ``state[0]`` (an int), ``state[:1]`` (a slice) and
        ``state[0][:, idx]`` (what a script written for ``(h, c)`` reaches for) raise a
        ``TypeError`` that names ``state.h`` / ``state.c`` and :meth:`select_rows` instead of
        quietly selecting rows.

        Raises:
            TypeError: for an int, a slice or a tuple index.
        """
        if isinstance(index, int | np.integer | slice | tuple):
            shown = "state[...]" if index is Ellipsis else f"state[{index!r}]"
            raise TypeError(
                f"{shown}: a RecurrentState is not an (h, c) tuple, and an int or a slice would read"
                " as a tuple index; use state.h / state.c (or state.tensors) for the tensors, and"
                " state.select_rows(rows) for rows"
            )
        return self.select_rows(index)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Refused: unpacking a state like ``h, c = state`` would walk its rows, not its tensors.

        Raises:
            TypeError: always, naming the spellings that work.
        """
        raise TypeError(
            "a RecurrentState is not an (h, c) tuple: unpacking or iterating it is refused (it would"
            " walk the batch rows); use `h, c = state.h, state.c` (or `state.tensors`), and"
            " `state.select_rows(rows)` for rows"
        )

    def __len__(self) -> int:
        """Refused, as for a tuple's length: use :attr:`batch_size` or ``len(state.tensors)``.

        Raises:
            TypeError: always.
        """
        raise TypeError("len(state): a RecurrentState is not an (h, c) tuple; use state.batch_size for"
                        " the rows, len(state.tensors) for the tensors")

    def __bool__(self) -> bool:
        return True

    @classmethod
    def cat(cls, states: Sequence[_S]) -> _S:
        """Concatenate states along the batch (rows); they must share clock, tick and kind.

        Raises:
            StateMismatchError: when the states do not fit together.
        """
        first = cls._compatible(states, "cat")
        tensors = tuple(torch.cat([s.tensors[i] for s in states], dim=1)
                        for i in range(len(first.tensors)))
        validate_tensors(tensors)
        changes = cls._combined(states)
        if any(s.row_ticks is not None for s in states):
            changes["row_ticks"] = readonly(np.concatenate([s.ticks() for s in states]))
        if first.clock is not None and first.episode_ids is not None:
            changes["episode_ids"] = readonly(np.concatenate([s.episode_ids for s in states]))
            changes["env_rows"] = readonly(np.concatenate([s.rows() for s in states]))
        return first._evolve(tensors=tensors, **changes)

