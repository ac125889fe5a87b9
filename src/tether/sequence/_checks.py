"""The input checks every unroll makes (shapes, dtypes, devices, the episode-starts mask)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.errors import StateMismatchError, context
from tether.state import RecurrentState
from tether.tracking import TrackedRNN


def host_starts(episode_starts: Any, steps: int, batch: int, where: str = "unroll") -> np.ndarray:
    """``episode_starts`` as a host bool array ``[T, B]`` (a CUDA tensor is copied: one sync);
    ``where`` names the call in the message.

    Raises:
        ValueError: when it is not a bool mask of shape ``(T, B)``.
    """
    given: Any = episode_starts
    if isinstance(given, torch.Tensor):
        ok = given.dtype == torch.bool and given.shape == (steps, batch)
        array = given.detach().cpu().numpy() if ok else None
    else:
        array = given = np.asarray(given)
        ok = array.dtype == np.bool_ and array.shape == (steps, batch)
    if not ok:
        raise ValueError(
            f"{where}: expected episode_starts as a bool mask [T={steps}, B={batch}] (True where x[t, b]"
            f" starts a new episode), got {given.dtype} {tuple(given.shape)}; pass e.g."
            " `np.asarray(starts, bool)`"
        )
    return array  # type: ignore[return-value]


def check_core(core: Any) -> TrackedRNN:
    """The core as a tracked, time-major sequence module.

    Raises:
        TypeError: when it is not a tracked module.
        ValueError: for a cell or a batch-first module.
    """
    if not isinstance(core, TrackedRNN):
        raise TypeError(f"unroll: expected a tracked module (tether.track(module)), got"
                        f" {type(core).__name__}")
    spec = core.spec
    if spec.style != "sequence" or spec.batch_first:
        what = "a cell" if spec.style != "sequence" else "a batch_first module"
        raise ValueError(
            f"unroll: expected a sequence module with batch_first=False (x shaped [T, B, in]), got"
            f" {what} ({type(core.module).__name__}); build it with batch_first=False"
        )
    return core


def check_inputs(core: TrackedRNN, x: Any, state: Any) -> tuple[int, int]:
    """Check ``x`` and ``state`` against the core; return ``(T, B)``.

    Raises:
        ValueError: for a malformed ``x`` or one on another device / dtype than the state.
        TypeError: when ``state`` is not a RecurrentState.
        StateMismatchError: when the state does not fit the core or the batch.
    """
    check_core(core)
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"unroll: expected x shaped [T, B, in] with T >= 1, got {shape}")
    T, B = int(x.shape[0]), int(x.shape[1])
    if not isinstance(state, RecurrentState):
        raise TypeError(f"unroll: expected a RecurrentState, got {type(state).__name__}")
    if state.batch_size != B:
        raise StateMismatchError(
            f"unroll: expected a state of batch {B} (x is [T={T}, B={B}, ...]), got batch"
            f" {state.batch_size}", expected=str(B), got=str(state.batch_size),
        )
    with context("unroll"):  # the inner check names the module; this layer names the call
        core.check_fit(x, state)
    # Under autocast x comes in the autocast dtype (an encoder's Linear) beside a float32 state:
    # the core runs in that dtype too, as nn.LSTM does there. Only a real mismatch is refused.
    if x.device != state.device or (x.dtype != state.dtype
                                    and not torch.is_autocast_enabled(x.device.type)):
        raise ValueError(f"unroll: expected x on {state.device} / {state.dtype} (the state's),"
                         f" got {x.device} / {x.dtype}")
    return T, B
