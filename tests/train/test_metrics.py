"""Tests for tether.train.metrics: one record per update, even after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import RunFolderError
from tether.train.metrics import MetricsLogger, read_metrics


def test_truncate_drops_records_past_the_resume_step_and_torn_lines(tmp_path: Path) -> None:
    """A resumed logger keeps the records up to its step, drops later and torn ones, then appends."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 8, "update": 1}\n{"step": 16, "update": 2}\n{"step": 24, "update": 3}\n{"step": 3',
                    encoding="utf-8")
    logger = MetricsLogger(tmp_path, total_steps=32, progress=False, tensorboard=False, start_step=16,
                           truncate=True)
    logger.log(24, {"update": 3})
    logger.close()
    assert [(r["step"], r["update"]) for r in read_metrics(tmp_path)] == [(8, 1), (16, 2), (24, 3)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_without_truncate_a_logger_appends(tmp_path: Path) -> None:
    """A fresh (not resumed) logger appends to an existing file, as before."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 8}\n', encoding="utf-8")
    logger = MetricsLogger(tmp_path, total_steps=8, progress=False, tensorboard=False)
    logger.log(8, {"x": float("nan")})
    logger.close()
    first, second = read_metrics(tmp_path)
    assert first == {"step": 8}
    assert (second["step"], second["x"]) == (8, None)  # NaN is written as null


def test_malformed_records_name_the_line(tmp_path: Path) -> None:
    """A line that is not a JSON object is refused naming the file and line."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"metrics.jsonl:2: expected a JSON object, got \[1, 2\]"):
        read_metrics(tmp_path)
