"""Shared set-up of the per-step overhead benchmark (one LSTM step, batch 8, input 64, hidden 128)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tether import EpisodeClock, track

BATCH, INPUT, HIDDEN = 8, 64, 128


def make_steps() -> dict[str, tuple[str, Callable[[], float]]]:
    """Return ``{variant: (mode, step)}``: the raw nn.LSTM step, the raw ``torch.lstm_cell`` step
    (the kernel a tracked single step runs without autograd at this size; see
    ``tether._aten.LSTM_CELL_MAX_ROWS_X_HIDDEN``) and the tracked step per mode.

    A tracked step is a whole correct loop step: the forward, ``clock.advance(done)`` and
    ``state.reset(done)`` (no row done), so tether's bookkeeping is all counted against it. The
    caller sets the check mode (``with mode(m):``) around a batch of steps, as a user sets it once.
    Each step returns the seconds its forward call took, so the forward alone can be compared too.
    """
    torch.manual_seed(0)
    lstm = nn.LSTM(INPUT, HIDDEN)
    tracked = track(lstm)
    x = torch.randn(1, BATCH, INPUT)
    raw_hx = (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN))
    done = np.zeros(BATCH, dtype=bool)

    def raw() -> float:
        nonlocal raw_hx
        with torch.no_grad():
            start = time.perf_counter()
            _, raw_hx = lstm(x, raw_hx)
            return time.perf_counter() - start

    w = lstm._flat_weights
    cell_hx = (raw_hx[0][0], raw_hx[1][0])

    def raw_cell() -> float:  # the kernel the tracked step itself runs at this size (lstm_cell)
        nonlocal cell_hx
        with torch.no_grad():
            start = time.perf_counter()
            cell_hx = torch.lstm_cell(x[0], cell_hx, *w)
            return time.perf_counter() - start

    def tracked_loop() -> Callable[[], float]:
        clock = EpisodeClock(BATCH)
        state = tracked.initial_state(BATCH, clock)

        def step() -> float:
            nonlocal state
            with torch.no_grad():
                start = time.perf_counter()
                _, state = tracked(x, state)
                forward = time.perf_counter() - start
                clock.advance(done)
                state = state.reset(done)
            return forward

        return step

    return {"raw": ("off", raw), "raw_cell": ("off", raw_cell), "strict": ("strict", tracked_loop()),
            "warn": ("warn", tracked_loop()), "off": ("off", tracked_loop())}
