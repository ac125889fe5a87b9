"""Exported recurrent policies: one step as ONNX or ``.pt2``, the reset inside, metadata, runtime, parity.

- :func:`export_policy` (``exporters.py``): write one policy step (``episode_start`` zeroes rows
  inside the graph; observation normalisation inside) to ``.onnx`` (``torch.onnx``) or ``.pt2``
  (``torch.export``), with the metadata a runtime needs (``metadata.py``).
- :class:`ExportedPolicy` (``runtime.py``): load a file, ``reset(num_envs)``, ``act(obs, done)``:
  numpy in, numpy out, the state kept. Needs onnxruntime (ONNX) or torch (``.pt2``), no trainer.
- :func:`check_parity` (``parity.py``): the eager policy and exported files side by side on a
  vector env, forced resets included.
- ``tether export`` (``cli.py``) and ``tether eval RUN --policy FILE`` (``evaluation.py``).

onnx, onnxruntime and onnxscript come with ``pip install 'tether-rl[export]'``; nothing else in
tether imports them.
"""

from tether._extras import require

require("gymnasium", "tether.export")

from tether.export.errors import ExportedFileError, ExportedInputError, ExportError
from tether.export.exporters import ExportResult, export_policy
from tether.export.metadata import read_metadata
from tether.export.parity import ParityReport, check_parity
from tether.export.runtime import ExportedPolicy

__all__ = [
    "ExportError",
    "ExportResult",
    "ExportedFileError",
    "ExportedInputError",
    "ExportedPolicy",
    "ParityReport",
    "check_parity",
    "export_policy",
    "read_metadata",
]
