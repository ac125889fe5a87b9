"""Which marked README / docs tables were measured on other tether sources than the checkout's.

Every results file records the hash of the tether sources it was measured on
(:func:`tether.bench.provenance.source_hash`) and the commit. A table is *stale* when that hash is
not the hash of the checkout's ``src/tether`` (or none is recorded): its numbers are still exactly
what was measured, and the line under it names the commit, but the code has moved on since.

Staleness is a report, not a test failure: ``tether bench check`` (``make results-check``) lists
each stale table with where it is, the commit it was measured on and the command that regenerates
it, and exits 0 when every table is fresh, 1 when some are stale and 2 on bad input (a missing or
malformed results file). Whether a table equals the render of its results file is a separate
check (:func:`tether.bench.tables.check`), which the test suite runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from tether.bench import provenance, tables

__all__ = ["StaleTable", "Staleness", "find_stale"]

_HASH_SHOWN = 12  # hex digits of a source hash shown in a report line


def _short(digest: str | None) -> str:
    if digest is None:
        return "none recorded"
    algo, _, hexdigest = digest.partition(":")
    return f"{algo}:{hexdigest[:_HASH_SHOWN]}" if hexdigest else digest[:_HASH_SHOWN]


@attrs.frozen(kw_only=True)
class StaleTable:
    """One table measured on other tether sources than the checkout's.

    Attributes:
        block: the marked block (file, line, kind, results file).
        commit: the commit(s) its results file records, as :func:`provenance.commit_of` shows them
            (``"unknown commit"`` when none is recorded).
        made_from: the source hash its results file records (``None``: none, or several).
        command: the command that writes its results file again.
    """

    block: tables.Block
    commit: str
    made_from: str | None
    command: str

    def describe(self, current: str) -> str:
        """One report line: where the table is, what it was measured on, how to regenerate it."""
        b = self.block
        return (f"{b.path}:{b.line}: tether-bench:{b.kind} table ({b.source}) measured on {self.commit},"
                f" tether sources {_short(self.made_from)} (the checkout's: {_short(current)});"
                f" regenerate with `{self.command}`, then `tether bench tables`")


@attrs.frozen(kw_only=True)
class Staleness:
    """The answer of :func:`find_stale`: how many tables were looked at, and the stale ones.

    Attributes:
        tables: the number of marked tables found.
        stale: the stale ones, in file and line order.
        current: the source hash of the checkout's ``src/tether``.
    """

    tables: int
    stale: tuple[StaleTable, ...]
    current: str

    @property
    def fresh(self) -> bool:
        """True when every table was measured on the checkout's sources."""
        return not self.stale

    def lines(self) -> list[str]:
        """The report: a line per stale table, then a summary line."""
        found = [table.describe(self.current) for table in self.stale]
        if self.stale:
            return [*found, f"{len(self.stale)} of {self.tables} table(s) stale: measured on other tether"
                            " sources than the checkout's (a report, not an error)"]
        return [f"{self.tables} table(s) fresh: measured on the checkout's tether sources"
                f" ({_short(self.current)})"]


def find_stale(files: Sequence[str | Path], root: str | Path) -> Staleness:
    """The marked tables of ``files`` whose results were measured on other sources than ``root``'s.

    Args:
        files: markdown files holding ``<!-- tether-bench:... -->`` blocks.
        root: the repository root: results files are relative to it, and its ``src/tether`` is
            the code the tables are compared with.

    Returns:
        The number of tables and the stale ones.

    Raises:
        FileNotFoundError: when a markdown file or ``root/src/tether`` is missing.
        tether.bench.tables.ResultsFileError: when a results file is missing or is not a JSON object.
    """
    base = Path(root)
    sources = base / "src" / "tether"
    if not (sources / "__init__.py").is_file():
        raise FileNotFoundError(f"no tether sources at {sources}; pass the repository root as --root")
    current = provenance.source_hash(sources)
    count, stale = 0, []
    for name in files:
        path = Path(name)
        blocks, _ = tables.find_blocks(path, path.read_text(encoding="utf-8"))
        for block in blocks:
            count += 1
            prov = tables.read_results(block, base).get("provenance") or {}
            if not isinstance(prov, dict):
                raise tables.ResultsFileError(f"{block.where}: {block.source} has a provenance that is not"
                                              f" an object; make it again with"
                                              f" `{tables.regenerate_command(block, base)}`")
            made_from = prov.get("source_hash")
            if made_from != current:
                stale.append(StaleTable(block=block, commit=provenance.commit_of(prov), made_from=made_from,
                                        command=tables.regenerate_command(block, base)))
    return Staleness(tables=count, stale=tuple(stale), current=current)
