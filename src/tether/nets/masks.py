"""Action masks: accept them in every form a caller has them, check them, concatenate them.

A mask is boolean, True where an action is allowed, one column per choice of each discrete head.
Callers pass either one tensor ``[*lead, D]`` (``D`` = the discrete heads' sizes summed, in head
order) or one entry per head: a list / tuple (one per discrete head, or one per head with ``None``
for the Box heads) or a dict keyed by head name (heads left out are unmasked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tether.errors import ActionMaskError, format_rows
from tether.nets.factors import ActionFactor, ActionLayout

__all__ = ["ActionMaskError", "check_allowed", "normalize_masks"]

_SHOWN = 8


def _as_bool(value: Any, shape: tuple[int, ...], device: torch.device, what: str) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.dtype != torch.bool:
        raise ValueError(f"{what}: expected a bool mask (True = allowed), got dtype {tensor.dtype}")
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{what}: expected a bool mask shaped {list(shape)}, got {list(tensor.shape)}")
    return tensor.to(device, non_blocking=True)


def _per_head(
    entries: list[tuple[ActionFactor, Any]], layout: ActionLayout, lead: tuple[int, ...],
    device: torch.device, where: str,
) -> torch.Tensor:
    given = {f.name: value for f, value in entries}
    parts = []
    for f in layout.discrete:
        value = given.get(f.name)
        if value is None:
            parts.append(torch.ones((*lead, f.mask_size), dtype=torch.bool, device=device))
        else:
            parts.append(_as_bool(value, (*lead, f.mask_size), device, f"{where}: mask of head {f.name!r}"))
    return torch.cat(parts, dim=-1)


def _entries(masks: Any, layout: ActionLayout, where: str) -> list[tuple[ActionFactor, Any]]:
    """Pair each per-head mask with its head (dict by name, list per discrete head or per head)."""
    by_name = {f.name: f for f in layout.factors}
    if isinstance(masks, Mapping):
        entries = []
        for key, value in masks.items():
            factor = by_name.get(str(key))
            if factor is None:
                raise ValueError(f"{where}: masks name an unknown head {key!r}; heads are {layout.names()}")
            entries.append((factor, value))
        return entries
    if isinstance(masks, Sequence) and not isinstance(masks, str):
        if len(masks) == len(layout.discrete):
            return list(zip(layout.discrete, masks, strict=True))
        if len(masks) == len(layout.factors):
            return list(zip(layout.factors, masks, strict=True))
        raise ValueError(
            f"{where}: expected {len(layout.discrete)} masks (one per discrete head"
            f" {[f.name for f in layout.discrete]}), got {len(masks)}"
        )
    raise ValueError(f"{where}: expected masks as a bool tensor, a list / tuple or a dict, got"
                     f" {type(masks).__name__}")


def normalize_masks(
    masks: Any, layout: ActionLayout, lead: tuple[int, ...], device: torch.device, where: str
) -> torch.Tensor | None:
    """One bool tensor ``[*lead, D]`` on ``device`` from any accepted form, or ``None``.

    Args:
        masks: ``None``; a bool tensor / array ``[*lead, D]``; a list / tuple per discrete head
            (or per head, ``None`` for Box heads); a dict ``{head name: [*lead, n]}``.
        layout: the policy's action layout.
        lead: the leading dims, ``(B,)`` for one step or ``(T, B)`` for a sequence.
        device: where the masks go.
        where: the calling method, for messages.

    Raises:
        ValueError: for a mask of the wrong shape or dtype, a mask for a Box head or an unknown
            head, or any mask on a policy without discrete heads.

    >>> from gymnasium import spaces
    >>> layout = ActionLayout(spaces.Dict({"fire": spaces.Discrete(2), "move": spaces.Discrete(3)}))
    >>> move = torch.tensor([[True, False, True]])
    >>> normalize_masks({"move": move}, layout, (1,), torch.device("cpu"), "act").tolist()
    [[True, True, True, False, True]]
    """
    if masks is None:
        return None
    if not layout.discrete:
        raise ValueError(
            f"{where}: got action masks, but the action space {layout.space!r} has no discrete"
            " head; masks apply to Discrete / MultiDiscrete heads only (pass masks=None)"
        )
    if isinstance(masks, torch.Tensor | np.ndarray):
        return _as_bool(masks, (*lead, layout.mask_size), device,
                        f"{where}: masks (discrete heads {[f.name for f in layout.discrete]} concatenated)")
    entries = _entries(masks, layout, where)
    for factor, value in entries:
        if not factor.is_discrete and value is not None:
            raise ValueError(
                f"{where}: got a mask for head {factor.name!r}, a Box action ({factor.space!r});"
                " masks apply to Discrete / MultiDiscrete heads only"
            )
    return _per_head(entries, layout, lead, device, where)


def check_allowed(mask: torch.Tensor, layout: ActionLayout, where: str) -> None:
    """Raise when some row of some categorical component allows no action.

    One host synchronisation for the whole mask; the details are computed only on failure.

    Raises:
        ActionMaskError: naming the head (and component) and the rows (first 8, then "and N more").
    """
    components = [(f, i, f.mask_offset + sum(f.sizes[:i]), n)
                  for f in layout.discrete for i, n in enumerate(f.sizes)]
    any_allowed = torch.stack([mask[..., start : start + n].any(dim=-1) for _, _, start, n in components],
                              dim=-1)
    if bool(any_allowed.all()):
        return
    for column, (factor, index, _, _) in enumerate(components):
        empty = ~any_allowed[..., column]
        if not bool(empty.any()):
            continue
        found = torch.nonzero(empty).cpu().tolist()
        rows = [r[0] if len(r) == 1 else tuple(r) for r in found]
        component = index if factor.kind == "multi_discrete" else None
        part = f" (component {index} of {len(factor.sizes)})" if component is not None else ""
        label = "rows" if mask.dim() == 2 else "(t, b) positions"
        raise ActionMaskError(
            f"{where}: the action mask of head {factor.name!r}{part} allows no action in"
            f" {label} {format_rows(rows)}; every row needs at least one True (allowed) action",
            head=factor.name, component=component, rows=rows,
        )
