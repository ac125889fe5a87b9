"""``tether bench`` on the command line (``python -m tether.bench`` until the CLI wires it)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench import add_parser, provenance, run
from tether.bench.__main__ import main


def test_add_parser_plugs_into_a_tether_parser() -> None:
    """``add_parser`` adds ``bench`` to any subparsers; ``run`` runs what it parsed."""
    parser = argparse.ArgumentParser(prog="tether")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "run", "g.toml", "--out", "o", "--jobs", "3"])
    assert (args.bench_command, args.grid, args.out, args.jobs) == ("run", Path("g.toml"), Path("o"), 3)
    assert args.handler is run


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "missing.toml", "--out", "o"], "tether bench run: error: no grid file at missing.toml"),
    (["report", "nothing-here"], "tether bench report: error: no finished cells"),
])
def test_bad_input_is_one_line_and_status_2(argv: list[str], message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing grid or an empty results folder prints one line on stderr and exits 2."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_bad_grid_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A grid with an unknown setting names it, in one line, before anything runs."""
    grid = tmp_path / "g.toml"
    grid.write_text('[tasks.t]\npreset = "cartpole"\nbar = 1\n[variants.v]\nsettings = {n_epoch = 2}\n',
                    encoding="utf-8")
    assert main(["run", str(grid), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "variants.v.settings: unknown key 'n_epoch'; did you mean 'n_epochs'?" in err
    assert not (tmp_path / "o").exists()


def test_report_prints_the_table(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``report DIR --no-plots`` writes the summary and prints its table."""
    assert main(["report", str(ran), "--no-plots", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "| recall | gru | 3 | 1000.0 [1000.0, 1000.0] |" in out
    assert (ran / "summary.json").is_file()


def test_tables_check_on_this_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    """``tables --check`` on the repository passes: every table renders exactly from its results file."""
    root = Path(__file__).resolve().parents[2]
    assert main(["tables", "--check", "--root", str(root)]) == 0
    assert "problem(s)" in capsys.readouterr().out


def test_python_m_tether_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m tether.bench`` is the command line: a missing grid exits 2 with one line."""
    monkeypatch.setenv("PYTHONPATH", str(provenance.tether_sources().parent))
    done = subprocess.run([sys.executable, "-m", "tether.bench", "run", "none.toml", "--out", "o"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "tether bench run: error: no grid file at none.toml\n"
