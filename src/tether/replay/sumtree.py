"""A sum tree over the sequence slots: proportional sampling and priority updates in ``O(log C)``.

Leaves hold each slot's sampling mass (``priority ** exponent`` for a live sequence, 0 for an empty
slot); every inner node holds the sum of its two children, so the root is the total mass. Drawing
``u`` uniform in ``[0, total)`` and walking down (left when ``u`` is below the left child's mass,
else right with ``u`` reduced by it) lands on slot ``i`` with probability ``mass_i / total``.

Everything is float64 numpy on the host, vectorised over the batch: a walk is ``log2(C)`` numpy
operations on ``B`` elements, an update recomputes the touched parents level by level from their
children (never by adding deltas, so no rounding drift accumulates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SumTree"]


class SumTree:
    """Masses of ``capacity`` slots in a binary sum tree (host, float64).

    Args:
        capacity: number of slots (leaves).

    Example:
        >>> tree = SumTree(4)
        >>> tree.set(np.array([0, 2]), np.array([1.0, 3.0]))
        >>> tree.total, tree.find(np.array([0.5, 1.5, 3.9])).tolist()
        (4.0, [0, 2, 2])
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 1 << max(0, (capacity - 1).bit_length())  # leaves, a power of two >= capacity
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)  # node i's children: 2i, 2i + 1

    @property
    def total(self) -> float:
        """The summed mass of every slot."""
        return float(self.nodes[1])

    @property
    def nbytes(self) -> int:
        """Bytes the tree holds."""
        return int(self.nodes.nbytes)

    def get(self, slots: np.ndarray) -> np.ndarray:
        """The masses of ``slots`` (int64 ``[N]``)."""
        masses: np.ndarray = self.nodes[self.size + slots]
        return masses

    def set(self, slots: np.ndarray, masses: np.ndarray) -> None:
        """Give ``slots[i]`` the mass ``masses[i]`` (for a repeated slot the last one wins)."""
        if slots.size == 0:
            return
        nodes = self.size + slots
        self.nodes[nodes] = masses
        nodes = np.unique(nodes) // 2
        while nodes[0] >= 1:
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, targets: np.ndarray) -> np.ndarray:
        """The slot whose cumulative-mass interval holds each target (float64 ``[N]`` in ``[0, total)``).

        A walk never ends on a slot of mass 0 while the total is positive: where rounding would
        send it into an empty right subtree it stays left.
        """
        node = np.ones(targets.shape, dtype=np.int64)
        left_over = targets.astype(np.float64, copy=True)
        while node[0] < self.size:
            left = 2 * node
            left_mass = self.nodes[left]
            go_right = (left_over >= left_mass) & (self.nodes[left + 1] > 0)
            left_over = np.where(go_right, left_over - left_mass, left_over)
            node = np.where(go_right, left + 1, left)
        return node - self.size

    def sample(self, count: int, generator: torch.Generator) -> np.ndarray:
        """``count`` slots drawn with replacement, each with probability ``mass / total``.

        The uniforms come from ``generator`` (on its own device), so the same generator state
        gives the same slots.
        """
        uniforms = torch.rand(count, generator=generator, dtype=torch.float64, device=generator.device)
        targets = uniforms.cpu().numpy() * self.total
        return self.find(np.minimum(targets, np.nextafter(self.total, 0.0)))

    def state_dict(self) -> dict[str, Any]:
        """The masses as a float64 tensor (loads with ``torch.load(weights_only=True)``)."""
        return {"nodes": torch.from_numpy(self.nodes.copy())}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore the masses saved by :meth:`state_dict` (same capacity)."""
        nodes = data["nodes"].cpu().numpy()
        if nodes.shape != self.nodes.shape:
            raise ValueError(f"SumTree.load_state_dict: expected {self.nodes.shape[0]} nodes, got"
                             f" {nodes.shape[0]}")
        self.nodes = nodes.astype(np.float64, copy=True)
