"""README and docs tables written from results files, never by hand.

A table lives between two marker comments that name how to render it and from which results file
(a path relative to the repository root)::

    <!-- tether-bench:learning:begin benchmarks/results/bench/learning/summary.json -->
    | task | variant | ... |
    <!-- tether-bench:learning:end -->

:func:`regenerate` rewrites every block from its file, ending with the line that says which commit,
versions and CPU it was measured on; :func:`check` reports each block whose text differs from the
render of its file. Whether a file was measured on the checkout's sources is a separate question,
answered by :mod:`tether.bench.staleness` (``tether bench check``): an edit under ``src/`` makes
tables stale, never wrong. How each kind renders is :mod:`tether.bench.renderers`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tether.bench import provenance
from tether.bench.renderers import RENDERERS
from tether.errors import TetherError

__all__ = ["RENDERERS", "Block", "ResultsFileError", "check", "default_files", "find_blocks", "read_results",
           "regenerate", "regenerate_command", "render_block"]

_BLOCK = re.compile(
    r"<!-- tether-bench:(?P<kind>[a-z0-9-]+):begin (?P<source>\S+) -->\n(?P<body>.*?)"
    r"<!-- tether-bench:(?P=kind):end -->", re.DOTALL)
_MARKER = re.compile(r"<!-- tether-bench:(?P<kind>[a-z0-9-]+):(?P<edge>begin|end)\b")


class ResultsFileError(TetherError, ValueError):
    """A results file behind a marked table is missing, is not a JSON object, or lacks a field."""


@attrs.frozen(kw_only=True)
class Block:
    """One marked table: its kind, results file, current text and where it sits."""

    path: Path
    line: int
    kind: str
    source: str
    body: str
    start: int
    end: int

    @property
    def where(self) -> str:
        """``file:line kind`` for messages."""
        return f"{self.path}:{self.line}: tether-bench:{self.kind} block"


def default_files(root: str | Path) -> list[Path]:
    """``README.md`` and ``docs/*.md`` under ``root`` (those that exist)."""
    base = Path(root)
    return [p for p in [base / "README.md", *sorted((base / "docs").glob("*.md"))] if p.is_file()]


def find_blocks(path: Path, text: str) -> tuple[list[Block], list[str]]:
    """The marked blocks of one file, and a problem line for each marker without its pair."""
    blocks, paired = [], set()
    for m in _BLOCK.finditer(text):
        blocks.append(Block(path=path, line=text.count("\n", 0, m.start()) + 1, kind=m["kind"],
                            source=m["source"], body=m["body"], start=m.start("body"), end=m.end("body")))
        paired |= {m.start(), m.end("body")}
    problems = [
        f"{path}:{text.count(chr(10), 0, m.start()) + 1}: tether-bench:{m['kind']} {m['edge']} marker"
        " without its pair (expected <!-- tether-bench:KIND:begin RESULTS.json --> on its own line,"
        " the table, <!-- tether-bench:KIND:end -->)"
        for m in _MARKER.finditer(text) if m.start() not in paired]
    return blocks, problems


def regenerate_command(block: Block, root: str | Path) -> str:
    """The command that writes ``block``'s results file.

    A learning block's file is a grid's ``summary.json``: the command runs the grid of the same
    name in ``benchmarks/grids/`` (or the copy kept beside the summary) into the summary's folder.
    """
    if block.kind != "learning":
        return RENDERERS[block.kind][1] if block.kind in RENDERERS else "its benchmark script"
    out = Path(block.source).parent
    grid = Path("benchmarks") / "grids" / f"{out.name}.toml"
    if not (Path(root) / grid).is_file():
        grid = out / "grid.toml"
    return f"tether bench run {grid.as_posix()} --out {out.as_posix()}"


def read_results(block: Block, root: str | Path) -> dict[str, Any]:
    """The JSON object of ``block``'s results file.

    Raises:
        ResultsFileError: when the file is missing or does not hold a JSON object.
    """
    source, command = Path(root) / block.source, regenerate_command(block, root)
    if not source.is_file():
        raise ResultsFileError(f"{block.where}: no results file {block.source}; make it with `{command}`")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsFileError(f"{block.where}: {block.source} is not valid JSON ({err}); make it again"
                               f" with `{command}`") from None
    if not isinstance(data, dict):
        raise ResultsFileError(f"{block.where}: {block.source} holds a JSON {type(data).__name__}, expected"
                               f" an object; make it again with `{command}`")
    return data


def render_block(block: Block, root: Path) -> tuple[str | None, list[str]]:
    """The block's rendered text (``None`` when it cannot be rendered) and its problems.

    The text is the kind's table and notes, then the line naming the commit, versions and CPU the
    results file records (:func:`tether.bench.provenance.measured_on`).

    Raises:
        ResultsFileError: when the results file is not a JSON object, or lacks a field the kind shows.
    """
    if block.kind not in RENDERERS:
        return None, [f"{block.where}: unknown kind; expected one of {sorted(RENDERERS)}"]
    if not (root / block.source).is_file():
        return None, [f"{block.where}: no results file {block.source}; make it with"
                      f" `{regenerate_command(block, root)}`"]
    data = read_results(block, root)
    try:
        table = RENDERERS[block.kind][0](data).rstrip("\n")
    except KeyError as err:
        raise ResultsFileError(f"{block.where}: {block.source} has no field {err} that a {block.kind} table"
                               f" shows; make it again with `{regenerate_command(block, root)}`") from None
    return f"{table}\n\n{provenance.measured_on(data.get('provenance'))}\n", []


def check(files: Sequence[str | Path], root: str | Path) -> list[str]:
    """A line per problem: a table that differs from its render, a missing results file, a bad marker.

    Results measured on other tether sources than the checkout's are not a problem here: the
    table still says what was measured, and on which commit (``tether bench check`` lists them).

    Raises:
        ResultsFileError: when a results file is not a JSON object, or lacks a field its table shows.
    """
    base, problems = Path(root), []
    for name in files:
        path = Path(name)
        blocks, found = find_blocks(path, path.read_text(encoding="utf-8"))
        problems += found
        for block in blocks:
            text, issues = render_block(block, base)
            problems += issues
            if text is not None and text != block.body:
                problems.append(f"{block.where}: the table differs from the render of {block.source};"
                                " run `tether bench tables`")
    return problems


def regenerate(files: Sequence[str | Path], root: str | Path) -> tuple[list[Path], list[str]]:
    """Rewrite every marked block from its results file (rendering only: nothing is measured).

    Returns:
        The files changed, and the problems found (missing results files, unknown kinds, bad
        markers): a block that cannot be rendered keeps its text.

    Raises:
        ResultsFileError: when a results file is not a JSON object, or lacks a field its table shows.
    """
    base, changed, problems = Path(root), [], []
    for name in files:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        blocks, found = find_blocks(path, text)
        problems += found
        new = text
        for block in reversed(blocks):  # from the end, so earlier offsets stay valid
            rendered, issues = render_block(block, base)
            problems += issues
            if rendered is not None:
                new = new[:block.start] + rendered + new[block.end:]
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed, problems
