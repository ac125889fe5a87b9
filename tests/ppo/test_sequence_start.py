"""Tests for tether.ppo.starts: each sequence start equals a hand-written per-step loop; the checks hold."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from tests.rollout.helpers import make_vec

from tether import RecurrentState
from tether.errors import ConfigError, ReplayAlignmentError
from tether.modes import mode
from tether.nets import FactoredRecurrentActorCritic
from tether.ppo.starts import SequenceStart, burned_in_state, refreshed_chunk_states
from tether.rollout import RecurrentRolloutBuffer, RolloutCollector

T, E, L, K = 12, 2, 4, 6  # K > L: a burn-in reaches over a whole chunk, and is clamped for chunk 1
ENVS = [{"length": 3, "ending": "truncate"}, {"length": 5, "ending": "terminate"}]


def _collected(core: str) -> tuple[FactoredRecurrentActorCritic, RecurrentRolloutBuffer, RolloutCollector]:
    """A rollout of a small actor-critic, then weights moved (as by an update), so starts differ."""
    torch.manual_seed(0)
    policy = FactoredRecurrentActorCritic(gym.spaces.Box(-np.inf, np.inf, (2,)), gym.spaces.Discrete(2),
                                          hidden_sizes=(8,), core=core, core_hidden_size=8, num_layers=2,
                                          shared_core=False)
    collector = RolloutCollector(make_vec("sync", AutoresetMode.SAME_STEP, ENVS), policy, T)
    buffer = RecurrentRolloutBuffer(T, E, seq_len=L, burn_in=K, keep_states=True)
    collector.collect(buffer)
    buffer.compute_advantages()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy, buffer, collector


def _reference(policy: Any, buffer: RecurrentRolloutBuffer, env: int, first: int, start: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-step masked loop from the state fed at ``first``: log-probs and values of the chunk at ``start``."""
    tensors = tuple(x[first, :, env:env + 1].clone() for x in buffer.states)
    log_probs, values = [], []
    with mode("off"), torch.no_grad():
        for t in range(first, start + L):
            if buffer.episode_starts[t, env]:
                tensors = tuple(torch.zeros_like(x) for x in tensors)
            out = policy.evaluate_actions(buffer.obs[t:t + 1, env:env + 1], buffer.actions[t:t + 1, env:env + 1],
                                          np.zeros((1, 1), dtype=bool), RecurrentState.from_tensors(tensors),
                                          return_state=True)
            tensors = out.state.tensors
            if t >= start:
                log_probs.append(out.log_prob[0, 0])
                values.append(out.value[0, 0])
    return torch.stack(log_probs), torch.stack(values)


def _replayed(policy: Any, buffer: RecurrentRolloutBuffer, kind: str) -> dict[tuple[int, int], tuple[Any, Any]]:
    """The trainer's path: each sequence's log-probs and values, by (env, chunk start)."""
    states = refreshed_chunk_states(policy, buffer) if kind == "rollout" else None
    (mb,) = buffer.minibatches(1, generator=torch.Generator().manual_seed(1), chunk_states=states)
    start = burned_in_state(policy, mb) if kind == "burn-in" else mb.initial_state
    with torch.no_grad():
        out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, start, mb.action_masks)
    return {(int(e), int(s)): (out.log_prob[:, j], out.value[:, j])
            for j, (e, s) in enumerate(zip(mb.env_rows, mb.chunk_starts, strict=True))}


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_each_start_equals_the_per_step_loop(core: str) -> None:
    """rollout (from step 0), stored (from the chunk start), burn-in (K earlier, clamped) match the loop."""
    policy, buffer, collector = _collected(core)
    firsts = {"rollout": lambda s: 0, "stored": lambda s: s, "burn-in": lambda s: max(0, s - K)}
    with mode("strict"):  # a correct replay never trips a check
        replays = {kind: _replayed(policy, buffer, kind) for kind in firsts}
    assert buffer.episode_starts[1:].any()  # episodes restart inside the rollout
    for kind, first in firsts.items():
        for (env, start), (log_prob, value) in replays[kind].items():
            ref_lp, ref_v = _reference(policy, buffer, env, first(start), start)
            torch.testing.assert_close(log_prob, ref_lp, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(value, ref_v, atol=1e-5, rtol=1e-5)
    # The three starts are distinct computations once the weights moved (chunk 2 of env 1 carries state).
    gaps = [float((replays[a][(1, 8)][1] - replays[b][(1, 8)][1]).abs().max())
            for a, b in (("rollout", "stored"), ("stored", "burn-in"))]
    assert min(gaps) > 1e-4
    collector.venv.close()


@pytest.mark.parametrize("kind", ["rollout", "burn-in"])
def test_a_misaligned_replay_is_still_caught(kind: str) -> None:
    """episode_starts wiped in the stored rollout: the refresh / burn-in replay raises in strict mode."""
    policy, buffer, collector = _collected("lstm")
    buffer.episode_starts[:] = False
    with mode("strict"), pytest.raises(ReplayAlignmentError, match="episode_starts miss"):
        _replayed(policy, buffer, kind)
    collector.venv.close()


def test_buffer_stores_snapshots_only_where_a_replay_starts() -> None:
    """Chunk starts and burn-in starts (clamped at 0), nothing else."""
    _, buffer, collector = _collected("gru")
    stored = []
    for step in range(T):
        try:
            buffer.snapshot_at(step)
            stored.append(step)
        except KeyError:
            pass
    assert stored == [0, 2, 4, 8]  # chunks 0, 4, 8; burn-ins 2 (= 8 - 6) and 0 (4 - 6, clamped)
    with pytest.raises(KeyError, match="no state stored for step 1"):
        buffer.snapshot_at(1)
    collector.venv.close()


@pytest.mark.parametrize("text", ["burn-in:0", "burn-in:x", "foo", "burn-in", "burn-in:-2", "stored:3"])
def test_bad_spellings_are_refused_in_one_line(text: str) -> None:
    """Anything but rollout, stored, burn-in:K (K >= 1) is refused, naming the spellings."""
    with pytest.raises(ConfigError, match=r"sequence_start: expected 'rollout', 'stored' or 'burn-in:K'"):
        SequenceStart.parse(text)


def test_spellings_parse() -> None:
    """The three spellings, with K read."""
    assert SequenceStart.parse("rollout") == SequenceStart(kind="rollout")
    assert SequenceStart.parse("stored").burn_in == 0
    assert SequenceStart.parse("burn-in:32") == SequenceStart(kind="burn-in", burn_in=32)


def test_the_comparison_grid_parses_to_its_cells() -> None:
    """benchmarks/grids/sequence_start.toml: 4 starts × 4 tasks × seeds 0-9, telemetry on, chunks cut."""
    from pathlib import Path  # noqa: PLC0415

    from tether.bench.grid import load_grid  # noqa: PLC0415

    grid = load_grid(Path(__file__).resolve().parents[2] / "benchmarks" / "grids" / "sequence_start.toml")
    cells = grid.cells()
    assert len(cells) == 160
    assert {c.seed for c in cells} == set(range(10))
    starts = {c.settings()["sequence_start"] for c in cells}
    assert starts == {"rollout", "stored", "burn-in:8", "burn-in:32"}
    assert all(c.settings()["telemetry"] for c in cells)
    assert {c.task.name: c.settings().get("seq_len", 128) for c in cells} == {
        "cartpole": 16, "recall": 16, "recall-dict": 16, "pendulum": 128}


@pytest.mark.parametrize("text", ["burn-in:0", "foo"])
def test_the_cli_refuses_a_bad_start_with_exit_2(text: str, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Any) -> None:
    """``tether train --sequence-start burn-in:0``: one line naming the spellings, exit status 2."""
    from tether.cli import main  # noqa: PLC0415

    assert main(["train", "--sequence-start", text, "--run-dir", str(tmp_path / "run"), "--no-eval"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "sequence_start: expected 'rollout', 'stored' or 'burn-in:K' with K an integer >= 1" in err[0]
    assert not (tmp_path / "run").exists()
