"""Check modes: ``strict`` raises, ``warn`` warns once per kind and call site, ``off`` skips.

The mode lives in a :mod:`contextvars` variable, so it is per thread / per task, and can be set
globally (:func:`set_mode`), for a block or a function (:func:`mode`, a context manager that also
works as a decorator), or from the ``TETHER_MODE`` environment variable read at import.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Literal

from tether.errors import LifecycleError, LifecycleWarning

__all__ = ["Mode", "get_mode", "mode", "set_mode"]

Mode = Literal["strict", "warn", "off"]
_MODES: tuple[str, ...] = ("strict", "warn", "off")
_DEFAULT: Mode = "warn"


def _validate(value: str, source: str) -> Mode:
    if value not in _MODES:
        raise ValueError(f"{source}: expected one of 'strict', 'warn', 'off'; got {value!r}")
    return value  # type: ignore[return-value]


def _initial_mode() -> Mode:
    raw = os.environ.get("TETHER_MODE")
    if raw is None or raw.strip() == "":
        return _DEFAULT
    return _validate(raw.strip().lower(), "TETHER_MODE environment variable")


_STARTUP_MODE: Mode = _initial_mode()
_current: contextvars.ContextVar[Mode] = contextvars.ContextVar("tether_mode", default=_STARTUP_MODE)
# Warn mode says each (kind, file, line) once; tests may clear this through `reset_warnings`.
_warned: set[tuple[str, str, int]] = set()


def get_mode() -> Mode:
    """Return the check mode in force here: ``"strict"``, ``"warn"`` or ``"off"``.

    >>> get_mode() in ("strict", "warn", "off")
    True
    """
    return _current.get()


def set_mode(value: Mode) -> None:
    """Set the check mode for the current context (globally, when called at top level).

    Args:
        value: ``"strict"`` (raise), ``"warn"`` (one warning per kind and call site) or ``"off"``.

    Raises:
        ValueError: for any other value.
    """
    _current.set(_validate(value, "set_mode"))


@contextlib.contextmanager
def mode(value: Mode) -> Iterator[None]:
    """Use another check mode inside a ``with`` block, or for a decorated function.

    Args:
        value: ``"strict"``, ``"warn"`` or ``"off"``.

    Raises:
        ValueError: for any other value.

    >>> with mode("off"):
    ...     get_mode()
    'off'
    """
    token = _current.set(_validate(value, "mode"))
    try:
        yield
    finally:
        _current.reset(token)


def reset_warnings() -> None:
    """Forget which warnings warn mode already emitted, so each can be emitted again."""
    _warned.clear()


def _user_frame() -> tuple[str, int, int]:
    """Find the first frame outside tether (and torch's module machinery) and its stack level."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name.startswith(("tether.", "torch.")) or name == "tether"):
            return frame.f_code.co_filename, frame.f_lineno, level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return "<unknown>", 0, 1


def report(error: LifecycleError) -> None:
    """Raise ``error`` in strict mode, warn once per kind and call site in warn mode.

    Callers check ``get_mode() != "off"`` before building the error, so off mode costs nothing.
    """
    current = _current.get()
    if current == "strict":
        raise error
    if current == "warn":
        filename, lineno, level = _user_frame()
        key = (error.kind, filename, lineno)
        if key in _warned:
            return
        _warned.add(key)
        warnings.warn(str(error), LifecycleWarning, stacklevel=level)
