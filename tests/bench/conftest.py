"""Fixtures of the harness tests: a stub trainer command and a small grid."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tether.bench.grid import Cell, Grid, parse_grid
from tether.bench.runner import run_grid

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


@pytest.fixture(scope="session")
def _stub_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stub-grid")
    run_grid(parse_grid(small_grid_data()), out, jobs=2, command=stub_command, echo=None)
    return out


@pytest.fixture
def ran(_stub_results: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small grid's output folder, run once per session with the stub trainer."""
    out = tmp_path / "ran"
    shutil.copytree(_stub_results, out)
    return out
