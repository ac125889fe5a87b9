"""Collection rules for the whole repository (the test fixtures live in tests/conftest.py).

- The doctests of ``tether.interop.torchrl`` need the ``torchrl`` extra: without it their modules
  are not collected (the tests under tests/interop skip themselves the same way).
- Importing torchrl makes ``"spawn"`` the process's default multiprocessing start method when none
  was set. Collection imports it (tests/interop); the rest of the suite runs gymnasium's async
  vector envs on the platform's default, as it does without the extra, so the default is given
  back once collection is done.
"""

from __future__ import annotations

import importlib.util
import multiprocessing

import pytest


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # a module set to None in sys.modules: blocked, as if missing
        return False


collect_ignore_glob = [] if _installed("torchrl") else ["src/tether/interop/torchrl/*"]

_START_METHOD = multiprocessing.get_start_method(allow_none=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Undo a start method that an import made the default during collection."""
    del session
    if _START_METHOD is None and multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)
