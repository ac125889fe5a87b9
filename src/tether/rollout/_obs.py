"""Observation batches as gymnasium returns them (arrays, or dicts / tuples of arrays).

A batch is a *tree*: a numpy array / tensor ``[B, ...]``, or a dict or tuple of trees (gymnasium's
``Dict`` and ``Tuple`` spaces). These helpers map over trees, copy them onto the policy's device,
and find the rows that hold NaN or inf, without a device synchronisation (the checks run on the
host arrays the env returned).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Tree = Any  # an array / tensor, or a dict / tuple of trees


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf by leaf to ``tree`` (and the matching leaves of ``rest``)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(tree_map(fn, v, *(r[i] for r in rest)) for i, v in enumerate(tree))
    return fn(tree, *rest)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in a fixed order."""
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    if isinstance(tree, tuple):
        return [leaf for v in tree for leaf in tree_leaves(v)]
    return [tree]


def copy_tree(tree: Tree) -> Tree:
    """A copy that owns its memory (vector envs with ``copy=False`` reuse their output arrays)."""
    return tree_map(lambda a: a.clone() if isinstance(a, torch.Tensor) else np.array(a, copy=True), tree)


def set_rows(tree: Tree, rows: np.ndarray, per_row: Any) -> Tree:
    """Write ``per_row[i]`` (one env's observation) into row ``i`` of ``tree`` for each ``i in rows``.

    ``tree`` is modified in place (pass a copy) and returned.
    """
    for i in rows:
        _set_row(tree, int(i), per_row[i])
    return tree


def _set_row(tree: Tree, row: int, value: Any) -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _set_row(v, row, value[k])
    elif isinstance(tree, tuple):
        for i, v in enumerate(tree):
            _set_row(v, row, value[i])
    else:
        tree[row] = value


def nonfinite_rows(tree: Tree, num_rows: int) -> np.ndarray:
    """Rows (int64, sorted) where any floating leaf of ``tree`` holds NaN or inf."""
    bad = np.zeros(num_rows, dtype=bool)
    for leaf in tree_leaves(tree):
        array = leaf.detach().cpu().numpy() if isinstance(leaf, torch.Tensor) else np.asarray(leaf)
        if array.dtype.kind in "fc" and array.size:
            bad |= ~np.isfinite(array.reshape(num_rows, -1)).all(axis=1)
    return np.flatnonzero(bad)


def batch_rows(tree: Tree) -> int:
    """The batch size (first dimension) of a tree's first leaf."""
    first = tree_leaves(tree)[0]
    shape = first.shape if hasattr(first, "shape") else np.shape(first)
    if len(shape) == 0:
        raise ValueError("expected a batched observation [B, ...], got a scalar")
    return int(shape[0])


def to_tensor(tree: Tree, device: torch.device, float_dtype: torch.dtype) -> Tree:
    """Copy a (numpy) batch onto ``device`` as tensors: floats as ``float_dtype``, others unchanged.

    Always copies, so a vector env that reuses its output arrays cannot change what was taken.
    """

    def convert(leaf: Any) -> torch.Tensor:
        tensor = torch.as_tensor(leaf)
        dtype = float_dtype if tensor.is_floating_point() else tensor.dtype
        out = tensor.to(device=device, dtype=dtype)
        return out.clone() if out.data_ptr() == tensor.data_ptr() else out

    return tree_map(convert, tree)
