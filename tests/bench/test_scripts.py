"""The result-reading scripts in benchmarks/: metric curves over training, and reached-and-held per seed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metric_curves_are_the_iqm_over_seeds_where_every_run_logged(ran: Path) -> None:
    """dq_first of seed s is s + k at step 100 k (k = 1..3, NaN at k = 4): the IQM over seeds 0-2 is 2 + k."""
    data = _script("metric_curves").curves(ran, ["staleness/dq_first"], n_resamples=100)
    found = {(c["task"], c["variant"]): c for c in data["curves"]}
    assert set(found) == {("cartpole", "lstm"), ("recall", "lstm")}  # the gru stub logs no staleness
    curve = found[("cartpole", "lstm")]
    assert curve["runs"] == 3
    assert (curve["steps"][0], curve["steps"][-1]) == (100.0, 300.0)  # the NaN record is left out
    assert curve["iqm"][0] == pytest.approx(3.0 - 1.0)
    assert curve["iqm"][-1] == pytest.approx(3.0 + 1.0)
    assert all(lo <= mid <= hi for lo, mid, hi in zip(curve["low"], curve["iqm"], curve["high"], strict=True))


def test_metric_curves_writes_the_figure_and_its_curves(ran: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig" / "dq.png"
    assert _script("metric_curves").main([str(ran), "--keys", "staleness/dq_first", "staleness/dq_last",
                                          "--log", "--resamples", "50", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert json.loads(out.with_suffix(".json").read_text())["keys"] == ["staleness/dq_first", "staleness/dq_last"]


def test_metric_curves_refuses_a_key_no_cell_logged(ran: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    assert _script("metric_curves").main([str(ran), "--keys", "state/h_rms", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no cell under" in err
    assert "logged state/h_rms at two steps or more" in err
    assert not out.exists()


def test_learning_peaks_tells_reached_from_held(ran: Path, tmp_path: Path) -> None:
    """The stub's return rises to 100 + seed (gru: 1000) in four records; the cartpole bar is 101."""
    out = tmp_path / "peaks.json"
    assert _script("learning_peaks").main([str(ran), "--task", "cartpole", "--out", str(out)]) == 0
    rows = {r["variant"]: r["runs"] for r in json.loads(out.read_text())["rows"]}
    assert [r["first_step_at_bar"] for r in rows["lstm"]] == [None, 400, 400]
    assert [r["eval"] for r in rows["lstm"]] == [100.0, 101.0, 102.0]
    assert [r["first_step_at_bar"] for r in rows["gru"]] == [100, 100, 100]  # 1000 / 4 at the first record
    assert rows["gru"][0]["best_train_return"] == 1000.0


def test_learning_peaks_names_what_the_grid_has(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script("learning_peaks").main([str(ran), "--task", "pendulum"]) == 2
    err = capsys.readouterr().err
    assert "its tasks are cartpole, recall" in err
    assert len(err.strip().splitlines()) == 1
