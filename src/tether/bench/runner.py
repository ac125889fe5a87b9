"""Run a grid: each cell in its own process, several at once, resumable.

A cell's folder holds ``cell.toml`` (its settings), ``run/`` (the trainer's run folder:
``metrics.jsonl``, ``eval.json``), ``log.txt`` (the trainer's output) and, written last and
atomically, ``result.json``: the cell's record (settings, provenance, evaluation, steps/s, the whole
learning curve). A cell with a ``result.json`` for the same settings is done and skipped; a folder
without one is a cell that was interrupted, and is run again from scratch.

The runner knows the trainer only through its command line and the files it writes, so the command
is injectable (tests run a stub that writes the files at once).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import attrs

from tether.bench import provenance
from tether.bench._extras import MissingExtraError, has_module
from tether.bench.grid import BASELINES, Cell, Grid
from tether.errors import ConfigError

__all__ = ["GRID_INFO", "REPORTED_METRICS", "RESULT", "CellOutcome", "TrainerCommand", "default_command",
           "metric_means", "read_cell", "run_grid", "run_records", "usable_cores", "write_toml"]

#: Builds the argv that trains one cell: ``(cell, cell_toml, run_dir) -> argv``. The paths are
#: relative to the cell's folder, which is the process's working directory (so no machine path
#: lands in a results file).
TrainerCommand = Callable[[Cell, Path, Path], Sequence[str]]
RESULT = "result.json"
GRID_INFO = "grid.json"


def default_command(cell: Cell, cell_toml: Path, run_dir: Path) -> list[str]:
    """``python -m tether.cli train --config cell.toml [--algo A]`` (sb3-contrib: its own runner).

    ``cell.toml`` holds the cell's whole settings, its preset's included
    (:meth:`Cell.resolved_settings <tether.bench.grid.Cell.resolved_settings>`), so the grid's
    settings win over the preset's whatever order a trainer's command line applies them in.
    """
    module = "tether.bench.sb3" if cell.variant.baseline == "sb3-contrib" else "tether.cli"
    argv = [sys.executable, "-m", module, "train", "--config", str(cell_toml), "--run-dir", str(run_dir)]
    if cell.algo != "ppo":
        argv += ["--algo", cell.algo]
    return argv


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                           ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise ConfigError(f"setting {key!r}: expected a string, number or bool, got {value!r}")


def write_toml(path: Path, settings: dict[str, Any]) -> None:
    """Write flat settings as TOML (strings, numbers, bools: what a PPOConfig holds)."""
    lines = [f"{key} = {_toml_value(value, key)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@attrs.frozen(kw_only=True)
class CellOutcome:
    """What happened to one cell: ``"done"`` (ran now), ``"skipped"`` (done before) or ``"failed"``."""

    cell: Cell
    status: str
    record: dict[str, Any] | None = None
    error: str = ""


def read_cell(cell_dir: Path) -> dict[str, Any] | None:
    """The cell's ``result.json``, or ``None`` when the cell has not finished."""
    path = cell_dir / RESULT
    if not path.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return record


def run_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (none when there is no file).

    Read here rather than through :func:`tether.train.read_metrics`, which imports torch: the
    harness stays light.
    """
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _curve(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"step": r["step"], "time": r.get("time"), "ep_return": r.get("ep_return")} for r in records]


#: The metrics a cell's record keeps the run's mean of (the health and staleness measures), in order.
REPORTED_METRICS = ("state/stale_kl_first", "state/stale_kl_last", "state/stale_value_first",
                    "state/stale_value_last", "state/h_rms", "state/saturation", "state/reset_norm",
                    "staleness/dq_first", "staleness/dq_last", "staleness/age_updates")


def metric_means(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The mean over a run's metrics records of each of :data:`REPORTED_METRICS` it logged (finite values)."""
    values: dict[str, list[float]] = {}
    for record in records:
        for key in REPORTED_METRICS:
            value = record.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                values.setdefault(key, []).append(float(value))
    return {key: sum(v) / len(v) for key, v in values.items()}


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _child_env() -> dict[str, str]:
    """This process's environment with PYTHONPATH made absolute (the child runs in the cell folder)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) if p else p
                                            for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def _record(cell: Cell, run_dir: Path, argv: Sequence[str], seconds: float,
            context: dict[str, Any]) -> dict[str, Any]:
    """The cell's result from the files the trainer wrote (raises ``ValueError`` when one is missing)."""
    if not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "eval.json").is_file():
        raise ValueError(f"the trainer left no metrics.jsonl and eval.json in {run_dir}")
    records = run_records(run_dir)
    curve = _curve(records)
    evaluation = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    last: dict[str, Any] = curve[-1] if curve else {"step": 0, "time": None}
    rate = last["step"] / last["time"] if last.get("time") else None
    task = cell.task
    return {
        "cell": {"task": task.name, "variant": cell.variant.name, "seed": cell.seed,
                 "baseline": cell.variant.baseline, "algo": cell.algo,
                 "fingerprint": cell.fingerprint()},
        "task": {"bar": task.bar, "score_range": list(task.score_range) if task.score_range else None,
                 "preset": task.preset, "label": task.label},
        "variant": {"label": cell.variant.label},
        "settings": cell.settings(), "command": [Path(argv[0]).name, *argv[1:]],
        "eval": {"mean_return": evaluation["mean_return"], "std_return": evaluation.get("std_return"),
                 "returns": evaluation.get("returns"), "episodes": evaluation.get("episodes")},
        "score": evaluation["mean_return"], "at_bar": bool(evaluation["mean_return"] >= task.bar),
        "metric_means": metric_means(records),
        "steps": last["step"], "train_seconds": last.get("time"), "steps_per_second": rate,
        "wall_seconds": seconds, "curve": curve,
        "provenance": context,
    }


def _run_cell(cell: Cell, out: Path, command: TrainerCommand, context: dict[str, Any],
              keep_checkpoints: bool) -> CellOutcome:
    cell_dir = out / cell.dirname
    done = read_cell(cell_dir)
    if done is not None and done.get("cell", {}).get("fingerprint") == cell.fingerprint():
        return CellOutcome(cell=cell, status="skipped", record=done)
    if cell_dir.exists():  # interrupted (or made from other settings): start again from nothing
        shutil.rmtree(cell_dir)
    run_dir = cell_dir / "run"
    run_dir.mkdir(parents=True)
    write_toml(cell_dir / "cell.toml", {**cell.resolved_settings(), "run_dir": "run", "progress": False})
    argv = list(command(cell, Path("cell.toml"), Path("run")))
    # the sources as the cell's process imports them, not as they may be when it ends
    context = {**context, "source_hash": provenance.source_hash(), "git": provenance.git_state()}
    started = time.perf_counter()
    try:
        with (cell_dir / "log.txt").open("w", encoding="utf-8") as log:
            done_proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False,
                                       cwd=cell_dir, env=_child_env())
    except OSError as err:  # the command itself could not start
        return CellOutcome(cell=cell, status="failed", error=f"could not start {argv[0]!r}: {err}")
    seconds = time.perf_counter() - started
    if done_proc.returncode != 0:
        tail = (cell_dir / "log.txt").read_text(encoding="utf-8").strip().splitlines()[-1:] or [""]
        return CellOutcome(cell=cell, status="failed",
                           error=f"exit {done_proc.returncode}: {tail[0]} (log: {cell_dir / 'log.txt'})")
    try:
        record = _record(cell, run_dir, argv, seconds, context)
    except (ValueError, KeyError, json.JSONDecodeError) as err:
        return CellOutcome(cell=cell, status="failed", error=str(err))
    if not keep_checkpoints:  # the record holds the curve and the evaluation; the weights are bulk
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    partial = cell_dir / (RESULT + ".partial")
    partial.write_text(json.dumps(record, indent=1), encoding="utf-8")
    partial.replace(cell_dir / RESULT)  # atomic: a result.json is always whole
    return CellOutcome(cell=cell, status="done", record=record)


def _check_baselines(grid: Grid) -> None:
    for variant in grid.variants:
        if variant.baseline is not None and not has_module(BASELINES[variant.baseline]):
            raise MissingExtraError(
                f"variant {variant.name!r} needs {variant.baseline}, which is not installed;"
                " pip install 'tether-rl[compare]' (or remove the variant from the grid)")


def _describe(outcome: CellOutcome) -> str:
    if outcome.status == "failed":
        return f"FAILED {outcome.error}"
    record = outcome.record or {}
    rate = record.get("steps_per_second")
    speed = f", {rate:.0f} steps/s" if rate else ""
    return (f"{outcome.status}: eval {record.get('score', float('nan')):.1f}"
            f" (bar {record.get('task', {}).get('bar')}){speed}")


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    jobs: int | None = None,
    command: TrainerCommand | None = None,
    echo: Callable[[str], None] | None = print,
    keep_checkpoints: bool = False,
) -> list[CellOutcome]:
    """Run every cell of ``grid`` not yet done under ``out``, ``jobs`` at a time.

    Args:
        grid: the grid.
        out: the grid's output folder (made if missing; one folder per cell inside).
        jobs: cells run at once (default: :func:`usable_cores`).
        command: builds the trainer's argv (default: :func:`default_command`).
        echo: where a line per finished cell goes (``None``: silent).
        keep_checkpoints: keep each cell's ``checkpoint.pt`` (default: removed once recorded).

    Returns:
        One outcome per cell, in the grid's order.

    Raises:
        MissingExtraError: when a variant names a baseline that is not installed.
        ConfigError: when ``jobs`` is below 1.
    """
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs: expected at least 1, got {jobs}")
    if command is None:
        _check_baselines(grid)
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    context = {"versions": provenance.versions(), "hardware": provenance.hardware(),
               "jobs": jobs or usable_cores()}
    # the grid as it is now: the report takes bars and labels from here, so editing a bar needs no rerun
    info = {"name": grid.name, "description": grid.description, "seeds": list(grid.seeds),
            "tasks": [t.name for t in grid.tasks], "variants": [v.name for v in grid.variants],
            "task_info": {t.name: {"bar": t.bar, "label": t.label,
                                   "score_range": list(t.score_range) if t.score_range else None}
                          for t in grid.tasks},
            "variant_info": {v.name: {"label": v.label} for v in grid.variants}}
    (folder / GRID_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    cells = grid.cells()
    outcomes: dict[str, CellOutcome] = {}
    with ThreadPoolExecutor(max_workers=jobs or usable_cores()) as pool:
        futures = {pool.submit(_run_cell, cell, folder, command or default_command, context,
                               keep_checkpoints): cell for cell in cells}
        for finished, future in enumerate(as_completed(futures), start=1):
            outcome = future.result()
            outcomes[outcome.cell.key] = outcome
            if echo is not None:
                echo(f"[{finished}/{len(cells)}] {outcome.cell.key}: {_describe(outcome)}")
    return [outcomes[cell.key] for cell in cells]
