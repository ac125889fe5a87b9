"""Atomic checkpoints of tensors and plain data, read back with ``torch.load(weights_only=True)``.

A checkpoint is a ``torch.save`` of a dict tagged with a format name and version. It holds only
tensors, numbers, strings, ``None`` and lists / tuples / dicts of them: numpy arrays are stored as
tensors (tagged with their dtype), so any program can read a checkpoint with nothing but torch,
and loading an untrusted file cannot run code. It is written to a temporary file in the same
folder, flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows), so readers see either the old file or the new one, whole.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tether.errors import CheckpointError
from tether.train.run_folder import atomic_write

__all__ = ["FORMAT", "VERSION", "checkpoint_path", "load_checkpoint", "save_checkpoint"]

FORMAT = "tether-checkpoint"
VERSION = 2  # 2: no pickled objects (version 1 pickled the live collector and its envs)

_NDARRAY = "__tether_ndarray__"
_WIDE_UNSIGNED = ("uint16", "uint32", "uint64")  # torch < 2.3 lacks them: stored as int64


def _encode(value: Any) -> Any:
    """``value`` with every numpy array (and numpy scalar) as a tensor or a plain number."""
    if isinstance(value, np.ndarray):
        array = np.array(value, copy=True)
        dtype = array.dtype.name
        stored = array.astype(np.int64) if dtype in _WIDE_UNSIGNED else array
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(stored)), "dtype": dtype}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    raise TypeError(f"save_checkpoint: cannot store a {type(value).__name__} (only tensors, numpy arrays"
                    " and plain data go into a checkpoint)")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _NDARRAY in value:
            return value[_NDARRAY].numpy().astype(value["dtype"], copy=True)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``payload`` to ``path`` atomically, tagged as a tether checkpoint.

    Args:
        payload: tensors, numpy arrays, state dicts and plain values (no other objects).
        path: where to write; the folder is created if missing.

    Returns:
        The path written.

    Raises:
        TypeError: when the payload holds anything else (an env, a callable, ...).
        RunFolderError: when the folder refuses the write (read-only, full disk); the last good
            checkpoint at ``path`` is kept.
    """
    data = _encode({"format": FORMAT, "version": VERSION, **payload})
    buffer = io.BytesIO()
    torch.save(data, buffer)  # in memory: the disk's refusal comes as an OSError, not torch's own
    return atomic_write(path, buffer.getvalue())


_ADVICE = ("weights_only", "weights only", "please file an issue", "check the documentation",
           "trusted source")  # torch's advice to load unsafely, never repeated


def _first_line(err: BaseException) -> str:
    """The first line of ``err`` that says what is wrong (never torch's advice to load unsafely)."""
    lines = [line.strip() for line in str(err).splitlines()]
    reasons = [line for line in lines if line and not any(a in line.lower() for a in _ADVICE)]
    return reasons[0] if reasons else type(err).__name__


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file of a run folder (``checkpoint.pt``) or the file itself.

    Raises:
        FileNotFoundError: when there is none.
    """
    source = Path(path)
    if source.is_dir():
        source = source / "checkpoint.pt"
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {source} (expected a run folder holding checkpoint.pt,"
                                " or a checkpoint file)")
    return source


def load_checkpoint(path: str | os.PathLike[str], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything else in one line.

    The file is read with ``torch.load(weights_only=True)``: a file that holds pickled objects
    (another program's ``torch.save(model)``, a version-1 tether checkpoint) is refused, never run.

    Args:
        path: the file.
        required: keys the payload must have.

    Returns:
        The payload (with its ``format`` and ``version`` tags), numpy arrays restored.

    Raises:
        FileNotFoundError: when there is no such file.
        CheckpointError: when the file is corrupt, holds objects, is not a tether checkpoint, is of
            another version, or misses a required key.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {source}")
    try:
        with warnings.catch_warnings():  # torch's own notes on odd files; the error below says it all
            warnings.simplefilter("ignore")
            data = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Named for what it is, without torch's advice to turn the safe loader off.
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(err), re.IGNORECASE)
        if found:
            name = found.group(1).rstrip(".,;")
            raise CheckpointError(
                f"{source} holds code (an object the safe loader refuses: {name}), refused: it is not a"
                f" tether checkpoint: it holds pickled Python objects ({name}; e.g. a whole model saved"
                " by another program), and tether checkpoints hold only tensors and plain data"
            ) from None
        raise CheckpointError(f"{source} is not a readable tether checkpoint (corrupt or truncated):"
                              f" {_first_line(err)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as err:
        raise CheckpointError(f"{source} is not a readable tether checkpoint (corrupt or truncated):"
                              f" {_first_line(err)}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not a tether checkpoint (expected a dict tagged format={FORMAT!r},"
            f" got {type(data).__name__}{'' if not isinstance(data, dict) else ' without that tag'})"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{source} was written by a newer tether (checkpoint version {version!r},"
            f" this tether reads up to {VERSION}); upgrade tether"
        )
    if version < VERSION:
        raise CheckpointError(
            f"{source} is a version-{version} tether checkpoint (it pickled objects); this tether reads"
            f" version {VERSION} only: train again, or resume it with the tether that wrote it"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise CheckpointError(f"{source} misses the keys {missing}: expected a complete tether checkpoint")
    decoded: dict[str, Any] = _decode(data)
    return decoded
