"""``tether bench check``: which tables were measured on other sources than the checkout's.

Staleness is a report (exit 1), never a test failure: an edit under ``src/`` leaves every table
rendering exactly from its results file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.bench import provenance, staleness, tables
from tether.bench.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _copy_of_this_repository(dest: Path) -> tuple[Path, list[Path], int]:
    """README.md, docs/*.md, the results files their tables render and src/tether, copied to ``dest``,
    with every results file that records provenance stamped as measured on the copy's sources
    (fresh); also the number of tables whose results record none (stale whatever the sources)."""
    shutil.copytree(ROOT / "src" / "tether", dest / "src" / "tether",
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = []
    for path in tables.default_files(ROOT):
        copy = dest / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
        files.append(copy)
    current, unrecorded = provenance.source_hash(dest / "src" / "tether"), 0
    for path in files:
        for block in tables.find_blocks(path, path.read_text(encoding="utf-8"))[0]:
            results = dest / block.source
            data = json.loads((ROOT / block.source).read_text(encoding="utf-8"))
            if data.get("provenance"):
                data["provenance"]["source_hash"] = current  # rendering never reads the hash
            else:
                unrecorded += 1
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(data), encoding="utf-8")
    return dest, files, unrecorded


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], int]:
    """A fresh copy of this repository's tables, their results files and its tether sources."""
    return _copy_of_this_repository(tmp_path_factory.mktemp("repo"))


def test_a_comment_under_src_makes_tables_stale_not_wrong(repository: tuple[Path, list[Path], int]) -> None:
    """A comment line added to any file under src/: every table still renders exactly from its
    results file (what the test suite checks), and ``tether bench check`` reports them all stale."""
    root, files, unrecorded = repository
    found = staleness.find_stale(files, root)
    assert found.tables > unrecorded
    assert len(found.stale) == unrecorded
    assert tables.check(files, root) == []
    sources = sorted((root / "src" / "tether").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        before = path.read_text(encoding="utf-8")
        path.write_text(before + "# a comment\n", encoding="utf-8")
        try:
            assert tables.check(files, root) == [], path
            found = staleness.find_stale(files, root)
            assert len(found.stale) == found.tables, path
        finally:
            path.write_text(before, encoding="utf-8")
    assert len(staleness.find_stale(files, root).stale) == unrecorded


def test_check_command_on_an_edited_copy(repository: tuple[Path, list[Path], int],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``check`` exits 0 on fresh tables, 1 listing each stale one after an edit; ``tables --check``
    passes both times."""
    root, files, unrecorded = repository
    if not unrecorded:
        assert main(["check", "--root", str(root)]) == 0
        assert capsys.readouterr().out.startswith(f"{staleness.find_stale(files, root).tables} table(s) fresh")
    init = root / "src" / "tether" / "__init__.py"
    before = init.read_text(encoding="utf-8")
    init.write_text(before + "# a comment\n", encoding="utf-8")
    try:
        assert main(["tables", "--check", "--root", str(root)]) == 0
        capsys.readouterr()
        assert main(["check", "--root", str(root)]) == 1
    finally:
        init.write_text(before, encoding="utf-8")
    lines = capsys.readouterr().out.splitlines()
    readme = [line for line in lines if line.startswith(f"{root / 'README.md'}:")]
    assert readme
    assert all(" measured on commit" in line and "; regenerate with `" in line for line in readme)
    assert lines[-1].endswith("table(s) stale: measured on other tether sources than the checkout's"
                              " (a report, not an error)")


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "src" / "tether").mkdir(parents=True)
    (tmp_path / "src" / "tether" / "__init__.py").write_text("VALUE = 1\n", encoding="utf-8")
    return tmp_path


def _memory_table(root: Path, prov: dict[str, Any] | None) -> Path:
    data = {"args": {"episodes": 10, "min_len": 5, "max_len": 10, "num_envs": 2}, "provenance": prov,
            "summary": [{"variant": "tether", "rss_warm_mb": 1.0, "rss_end_mb": 1.0, "growth_pct": 0.0,
                         "graph_nodes_end": 0}]}
    results = root / "benchmarks" / "results" / "memory_growth.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data), encoding="utf-8")
    readme = root / "README.md"
    readme.write_text("# t\n\n<!-- tether-bench:memory:begin benchmarks/results/memory_growth.json -->\n"
                      "<!-- tether-bench:memory:end -->\n", encoding="utf-8")
    return readme


def test_a_stale_line_names_the_table_its_commit_and_the_command(tmp_path: Path) -> None:
    """One line per stale table: file:line, kind, results file, commit, both hashes, the command."""
    root = _repo(tmp_path)
    readme = _memory_table(root, {"source_hash": "sha256:" + "ab" * 32,
                                  "git": {"commit": "0123456789abcdef", "dirty": True}})
    found = staleness.find_stale([readme], root)
    current = provenance.source_hash(root / "src" / "tether")
    assert (found.tables, found.current) == (1, current)
    assert found.lines() == [
        f"{readme}:3: tether-bench:memory table (benchmarks/results/memory_growth.json) measured on commit"
        f" 0123456789 with uncommitted changes, tether sources sha256:abababababab (the checkout's:"
        f" {current[:19]}); regenerate with `python benchmarks/memory_growth.py`, then `tether bench tables`",
        "1 of 1 table(s) stale: measured on other tether sources than the checkout's (a report, not an error)"]


@pytest.mark.parametrize(("prov", "commit"), [
    (None, "unknown commit"),
    ({"git": {"commit": None, "dirty": None}}, "unknown commit"),
    ({"source_hash": None, "commits": ["a" * 40, "b" * 40, "c" * 40, "d" * 40], "dirty": False},
     "commits aaaaaaaaaa, bbbbbbbbbb, cccccccccc and 1 more"),
])
def test_without_a_hash_or_a_commit(tmp_path: Path, prov: dict[str, Any] | None, commit: str) -> None:
    """A results file without a source hash is stale; without a commit it says "unknown commit"."""
    root = _repo(tmp_path)
    [stale] = staleness.find_stale([_memory_table(root, prov)], root).stale
    assert (stale.commit, stale.made_from) == (commit, None)
    assert f"measured on {commit}, tether sources none recorded (the checkout's:" in stale.describe("sha256:x")


def test_a_grid_summary_names_its_grid_to_rerun(tmp_path: Path) -> None:
    """A learning table's command runs its grid from benchmarks/grids/ (or the copy beside the summary)."""
    block = tables.Block(path=tmp_path / "R.md", line=1, kind="learning", body="", start=0, end=0,
                         source="benchmarks/results/bench/learning/summary.json")
    assert tables.regenerate_command(block, tmp_path) == (
        "tether bench run benchmarks/results/bench/learning/grid.toml --out benchmarks/results/bench/learning")
    (tmp_path / "benchmarks" / "grids").mkdir(parents=True)
    (tmp_path / "benchmarks" / "grids" / "learning.toml").write_text("", encoding="utf-8")
    assert tables.regenerate_command(block, tmp_path) == (
        "tether bench run benchmarks/grids/learning.toml --out benchmarks/results/bench/learning")


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", r"README.md:3: tether-bench:memory block: no results file benchmarks/results/memory_growth.json;"
                r" make it with `python benchmarks/memory_growth.py`"),
    ("malformed", r"benchmarks/results/memory_growth.json is not valid JSON \(Expecting value: line 1 column 1"
                  r" \(char 0\)\); make it again with `python benchmarks/memory_growth.py`"),
    ("provenance", r"memory_growth.json has a provenance that is not an object; make it again with"),
    ("no-sources", r"no tether sources at .*src/tether; pass the repository root as --root"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, setup: str, message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or malformed results file, or no sources at --root: one line on stderr, exit 2."""
    root = _repo(tmp_path)
    _memory_table(root, None)
    results = root / "benchmarks" / "results" / "memory_growth.json"
    if setup == "missing":
        results.unlink()
    elif setup == "malformed":
        results.write_text("", encoding="utf-8")
    elif setup == "provenance":
        results.write_text(json.dumps({"provenance": "abc"}), encoding="utf-8")
    else:
        shutil.rmtree(root / "src")
    assert main(["check", "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tether bench check: error: ")
    assert captured.err.count("\n") == 1
    assert re.search(message, captured.err)


def test_a_missing_markdown_file_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A markdown file named on the command line that does not exist: one line, exit 2."""
    root = _repo(tmp_path)
    assert main(["check", "--root", str(root), str(root / "NOPE.md")]) == 2
    assert capsys.readouterr().err.startswith("tether bench check: error: [Errno 2] No such file or directory")


def test_tether_bench_check_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tether bench check`` (through ``python -m tether``) exits 0 when every table is fresh."""
    monkeypatch.setenv("PYTHONPATH", str(provenance.tether_sources().parent))
    root = _repo(tmp_path)
    readme = _memory_table(root, {"source_hash": provenance.source_hash(root / "src" / "tether")})
    done = subprocess.run([sys.executable, "-m", "tether", "bench", "check", "--root", str(root), str(readme)],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("1 table(s) fresh: measured on the checkout's tether sources (sha256:")
