"""Sequence priorities: the sum tree's masses, the largest priority seen, importance weights.

Prioritised (R2D2 / PER): slot ``i`` is drawn with probability ``P(i) = p_i ** alpha / sum_j
p_j ** alpha``; a new sequence gets the largest priority seen so far (1 before any update), so it
is sampled soon; the importance weight of a draw is ``(N * P(i)) ** -beta``, divided by the
largest in the batch (Acme's R2D2 normalisation), so weights only scale updates down. A priority
of 0 is floored at ``1e-8`` before the exponent: a stored sequence can always be drawn.
Uniform: every live slot has mass 1 and every weight is 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.replay.sumtree import SumTree

__all__ = ["Priorities"]

_FLOOR = 1e-8


class Priorities:
    """Raw priorities and sampling masses of ``capacity`` slots.

    Args:
        capacity: table slots.
        exponent: ``alpha``.
        prioritized: False: every live slot has mass 1 (uniform sampling).
    """

    def __init__(self, capacity: int, exponent: float, prioritized: bool) -> None:
        self.capacity, self.exponent, self.prioritized = capacity, exponent, prioritized
        self.tree = SumTree(capacity)
        self.raw = np.zeros(capacity, dtype=np.float64)
        self.max_priority = 1.0

    def _mass(self, priorities: np.ndarray) -> np.ndarray:
        if not self.prioritized:
            return np.ones_like(priorities)
        masses: np.ndarray = np.power(np.maximum(priorities, _FLOOR), self.exponent)
        return masses

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.tree.nbytes + int(self.raw.nbytes)

    def add(self, slots: np.ndarray) -> None:
        """New sequences in ``slots``: the largest priority seen so far."""
        self.raw[slots] = self.max_priority
        self.tree.set(slots, self._mass(self.raw[slots]))

    def clear(self, slots: np.ndarray) -> None:
        """Evicted slots: never drawn again until refilled."""
        self.raw[slots] = 0.0
        self.tree.set(slots, np.zeros(slots.size))

    def mean_mass(self, live: int) -> float:
        """The mean mass of the ``live`` stored sequences (0 when none)."""
        return self.tree.total / live if live else 0.0

    def sample(self, count: int, generator: torch.Generator) -> np.ndarray:
        """``count`` slots drawn with replacement in proportion to their mass."""
        return self.tree.sample(count, generator)

    def weights(self, slots: np.ndarray, live: int, beta: float) -> np.ndarray:
        """Importance weights ``(N * P(i)) ** -beta / max`` of drawn ``slots`` (ones when uniform)."""
        if not self.prioritized or beta == 0.0:
            return np.ones(slots.size, dtype=np.float64)
        probs = self.tree.get(slots) / self.tree.total
        weights = np.power(live * probs, -beta)
        normalised: np.ndarray = weights / weights.max()
        return normalised

    def update(self, indices: Any, priorities: Any, live: np.ndarray | None) -> None:
        """Set the priorities of ``indices`` (slots); evicted slots are skipped.

        Raises:
            ValueError: for indices that are not a 1-d int array of slots, or priorities of another
                shape, not finite or negative.
        """
        where = "SequenceReplay.update_priorities"
        index = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise ValueError(f"{where}: expected indices a 1-d int array (batch.indices), got"
                             f" {index.dtype} {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= self.capacity):
            raise ValueError(f"{where}: expected indices in [0, {self.capacity}) (table slots), got"
                             f" values from {index.min()} to {index.max()}")
        values = priorities.detach().cpu().numpy() if isinstance(priorities, torch.Tensor) else priorities
        values = np.asarray(values, dtype=np.float64)
        if values.shape != index.shape:
            raise ValueError(f"{where}: expected priorities shaped {index.shape} (one per index), got"
                             f" {values.shape}")
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"{where}: expected finite priorities >= 0, got"
                             f" {values[~np.isfinite(values) | (values < 0)][:8].tolist()}")
        # A repeated slot takes its last priority: keep each slot's last occurrence.
        _, last = np.unique(index[::-1], return_index=True)
        keep = index.size - 1 - last
        slots, values = index[keep].astype(np.int64), values[keep]
        if live is not None:
            alive = live[slots]
            slots, values = slots[alive], values[alive]
        if values.size:
            self.max_priority = max(self.max_priority, float(values.max()))
        self.raw[slots] = values
        self.tree.set(slots, self._mass(values))

    def state_dict(self) -> dict[str, Any]:
        """Raw priorities, the largest seen and the tree's masses, as tensors and floats."""
        return {"raw": torch.from_numpy(self.raw.copy()), "max_priority": self.max_priority,
                "tree": self.tree.state_dict()}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (checked before anything changes).

        Raises:
            ValueError: when it is for another capacity.
        """
        raw = data["raw"].numpy()
        if raw.shape != self.raw.shape or data["tree"]["nodes"].shape != self.tree.nodes.shape:
            raise ValueError(f"expected priorities of {self.capacity} slots, got {raw.shape[0]}")
        self.raw = raw.astype(np.float64, copy=True)
        self.max_priority = float(data["max_priority"])
        self.tree.load_state_dict(data["tree"])
