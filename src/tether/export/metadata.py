"""The metadata an exported file carries: everything a runtime needs to drive the graph, as JSON.

An ONNX file holds it under the ``metadata_props`` key ``tether``; a ``.pt2`` file as its extra file
``tether.json``. The same JSON in both::

    {"format": "tether-export", "format_version": 1,
     "inputs":  {"obs": ["obs"], "episode_start": "episode_start", "state": ["h", "c"],
                 "action_mask": []},
     "outputs": {"action": ["action"], "distribution": [], "value": "value",
                 "state": ["next_h", "next_c"]},
     "state_shapes": {"h": [1, "batch", 64], ...},   # [L, B, H]; B an int for a fixed batch
     "signature": {"obs": {"dtype": "float32", "shape": ["batch", 4]}, ...},  # every input and output
     "obs_leaves": [{"name": "obs", "path": [], "kind": "box"}],
     "heads": [{"name": "action", "kind": "discrete", "outputs": ["action"], "sizes": [2],
                "start": 0, "dtype": "int64"}],
     "deterministic": true, "batch": "dynamic", "obs_normalization": false,
     "observation_space": {...}, "action_space": {...}, "env_id": "...",
     "tether_version": "...", "torch_version": "...", "checkpoint_sha256": "..." or null,
     "file_format": "onnx", "exporter": "torch.onnx dynamo"}

Spaces are written as ``{"type": "Box", "shape": [...], "dtype": ..., "low": ..., "high": ...}``
(bounds a number when uniform, else nested lists; infinities as the strings ``"inf"`` /
``"-inf"``), ``{"type": "Discrete", "n", "start"}``, ``{"type": "MultiDiscrete", "nvec", "start",
"dtype"}``, ``{"type": "MultiBinary", "n"}``, ``{"type": "Dict", "spaces": {...}}`` and
``{"type": "Tuple", "spaces": [...]}``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

import tether
from tether.export.errors import ExportedFileError, ExportError

__all__ = ["FORMAT", "VERSION", "build_metadata", "read_metadata", "space_to_json"]

FORMAT = "tether-export"
VERSION = 1
KEY = "tether"  # the ONNX metadata_props key
EXTRA_FILE = "tether.json"  # the .pt2 extra file
_REQUIRED = ("inputs", "outputs", "state_shapes", "signature", "obs_leaves", "heads", "deterministic",
             "batch")


def _bound(values: np.ndarray) -> Any:
    flat = np.asarray(values, dtype=np.float64)

    def number(x: float) -> float | str:
        return x if np.isfinite(x) else ("inf" if x > 0 else "-inf")

    if flat.size and np.all(flat == flat.reshape(-1)[0]):
        return number(float(flat.reshape(-1)[0]))
    return np.vectorize(number, otypes=[object])(flat).tolist()


def space_to_json(space: spaces.Space[Any]) -> dict[str, Any]:
    """A gymnasium space as plain JSON data (see the module docstring for the encoding).

    Raises:
        ExportError: for a space with no JSON form here (Text, Graph, Sequence, ...).
    """
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": space.dtype.name,
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(),
                "start": np.asarray(space.start).tolist(), "dtype": space.dtype.name}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {str(k): space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    raise ExportError(f"export: the space {space!r} has no JSON form in the file's metadata; expected Box,"
                      " Discrete, MultiDiscrete, MultiBinary, Dict or Tuple", part="space")


def _head_entry(factor: Any, outputs: list[str]) -> dict[str, Any]:
    space = factor.space
    entry: dict[str, Any] = {"name": factor.name, "kind": factor.kind, "outputs": outputs,
                             "sizes": list(factor.sizes), "dtype": space.dtype.name}
    if factor.kind == "discrete":
        entry["start"] = int(space.start)
    elif factor.kind == "multi_discrete":
        entry["start"] = np.asarray(space.start).reshape(-1).tolist()
        entry["shape"] = list(space.shape)
    else:
        entry["shape"] = list(space.shape)
        entry["low"] = np.broadcast_to(space.low, space.shape).reshape(-1).astype(np.float64).tolist()
        entry["high"] = np.broadcast_to(space.high, space.shape).reshape(-1).astype(np.float64).tolist()
    return entry


def build_metadata(step: Any, examples: tuple[Any, ...], outputs: tuple[Any, ...], *, batch: int | None,
                   **facts: Any) -> dict[str, Any]:
    """The metadata of an exported :class:`~tether.nets.PolicyStep`.

    Args:
        step: the step that was exported.
        examples / outputs: its example inputs and the outputs they gave (for dtypes and shapes).
        batch: the fixed batch, or ``None`` for a dynamic one.
        facts: ``observation_space``, ``action_space``, ``env_id``, ``checkpoint_sha256``,
            ``file_format``, ``exporter`` and any other plain entries to record.

    Returns:
        The JSON-ready dict.
    """
    names_in, names_out = step.input_names, step.output_names
    n_obs = len(step.obs_layout.leaves)
    state_in = ["h", "c"] if step.has_c else ["h"]
    state_out = [f"next_{n}" for n in state_in]
    rows: Any = "batch" if batch is None else batch

    def signature(tensor: Any, state: bool) -> dict[str, Any]:
        shape: list[Any] = list(tensor.shape)
        shape[1 if state else 0] = rows
        return {"dtype": str(tensor.dtype).removeprefix("torch."), "shape": shape}

    sig = {n: signature(t, n in state_in) for n, t in zip(names_in, examples, strict=True)}
    sig |= {n: signature(t, n in state_out) for n, t in zip(names_out, outputs, strict=True)}
    heads, position = [], 0
    for factor in step.layout.factors:
        width = 1 if step.deterministic or factor.is_discrete else 2
        heads.append(_head_entry(factor, names_out[position : position + width]))
        position += width
    head_outputs = names_out[:position]
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": VERSION,
        "inputs": {"obs": names_in[:n_obs], "episode_start": "episode_start", "state": state_in,
                   "action_mask": ["action_mask"] if step.action_masks else []},
        "outputs": {"action": head_outputs if step.deterministic else [],
                    "distribution": [] if step.deterministic else head_outputs,
                    "value": "value", "state": state_out},
        "state_shapes": {n: sig[n]["shape"] for n in [*state_in, *state_out]},
        "signature": sig,
        "obs_leaves": [{"name": name, "path": list(leaf.path), "kind": leaf.kind}
                       for name, leaf in zip(names_in[:n_obs], step.obs_layout.leaves, strict=True)],
        "heads": heads,
        "deterministic": step.deterministic,
        "batch": "dynamic" if batch is None else batch,
        "obs_normalization": step.normalized,
        "tether_version": tether.__version__,
    }
    for key, value in facts.items():
        meta[key] = space_to_json(value) if isinstance(value, spaces.Space) else value
    return meta


def _check(meta: Any, path: str) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportedFileError(f"{path}: its tether metadata is not a {FORMAT!r} record; export the policy"
                                " again with tether export", path=path)
    if meta.get("format_version") != VERSION:
        raise ExportedFileError(f"{path}: tether export format version {meta.get('format_version')!r}, this"
                                f" tether reads version {VERSION}; export it again with this tether",
                                path=path)
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ExportedFileError(f"{path}: its tether metadata misses {missing}; export it again", path=path)
    return meta


def _parse(text: str | bytes, path: str) -> dict[str, Any]:
    try:
        return _check(json.loads(text), path)
    except (ValueError, UnicodeDecodeError) as err:
        if isinstance(err, ExportedFileError):
            raise
        raise ExportedFileError(f"{path}: its tether metadata is not valid JSON ({err}); export it again",
                                path=path) from None


def onnx_metadata(model: Any, path: str) -> dict[str, Any]:
    """The tether metadata of a loaded ONNX ``ModelProto`` (read from ``path``)."""
    for prop in model.metadata_props:
        if prop.key == KEY:
            return _parse(prop.value, path)
    raise ExportedFileError(f"{path} is an ONNX model without tether metadata (no metadata_props key"
                            f" {KEY!r}); export the policy with tether export", path=path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The tether metadata of an exported ``.onnx`` or ``.pt2`` file, without loading its graph's runtime.

    Raises:
        ExportedFileError: when the file is missing, unreadable, of another suffix, or has no (or
            broken) tether metadata.
        MissingDependencyError: for an ONNX file when ``onnx`` is not installed.
    """
    source, text = Path(path), str(path)
    if not source.is_file():
        raise ExportedFileError(f"no exported policy at {text} (expected a .onnx or .pt2 file written by"
                                " tether export)", path=text)
    if source.suffix == ".pt2":
        try:
            with zipfile.ZipFile(source) as archive:
                found = [n for n in archive.namelist() if n.endswith(f"extra/{EXTRA_FILE}")]
                if not found:
                    raise ExportedFileError(f"{text} is a .pt2 archive without tether metadata (no extra file"
                                            f" {EXTRA_FILE}); export the policy with tether export",
                                            path=text)
                return _parse(archive.read(found[0]), text)
        except (zipfile.BadZipFile, OSError) as err:
            raise ExportedFileError(f"{text} is not a readable .pt2 archive ({err})", path=text) from None
    if source.suffix == ".onnx":
        from tether.export._deps import load_onnx  # noqa: PLC0415 (onnx is an optional extra)

        return onnx_metadata(load_onnx(source), text)
    raise ExportedFileError(f"{text}: expected a .onnx or .pt2 file written by tether export, got the suffix"
                            f" {source.suffix!r}", path=text)
