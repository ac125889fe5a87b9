"""The optional packages the harness needs, and the one clear line when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tether.errors import MissingDependencyError

__all__ = ["MissingExtraError", "has_module", "require"]

#: The error for a missing optional package (one class for every extra, in tether.errors).
MissingExtraError = MissingDependencyError


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``name`` or raise one line naming the extra that provides it.

    Args:
        name: the module to import (``"scipy.stats"``).
        extra: the tether extra that installs it (``"bench"``).
        purpose: what it is needed for, for the message.

    Raises:
        MissingExtraError: when the module is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs {name.split('.', maxsplit=1)[0]}, which is not installed;"
            f" pip install 'tether-rl[{extra}]'") from err
