"""The optional ONNX packages, imported only when a feature needs them, with one line when missing."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tether.errors import MissingDependencyError
from tether.export.errors import ExportedFileError

__all__ = ["load_onnx", "ort_session", "require"]


def require(module: str, feature: str) -> Any:
    """Import ``module`` (``onnx``, ``onnxruntime``, ``onnxscript``), or say which extra installs it.

    Raises:
        MissingDependencyError: when it is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{feature} needs {module}, which is not installed here: pip install 'tether-rl[export]'"
            " (a .pt2 export and its runtime need torch only)") from err


def load_onnx(path: Path) -> Any:
    """The ``onnx.ModelProto`` in ``path``.

    Raises:
        ExportedFileError: when the file is not a readable ONNX model.
    """
    onnx = require("onnx", "reading an ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends: a corrupt or foreign file
        raise ExportedFileError(f"{path} is not a readable ONNX model ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else 'cannot parse'})",
                                path=str(path)) from None


def ort_session(model: Any, path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``model`` (a ModelProto already read from ``path``).

    Raises:
        ExportedFileError: when onnxruntime refuses the model.
    """
    ort = require("onnxruntime", "running an ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the graph's own notes are not the user's business
    # no busy-waiting between calls: a spinning pool starves the env and torch on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own (pybind) exception types
        raise ExportedFileError(f"{path}: onnxruntime cannot run it ({str(err).splitlines()[0]})",
                                path=str(path)) from None
