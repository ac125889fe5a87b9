"""Observation encoders: any gymnasium observation space as one feature vector, then an MLP.

:class:`ObservationLayout` is the ONE conversion from observations to features, used alike when a
policy acts (collection, evaluation) and when it replays stored sequences (``evaluate_actions``).
Each leaf of the space becomes float features; the features are concatenated in leaf order:

=====================================  ===================================================  ========
space                                  features                                             size
=====================================  ===================================================  ========
``Box(shape)``, any dtype              the values as floats, flattened in C order           prod(shape)
                                       (no rescaling: a uint8 image stays in [0, 255])
``Discrete(n, start)``                 one-hot of ``obs - start``                           n
``MultiDiscrete(nvec, start)``         one-hot of each ``obs[i] - start[i]``, concatenated  sum(nvec)
                                       in C order of ``nvec``
``MultiBinary(n)``                     the bits as floats 0.0 / 1.0, flattened              prod(n)
``Tuple((s0, s1, ...))``               the features of ``s0``, then ``s1``, ...             sum
``Dict({k: s})``                       the features of each entry in the space's key order  sum
                                       (gymnasium sorts the keys)
=====================================  ===================================================  ========

Tuple and Dict nest to any depth. Observations keep their env dtype in a rollout buffer (ints for
Discrete), and the one-hot is taken here, so a replay sees exactly the features collection saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tether.errors import ObservationError
from tether.nets.heads import orthogonal_init
from tether.nets.inputs import custom_encoder_features, positive_int, refuse_orphan_parts

__all__ = ["ObservationLayout", "ObservationLeaf", "activation_class", "build_encoders", "mlp_encoder",
           "observation_size"]

LeafKind = Literal["box", "discrete", "multi_discrete", "multi_binary"]
PathKey = str | int

_SUPPORTED = "Box, Discrete, MultiDiscrete, MultiBinary, or a Tuple / Dict of those"
# float32 holds every integer up to 2**24 exactly: a Discrete obs passed as floats stays exact.
_MAX_EXACT_INDEX = 2**24

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


@attrs.frozen
class ObservationLeaf:
    """One leaf of an observation space and the features it contributes.

    Attributes:
        path: the Dict keys / Tuple positions from the root to the leaf (``()`` for a plain space).
        kind: ``"box"``, ``"discrete"``, ``"multi_discrete"`` or ``"multi_binary"``.
        space: the leaf's gymnasium space.
        shape: the shape of one observation of the leaf (``()`` for Discrete).
        size: the features it contributes.
        column: its first column in the feature vector.
        sizes: categories per component for the discrete kinds (``(n,)`` / flattened ``nvec``).
        starts: the smallest value per component for the discrete kinds.
    """

    path: tuple[PathKey, ...]
    kind: LeafKind
    space: spaces.Space[Any]
    shape: tuple[int, ...]
    size: int
    column: int
    sizes: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """How messages name the leaf: ``obs``, ``obs['cue']``, ``obs[0]['pos']``."""
        return "obs" + "".join(f"[{key!r}]" for key in self.path)

    @property
    def flat_shape(self) -> tuple[int, ...]:
        """The other shape accepted for the leaf: flattened values (one per component)."""
        if self.kind == "discrete":
            return (1,)
        return (len(self.sizes),) if self.kind == "multi_discrete" else (self.size,)


def _leaf(path: tuple[PathKey, ...], space: spaces.Space[Any], column: int) -> ObservationLeaf:
    shape = tuple(int(d) for d in (space.shape or ()))
    if isinstance(space, spaces.Box):
        return ObservationLeaf(path, "box", space, shape, math.prod(shape), column)
    if isinstance(space, spaces.MultiBinary):
        return ObservationLeaf(path, "multi_binary", space, shape, math.prod(shape), column)
    if isinstance(space, spaces.Discrete):
        return ObservationLeaf(path, "discrete", space, (), int(space.n), column, (int(space.n),),
                               (int(space.start),))
    if isinstance(space, spaces.MultiDiscrete):
        sizes = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        starts = tuple(int(s) for s in np.asarray(space.start).reshape(-1))
        return ObservationLeaf(path, "multi_discrete", space, shape, sum(sizes), column, sizes, starts)
    where = "obs" + "".join(f"[{key!r}]" for key in path)
    raise TypeError(
        f"FactoredRecurrentActorCritic: unsupported observation space {space!r} at {where};"
        f" expected {_SUPPORTED} (or pass encoder= a module of your own after converting it)"
    )


class ObservationLayout:
    """The leaves of an observation space, and the conversion of observations to features.

    Args:
        space: any mix of Box, Discrete, MultiDiscrete, MultiBinary, Tuple and Dict.

    Attributes:
        space: the observation space.
        leaves: its leaves in feature order (depth first; Dict entries in the space's key order).
        size: features per observation ``F``.

    Raises:
        TypeError: for another space (Text, Graph, Sequence, ...).
        ValueError: for an empty Tuple / Dict.

    >>> layout = ObservationLayout(spaces.Dict({"phase": spaces.Discrete(3),
    ...                                         "cue": spaces.Discrete(4, start=1)}))
    >>> [(leaf.name, leaf.column, leaf.size) for leaf in layout.leaves], layout.size
    ([("obs['cue']", 0, 4), ("obs['phase']", 4, 3)], 7)
    >>> layout.features({"cue": np.array([1, 4]), "phase": np.array([2, 0])}, 1,
    ...                 torch.zeros(1), "act").tolist()
    [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]]
    """

    def __init__(self, space: spaces.Space[Any]) -> None:
        self.space = space
        leaves: list[ObservationLeaf] = []
        self._walk(space, (), leaves)
        self.leaves: tuple[ObservationLeaf, ...] = tuple(leaves)
        self.size = sum(leaf.size for leaf in self.leaves)

    def _walk(self, space: spaces.Space[Any], path: tuple[PathKey, ...], out: list[ObservationLeaf]) -> None:
        if isinstance(space, spaces.Dict | spaces.Tuple):
            entries: list[tuple[PathKey, spaces.Space[Any]]] = (
                list(space.spaces.items()) if isinstance(space, spaces.Dict)
                else list(enumerate(space.spaces)))
            if not entries:
                raise ValueError(
                    f"FactoredRecurrentActorCritic: the observation space {space!r} has no entries")
            for key, sub in entries:
                self._walk(sub, (*path, key), out)
            return
        column = out[-1].column + out[-1].size if out else 0
        out.append(_leaf(path, space, column))

    def __repr__(self) -> str:
        return f"ObservationLayout({self.space!r}, size={self.size})"

    # ------------------------------------------------------------------------------------------
    def features(self, obs: Any, lead: int, like: torch.Tensor, where: str) -> torch.Tensor:
        """Observations ``[*lead_dims, ...]`` (a tree like the space) as features ``[*lead_dims, F]``.

        Args:
            obs: a tensor / array for a plain space; a dict (Dict) or tuple / list (Tuple) of them,
                nested like the space. Each leaf is ``[*lead_dims, *leaf_shape]`` or flattened (see
                :attr:`ObservationLeaf.flat_shape`); Discrete / MultiDiscrete leaves hold the
                env's values (``start`` included), as ints or as floats holding whole numbers.
            lead: number of leading dims: 1 (``[B]``) or 2 (``[T, B]``).
            like: a parameter: the features take its device and dtype.
            where: the calling method, for messages.

        Returns:
            float ``[*lead_dims, F]`` on ``like``'s device.

        Raises:
            ObservationError: (a ``ValueError``) for a tree that does not match the space, a leaf of
                the wrong shape or lead dims, or a discrete / binary value outside the space.
        """
        values: list[Any] = []
        _gather(self.space, obs, (), values, where)
        tensors = [_tensor(v) for v in values]
        dims = _lead_dims(self.leaves, tensors, lead, where)
        rows = math.prod(dims)
        moved = [t.to(like.device) for t in tensors]
        _check_values(self.leaves, moved, where)
        return self.encode(moved, rows, like).reshape(*dims, self.size)

    def encode(self, leaves: Sequence[torch.Tensor], rows: int, like: torch.Tensor) -> torch.Tensor:
        """Features ``[rows, F]`` of leaf tensors in leaf order, unchecked: pure tensor ops.

        The conversion :meth:`features` runs after its checks, and what an exported policy step
        (:class:`~tether.nets.PolicyStep`) holds in its graph: one-hots are taken in the graph, so it
        traces (``torch.export``) with the batch dim left dynamic.

        Args:
            leaves: one tensor per leaf (:attr:`leaves` order), ``[rows, *leaf.shape]`` or
                flattened; discrete leaves hold the env's values (``start`` included) and must lie
                in the space (not checked here).
            rows: the rows ``N`` of every leaf.
            like: a parameter: the features take its device and dtype.
        """
        parts = [_featurize(leaf, t, rows, like) for leaf, t in zip(self.leaves, leaves, strict=True)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def observation_size(space: spaces.Space[Any]) -> int:
    """Features ``F`` of an observation space: ``ObservationLayout(space).size``.

    Raises:
        TypeError: for a space with no feature mapping (Text, Graph, Sequence, ...).
    """
    return ObservationLayout(space).size


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _gather(space: spaces.Space[Any], obs: Any, path: tuple[PathKey, ...], out: list[Any],
            where: str) -> None:
    """Append the leaves of ``obs`` in the space's leaf order, checking the tree's structure."""
    name = "obs" + "".join(f"[{key!r}]" for key in path)
    if isinstance(space, spaces.Dict):
        keys = list(space.spaces)
        if not isinstance(obs, Mapping) or sorted(obs) != sorted(keys):
            got = f"a dict with keys {sorted(obs)}" if isinstance(obs, Mapping) else type(obs).__name__
            raise ObservationError(
                f"{where}: expected {name} as a dict with keys {sorted(keys)} (a Dict space), got {got}",
                leaf=name, expected=f"keys {sorted(keys)}", got=got)
        for key in keys:
            _gather(space.spaces[key], obs[key], (*path, key), out, where)
    elif isinstance(space, spaces.Tuple):
        n = len(space.spaces)
        if not isinstance(obs, tuple | list) or len(obs) != n:
            got = (f"a {type(obs).__name__} of {len(obs)}" if isinstance(obs, tuple | list)
                   else type(obs).__name__)
            raise ObservationError(
                f"{where}: expected {name} as a tuple of {n} entries (a Tuple space), got {got}",
                leaf=name, expected=f"a tuple of {n}", got=got)
        for i, sub in enumerate(space.spaces):
            _gather(sub, obs[i], (*path, i), out, where)
    else:
        if isinstance(obs, Mapping):
            raise ObservationError(f"{where}: expected {name} as an array for {space!r}, got a dict",
                                   leaf=name, expected="an array", got="a dict")
        out.append(obs)


def _lead_dims(leaves: Sequence[ObservationLeaf], tensors: Sequence[torch.Tensor], lead: int,
               where: str) -> tuple[int, ...]:
    """The common leading dims of the leaves; each leaf must be ``[*dims, *shape]`` or flattened."""
    names = "T, B" if lead == 2 else "B"
    dims: tuple[int, ...] | None = None
    for leaf, tensor in zip(leaves, tensors, strict=True):
        shape = tuple(tensor.shape)
        if len(shape) < lead or shape[lead:] not in (leaf.shape, leaf.flat_shape):
            raise ObservationError(
                f"{where}: expected {leaf.name} shaped [{', '.join([names, *map(str, leaf.shape)])}] (or"
                f" flattened [{names}, {', '.join(map(str, leaf.flat_shape))}]) for {leaf.space!r},"
                f" got {list(shape)}", leaf=leaf.name, expected=str(leaf.shape), got=str(shape))
        if dims is not None and shape[:lead] != dims:
            raise ObservationError(
                f"{where}: expected every leaf of obs with the same [{names}] = {list(dims)}, got"
                f" {list(shape[:lead])} for {leaf.name}", leaf=leaf.name, expected=str(dims),
                got=str(shape[:lead]))
        dims = shape[:lead]
    assert dims is not None  # a layout always has a leaf
    return dims


def _check_values(leaves: Sequence[ObservationLeaf], tensors: Sequence[torch.Tensor], where: str) -> None:
    """Refuse discrete values outside the space (or fractional), binary values other than 0 / 1."""
    checked = [(leaf, t) for leaf, t in zip(leaves, tensors, strict=True) if leaf.kind != "box"]
    if not checked:
        return
    masks = [_bad(leaf, t) for leaf, t in checked]
    flags = torch.stack([m.any() for m in masks]).cpu().tolist()  # one host sync for every leaf
    for (leaf, tensor), mask, flag in zip(checked, masks, flags, strict=True):
        if flag:
            got = repr(tensor[mask][0].item())
            expected = _allowed(leaf)
            raise ObservationError(
                f"{where}: expected {leaf.name} to hold {expected} for {leaf.space!r}, got {got};"
                " the env's observations must lie in its observation_space",
                leaf=leaf.name, expected=expected, got=got)


def _allowed(leaf: ObservationLeaf) -> str:
    if leaf.kind == "multi_binary":
        return "only 0 / 1"
    ranges = sorted({(s, s + n - 1) for s, n in zip(leaf.starts, leaf.sizes, strict=True)})
    if len(ranges) == 1:
        return f"whole numbers in [{ranges[0][0]}, {ranges[0][1]}]"
    return "whole numbers in [start, start + nvec - 1] per component"


def _bad(leaf: ObservationLeaf, tensor: torch.Tensor) -> torch.Tensor:
    """A bool mask of the values a discrete / binary leaf cannot hold, shaped like ``tensor``."""
    if leaf.kind == "multi_binary":
        return (tensor != 0) & (tensor != 1)
    k = len(leaf.sizes)
    flat = tensor.reshape(-1, k)
    index = torch.round(flat) if flat.is_floating_point() else flat
    starts = torch.as_tensor(leaf.starts, device=tensor.device, dtype=index.dtype)
    sizes = torch.as_tensor(leaf.sizes, device=tensor.device, dtype=index.dtype)
    bad = (index < starts) | (index >= starts + sizes)
    if flat.is_floating_point():
        bad |= (index != flat) | (flat.abs() > _MAX_EXACT_INDEX)
    return bad.reshape(tensor.shape)


def _featurize(leaf: ObservationLeaf, tensor: torch.Tensor, rows: int, like: torch.Tensor) -> torch.Tensor:
    """One leaf's features ``[rows, leaf.size]`` (values already checked)."""
    if leaf.kind in ("box", "multi_binary"):
        return tensor.to(like.device, like.dtype).reshape(rows, leaf.size)
    k = len(leaf.sizes)
    index = tensor.reshape(rows, k)
    index = torch.round(index).long() if index.is_floating_point() else index.long()
    # Component i's category c goes to column offset[i] + c - start[i]: one scatter for all.
    offsets = np.concatenate([[0], np.cumsum(leaf.sizes)[:-1]]) - np.asarray(leaf.starts)
    columns = index + torch.as_tensor(offsets, dtype=torch.long, device=index.device)
    out = torch.zeros(rows, leaf.size, device=like.device, dtype=like.dtype)
    return out.scatter_(1, columns, 1.0)


# ----------------------------------------------------------------------------------------------
# the built-in trainable encoder
def activation_class(activation: str | type[nn.Module]) -> type[nn.Module]:
    """The ``nn.Module`` class of an activation given by name or class.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    raise ValueError(
        f"FactoredRecurrentActorCritic: expected activation to be one of {sorted(_ACTIVATIONS)}"
        f" or an nn.Module class, got {activation!r}"
    )


def mlp_encoder(in_features: int, sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """``[Linear -> LayerNorm -> activation]`` per size, Linear orthogonal with gain sqrt(2), bias 0.

    Args:
        in_features: ``F``, the features of :class:`ObservationLayout`.
        sizes: the widths; ``()`` gives an empty ``Sequential`` (the identity).
        activation: an ``nn.Module`` class.

    Shapes:
        ``[N, in_features] -> [N, sizes[-1]]`` (``[N, in_features]`` when ``sizes`` is empty).
    """
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [orthogonal_init(nn.Linear(in_features, size), math.sqrt(2.0)), nn.LayerNorm(size),
                   activation()]
        in_features = size
    return nn.Sequential(*layers)


def build_encoders(
    obs_size: int, *, shared_core: bool, hidden_sizes: Sequence[int] | None,
    activation: str | type[nn.Module] | None, encoder: nn.Module | None, encoder_out: int | None,
    critic_encoder: nn.Module | None,
) -> tuple[nn.Module, nn.Module | None, int]:
    """The actor-critic's encoders from its constructor arguments: ``(encoder, critic_encoder, E)``.

    The built-in MLP (``hidden_sizes`` default ``(64,)``, ``activation`` default tanh), or the
    user's ``encoder`` with its ``encoder_out`` (and ``critic_encoder`` for a separate critic).
    ``critic_encoder`` is ``None`` when the core is shared.

    Raises:
        TypeError / ValueError: for bad sizes or an incomplete custom encoder.
    """
    if encoder is not None:
        features = custom_encoder_features(encoder, encoder_out, critic_encoder, shared_core,
                                           hidden_sizes, activation)
        return encoder, critic_encoder, features
    refuse_orphan_parts(encoder_out=encoder_out, critic_encoder=critic_encoder)
    sizes = [positive_int("each hidden size", s) for s in ((64,) if hidden_sizes is None else hidden_sizes)]
    act = activation_class("tanh" if activation is None else activation)
    # A separate critic gets its own encoder too: the value loss's large gradients then never
    # reach the features the actor reads (as with sb3-contrib's enable_critic_lstm).
    actor = mlp_encoder(obs_size, sizes, act)  # (built first: the actor's init draws come first)
    critic = None if shared_core else mlp_encoder(obs_size, sizes, act)
    return actor, critic, (sizes[-1] if sizes else obs_size)
