"""Collection rules for the whole repository (the test fixtures live in tests/conftest.py).

The doctests of ``tether.interop.torchrl`` need the ``torchrl`` extra: without it their modules
are not collected (the tests under tests/interop skip themselves the same way).
"""

from __future__ import annotations

import importlib.util


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # a module set to None in sys.modules: blocked, as if missing
        return False


collect_ignore_glob = [] if _installed("torchrl") else ["src/tether/interop/torchrl/*"]
