"""The per-step masked loop CleanRL and sb3-contrib write: the reference semantics of an unroll."""

from __future__ import annotations

import numpy as np
import torch

from tether.modes import mode
from tether.state import RecurrentState
from tether.tracking import TrackedRNN


def reference_loop(
    core: TrackedRNN, x: torch.Tensor, starts: np.ndarray, tensors: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Before step ``t`` multiply the state by ``1 - starts[t]``, then run the core one step."""
    keep = torch.tensor(~starts, device=x.device).to(x.dtype)
    outputs = []
    for t in range(x.shape[0]):
        mask = keep[t].view(1, -1, 1)
        tensors = tuple(s * mask for s in tensors)
        with mode("off"):
            y, step_state = core(x[t : t + 1], RecurrentState.from_tensors(tensors))
        tensors = step_state.tensors
        outputs.append(y)
    return torch.cat(outputs, dim=0), tensors
