"""Fixtures of the harness tests: a stub trainer command and a small grid."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tether.bench.grid import Cell, Grid, parse_grid

STUB = Path(__file__).with_name("stub_trainer.py")


def stub_command(cell: Cell, cell_toml: Path, run_dir: Path) -> Sequence[str]:
    """The runner's trainer command, pointed at the stub."""
    return [sys.executable, str(STUB), "--config", str(cell_toml), "--run-dir", str(run_dir)]


def small_grid_data() -> dict[str, Any]:
    """Two tasks, two variants, three seeds."""
    return {
        "name": "small",
        "seeds": [0, 1, 2],
        "settings": {"total_steps": 400},
        "tasks": {"cartpole": {"preset": "cartpole", "bar": 101, "score_range": [0, 500]},
                  "recall": {"env_id": "tether/Recall-v0", "bar": 0.9, "score_range": [0.25, 1.0]}},
        "variants": {"lstm": {}, "gru": {"settings": {"core": "gru"}}},
    }


@pytest.fixture
def small_grid() -> Grid:
    """The small grid, parsed."""
    return parse_grid(small_grid_data())
