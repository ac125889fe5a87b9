"""``tether bench``: run a grid, report it, regenerate the README / docs tables.

``tether bench run GRID.toml --out DIR [--jobs N]`` trains every cell not yet done under DIR (each
in its own process), then writes the report; ``tether bench report DIR`` writes ``summary.json``,
``summary.md``, ``curves.png`` and ``profile.png``; ``tether bench tables [--check]`` rewrites (or
checks) every marked table in README.md and docs/*.md from its results file (rendering only);
``tether bench check`` lists the tables measured on other tether sources than the checkout's, with
the commit each was measured on and the command that regenerates it.

Exit status: 0 done (``check``: every table fresh); 1 a cell failed, a table differs from its
render, or (``check``) some table is stale, which is a report, not an error; 2 bad input (a missing
file, a malformed grid or results file), said in one line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from tether.errors import TetherError

__all__ = ["add_parser", "build_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` and its subcommands to a ``tether`` subparsers object; return its parser."""
    bench = subparsers.add_parser("bench", help="multi-seed benchmark grids with confidence intervals",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = bench.add_subparsers(dest="bench_command", required=True)

    go = sub.add_parser("run", help="run a grid (resumable: done cells are skipped), then report it")
    go.add_argument("grid", type=Path, help="the grid's TOML file")
    go.add_argument("--out", type=Path, required=True, help="output folder (one folder per cell inside)")
    go.add_argument("--jobs", type=int, default=None,
                    help="cells run at once (default: the CPUs this process may use)")
    go.add_argument("--keep-checkpoints", action="store_true", help="keep each cell's checkpoint.pt")
    go.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    go.add_argument("--no-plots", action="store_true", help="report without the PNGs (no matplotlib)")

    report = sub.add_parser("report", help="summarise a grid's results: table, summary.json, plots")
    report.add_argument("out", type=Path, help="the grid's output folder")
    report.add_argument("--no-plots", action="store_true", help="skip the PNGs (no matplotlib needed)")
    report.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")

    tables = sub.add_parser("tables", help="regenerate the marked tables in README.md and docs/*.md")
    tables.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    tables.add_argument("--check", action="store_true",
                        help="only check: exit 1 naming each table that differs from its render")
    tables.add_argument("files", type=Path, nargs="*",
                        help="markdown files (default: README.md and docs/*.md under --root)")
    stale = sub.add_parser(
        "check", help="list the tables measured on other tether sources than the checkout's",
        description="List each README / docs table whose results were measured on other tether sources than"
                    " the checkout's, with the commit it was measured on and the command that regenerates it."
                    " Exit status 0: every table fresh; 1: some stale (a report); 2: bad input.")
    stale.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    stale.add_argument("files", type=Path, nargs="*",
                       help="markdown files (default: README.md and docs/*.md under --root)")
    bench.set_defaults(handler=run)
    parser: argparse.ArgumentParser = bench
    return parser


def _run(args: argparse.Namespace) -> int:
    from tether.bench.grid import load_grid  # noqa: PLC0415 (keeps --help fast)
    from tether.bench.report import write_report  # noqa: PLC0415
    from tether.bench.runner import run_grid  # noqa: PLC0415

    grid = load_grid(args.grid)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.grid, args.out / "grid.toml")  # the grid travels with its results
    outcomes = run_grid(grid, args.out, jobs=args.jobs, keep_checkpoints=args.keep_checkpoints)
    failed = [o for o in outcomes if o.status == "failed"]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"{len(outcomes)} cells: {counts['done']} run, {counts['skipped']} already done,"
          f" {counts['failed']} failed")
    for outcome in failed:
        print(f"  failed: {outcome.cell.key}: {outcome.error}", file=sys.stderr)
    if not args.no_report and len(failed) < len(outcomes):
        for path in write_report(args.out, plots=not args.no_plots):
            print(f"wrote {path}")
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from tether.bench.report import write_report  # noqa: PLC0415

    for path in write_report(args.out, plots=not args.no_plots, n_resamples=args.resamples):
        print(f"wrote {path}")
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    return 0


def _tables(args: argparse.Namespace) -> int:
    from tether.bench import tables  # noqa: PLC0415

    files = args.files or tables.default_files(args.root)
    if args.check:
        problems = tables.check(files, args.root)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(files)} file(s) checked: {len(problems)} problem(s)")
        return 1 if problems else 0
    changed, problems = tables.regenerate(files, args.root)
    for path in changed:
        print(f"rewrote {path}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _check(args: argparse.Namespace) -> int:
    from tether.bench import staleness, tables  # noqa: PLC0415

    found = staleness.find_stale(args.files or tables.default_files(args.root), args.root)
    for line in found.lines():
        print(line)
    return 0 if found.fresh else 1


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``tether bench`` command; bad input is one line on stderr and exit status 2."""
    handlers = {"run": _run, "report": _report, "tables": _tables, "check": _check}
    try:
        return handlers[args.bench_command](args)
    except (TetherError, FileNotFoundError) as err:
        print(f"tether bench {args.bench_command}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """A parser with just ``bench`` (what ``python -m tether.bench`` uses until the CLI wires it)."""
    parser = argparse.ArgumentParser(prog="tether")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser
