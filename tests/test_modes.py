"""Tests for tether.modes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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


def test_set_mode_is_the_default_every_thread_sees() -> None:
    """set_mode at top level reaches threads; mode(...) still overrides within its context."""
    seen: dict[str, str] = {}

    def look(key: str) -> None:
        seen[key] = get_mode()

    before = get_mode()
    try:
        set_mode("strict")
        worker = threading.Thread(target=look, args=("thread",))
        worker.start()
        worker.join()
        with mode("off"):
            look("context")
            other = threading.Thread(target=look, args=("thread-in-context",))
            other.start()
            other.join()
            set_mode("warn")  # inside a context: takes effect here too, and as the default
            look("set-in-context")
        look("after")
    finally:
        set_mode(before)
    assert seen == {"thread": "strict", "context": "off", "thread-in-context": "strict",
                    "set-in-context": "warn", "after": "warn"}


def test_a_missing_reset_in_a_thread_raises_in_strict_mode() -> None:
    """The repro: strict mode set at top level makes a check in a worker thread raise."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    core = tether.track(torch.nn.GRU(2, 3))
    clock = tether.EpisodeClock(2)
    state = core.initial_state(2, clock)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            _, s = core(torch.randn(1, 2, 2), state)
            clock.advance(np.array([True, False]))
            core(torch.randn(1, 2, 2), s)
        except StaleStateError as err:
            errors.append(err)

    before = get_mode()
    try:
        set_mode("strict")
        worker = threading.Thread(target=loop)
        worker.start()
        worker.join()
    finally:
        set_mode(before)
    assert len(errors) == 1


def test_a_bad_environment_variable_is_one_line_and_exit_2() -> None:
    """TETHER_MODE=loud: importing works, the first check raises a ConfigError in one line, and
    the CLI prints one line and exits 2."""
    env = {**os.environ, "TETHER_MODE": "loud"}
    code = ("import tether\ntry:\n    tether.get_mode()\nexcept tether.TetherError as err:\n"
            "    print(type(err).__name__, err)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError TETHER_MODE environment variable: expected one of")
    assert len(out.stdout.strip().splitlines()) == 1
    cli = subprocess.run([sys.executable, "-m", "tether", "eval", "no-such-run.pt"], env=env,
                         capture_output=True, text=True, check=False)
    assert cli.returncode == 2
    assert "Traceback" not in cli.stderr
    assert "TETHER_MODE" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
