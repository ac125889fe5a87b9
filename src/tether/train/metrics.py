"""Training metrics: one JSON object per line, TensorBoard when installed, a progress bar.

The JSONL file is the record a run leaves behind (``tether plot`` reads it); each line holds the
global step, wall-clock seconds since the start, and the metrics of one update. A resumed run
first drops the records past its checkpoint (a run killed between checkpoints redoes those
updates), so the file keeps exactly one record per update.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from tether.errors import NonFiniteError, RunFolderError
from tether.train.run_folder import write_text

__all__ = ["MetricsLogger", "RunFolderError", "check_update_finite", "read_metrics"]

_LOSSES = ("policy_loss", "value_loss", "entropy", "approx_kl")


def _keep_until(path: Path, step: int) -> None:
    """Rewrite ``path`` atomically without the records past ``step`` (and any torn last line)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))


def check_update_finite(update: int, losses: dict[str, Any],
                        named_parameters: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Stop a run whose update made a loss or a weight NaN or inf, before anything is saved.

    One check per update: the losses are host numbers already; the weights cost one device
    synchronisation (one ``isfinite`` reduction over all of them), and only on failure are they
    looked at one by one to name the first.

    Args:
        update: the update just made (1-based).
        losses: the update's mean losses (``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``).
        named_parameters: the policy's ``named_parameters()``.

    Raises:
        NonFiniteError: naming the update and the first quantity that is not finite.
    """
    fix = ("the run stops unsaved (the last good checkpoint is kept). Lower --learning-rate, scale rewards"
           " with --reward-scale, or check the env's rewards and observations")
    for name in _LOSSES:
        value = losses.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise NonFiniteError(f"update {update}: the {name} is {value}; {fix}", quantity=name,
                                 update=update)
    params = [(name, p.detach()) for name, p in named_parameters]
    if not params:
        return
    finite = torch.stack([torch.isfinite(p).all() for _, p in params]).all()
    if bool(finite):
        return
    name = next(name for name, p in params if not bool(torch.isfinite(p).all()))
    raise NonFiniteError(f"update {update}: the weights {name} hold NaN or inf; {fix}",
                         quantity=f"parameter {name}", update=update)


def _plain(value: Any) -> Any:  # a tensor / numpy scalar as a number; NaN and inf as null
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Append metrics to ``<run_dir>/metrics.jsonl`` (and TensorBoard), and drive a progress bar.

    Args:
        run_dir: the run's folder.
        total_steps: steps of the whole run, for the progress bar.
        progress: show a tqdm progress bar (steps/s, episode return, losses).
        tensorboard: also write TensorBoard events when the ``tensorboard`` package is installed.
        start_step: the step the run resumes from (the bar starts there).
        elapsed: wall-clock seconds already spent by the run before a resume.
        truncate: drop the records past ``start_step`` first (for a resumed run).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        total_steps: int,
        progress: bool = True,
        tensorboard: bool = True,
        start_step: int = 0,
        elapsed: float = 0.0,
        truncate: bool = False,
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate:
            _keep_until(self.path, start_step)
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as err:
            raise RunFolderError(f"cannot write {self.path}: {err.strerror}; choose a writable run folder"
                                 " (--run-dir)") from err
        self._broken = False  # a write failed: close() does not try again
        self._start = time.perf_counter() - elapsed
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional)

                self._writer = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:
                self._writer = None
        self._bar: Any = None
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415 (only where a bar is shown)

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                             smoothing=0.1)
        self._last_step = start_step

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (including time before a resume)."""
        return time.perf_counter() - self._start

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write one record for ``step`` and update the progress bar.

        Returns:
            The record as written.
        """
        record = {"step": int(step), "time": round(self.elapsed, 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as err:
            self._broken = True
            raise RunFolderError(f"cannot write {self.path}: {err.strerror}; the last good checkpoint is"
                                 " kept. Free some space, or choose a writable --run-dir") from err
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)
        if self._bar is not None:
            self._bar.update(max(0, step - self._last_step))
            shown = {k: record[k] for k in ("ep_return", "policy_loss", "value_loss")
                     if record.get(k) is not None}
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
        self._last_step = step
        return record

    def close(self) -> None:
        """Flush and close the file, the writer and the bar."""
        try:
            self._file.close()
        except OSError as err:
            if not self._broken:  # else the failure was reported already
                raise RunFolderError(f"cannot write {self.path}: {err.strerror}") from err
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._bar is not None:
                self._bar.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file (or a run folder holding one) into a list of records.

    Raises:
        FileNotFoundError: when there is no metrics file.
        RunFolderError: naming the line that is not a JSON record.
    """
    source = Path(path)
    if source.is_dir():
        source = source / "metrics.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"no metrics file at {source} (expected a run folder or a metrics.jsonl)")
    records = []
    with source.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RunFolderError(f"{source}:{number}: not a JSON record ({err})") from err
            if not isinstance(record, dict):
                raise RunFolderError(f"{source}:{number}: expected a JSON object, got {line.strip()[:40]}")
            records.append(record)
    return records
