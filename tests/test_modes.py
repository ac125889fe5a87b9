"""Tests for tether.modes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

import tether
from tether import LifecycleWarning, StaleStateError, get_mode, mode, set_mode
from tether.modes import report


def test_context_manager_restores() -> None:
    """mode() sets the mode inside the block and restores it after, also on error."""
    before = get_mode()
    with mode("off"):
        assert get_mode() == "off"
        with mode("warn"):
            assert get_mode() == "warn"
        assert get_mode() == "off"
    assert get_mode() == before
    with pytest.raises(RuntimeError), mode("off"):
        raise RuntimeError("boom")
    assert get_mode() == before


def test_mode_works_as_decorator() -> None:
    """mode() also decorates a function."""

    @mode("off")
    def inner() -> str:
        return get_mode()

    assert inner() == "off"


def test_set_mode_and_invalid_values() -> None:
    """set_mode changes the mode; an unknown value says which ones exist."""
    before = get_mode()
    try:
        set_mode("off")
        assert get_mode() == "off"
    finally:
        set_mode(before)
    with pytest.raises(ValueError, match="expected one of 'strict', 'warn', 'off'; got 'loud'"):
        set_mode("loud")  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [("off", "off"), ("STRICT", "strict"), ("", "warn")])
def test_environment_variable(value: str, expected: str) -> None:
    """TETHER_MODE sets the mode at import; empty means the default (warn)."""
    env = {**os.environ, "TETHER_MODE": value}
    out = subprocess.run(
        [sys.executable, "-c", "import tether; print(tether.get_mode())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == expected


def test_environment_variable_invalid() -> None:
    """A bad TETHER_MODE fails at import with a clear message."""
    env = {**os.environ, "TETHER_MODE": "noisy"}
    out = subprocess.run([sys.executable, "-c", "import tether"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert "TETHER_MODE environment variable: expected one of" in out.stderr


def _misuse() -> StaleStateError:
    return StaleStateError("stale", kind="stale-tick", fix="do it right")


def test_warn_mode_warns_once_per_kind_and_call_site() -> None:
    """Warn mode emits one warning per (kind, call site); strict raises; off is silent."""
    with mode("warn"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            report(_misuse())  # one call site
        report(_misuse())  # another call site
    assert [w.category for w in caught] == [LifecycleWarning, LifecycleWarning]
    assert "fix: do it right" in str(caught[0].message)
    assert caught[0].filename == __file__
    with mode("strict"), pytest.raises(StaleStateError, match="stale"):
        report(_misuse())
    with mode("off"), warnings.catch_warnings():
        warnings.simplefilter("error")
        report(_misuse())


def test_errors_subclass_builtins() -> None:
    """Each error kind is also the matching builtin, so generic handlers catch it."""
    assert issubclass(tether.StaleStateError, RuntimeError)
    assert issubclass(tether.GraphLeakError, RuntimeError)
    assert issubclass(tether.StateMismatchError, ValueError)
    for kind in (tether.StaleStateError, tether.GraphLeakError, tether.StateMismatchError):
        assert issubclass(kind, tether.LifecycleError)
