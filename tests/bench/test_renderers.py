"""The replay-speed and r2d2-speed tables render their results files' numbers, line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tether.bench import renderers, tables


def _replay_speed() -> dict[str, Any]:
    row = {"seq_len": 40, "burn_in": 40, "length": 80, "period": 40, "batch": 64, "obs_dim": 4, "num_envs": 16,
           "hidden": 64, "capacity": 2000, "replay_bytes": 3 * 2**20, "history_rows_covered": 0.9,
           "sample_strict_cpu_ms": 1.2, "sample_off_cpu_ms": 1.0, "update_priorities_cpu_ms": 0.25,
           "episode_history_cpu_ms": 0.8}
    small = {**row, "seq_len": 20, "burn_in": 10, "length": 30, "period": 15, "batch": 32,
             "replay_bytes": 2**19, "sample_strict_cpu_ms": 0.5, "sample_off_cpu_ms": 0.4}
    return {"benchmark": "replay_speed", "rounds": 7, "history_max_steps": 200, "shapes": [row, small],
            "provenance": None}


def _task(name: str, **over: Any) -> dict[str, Any]:
    task = {"task": name, "num_envs": 8, "collect_steps": 8, "updates_per_collect": 1, "batch_size": 32,
            "length": 60, "burn_in": 20, "staleness_every": 10, "steps_per_second": 1500.0,
            "updates_per_second": 23.4375, "learner_updates_per_second": 50.0, "steps_per_second_off": 1600.0,
            "staleness_ratio": 1.0667, "staleness_ratio_cpu": 1.05,
            "ppo_steps_per_second": 1000.0, "ms_per_iteration": 40.0,
            "split_ms": {"collection": 10.0, "sample": 1.0, "replay_loss": 12.0, "backward_optimiser": 6.0,
                         "update_priorities": 0.5, "staleness": 2.5, "rest": 8.0}}
    return {**task, **over}


def _r2d2_speed() -> dict[str, Any]:
    recall = _task("recall", length=20, burn_in=0, updates_per_collect=2, steps_per_second=3000.0,
                   ppo_steps_per_second=1200.0, staleness_ratio=0.98)
    return {"benchmark": "r2d2_speed", "rounds": 3, "steps": 8192, "tasks": [_task("cartpole"), recall],
            "provenance": None}


def test_replay_speed_table() -> None:
    """Each shape's medians in ms, strict over off as a ratio, the memory in MiB; the notes name the settings."""
    lines = renderers.render_replay_speed(_replay_speed()).splitlines()
    assert lines[0] == ("| length (burn-in), period, batch, obs | `sample`, strict | `sample`, off | strict / off |"
                        " `update_priorities` | `episode_history` | replay memory |")
    assert lines[2:4] == ["| 80 (40), 40, 64, 4 | 1.200 ms | 1.000 ms | 1.20× | 0.250 ms | 0.800 ms | 3.0 MiB |",
                          "| 30 (10), 15, 32, 4 | 0.500 ms | 0.400 ms | 1.25× | 0.250 ms | 0.800 ms | 0.5 MiB |"]
    assert lines[4:] == ["", "Thread CPU time per batch, medians of 7 interleaved rounds, 1 thread: a prioritised"
                         " replay full at 2000 sequences of 16 envs (LSTM state of 64); `episode_history` looks"
                         " back at most 200 steps."]


def test_r2d2_speed_tables() -> None:
    """The rates table (with the staleness ratio and R2D2 / PPO) and the split of an iteration with shares."""
    lines = renderers.render_r2d2_speed(_r2d2_speed()).splitlines()
    assert lines[2:4] == ["| cartpole | 1500 | 23.4 | 50.0 | 1600 | **1.067** | 1.050 | 1000 | 1.50× |",
                          "| recall | 3000 | 23.4 | 50.0 | 1600 | **0.980** | 1.050 | 1200 | 2.50× |"]
    assert lines[4] == ""
    assert lines[5] == ("| task | iteration | collection | sample | replay + loss | backward + optimiser |"
                        " `update_priorities` | staleness | rest |")
    assert lines[7] == ("| cartpole | 40.00 ms | 10.00 ms (25%) | 1.00 ms (2%) | 12.00 ms (30%) | 6.00 ms (15%) |"
                        " 0.50 ms (1%) | 2.50 ms (6%) | 8.00 ms (20%) |")
    assert lines[8].startswith("| recall | 40.00 ms | 10.00 ms (25%) |")
    assert lines[9] == ""
    assert lines[10] == ("Wall clock, 1 torch thread, the presets' settings: 8192 env steps after learning starts,"
                         " medians of 3 rounds alternating the preset's `staleness_every` with 0 (same seed); the"
                         " split is per iteration (cartpole: 8 steps × 8 envs, then 1 update of 32 sequences of 60"
                         " steps (burn-in 20), Δq every 10 updates; recall: 8 steps × 8 envs, then 2 updates of 32"
                         " sequences of 20 steps (burn-in 0), Δq every 10 updates). RecurrentPPO: its preset of"
                         " the same name, 8192 env steps.")
    assert len(lines) == 11


@pytest.mark.parametrize(("kind", "data", "name", "command"), [
    ("replay-speed", _replay_speed(), "replay_speed.json",
     "python benchmarks/replay_speed.py --out benchmarks/results/replay_speed.json"),
    ("r2d2-speed", _r2d2_speed(), "r2d2_speed.json",
     "python benchmarks/r2d2_speed.py --out benchmarks/results/r2d2_speed.json"),
])
def test_speed_blocks_render_and_name_their_command(tmp_path: Path, kind: str, data: dict[str, Any], name: str,
                                                    command: str) -> None:
    """A marked block of each kind renders its file; a file missing a field is one error naming the script."""
    readme = tmp_path / "README.md"
    readme.write_text(f"<!-- tether-bench:{kind}:begin {name} -->\n<!-- tether-bench:{kind}:end -->\n",
                      encoding="utf-8")
    (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    assert tables.regenerate([readme], tmp_path) == ([readme], [])
    assert tables.RENDERERS[kind][0](data) in readme.read_text(encoding="utf-8")
    assert tables.check([readme], tmp_path) == []
    del data["rounds"]
    (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(tables.ResultsFileError, match=f"has no field 'rounds' that a {kind} table shows; make it"
                                                      f" again with `{command}`"):
        tables.check([readme], tmp_path)
