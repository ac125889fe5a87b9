"""``python -m tether.bench ARGS`` runs ``tether bench ARGS``."""

from __future__ import annotations

import sys

from tether.bench.cli import build_parser, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) as ``tether bench ...`` and run it."""
    args = build_parser().parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
