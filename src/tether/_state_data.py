"""The plain data behind a RecurrentState: tensor validation and (de)serialisation helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.errors import StateMismatchError

_KEYS = {"tensors", "episode_ids", "env_rows", "tick", "window", "is_snapshot"}


def readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def validate_tensors(tensors: tuple[torch.Tensor, ...]) -> None:
    if len(tensors) not in (1, 2):
        raise StateMismatchError(
            f"RecurrentState: expected 1 tensor (GRU h) or 2 tensors (LSTM h, c), got {len(tensors)}",
            expected="1 or 2 tensors", got=str(len(tensors)),
        )
    first = tensors[0]
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise StateMismatchError(
                f"RecurrentState: expected tensors shaped [layers, batch, hidden], got {shape}",
                expected="[L, B, H]", got=str(shape),
            )
        if t.shape != first.shape or t.device != first.device or t.dtype != first.dtype:
            raise StateMismatchError(
                "RecurrentState: h and c must share shape, device and dtype; got"
                f" {tuple(first.shape)} {first.device} {first.dtype} and"
                f" {tuple(t.shape)} {t.device} {t.dtype}",
                expected=str(tuple(first.shape)), got=str(tuple(t.shape)),
            )


def to_plain(tensors: tuple[torch.Tensor, ...], episode_ids: np.ndarray | None, env_rows: np.ndarray | None,
             tick: int | None, window: int, is_snapshot: bool, row_ticks: np.ndarray | None = None,
             ) -> dict[str, Any]:
    """A state's tensors (detached copies) and bookkeeping as tensors and plain Python values."""
    return {
        "row_ticks": _tensor(row_ticks),
        "tensors": [t.detach().clone() for t in tensors],
        "episode_ids": _tensor(episode_ids),
        "env_rows": _tensor(env_rows),
        "tick": tick,
        "window": window,
        "is_snapshot": is_snapshot,
    }


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.array(array, dtype=np.int64))


def _array(value: Any) -> np.ndarray | None:
    """A saved int64 ``[B]`` (a tensor, or a numpy array from an older save) as a read-only array."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return readonly(np.array(value, dtype=np.int64))


def restored_fields(data: dict[str, Any], clock: EpisodeClock | None,
                    device: torch.device | str | None) -> dict[str, Any]:
    """The constructor fields of a state saved by :func:`to_plain` (its ids checked at next use).

    Raises:
        ValueError: when ``data`` misses a key.
        StateMismatchError: when the tensors are malformed.
    """
    missing = _KEYS - set(data)
    if missing:
        raise ValueError(f"RecurrentState.from_state_dict: missing keys {sorted(missing)}")
    tensors = tuple(t.to(device) if device is not None else t for t in data["tensors"])
    validate_tensors(tensors)
    ids, rows = data["episode_ids"], data["env_rows"]
    return {
        "tensors": tensors, "clock": clock if ids is not None else None,
        "episode_ids": _array(ids), "env_rows": _array(rows),
        "tick": None if data["tick"] is None else int(data["tick"]), "window": int(data["window"]),
        "is_snapshot": bool(data["is_snapshot"]), "row_ticks": _array(data.get("row_ticks")),
    }


class StateViews:
    """Read-only views of a state's tensors (shapes, kind, device), shared by :class:`RecurrentState`."""

    __slots__ = ()
    tensors: tuple[torch.Tensor, ...]
    env_rows: np.ndarray | None
    tick: int | None
    row_ticks: np.ndarray | None

    @property
    def shape(self) -> torch.Size:
        """``[L, B, H]``, the shape of each tensor."""
        return self.tensors[0].shape

    def ticks(self) -> np.ndarray:
        """The tick of each row, int64 ``[B]`` (``-1`` for an unchecked state without a tick)."""
        if self.row_ticks is not None:
            return self.row_ticks
        return np.full(self.tensors[0].shape[1], -1 if self.tick is None else self.tick, dtype=np.int64)

    @property
    def h(self) -> torch.Tensor:
        """The hidden state ``h`` ``[L, B, H]``."""
        return self.tensors[0]

    @property
    def c(self) -> torch.Tensor:
        """The LSTM cell state ``c`` ``[L, B, H]``.

        Raises:
            AttributeError: for a GRU / RNN state, which has no cell state.
        """
        if len(self.tensors) < 2:
            raise AttributeError("this is a GRU/RNN state (h only); it has no cell state c")
        return self.tensors[1]

    @property
    def has_c(self) -> bool:
        """True for an ``(h, c)`` pair (an LSTM's), False for ``h`` alone (a GRU's or an RNN's)."""
        return len(self.tensors) == 2

    @property
    def batch_size(self) -> int:
        """Rows ``B``."""
        return int(self.tensors[0].shape[1])

    @property
    def num_layers(self) -> int:
        """Layers ``L``."""
        return int(self.tensors[0].shape[0])

    @property
    def hidden_size(self) -> int:
        """Hidden size ``H``."""
        return int(self.tensors[0].shape[2])

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.tensors[0].device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the tensors."""
        return self.tensors[0].dtype

    @property
    def has_graph(self) -> bool:
        """Whether any tensor carries an autograd graph (or requires grad)."""
        return any(t.requires_grad for t in self.tensors)

    def rows(self) -> np.ndarray:
        """The clock rows this state covers, int64 ``[B]``."""
        if self.env_rows is not None:
            return self.env_rows
        return np.arange(self.batch_size, dtype=np.int64)
