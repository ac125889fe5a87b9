"""Write one policy step to a file: ONNX (``torch.onnx``) or ``.pt2`` (``torch.export``), metadata inside.

Both formats start from one ``torch.export`` program of the policy's
:class:`~tether.nets.PolicyStep` (the reset of ``episode_start`` rows and the observation
normalisation are inside it). ``.pt2`` saves that program with the metadata as an extra file. ONNX
translates it with ``torch.onnx``'s dynamo exporter; where that fails (older torch releases fail
for some RNNs), the TorchScript exporter (``dynamo=False``) takes the step instead, and the result
says so.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from tether.export import metadata
from tether.export._deps import require
from tether.export.errors import ExportError

__all__ = ["ExportResult", "export_policy", "file_sha256"]

Format = Literal["onnx", "pt2"]
Exporter = Literal["auto", "dynamo", "torchscript"]
MAX_BATCH = 1 << 16  # the dynamic batch's upper bound recorded in the graph
_EXAMPLE_BATCH = 3  # torch.export specialises sizes 0 and 1: trace with another
OPSET = 18


class ExportResult(NamedTuple):
    """What :func:`export_policy` wrote.

    Attributes:
        path: the file.
        format: ``"onnx"`` or ``"pt2"``.
        exporter: ``"torch.export"``, ``"torch.onnx dynamo"`` or ``"torch.onnx torchscript"``.
        notes: what the user should know (a fallback and why), one line each.
        metadata: the metadata written into the file.
        program: the ``torch.export`` program the file was made from (in memory).
    """

    path: Path
    format: str
    exporter: str
    notes: list[str]
    metadata: dict[str, Any]
    program: Any


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's progress prints, log lines and warnings while exporting (the result reports)."""
    names = ("torch", "torch.onnx", "torch.export", "torch._export", "torch.__trace", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith("#")]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def _make_step(policy: Any, deterministic: bool, action_masks: bool, obs_norm: Any) -> Any:
    if not callable(getattr(policy, "export_step", None)):
        inner = getattr(policy, "policy", None)
        what = (f"{type(policy).__name__} (a memoryless run: recurrent=False) has no hidden state to carry;"
                " export a recurrent policy"
                if inner is not None and callable(getattr(inner, "export_step", None))
                else f"{type(policy).__name__} has no export_step(); tether exports policies that follow"
                " tether.policy.ExportablePolicy (e.g. FactoredRecurrentActorCritic)")
        raise ExportError(f"export: the policy cannot be exported: {what}", part="policy")
    try:
        step = policy.export_step(deterministic=deterministic, action_masks=action_masks, obs_norm=obs_norm)
    except ValueError as err:
        text = str(err)
        part = "action_mask" if "action_masks" in text else "obs_norm" if "obs_norm" in text else "policy"
        raise ExportError(f"export: the {part} part cannot be exported: {err}", part=part) from None
    # a frozen copy: training the policy later changes no file
    return copy.deepcopy(step).cpu().eval()


def _trace(step: Any, batch: int | None) -> tuple[Any, tuple[torch.Tensor, ...]]:
    examples = step.example_inputs(batch or _EXAMPLE_BATCH)
    dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = None if batch is not None else step.dynamic_shapes(dim)
    try:
        with _quiet():
            program = torch.export.export(step, examples, dynamic_shapes=shapes, strict=False)
    except Exception as err:  # torch.export's many error types: the part it could not take
        raise ExportError(f"export: torch.export cannot trace this policy's step ({_first_line(err)});"
                          " the graph holds a part torch.export does not take", part="graph") from err
    return program, examples


def _onnx_dynamo(program: Any, examples: tuple[Any, ...], step: Any, path: Path) -> None:
    torch.onnx.export(program, examples, str(path), dynamo=True, input_names=step.input_names,
                      output_names=step.output_names, external_data=False, opset_version=OPSET)


def _onnx_torchscript(step: Any, examples: tuple[Any, ...], batch: int | None, path: Path) -> None:
    axes = None
    if batch is None:
        state = {"h", "c", "next_h", "next_c"}
        axes = {n: {1 if n in state else 0: "batch"} for n in [*step.input_names, *step.output_names]}
    with torch.no_grad():
        torch.onnx.export(step, examples, str(path), dynamo=False, input_names=step.input_names,
                          output_names=step.output_names, dynamic_axes=axes, opset_version=17)


def _write_onnx(program: Any, step: Any, examples: tuple[Any, ...], batch: int | None, path: Path,
                exporter: Exporter) -> tuple[str, list[str]]:
    notes: list[str] = []
    if exporter in ("auto", "dynamo"):
        try:
            with _quiet():
                _onnx_dynamo(program, examples, step, path)
        except Exception as err:  # any failure of the dynamo exporter
            if exporter == "dynamo":
                raise ExportError(f"export: torch.onnx's dynamo exporter cannot take this policy's step"
                                  f" ({_first_line(err)}); try exporter='torchscript' (--exporter"
                                  " torchscript) or --format pt2", part="graph") from err
            notes.append(f"torch.onnx's dynamo exporter failed ({_first_line(err)}); the TorchScript exporter"
                         " (dynamo=False) wrote the file instead")
        else:
            return "torch.onnx dynamo", notes
    try:
        with _quiet():
            _onnx_torchscript(step, examples, batch, path)
    except Exception as err:
        raise ExportError(f"export: torch.onnx cannot export this policy's step ({_first_line(err)}); try"
                          " --format pt2", part="graph") from err
    return "torch.onnx torchscript", notes


def _finish_onnx(path: Path, meta: dict[str, Any], batch: int | None) -> None:
    """Name the batch dim ``batch`` on every input and output, and add the metadata."""
    onnx = require("onnx", "tether export --format onnx")
    model = onnx.load(str(path))
    if batch is None:
        for value in [*model.graph.input, *model.graph.output]:
            axis = 1 if value.name in meta["state_shapes"] else 0
            dims = value.type.tensor_type.shape.dim
            if len(dims) > axis and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = "batch"
    entry = model.metadata_props.add()
    entry.key, entry.value = metadata.KEY, json.dumps(meta)
    model.doc_string = "tether policy step: see the metadata_props key 'tether' for how to drive it"
    onnx.save(model, str(path))


def export_policy(
    policy: Any, path: str | Path, *, file_format: Format | None = None, batch: int | None = None,
    deterministic: bool = True, action_masks: bool = False, obs_norm: Any = None,
    exporter: Exporter = "auto", **facts: Any,
) -> ExportResult:
    """Export one step of ``policy`` (episode reset and observation normalisation inside) to a file.

    Args:
        policy: an :class:`~tether.policy.ExportablePolicy` (a ``FactoredRecurrentActorCritic``).
        path: the file to write (``.onnx`` or ``.pt2``; the folder is created).
        file_format: ``"onnx"`` or ``"pt2"``; from ``path``'s suffix when ``None``.
        batch: a fixed batch (rows), or ``None`` to leave the batch dim dynamic.
        deterministic: output each head's deterministic action; ``False``: its distribution parameters.
        action_masks: take an ``action_mask`` input.
        obs_norm: an :class:`~tether.nets.ObservationNorm` built into the graph.
        exporter: ONNX only: ``"auto"`` (dynamo, else the TorchScript exporter), ``"dynamo"`` or
            ``"torchscript"``.
        facts: more metadata: ``env_id``, ``checkpoint_sha256``, ``env_kwargs``, ...

    Returns:
        An :class:`ExportResult`.

    Raises:
        ExportError: for a part that cannot be exported, a bad batch or an unknown format.
        MissingDependencyError: for ONNX without the ``export`` extra.
    """
    target = Path(path)
    chosen = file_format or {".onnx": "onnx", ".pt2": "pt2"}.get(target.suffix)
    if chosen not in ("onnx", "pt2"):
        raise ExportError(f"export: expected the format onnx or pt2 (or a .onnx / .pt2 file name), got"
                          f" {file_format or target.name!r}", part="format")
    if file_format is not None and target.suffix in (".onnx", ".pt2") and target.suffix != f".{file_format}":
        raise ExportError(f"export: the format {file_format} does not match the file name {target.name};"
                          f" name it {target.stem}.{file_format}", part="format")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ExportError(f"export: expected a batch of 1 or more rows (or None for a dynamic batch), got"
                          f" {batch!r}", part="batch")
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ExportError(f"export: expected the exporter auto, dynamo or torchscript, got {exporter!r}",
                          part="format")
    if chosen == "onnx":  # before any work: a missing package is said at once
        require("onnx", "tether export --format onnx")
        require("onnxscript", "tether export --format onnx")
    step = _make_step(policy, deterministic, action_masks, obs_norm)
    program, examples = _trace(step, batch)
    with torch.no_grad():
        outputs = step(*examples)
    target.parent.mkdir(parents=True, exist_ok=True)
    facts = {"observation_space": policy.observation_space, "action_space": policy.action_space,
             "env_id": None, "checkpoint_sha256": None, **facts, "torch_version": torch.__version__,
             "file_format": chosen}
    if chosen == "pt2":
        meta = metadata.build_metadata(step, examples, outputs, batch=batch, exporter="torch.export", **facts)
        with _quiet():
            torch.export.save(program, str(target), extra_files={metadata.EXTRA_FILE: json.dumps(meta)})
        return ExportResult(target, "pt2", "torch.export", [], meta, program)
    used, notes = _write_onnx(program, step, examples, batch, target, exporter)
    meta = metadata.build_metadata(step, examples, outputs, batch=batch, exporter=used, **facts)
    _finish_onnx(target, meta, batch)
    return ExportResult(target, "onnx", used, notes, meta, program)
