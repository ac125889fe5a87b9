"""Each lifecycle mistake, made on purpose, and the message tether gives for it.

Run: ``python examples/misuse_gallery.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import tether
from tether import EpisodeClock, LifecycleError, RecurrentState, track
from tether.sequence import unroll

B, OBS, H = 10, 3, 8


def fresh() -> tuple[tether.TrackedRNN, EpisodeClock, RecurrentState, torch.Tensor]:
    """A tracked LSTM, its clock, a state after one correct step, and an input."""
    lstm = track(nn.LSTM(OBS, H), max_graph_steps=50)
    clock = EpisodeClock(B)
    x = torch.randn(1, B, OBS)
    _, state = lstm(x, lstm.initial_state(B, clock))
    clock.advance(np.zeros(B, dtype=bool))
    return lstm, clock, state, x


def missed_reset() -> None:
    """Episodes end, the state is not reset, the next step uses the old memory."""
    lstm, clock, state, x = fresh()
    done = np.zeros(B, dtype=bool)
    done[[1, 4]] = True
    _, state = lstm(x, state)
    clock.advance(done)
    lstm(x, state)  # forgot: state = state.reset(done)


def missed_start_in_unroll() -> None:
    """A loop that steps through unroll with its episode starts, and leaves them at zero."""
    lstm, clock, state, x = fresh()
    done = np.zeros(B, dtype=bool)
    done[[1, 4]] = True
    _, state = unroll(lstm, x, np.zeros((1, B), dtype=bool), state)
    clock.advance(done)
    unroll(lstm, x, np.zeros((1, B), dtype=bool), state)  # forgot: episode_starts[0] = done


def copied_state() -> None:
    """A state deep-copied alone (its clock copied with it) and stepped on."""
    lstm, clock, state, x = fresh()
    _, copied = lstm(x, copy.deepcopy(state))
    clock.advance(np.zeros(B, dtype=bool))
    lstm(x, copied)  # forgot: copied = copied.bind(clock)


def reused_state() -> None:
    """The new state is dropped and the old one fed again."""
    lstm, clock, state, x = fresh()
    lstm(x, state)  # forgot to take the new state
    clock.advance(np.zeros(B, dtype=bool))
    lstm(x, state)


def forgot_advance() -> None:
    """The clock is never told that the env stepped."""
    lstm, _, state, x = fresh()
    _, state = lstm(x, state)
    lstm(x, state)  # forgot: clock.advance(done) between the steps


def graph_across_window() -> None:
    """A training boundary passes and the state keeps its autograd graph."""
    lstm, clock, state, x = fresh()
    clock.end_window()
    lstm(x, state)  # forgot: state = state.detach()


def graph_too_long() -> None:
    """Nobody ever detaches: the graph grows with every step."""
    lstm, clock, state, x = fresh()
    for _ in range(60):
        _, state = lstm(x, state)
        clock.advance(np.zeros(B, dtype=bool))


def stored_live_graph() -> None:
    """A state with its graph is put into a buffer."""
    _, _, state, _ = fresh()
    state.for_buffer()


def shape_mismatch() -> None:
    """A state built for another batch size."""
    lstm, _, _, x = fresh()
    lstm(x, RecurrentState.zeros(1, B, H + 1))


def bad_done_mask() -> None:
    """A float done mask."""
    EpisodeClock(B).advance(np.zeros(B))


def _rollout() -> tuple[tether.TrackedRNN, EpisodeClock, RecurrentState, torch.Tensor, np.ndarray]:
    """12 correct steps in which rows 2 and 5 end an episode; the snapshot is taken before them."""
    lstm, clock = track(nn.LSTM(OBS, H)), EpisodeClock(B)
    state = lstm.initial_state(B, clock)
    snapshot, obs = state.snapshot(), torch.randn(12, B, OBS)
    starts = np.zeros((12, B), dtype=bool)
    with torch.no_grad():
        for t in range(12):
            _, state = lstm(obs[t : t + 1], state)
            done = np.zeros(B, dtype=bool)
            done[[2, 5]] = t in (3, 8)
            clock.advance(done)
            state = state.reset(done)
            if t + 1 < 12:
                starts[t + 1] = done
    return lstm, clock, snapshot, obs, starts


def replay_without_starts() -> None:
    """The rollout replayed for training with all-zero episode starts."""
    lstm, _, snapshot, obs, starts = _rollout()
    unroll(lstm, obs, np.zeros_like(starts), snapshot)


def replay_shifted_early() -> None:
    """The rollout replayed with each done flag stored at the step that ended the episode."""
    lstm, _, snapshot, obs, starts = _rollout()
    early = np.zeros_like(starts)
    early[:-1] = starts[1:]
    unroll(lstm, obs, early, snapshot)


def replay_from_after() -> None:
    """The rollout replayed from the state after it instead of the snapshot before it."""
    lstm, clock, _, obs, starts = _rollout()
    unroll(lstm, obs, starts, lstm.initial_state(B, clock).snapshot())


def unpack_like_a_tuple() -> None:
    """A script written for (h, c) unpacks the state."""
    _, _, state, _ = fresh()
    h, c = state  # type: ignore[misc]  # noqa: RUF059


GALLERY: dict[str, Callable[[], None]] = {
    "missed reset at an episode boundary": missed_reset,
    "missed episode start in an unroll loop": missed_start_in_unroll,
    "copied state checked against its frozen clock": copied_state,
    "old state fed again": reused_state,
    "clock not advanced": forgot_advance,
    "graph kept across end_window()": graph_across_window,
    "graph carried past the limit": graph_too_long,
    "live graph stored in a buffer": stored_live_graph,
    "state shaped for another module": shape_mismatch,
    "malformed done mask": bad_done_mask,
    "replay with all-zero episode starts": replay_without_starts,
    "replay with episode starts one step early": replay_shifted_early,
    "replay from a snapshot taken after the rollout": replay_from_after,
    "state unpacked like an (h, c) tuple": unpack_like_a_tuple,
}


def main() -> None:
    """Make each mistake in strict mode and print what tether says."""
    tether.set_mode("strict")
    for title, mistake in GALLERY.items():
        try:
            mistake()
        except (LifecycleError, ValueError, TypeError) as err:
            print(f"## {title}\n{type(err).__name__}: {err}\n")
        else:
            raise SystemExit(f"{title}: tether did not catch it")


if __name__ == "__main__":
    main()
