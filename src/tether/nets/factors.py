"""Action factors: how a gymnasium action space splits into heads and lays out its action tensor.

A Discrete, MultiDiscrete or Box space is one factor; a Dict or Tuple of those is one factor per
entry (Dict keys in the space's own order, which gymnasium sorts). The action tensor a policy
returns is int64 ``[N]`` for Discrete, int64 ``[N, n]`` for MultiDiscrete, float ``[N, d]`` for Box
and, for a Dict / Tuple, float ``[N, A]``: the factors' columns concatenated in head order (a
Discrete entry takes one column, MultiDiscrete ``n``, Box ``d``; indices are exact in float).
Indices are zero-based; :meth:`ActionLayout.to_env` adds a space's ``start`` back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from gymnasium import spaces

__all__ = ["ActionFactor", "ActionLayout"]

FactorKind = Literal["discrete", "multi_discrete", "box"]

_SUPPORTED = "Discrete, MultiDiscrete, Box, or a Dict / Tuple of those"
# Discrete indices travel as floats inside a Dict / Tuple action tensor; float32 is exact to 2**24.
_MAX_EXACT_INDEX = 2**24


@attrs.frozen
class ActionFactor:
    """One head of a factored action space.

    Attributes:
        name: the Dict key, the Tuple position as text, or ``"action"`` for a single space.
        kind: ``"discrete"``, ``"multi_discrete"`` or ``"box"``.
        space: the gymnasium space of this factor.
        sizes: choices per categorical component (``(n,)`` for Discrete, the flattened ``nvec``
            for MultiDiscrete, ``()`` for Box).
        dim: columns the factor takes in the action tensor (1, ``len(sizes)`` or ``d``).
        column: its first column in a Dict / Tuple action tensor.
        mask_offset: its first column in the concatenated mask (``-1`` for Box).
    """

    name: str
    kind: FactorKind
    space: spaces.Space[Any]
    sizes: tuple[int, ...]
    dim: int
    column: int
    mask_offset: int

    @property
    def is_discrete(self) -> bool:
        """Whether the factor is categorical (and so can be masked)."""
        return self.kind != "box"

    @property
    def param_size(self) -> int:
        """Outputs of its linear layer: logits for every choice, or the Gaussian means."""
        return sum(self.sizes) if self.is_discrete else self.dim

    @property
    def mask_size(self) -> int:
        """Columns of its action mask (0 for Box)."""
        return sum(self.sizes)


def _factor(name: str, space: spaces.Space[Any], column: int, mask_offset: int) -> ActionFactor:
    if isinstance(space, spaces.Discrete):
        return ActionFactor(name, "discrete", space, (int(space.n),), 1, column, mask_offset)
    if isinstance(space, spaces.MultiDiscrete):
        sizes = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        return ActionFactor(name, "multi_discrete", space, sizes, len(sizes), column, mask_offset)
    if isinstance(space, spaces.Box):
        return ActionFactor(name, "box", space, (), int(np.prod(space.shape)), column, -1)
    nested = " (nested Dict / Tuple action spaces are not supported: flatten them)" if isinstance(
        space, spaces.Dict | spaces.Tuple) else ""
    raise TypeError(
        f"FactoredRecurrentActorCritic: unsupported action space {space!r} for head {name!r};"
        f" expected {_SUPPORTED}{nested}"
    )


class ActionLayout:
    """The factors of an action space and the conversions of its action tensor.

    Args:
        space: a Discrete, MultiDiscrete or Box space, or a Dict / Tuple of those.

    Raises:
        TypeError: for any other space (Text, Graph, MultiBinary, a nested Dict, ...).
        ValueError: for an empty Dict / Tuple, or a Discrete too large to travel as float32.

    >>> layout = ActionLayout(spaces.Dict({"move": spaces.Discrete(3),
    ...                                    "aim": spaces.Box(-1.0, 1.0, (2,))}))
    >>> [(f.name, f.kind, f.column) for f in layout.factors], layout.action_shape
    ([('aim', 'box', 0), ('move', 'discrete', 2)], (3,))
    """

    def __init__(self, space: spaces.Space[Any]) -> None:
        self.space = space
        self.composite: Literal["dict", "tuple"] | None = None
        if isinstance(space, spaces.Dict):
            self.composite = "dict"
            entries: list[tuple[str, spaces.Space[Any]]] = list(space.spaces.items())
        elif isinstance(space, spaces.Tuple):
            self.composite = "tuple"
            entries = [(str(i), s) for i, s in enumerate(space.spaces)]
        else:
            entries = [("action", space)]
        if not entries:
            raise ValueError(f"FactoredRecurrentActorCritic: the action space {space!r} has no entries")
        factors: list[ActionFactor] = []
        column = mask_offset = 0
        for name, sub in entries:
            factor = _factor(name, sub, column, mask_offset)
            factors.append(factor)
            column += factor.dim
            mask_offset += factor.mask_size
        self.factors: tuple[ActionFactor, ...] = tuple(factors)
        self.mask_size = mask_offset
        self.discrete = tuple(f for f in self.factors if f.is_discrete)
        if self.composite is not None and any(n > _MAX_EXACT_INDEX for f in self.discrete for n in f.sizes):
            raise ValueError(
                f"FactoredRecurrentActorCritic: a Dict / Tuple action space carries indices as"
                f" float32, exact only up to {_MAX_EXACT_INDEX} choices; got {space!r}"
            )

    @property
    def action_shape(self) -> tuple[int, ...]:
        """The action tensor's shape after the batch dims: ``()``, ``(n,)``, ``(d,)`` or ``(A,)``."""
        if self.composite is None and self.factors[0].kind == "discrete":
            return ()
        return (sum(f.dim for f in self.factors),)

    @property
    def is_float(self) -> bool:
        """Whether the action tensor is floating point (Box, Dict, Tuple) rather than int64."""
        return self.composite is not None or self.factors[0].kind == "box"

    def names(self) -> list[str]:
        """Head names, in order."""
        return [f.name for f in self.factors]

    # ------------------------------------------------------------------------------------------
    # tensor <-> per-factor parts (pure tensor ops: they trace under torch.compile)
    def split(self, actions: torch.Tensor) -> list[torch.Tensor]:
        """Per-factor parts of ``actions [N, *action_shape]``: int64 ``[N]`` / ``[N, n]``, float ``[N, d]``.
        """
        if self.composite is None:
            factor = self.factors[0]
            return [actions if factor.kind == "box" else actions.long()]
        parts = []
        for f in self.factors:
            cols = actions[:, f.column : f.column + f.dim]
            if f.kind == "box":
                parts.append(cols)
            else:
                index = torch.round(cols).long()
                parts.append(index.squeeze(-1) if f.kind == "discrete" else index)
        return parts

    def join(self, parts: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The action tensor from per-factor parts (inverse of :meth:`split`).

        Args:
            parts: as :meth:`split` returns them.
            dtype: the float dtype of a Dict / Tuple action tensor.
        """
        if self.composite is None:
            return parts[0]
        columns = [p.to(dtype).reshape(p.shape[0], f.dim) for f, p in zip(self.factors, parts, strict=True)]
        return torch.cat(columns, dim=-1)

    # ------------------------------------------------------------------------------------------
    def to_env(self, actions: torch.Tensor | np.ndarray) -> Any:
        """Turn a batch of actions ``[B, *action_shape]`` into what a vector env's ``step`` takes.

        Box actions are clipped to the space's bounds; Discrete / MultiDiscrete indices get the
        space's ``start`` added back. A Dict space gives a dict of batched arrays, a Tuple a tuple.

        Raises:
            ValueError: when ``actions`` is not shaped ``[B, *action_shape]``.
        """
        if isinstance(actions, torch.Tensor):
            host = actions.detach().cpu()
            array = (host.double() if host.is_floating_point() else host).numpy()
        else:
            array = np.asarray(actions)
        if array.ndim != 1 + len(self.action_shape) or tuple(array.shape[1:]) != self.action_shape:
            raise ValueError(
                f"env_actions: expected actions shaped [B, {', '.join(map(str, self.action_shape))}]"
                f" for {self.space!r}, got {tuple(array.shape)}".replace("[B, ]", "[B]")
            )
        batch = int(array.shape[0])
        if self.composite is None:
            return _factor_to_env(self.factors[0], array.reshape(batch, -1))
        parts = [_factor_to_env(f, array[:, f.column : f.column + f.dim]) for f in self.factors]
        if self.composite == "dict":
            return {f.name: p for f, p in zip(self.factors, parts, strict=True)}
        return tuple(parts)


def _factor_to_env(factor: ActionFactor, columns: np.ndarray) -> np.ndarray:
    """One factor's ``[B, dim]`` columns in its space's own dtype and shape."""
    space = factor.space
    batch = columns.shape[0]
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(space.low, space.shape).reshape(-1)
        high = np.broadcast_to(space.high, space.shape).reshape(-1)
        clipped = np.clip(columns, low, high)
        if np.issubdtype(space.dtype, np.integer):
            clipped = np.rint(clipped)
        box: np.ndarray = clipped.astype(space.dtype).reshape(batch, *space.shape)
        return box
    index = np.rint(columns).astype(np.int64)
    if isinstance(space, spaces.Discrete):
        single: np.ndarray = (index.reshape(batch) + int(space.start)).astype(space.dtype)
        return single
    assert isinstance(space, spaces.MultiDiscrete)  # the layout only builds these three kinds
    start = np.asarray(space.start).reshape(-1)
    multi: np.ndarray = (index + start).reshape(batch, *space.shape).astype(space.dtype)
    return multi
