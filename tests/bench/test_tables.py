"""Marked tables in README.md and docs/*.md equal the render of their results files, whatever
sources those were measured on; ``regenerate`` writes them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tether.bench import provenance, tables
from tether.bench.report import write_report

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- tether-bench:{kind}:begin {source} -->"
END = "<!-- tether-bench:{kind}:end -->"


def test_repository_tables_match_their_results() -> None:
    """Every marked table of this checkout's README.md and docs/*.md is its results file's render
    (tables measured on older sources included: that is ``tether bench check``'s report)."""
    files = tables.default_files(ROOT)
    assert ROOT / "README.md" in files
    assert tables.check(files, ROOT) == []


def _repo(tmp_path: Path) -> Path:
    """A repository root with its own tether sources (one file) to hash."""
    (tmp_path / "src" / "tether").mkdir(parents=True)
    (tmp_path / "src" / "tether" / "core.py").write_text("VALUE = 1\n", encoding="utf-8")
    return tmp_path


def _step_results(root: Path, source_hash: str) -> dict[str, Any]:
    prov = {**provenance.collect(), "source_hash": source_hash}
    data = {"args": {"rounds": 3, "inner": 20}, "provenance": prov,
            "forward_seconds": {"raw": 100e-6, "strict": 102e-6},
            "step_seconds": {"raw": 110e-6, "strict": 120e-6}}
    path = root / "benchmarks" / "results" / "step_overhead.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def _readme(root: Path, body: str, kind: str = "step-overhead",
            source: str = "benchmarks/results/step_overhead.json") -> Path:
    path = root / "README.md"
    path.write_text(f"# t\n\nintro\n\n{BEGIN.format(kind=kind, source=source)}\n{body}"
                    f"{END.format(kind=kind)}\n\nafter\n", encoding="utf-8")
    return path


def test_regenerate_then_check_passes(tmp_path: Path) -> None:
    """An empty block is filled with the render; the rest of the file is untouched; check passes."""
    root = _repo(tmp_path)
    _step_results(root, provenance.source_hash(root / "src" / "tether"))
    readme = _readme(root, "")
    changed, problems = tables.regenerate([readme], root)
    assert (changed, problems) == ([readme], [])
    text = readme.read_text(encoding="utf-8")
    assert "| strict | 102.0 µs (1.020) | 120.0 µs (1.091) |" in text
    assert text.startswith("# t\n\nintro\n\n<!-- tether-bench:step-overhead:begin")
    assert text.endswith("<!-- tether-bench:step-overhead:end -->\n\nafter\n")
    assert tables.check([readme], root) == []
    assert tables.regenerate([readme], root) == ([], [])  # already current: nothing rewritten


def test_a_hand_edited_table_fails(tmp_path: Path) -> None:
    """A number changed by hand inside a block is caught, naming the file, line and the fix."""
    root = _repo(tmp_path)
    _step_results(root, provenance.source_hash(root / "src" / "tether"))
    readme = _readme(root, "")
    tables.regenerate([readme], root)
    readme.write_text(readme.read_text(encoding="utf-8").replace("102.0 µs", "101.0 µs"), encoding="utf-8")
    assert tables.check([readme], root) == [
        f"{readme}:5: tether-bench:step-overhead block: the table differs from the render of"
        " benchmarks/results/step_overhead.json; run `tether bench tables`"]


def test_results_from_other_sources_still_render(tmp_path: Path) -> None:
    """Sources edited after the results were made leave the table correct: check passes."""
    root = _repo(tmp_path)
    _step_results(root, provenance.source_hash(root / "src" / "tether"))
    readme = _readme(root, "")
    tables.regenerate([readme], root)
    (root / "src" / "tether" / "core.py").write_text("VALUE = 2\n", encoding="utf-8")  # code moved on
    assert tables.check([readme], root) == []
    assert tables.regenerate([readme], root) == ([], [])


def test_the_block_ends_with_the_commit_it_was_measured_on(tmp_path: Path) -> None:
    """The line under a table names the commit, versions and CPU of its results file."""
    root = _repo(tmp_path)
    data = _step_results(root, "sha256:any")
    data["provenance"]["git"] = {"commit": "0123456789abcdef", "dirty": False}
    data["provenance"]["versions"].update(tether="0.1.0", torch="2.13.0", python="3.11.7")
    data["provenance"]["hardware"].update(cpu="Some CPU", logical_cpus=4)
    (root / "benchmarks" / "results" / "step_overhead.json").write_text(json.dumps(data), encoding="utf-8")
    readme = _readme(root, "")
    tables.regenerate([readme], root)
    assert ("steps.\n\nMeasured on commit 0123456789 (tether 0.1.0, torch 2.13.0, Python 3.11.7, Some CPU,"
            " 4 logical CPUs).\n<!-- tether-bench:step-overhead:end -->") in readme.read_text(encoding="utf-8")


def test_results_without_provenance_render_with_an_unknown_commit(tmp_path: Path) -> None:
    """A results file written before provenance was recorded renders, saying the commit is unknown."""
    root = _repo(tmp_path)
    data = _step_results(root, "unused")
    del data["provenance"]
    (root / "benchmarks" / "results" / "step_overhead.json").write_text(json.dumps(data), encoding="utf-8")
    readme = _readme(root, "")
    assert tables.regenerate([readme], root) == ([readme], [])
    assert "\n\nMeasured on unknown commit (no provenance recorded).\n" in readme.read_text(encoding="utf-8")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"README.md:5: tether-bench:step-overhead block: benchmarks/results/step_overhead.json is"
                  r" not valid JSON \(Expecting property name .*\); make it again with"
                  r" `python benchmarks/step_overhead.py`$"),
    ("[1, 2]", r"step_overhead.json holds a JSON list, expected an object; make it again with"),
    ('{"args": {}}', r"step_overhead.json has no field 'forward_seconds' that a step-overhead table shows;"),
])
def test_a_malformed_results_file_is_one_error(tmp_path: Path, content: str, message: str) -> None:
    """A results file that is not JSON, not an object, or lacks a field raises one ResultsFileError."""
    root = _repo(tmp_path)
    _step_results(root, "sha256:any")
    (root / "benchmarks" / "results" / "step_overhead.json").write_text(content, encoding="utf-8")
    readme = _readme(root, "old\n")
    with pytest.raises(tables.ResultsFileError, match=message):
        tables.check([readme], root)
    with pytest.raises(tables.ResultsFileError, match=message):
        tables.regenerate([readme], root)
    assert "old\n" in readme.read_text(encoding="utf-8")  # nothing written


@pytest.mark.parametrize(("text", "message"), [
    ("<!-- tether-bench:learning:begin x.json -->\n| a |\n", r"tether-bench:learning begin marker without"),
    ("| a |\n<!-- tether-bench:learning:end -->\n", r"README.md:2: tether-bench:learning end marker without"),
    ("<!-- tether-bench:learning:begin x.json -->\n<!-- tether-bench:memory:end -->\n", r"begin marker"),
])
def test_unpaired_markers(tmp_path: Path, text: str, message: str) -> None:
    """A marker without its pair is a problem, not a silently skipped table."""
    readme = _repo(tmp_path) / "README.md"
    readme.write_text(text, encoding="utf-8")
    problems = tables.check([readme], tmp_path)
    assert problems
    assert any(re.search(message, p) for p in problems)


def test_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    """A block of an unknown kind, or whose results file is missing, says what to do."""
    root = _repo(tmp_path)
    readme = _readme(root, "old\n", kind="speed", source="nope.json")
    [problem] = tables.check([readme], root)
    assert ("tether-bench:speed block: unknown kind; expected one of ['act-step', 'compare', 'compare-full',"
            " 'e2e', 'export-latency', 'gru', 'learning', 'memory', 'r2d2-speed', 'replay-speed', 'sequence',") in problem
    readme = _readme(root, "old\n", kind="memory", source="benchmarks/results/none.json")
    [problem] = tables.check([readme], root)
    assert problem.endswith("no results file benchmarks/results/none.json; make it with"
                            " `python benchmarks/memory_growth.py`")
    assert tables.regenerate([readme], root)[0] == []  # nothing to render with: the text stays


def test_learning_block_from_a_grid_summary(tmp_path: Path, ran: Path) -> None:
    """A learning block renders the harness's summary.json, the same table as summary.md."""
    root = _repo(tmp_path / "repo")
    out = root / "benchmarks" / "results" / "bench" / "small"
    shutil.copytree(ran, out)
    write_report(out, plots=False, n_resamples=50)
    readme = _readme(root, "", kind="learning", source="benchmarks/results/bench/small/summary.json")
    assert tables.regenerate([readme], root)[1] == []
    assert (out / "summary.md").read_text(encoding="utf-8") in readme.read_text(encoding="utf-8")
    assert tables.check([readme], root) == []


def test_committed_results_files_render(tmp_path: Path) -> None:
    """The results files benchmarks/ has written render as their kind (old ones without provenance too)."""
    for kind, name in (("memory", "memory_growth.json"), ("compare", "compare_sb3.json"),
                       ("compare-full", "compare_sb3.json")):
        source = ROOT / "benchmarks" / "results" / name
        if not source.is_file():
            continue
        shutil.copy(source, tmp_path / name)
        text, _ = tables.render_block(tables.Block(path=tmp_path / "R.md", line=1, kind=kind, source=name,
                                                   body="", start=0, end=0), tmp_path)
        assert text is not None
        assert "\n|---" in text


def test_sequence_tables_render_ratios_to_the_fused_call() -> None:
    """The sequence tables show each variant's median and its ratio to the fused no-reset call."""
    data = {"rounds": 5, "start_rate": 0.02, "provenance": None,
            "shapes": [{"shape": [128, 8, 64, 128],
                        "wall_seconds": {"fused": 0.010, "unroll": 0.0115, "reference": 0.080}}]}
    assert tables.RENDERERS["sequence"][0](data).splitlines()[2] == (
        "| 128, 8, 64, 128 | 10.00 ms (1.00×) | 11.50 ms (1.15×) | 80.00 ms (8.00×) | 7.0× |")
    assert tables.RENDERERS["sequence-explore"][0](data).splitlines()[2] == "| 128, 8, 64, 128 | 1.15× | 8.00× |"


def test_step_overhead_ratios_are_to_the_raw_step_on_the_same_kernel() -> None:
    """With a raw lstm_cell row the ratios are to it (the checks' cost); without, to nn.LSTM."""
    data = {"args": {"rounds": 3, "inner": 2}, "provenance": None,
            "forward_seconds": {"raw": 80e-6, "raw_cell": 40e-6, "strict": 42e-6},
            "step_seconds": {"raw": 80e-6, "raw_cell": 40e-6, "strict": 44e-6}}
    lines = tables.RENDERERS["step-overhead"][0](data).splitlines()
    assert lines[2:5] == ["| raw `nn.LSTM` | 80.0 µs (2.000) | 80.0 µs (2.000) |",
                          "| raw `torch.lstm_cell` | 40.0 µs (1.000) | 40.0 µs (1.000) |",
                          "| strict | 42.0 µs (1.050) | 44.0 µs (1.100) |"]
    assert "Ratios to the raw `torch.lstm_cell` step" in lines[-1]
    del data["forward_seconds"]["raw_cell"], data["step_seconds"]["raw_cell"]  # type: ignore[attr-defined]
    assert tables.RENDERERS["step-overhead"][0](data).splitlines()[3] == "| strict | 42.0 µs (0.525) | 44.0 µs (0.550) |"


def test_speed_tables_render_their_ratios() -> None:
    """The GRU, act-step and end-to-end tables show the ratios their targets are about."""
    gru = {"provenance": None, "sequences": [{"shape": [32, 64, 64, 64], "ms": {
        "lstm": 2.0, "gru": 6.0, "fast": 3.0, "fast+starts": 3.3, "lstm_unroll+starts": 3.0}}]}
    assert tables.RENDERERS["gru"][0](gru).splitlines()[2] == (
        "| 32, 64, 64, 64 | 2.00 ms | 6.00 ms | 3.00 ms | 3.00× | **1.50×** | 1.10× |")
    act = {"provenance": None, "rounds": 3, "calls_per_round": 5, "rows": [{"batch": 8, "cpu_us": {
        "lean": 200.0, "lean_cells": 100.0, "act_strict": 180.0, "act_off": 170.0}}]}
    assert tables.RENDERERS["act-step"][0](act).splitlines()[2] == (
        "| 8 | 200 µs | 100 µs | 180 µs | 170 µs | **0.90×** | 0.85× | 1.80× |")
    cost = {"provenance": None, "rounds": 2, "command": "tether train",
            "train_seconds": {"median_off": 10.0, "median_on": 10.2, "ratio_of_medians": 1.02, "off": [9.0, 11.0],
                              "on": [10.0, 10.4]},
            "wall_seconds": {"median_off": 12.0, "median_on": 12.0, "ratio_of_medians": 1.0, "off": [12.0, 12.0],
                             "on": [11.5, 12.5]}}
    assert tables.RENDERERS["telemetry-cost"][0](cost).splitlines()[2] == (
        "| preset | 10.00 s | 10.20 s | **1.020** | 9.00-11.00 s | 10.00-10.40 s | 1.000 |")
    chunked = {**cost["wall_seconds"], "ratio_of_medians": 1.1}  # type: ignore[dict-item]
    two = {"provenance": None, "rounds": 2, "configs": [
        {"name": "a", "command": "tether train A", "train_seconds": cost["train_seconds"],
         "wall_seconds": cost["wall_seconds"]},
        {"name": "b", "command": "tether train B", "train_seconds": cost["train_seconds"], "wall_seconds": chunked}]}
    lines = tables.RENDERERS["telemetry-cost"][0](two).splitlines()
    assert lines[3] == "| b | 10.00 s | 10.20 s | **1.020** | 9.00-11.00 s | 10.00-10.40 s | 1.100 |"
    assert lines[-1].endswith("(a: `tether train A`; b: `tether train B`).")
    starts = {"provenance": None, "rounds": 7, "tasks": {"cartpole": {"label": "CartPole", "variants": {
        "rollout": {"median_seconds": 0.3, "ratio_to_stored": 1.5},
        "stored": {"median_seconds": 0.2, "ratio_to_stored": 1.0}}}}}
    assert tables.RENDERERS["sequence-start-cost"][0](starts).splitlines()[2] == (
        "| CartPole | 300 ms (**1.50×**) | 200 ms |")
    e2e = {"provenance": None, "steps": 100, "rounds": 2, "before_commit": "0123456789abcdef",
           "steps_per_second": {"now/lstm": [10.0, 12.0], "before/gru": [5.0, 7.0]},
           "medians": {"now/lstm": 11.0, "before/gru": 6.0}, "ratios": {"gru / lstm (now)": 0.5}}
    lines = tables.RENDERERS["e2e"][0](e2e).splitlines()
    assert lines[2:4] == ["| measured commit | lstm | 11 | 10, 12 |", "| before (0123456789) | gru | 6 | 5, 7 |"]
    assert lines[-1].startswith("gru / lstm (now): **0.50×**. 100 env steps a run, 2 alternated rounds")
    e2e_cpu = {**e2e, "cpu_medians": {"now/lstm": 20.0, "before/gru": 9.0},
               "cpu_ratios": {"lstm now / before": 1.02}}
    lines = tables.RENDERERS["e2e"][0](e2e_cpu).splitlines()
    assert lines[2] == "| measured commit | lstm | 11 | 10, 12 | 20 |"
    assert lines[-1] == "Per CPU-second: lstm now / before: **1.02×**."
