"""The report: per task and variant statistics, the aggregate over tasks, plots."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tether.bench import provenance
from tether.bench.report import load_results, render_table, summarise, write_report
from tether.errors import MissingDependencyError


def test_rows_per_task_and_variant(ran: Path) -> None:
    """Each task × variant row holds its seeds' scores, IQM, median, seeds at bar and steps/s."""
    summary = summarise(load_results(ran), info=json.loads((ran / "grid.json").read_text()),
                        n_resamples=200)
    assert summary["tasks"] == ["cartpole", "recall"]
    assert summary["variants"] == ["lstm", "gru"]
    lstm = next(r for r in summary["rows"] if (r["task"], r["variant"]) == ("cartpole", "lstm"))
    assert lstm["seeds"] == [0, 1, 2]
    assert lstm["scores"] == [100.0, 101.0, 102.0]
    assert lstm["iqm"]["point"] == pytest.approx(101.0)
    assert lstm["median"]["point"] == 101.0
    assert lstm["iqm"]["low"] <= 101.0 <= lstm["iqm"]["high"]
    assert (lstm["at_bar"], lstm["runs"], lstm["bar"]) == (2, 3, 101)
    assert lstm["steps_per_second"] == pytest.approx(200.0)
    assert lstm["curve"]["iqm"][-1] == pytest.approx(101.0)
    assert len(lstm["curve"]["steps"]) == 50


def test_reported_metrics_are_averaged_per_run_then_over_seeds(ran: Path) -> None:
    """Each run's mean of a reported metric (finite values only), then its IQM over seeds, in a table."""
    records = load_results(ran)
    lstm0 = next(r for r in records if r["cell"]["variant"] == "lstm" and r["cell"]["seed"] == 0)
    assert lstm0["metric_means"]["staleness/dq_first"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3, NaN left out
    assert lstm0["metric_means"]["staleness/dq_last"] == pytest.approx((1 + 2 + 3 + 3 * 1 / 3 + 4) / 4)
    summary = summarise(records, n_resamples=100)
    lstm = next(r for r in summary["rows"] if (r["task"], r["variant"]) == ("cartpole", "lstm"))
    gru = next(r for r in summary["rows"] if (r["task"], r["variant"]) == ("cartpole", "gru"))
    assert lstm["metrics"]["staleness/dq_first"]["point"] == pytest.approx(3.0)  # seeds 0-2: 2, 3, 4
    assert gru["metrics"] == {}
    table = render_table(summary)
    assert "| task | variant | `staleness/dq_first` | `staleness/dq_last` |" in table
    assert "| cartpole | gru | — | — |" in table


def test_a_record_without_metric_means_reads_its_run(ran: Path) -> None:
    """Cells recorded before records kept the metric means get them from their run's metrics file."""
    path = ran / "cartpole__lstm__seed1" / "result.json"
    record = json.loads(path.read_text())
    del record["metric_means"]
    path.write_text(json.dumps(record))
    found = next(r for r in load_results(ran) if r["cell"]["seed"] == 1 and r["cell"]["variant"] == "lstm"
                 and r["cell"]["task"] == "cartpole")
    assert found["metric_means"]["staleness/dq_first"] == pytest.approx(3.0)


def test_bar_and_labels_come_from_the_grid_as_it_is_now(ran: Path) -> None:
    """A bar edited in the grid after the cells ran is what the report holds the seeds to."""
    info = json.loads((ran / "grid.json").read_text())
    info["task_info"]["cartpole"]["bar"] = 102
    info["variant_info"]["lstm"]["label"] = "LSTM 64"
    lstm = summarise(load_results(ran), info=info, n_resamples=50)["rows"][0]
    assert (lstm["bar"], lstm["at_bar"], lstm["label"]) == (102, 1, "LSTM 64")


def test_aggregate_over_tasks_uses_normalised_scores(ran: Path) -> None:
    """Across tasks each score is normalised by its task's score_range and the strata kept."""
    summary = summarise(load_results(ran), n_resamples=200)
    gru = next(a for a in summary["aggregate"] if a["variant"] == "gru")
    # gru scores 1000 on every seed: 1000 / 500 = 2 on cartpole, (1000 - 0.25) / 0.75 on recall;
    # the IQM of the 6 pooled runs drops one at each end and averages two of each
    assert gru["iqm"]["point"] == pytest.approx((2.0 + (1000 - 0.25) / 0.75) / 2)
    assert gru["runs"] == 6
    assert gru["tasks"] == ["cartpole", "recall"]
    assert gru["profile"]["fraction"][0] == 1.0


def test_speed_relative_to_the_first_variant(ran: Path) -> None:
    """Per task, each later variant's steps/s over the first's, paired by seed (the stub runs all at 200)."""
    summary = summarise(load_results(ran), info=json.loads((ran / "grid.json").read_text()),
                        n_resamples=100)
    assert [(s["task"], s["variant"], s["reference"], s["paired"]) for s in summary["speed"]] == [
        ("cartpole", "gru", "lstm", True), ("recall", "gru", "lstm", True)]
    assert summary["speed"][0]["ratio"] == pytest.approx({"point": 1.0, "low": 1.0, "high": 1.0})


def test_provenance_of_the_summary(ran: Path) -> None:
    """The summary names the one source hash its cells ran on, or none when they differ."""
    records = load_results(ran)
    assert summarise(records, n_resamples=50)["provenance"]["source_hash"] == provenance.source_hash()
    records[0]["provenance"]["source_hash"] = "sha256:other"
    mixed = summarise(records, n_resamples=50)["provenance"]
    assert mixed["source_hash"] is None
    assert len(mixed["source_hashes"]) == 2


def test_table_and_files(ran: Path) -> None:
    """write_report writes summary.json, summary.md (the rendered table) and both PNGs."""
    written = write_report(ran, n_resamples=100)
    assert [p.name for p in written] == ["summary.json", "summary.md", "curves.png", "profile.png"]
    assert all(p.stat().st_size > 0 for p in written)
    summary = json.loads((ran / "summary.json").read_text())
    text = (ran / "summary.md").read_text()
    assert text == f"{render_table(summary)}\n\n{provenance.measured_on(summary['provenance'])}\n"
    assert text.endswith(f", {summary['provenance']['hardware']['cpu']}, {os.cpu_count()} logical CPUs).\n")
    assert "| cartpole | lstm | 3 | 101.0 [" in text
    assert "| ≥ 101 | 2/3 | 200 | 100.0, 101.0, 102.0 |" in text
    assert "| all tasks (normalised) | gru | 6 |" in text


def test_no_results_is_one_line(tmp_path: Path) -> None:
    """A folder with no finished cell says to run the grid first."""
    with pytest.raises(FileNotFoundError, match=r"no finished cells \(\*/result.json\) under .*;"
                                                r" run tether bench run first"):
        write_report(tmp_path)


def test_plots_without_matplotlib_is_one_line(ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the plots refuse in one line naming the extra; --no-plots still reports."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"tether bench plots needs matplotlib, which is not"
                                                r" installed; pip install 'tether-rl\[bench\]'"):
        write_report(ran, n_resamples=50)
    assert [p.name for p in write_report(ran, plots=False, n_resamples=50)] == ["summary.json", "summary.md"]


def test_statistics_without_scipy_is_one_line(ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without scipy the report refuses in one line naming the extra."""
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(MissingDependencyError, match=r"tether bench statistics needs scipy"):
        write_report(ran, plots=False)
