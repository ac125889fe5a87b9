"""Atomic checkpoints: a crash mid-write never corrupts the last good file.

A checkpoint is a ``torch.save`` of a dict tagged with a format name and version. It is written to
a temporary file in the same folder, flushed to disk, then renamed over the target (``os.replace``
is atomic on POSIX and Windows), so readers see either the old file or the new one, whole.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from tether.errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "tether-checkpoint"
VERSION = 1


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``payload`` to ``path`` atomically, tagged as a tether checkpoint.

    Args:
        payload: plain values, tensors, numpy arrays and state dicts.
        path: where to write; the folder is created if missing.

    Returns:
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything else clearly.

    Args:
        path: the file.
        required: keys the payload must have.

    Returns:
        The payload (with its ``format`` and ``version`` tags).

    Raises:
        FileNotFoundError: when there is no such file.
        CheckpointError: when the file is corrupt, not a tether checkpoint, of a newer version, or
            misses a required key.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {source}")
    try:
        data = torch.load(source, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"{source} is not a readable tether checkpoint (corrupt or truncated): {err}"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not a tether checkpoint (expected a dict tagged format={FORMAT!r},"
            f" got {type(data).__name__}{'' if not isinstance(data, dict) else ' without that tag'})"
        )
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{source} was written by a newer tether (checkpoint version {data['version']},"
            f" this tether reads up to {VERSION}); upgrade tether"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise CheckpointError(f"{source} misses the keys {missing}: expected a complete tether checkpoint")
    return data
