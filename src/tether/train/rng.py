"""Every random number generator a run draws from, captured as plain data and restored exactly.

A resumed run continues bit-identical only if every generator continues where it stopped: Python's
``random``, numpy's legacy global generator, torch's CPU generator, the CUDA generators (actions
sampled on a GPU draw from them) and the trainer's own ``torch.Generator`` (minibatch order).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """The state of every generator of this process, as tensors and plain data.

    Args:
        generator: the trainer's own generator (e.g. the minibatch order).
        device: the run's device (the CUDA generators are captured on a CUDA run only).
    """
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(legacy=False),
            "python": random.getstate(), "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}


def restore_rng(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """Put every generator back to the state :func:`capture_rng` returned.

    Raises:
        KeyError / TypeError / ValueError / RuntimeError: for a state that is not one
            :func:`capture_rng` wrote (the caller names the file).
    """
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(_as_tuples(state["python"]))
    generator.set_state(state["generator"])
    if state.get("cuda") and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants the tuples ``getstate`` gave (a checkpoint may hold lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value
