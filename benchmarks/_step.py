"""Shared set-up of the per-step overhead benchmark (one LSTM step, batch 8, input 64, hidden 128)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tether import EpisodeClock, mode, track

BATCH, INPUT, HIDDEN = 8, 64, 128


def make_steps() -> dict[str, Callable[[], object]]:
    """Return zero-argument step functions: the raw nn.LSTM step and the tracked step per mode.

    A tracked step is a whole correct loop step: the forward, ``clock.advance(done)`` and
    ``state.reset(done)`` (no row done), so tether's bookkeeping is all counted against it.
    """
    torch.manual_seed(0)
    lstm = nn.LSTM(INPUT, HIDDEN)
    tracked = track(lstm)
    x = torch.randn(1, BATCH, INPUT)
    raw_hx = (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN))
    done = np.zeros(BATCH, dtype=bool)

    def raw() -> object:
        nonlocal raw_hx
        with torch.no_grad():
            _, raw_hx = lstm(x, raw_hx)
        return raw_hx

    def tracked_in(name: str) -> Callable[[], object]:
        clock = EpisodeClock(BATCH)
        state = tracked.initial_state(BATCH, clock)

        def step() -> object:
            nonlocal state
            with mode(name), torch.no_grad():  # type: ignore[arg-type]
                _, state = tracked(x, state)
                clock.advance(done)
                state = state.reset(done)
            return state

        return step

    return {"raw": raw, "strict": tracked_in("strict"), "warn": tracked_in("warn"), "off": tracked_in("off")}
