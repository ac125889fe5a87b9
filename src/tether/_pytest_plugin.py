"""tether's pytest plugin, registered through the ``pytest11`` entry point.

Installing tether is enough:

- ``pytest --tether-mode=strict`` (or ``tether_mode = strict`` in the ini file) runs the whole
  session in strict mode;
- the ``tether_strict`` fixture runs one test in strict mode;
- ``@pytest.mark.tether_mode("warn")`` sets the mode for one test.

This module imports only :mod:`tether.modes` (pure Python): every pytest session in an
environment where tether is installed loads it, and must not pay for importing torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tether.modes import Mode, mode, set_mode

__all__ = ["pytest_addoption", "pytest_configure", "tether_strict"]


def pytest_addoption(parser: Any) -> None:
    """Add ``--tether-mode`` and the ``tether_mode`` ini option."""
    group = parser.getgroup("tether", "tether hidden-state lifecycle checks")
    group.addoption("--tether-mode", action="store", default=None, choices=("strict", "warn", "off"),
                    help="run the session with this tether check mode (strict raises on misuse)")
    parser.addini("tether_mode", "tether check mode for the session: strict, warn or off", default="")


def pytest_configure(config: Any) -> None:
    """Register the marker and apply the session mode."""
    config.addinivalue_line("markers", "tether_mode(mode): run this test in that tether check mode")
    chosen = config.getoption("--tether-mode") or config.getini("tether_mode") or None
    if chosen:
        set_mode(chosen)


def _marker_mode(request: Any) -> Mode | None:
    marker = request.node.get_closest_marker("tether_mode")
    return None if marker is None else marker.args[0]


@pytest.fixture
def tether_strict() -> Iterator[None]:
    """Run the test in strict mode: any lifecycle misuse raises."""
    with mode("strict"):
        yield


@pytest.fixture(autouse=True)
def _tether_mode_marker(request: Any) -> Iterator[None]:
    chosen = _marker_mode(request)
    if chosen is None:
        yield
        return
    with mode(chosen):
        yield
