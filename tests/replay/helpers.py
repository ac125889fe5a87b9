"""A reference for the replay tests: the stream of transitions as the collector wrote them.

``Recorder`` is a sink that keeps every transition; ``Tee`` writes to the replay and a recorder at
once; ``expected_sequences`` lists, from the recorded stream alone, the sequences a replay with a
given configuration must hold (written here as episode runs cut into periods, not as the buffer's
own open/close bookkeeping), and ``assert_row_matches`` compares a sampled row with the stream.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tests.rollout.helpers import CounterPolicy, make_vec

from tether.clock import EpisodeClock
from tether.replay import ReplayBatch, SequenceReplay
from tether.rollout import RolloutCollector, Transition


class Recorder:
    """A sink that records every transition (host copies) and the policy version it was written under."""

    def __init__(self, replay: SequenceReplay | None = None) -> None:
        self.steps: list[Transition] = []
        self.versions: list[int] = []
        self.replay = replay

    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        if self.replay is not None:
            self.replay.begin(num_steps, clock)

    def write(self, step: Transition) -> None:
        if self.replay is not None:
            self.replay.write(step)
            self.versions.append(self.replay.policy_version)
        self.steps.append(step._replace(state=step.state.snapshot()))

    def finish(self, last_value: torch.Tensor) -> None:
        if self.replay is not None:
            self.replay.finish(last_value)

    def column(self, name: str) -> np.ndarray:
        """A per-step field ``[N, E]`` of the stream."""
        return np.stack([np.asarray(getattr(s, name)) for s in self.steps])

    def ticks(self) -> np.ndarray:
        return np.array([s.state.tick for s in self.steps], dtype=np.int64)

    def ids(self) -> np.ndarray:
        return np.stack([s.state.episode_ids for s in self.steps])


class Seq(NamedTuple):
    env: int
    start: int  # index into the recorded stream
    length: int
    done_at: int  # the write at which it became complete (for FIFO order)
    cut: bool


def expected_sequences(starts: np.ndarray, *, length: int, period: int, cut: bool) -> list[Seq]:
    """The complete sequences of a stream whose episode starts are ``starts [N, E]``, in the order they
    enter the table (completion write, cut ones before full ones, then env, then start)."""
    N, E = starts.shape
    found = []
    for e in range(E):
        # episode runs: [begin, end) between episode starts (the stream's first step begins one)
        begins = [0] + [n for n in range(1, N) if cut and starts[n, e]]
        ends = [*begins[1:], N]
        for begin, end in zip(begins, ends, strict=True):
            for s in range(begin, end, period):
                if s + length <= end:
                    found.append(Seq(e, s, length, s + length - 1, False))
                elif end < N:  # cut by the next episode's start, seen at write `end`
                    found.append(Seq(e, s, end - s, end, True))
    return sorted(found, key=lambda q: (q.done_at, not q.cut, q.env, q.start))


def live_sequences(replay: SequenceReplay, stream: list[Seq], written: int) -> set[tuple[int, int, int]]:
    """(env, start, length) of the sequences the replay must hold: the last ``capacity`` completed,
    less those whose first step the ring has overwritten."""
    kept = stream[-replay.capacity:]
    return {(q.env, q.start, q.length) for q in kept if q.start >= written - replay.ring_steps}


def assert_row_matches(batch: ReplayBatch, b: int, rec: Recorder, *, length: int) -> int:
    """Compare batch row ``b`` with the recorded stream; return its valid length."""
    ticks = rec.ticks()
    e = int(batch.initial_state.rows()[b])
    first = int(np.flatnonzero(ticks == batch.ticks[0, b])[0])
    n_valid = int(batch.mask[:, b].sum())
    steps = rec.steps[first:first + n_valid]
    assert n_valid >= 1
    assert bool(batch.mask[:n_valid, b].all())
    assert not bool(batch.mask[n_valid:, b].any())
    obs = torch.stack([torch.as_tensor(s.obs)[e] for s in steps])
    torch.testing.assert_close(batch.obs[:n_valid, b].cpu(), obs.cpu())
    torch.testing.assert_close(batch.actions[:n_valid, b].cpu(), torch.stack([s.actions[e] for s in steps]).cpu())
    for name in ("rewards", "terminated", "truncated", "valid"):
        expected = np.array([np.asarray(getattr(s, name))[e] for s in steps])
        np.testing.assert_array_equal(batch.__getattribute__(name)[:n_valid, b].cpu().numpy(),
                                      expected.astype(batch.__getattribute__(name).cpu().numpy().dtype))
    np.testing.assert_array_equal(batch.episode_starts[:n_valid, b], [s.episode_starts[e] for s in steps])
    np.testing.assert_array_equal(batch.episode_ids[:n_valid, b], [s.state.episode_ids[e] for s in steps])
    np.testing.assert_array_equal(batch.ticks[:n_valid, b], ticks[first:first + n_valid])
    # padding: no flags, starts set, stamps -1, observation repeated
    assert bool(batch.episode_starts[n_valid:, b].all())
    assert (batch.ticks[n_valid:, b] == -1).all()
    assert not bool(batch.rewards[n_valid:, b].any())
    if n_valid < length:
        torch.testing.assert_close(batch.obs[n_valid:, b].cpu(), obs[-1:].expand(length - n_valid, -1).cpu())
    # the stored state is the state the collector fed at the first step, with its stamps
    for stored, fed in zip(batch.initial_state.tensors, rec.steps[first].state.tensors, strict=True):
        torch.testing.assert_close(stored[:, b].cpu(), fed[:, e].cpu())
    assert batch.initial_state.ticks()[b] == ticks[first]
    assert batch.initial_state.episode_ids[b] == rec.steps[first].state.episode_ids[e]
    assert batch.versions[b] == rec.versions[first]
    # truncations and their final observations
    for m, (t, bb) in enumerate(batch.truncation_steps.tolist()):
        if bb == b:
            assert t < n_valid
            assert steps[t].truncated[e]
            expected_final = torch.as_tensor(np.asarray(steps[t].final_obs)[e])
            torch.testing.assert_close(batch.final_obs[m].cpu(), expected_final.to(batch.final_obs.dtype))
    return n_valid


def collect(replay: SequenceReplay, *, mode: AutoresetMode, specs: list[dict[str, Any]], num_steps: int,
            rounds: int, policy: Any = None, venv: Any = None) -> tuple[Recorder, RolloutCollector]:
    """``rounds`` collect calls of ``num_steps`` into ``replay`` (policy_version = the round), recorded."""
    rec = Recorder(replay)
    env = venv if venv is not None else make_vec("sync", mode, specs)
    collector = RolloutCollector(env, policy if policy is not None else CounterPolicy(), num_steps, seed=0)
    for r in range(rounds):
        replay.policy_version = r
        collector.collect(rec)
    return rec, collector
