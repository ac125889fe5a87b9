"""The ``tether`` command's entry point: a missing optional dependency is one line, not a traceback."""

from __future__ import annotations

import sys

from tether.errors import MissingDependencyError


def main() -> int:
    """Run ``tether.cli.main``; without the ``rl`` extra, say what to install and exit 2."""
    try:
        from tether.cli import main as cli_main  # noqa: PLC0415 (its import needs gymnasium)
    except MissingDependencyError as err:
        print(f"tether: error: {err}", file=sys.stderr)
        return 2
    return cli_main()
