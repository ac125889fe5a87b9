"""tether bench: multi-seed benchmark grids, statistics with confidence intervals, generated tables.

A grid (TOML: tasks × variants × seeds) runs each cell as its own ``tether train`` process
(:mod:`~tether.bench.runner`), records where every number came from
(:mod:`~tether.bench.provenance`), summarises seeds with IQM, median and stratified-bootstrap
intervals (:mod:`~tether.bench.stats`, :mod:`~tether.bench.report`, :mod:`~tether.bench.plots`), and
writes the README's tables from results files (:mod:`~tether.bench.tables`), and lists the tables
measured on other sources than the checkout's (:mod:`~tether.bench.staleness`). The statistics and
plots need the ``bench`` extra (scipy, matplotlib).
"""

from tether.bench.cli import add_parser, run

__all__ = ["add_parser", "run"]
