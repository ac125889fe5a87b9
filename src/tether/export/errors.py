"""The errors of exporting a policy and of reading an exported file back.

Both are :class:`~tether.errors.TetherError` kinds (the CLI prints one line and exits 2) that also
subclass ``ValueError``.
"""

from __future__ import annotations

from tether.errors import TetherError

__all__ = ["ExportError", "ExportedFileError", "ExportedInputError"]


class ExportError(TetherError, ValueError):
    """A policy (or one part of it) cannot be exported, or the export's settings do not fit it.

    Attributes:
        part: what cannot be exported (``"policy"``, ``"obs_norm"``, ``"action_mask"``, ``"batch"``,
            ``"format"``, ``"graph"``).
    """

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class ExportedFileError(TetherError, ValueError):
    """A file is not a readable tether export (missing, corrupt, forged, or without tether's metadata).

    Attributes:
        path: the file, as given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ExportedInputError(TetherError, ValueError):
    """An input to an exported policy does not fit its file (rows, shape, or a fixed batch)."""
