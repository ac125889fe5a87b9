"""The ``tether`` command's entry point: a missing optional dependency or a bad ``TETHER_MODE``
is one line and exit status 2, not a traceback."""

from __future__ import annotations

import sys

from tether.errors import ConfigError, MissingDependencyError
from tether.modes import get_mode


def main() -> int:
    """Run ``tether.cli.main``; without the ``rl`` extra, say what to install and exit 2."""
    try:
        get_mode()  # a TETHER_MODE that names no mode is refused before anything runs
        from tether.cli import main as cli_main  # noqa: PLC0415 (its import needs gymnasium)
    except (MissingDependencyError, ConfigError) as err:
        print(f"tether: error: {err}", file=sys.stderr)
        return 2
    return cli_main()
