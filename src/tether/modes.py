"""Check modes: ``strict`` raises, ``warn`` warns once per kind and call site, ``off`` skips.

The mode has two layers. The process default is what :func:`set_mode` sets (and the
``TETHER_MODE`` environment variable, read at import): every thread sees it, those started before
the call included. :func:`mode` overrides it for a block or a function (a context manager that also
works as a decorator), in a :mod:`contextvars` variable: the override holds in its own thread or
asyncio task only, and ends with the block.

A ``TETHER_MODE`` that names no mode does not break ``import tether``: the first check (or
:func:`get_mode`) raises a :class:`~tether.errors.ConfigError` in one line, which the CLI prints
and exits 2 on.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Literal

from tether.errors import ConfigError, LifecycleError, LifecycleWarning

__all__ = ["Mode", "get_mode", "mode", "set_mode"]

Mode = Literal["strict", "warn", "off"]
_MODES: tuple[str, ...] = ("strict", "warn", "off")
_DEFAULT: Mode = "warn"


def _validate(value: str, source: str) -> Mode:
    if value not in _MODES:
        raise ConfigError(f"{source}: expected one of 'strict', 'warn', 'off'; got {value!r}")
    return value  # type: ignore[return-value]


def _initial_mode() -> tuple[Mode | None, ConfigError | None]:
    raw = os.environ.get("TETHER_MODE")
    if raw is None or raw.strip() == "":
        return _DEFAULT, None
    try:
        return _validate(raw.strip().lower(), "TETHER_MODE environment variable"), None
    except ConfigError as err:
        return None, err


# The process default (None while TETHER_MODE names no mode: get_mode raises _ENV_ERROR then).
_process, _ENV_ERROR = _initial_mode()
# A mode(...) block's override, per thread / task; None: the process default holds.
_override: contextvars.ContextVar[Mode | None] = contextvars.ContextVar("tether_mode", default=None)
# Warn mode says each (kind, file, line, level) once; tests may clear this through `reset_warnings`.
_warned: set[tuple[str, str, int, int]] = set()


def get_mode() -> Mode:
    """Return the check mode in force here: ``"strict"``, ``"warn"`` or ``"off"``.

    Raises:
        ConfigError: when the ``TETHER_MODE`` environment variable names no mode (and neither
            :func:`set_mode` nor :func:`mode` chose one since).

    >>> get_mode() in ("strict", "warn", "off")
    True
    """
    current = _override.get()
    if current is None:
        current = _process
        if current is None:
            raise _ENV_ERROR  # type: ignore[misc]
    return current


def set_mode(value: Mode) -> None:
    """Set the process's check mode: the default every thread sees, those running included.

    Inside a :func:`mode` block it also holds for the rest of that block (the block's own
    override is replaced, and restored to the outer one when the block ends).

    Args:
        value: ``"strict"`` (raise), ``"warn"`` (one warning per kind and call site) or ``"off"``.

    Raises:
        ConfigError: for any other value (a ``ValueError``).
    """
    global _process  # noqa: PLW0603 (the process default is one value by design)
    _process = _validate(value, "set_mode")
    if _override.get() is not None:
        _override.set(_process)


@contextlib.contextmanager
def mode(value: Mode) -> Iterator[None]:
    """Use another check mode inside a ``with`` block, or for a decorated function.

    Args:
        value: ``"strict"``, ``"warn"`` or ``"off"``.

    Raises:
        ConfigError: for any other value (a ``ValueError``).

    >>> with mode("off"):
    ...     get_mode()
    'off'
    """
    token = _override.set(_validate(value, "mode"))
    try:
        yield
    finally:
        _override.reset(token)


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


def report(error: LifecycleError, *, level: int = 0) -> None:
    """Raise ``error`` in strict mode, warn once per kind, call site and ``level`` in warn mode.

    Callers check ``get_mode() != "off"`` before building the error, so off mode costs nothing.

    Args:
        error: the misuse.
        level: a report that should be repeated as it grows worse passes a new level each time
            (a leaking graph: one per doubling of its age); warn mode says each level once.
    """
    current = get_mode()
    if current == "strict":
        raise error
    if current == "warn":
        filename, lineno, stack = _user_frame()
        key = (error.kind, filename, lineno, level)
        if key in _warned:
            return
        _warned.add(key)
        warnings.warn(str(error), LifecycleWarning, stacklevel=stack)
