"""A benchmark grid: tasks × variants × seeds, read from a TOML file.

A grid file looks like this (every table but ``[tasks.*]`` and ``[variants.*]`` is optional)::

    name = "learning"
    seeds = {start = 0, count = 10}          # or a list: seeds = [0, 1, 2]
    algo = "ppo"                             # the trainer of every cell (tether train --algo)
    settings = {eval_episodes = 20}          # the trainer's settings for every cell

    [tasks.cartpole]
    preset = "cartpole"                      # tether train --preset NAME (optional)
    bar = 450                                # a seed "solves" the task at eval mean >= bar
    score_range = [0, 500]                   # [random, best]: normalises scores across tasks
    settings = {total_steps = 50_000}        # overrides for this task

    [variants.recurrent]                     # no settings: the task's own
    [variants.memoryless]
    settings = {recurrent = false}
    [variants.sb3]
    baseline = "sb3-contrib"                 # sb3-contrib's RecurrentPPO, same settings
    seeds = [0, 1, 2]                        # a variant's own seeds (default: the grid's)
    [variants.r2d2]
    algo = "r2d2"                            # a variant's own trainer (default: the grid's)

A cell's settings are the preset's (the cell's trainer's preset of that name), then the grid's,
the task's and the variant's (later wins); the harness sets ``seed``, ``run_dir`` and ``progress``
itself. Every setting must be one of some trainer's, and each cell's settings are checked against
its own trainer's when the grid is read.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from tether._toml import read_toml
from tether.errors import ConfigError

__all__ = ["BASELINES", "Cell", "Grid", "Task", "Variant", "load_grid", "parse_grid"]

#: Baselines a variant may name, and the module each needs.
BASELINES: dict[str, str] = {"sb3-contrib": "sb3_contrib"}
_RESERVED = ("seed", "run_dir", "progress")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP_KEYS = ("name", "description", "seeds", "settings", "tasks", "variants", "algo")
_TASK_KEYS = ("preset", "env_id", "bar", "score_range", "settings", "label")
_VARIANT_KEYS = ("settings", "baseline", "label", "seeds", "algo")


@attrs.frozen(kw_only=True)
class Task:
    """One task of a grid: its settings, the bar a seed must reach, the range that normalises scores."""

    name: str
    bar: float
    preset: str | None = None
    score_range: tuple[float, float] | None = None
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    label: str = ""

    def normalise(self, score: float) -> float:
        """``score`` mapped to ``[0, 1]`` by the task's ``score_range`` (random -> 0, best -> 1).

        Raises:
            ConfigError: when the task has no ``score_range``.
        """
        if self.score_range is None:
            raise ConfigError(f"task {self.name!r}: no score_range = [random, best] to normalise with")
        low, high = self.score_range
        return (score - low) / (high - low)


@attrs.frozen(kw_only=True)
class Variant:
    """One variant of a grid: settings overrides, or a baseline library trained on the same settings."""

    name: str
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    baseline: str | None = None
    label: str = ""
    seeds: tuple[int, ...] | None = None
    algo: str | None = None


@attrs.frozen(kw_only=True)
class Cell:
    """One run of a grid: a task, a variant and a seed."""

    task: Task
    variant: Variant
    seed: int
    grid_settings: Mapping[str, Any] = attrs.field(factory=dict)
    grid_algo: str = "ppo"

    @property
    def algo(self) -> str:
        """The cell's trainer (``tether train --algo``): the variant's, else the grid's."""
        return self.variant.algo or self.grid_algo

    @property
    def key(self) -> str:
        """``task/variant/seedN``: how the cell is named in messages and results."""
        return f"{self.task.name}/{self.variant.name}/seed{self.seed}"

    @property
    def dirname(self) -> str:
        """The cell's folder name inside a grid's output folder."""
        return f"{self.task.name}__{self.variant.name}__seed{self.seed}"

    def settings(self) -> dict[str, Any]:
        """The settings the trainer gets on top of the task's preset (``seed`` included)."""
        return {**self.grid_settings, **self.task.settings, **self.variant.settings, "seed": self.seed}

    def preset_settings(self) -> dict[str, Any]:
        """The settings of the task's preset for the cell's trainer (none without a preset)."""
        if self.task.preset is None:
            return {}
        from tether.cli import ALGORITHMS  # noqa: PLC0415 (the trainers' presets, on demand)

        return dict(ALGORITHMS[self.algo].presets[self.task.preset])

    def resolved_settings(self) -> dict[str, Any]:
        """Everything the cell's run is given: the preset's settings, then :meth:`settings` (they win)."""
        from tether.train.config import merge_settings  # noqa: PLC0415

        return merge_settings(self.preset_settings(), self.settings())

    def fingerprint(self) -> str:
        """A hash of everything that defines the run, so a changed grid reruns the changed cells.

        A cell whose settings change one of its preset's also hashes those names: such cells were
        run with the preset's values by earlier harnesses (which let the preset win), so their
        old results are not taken for theirs.
        """
        spec: dict[str, Any] = {"preset": self.task.preset, "settings": self.settings(),
                                "baseline": self.variant.baseline}
        if self.algo != "ppo":  # PPO cells keep the fingerprints they had before trainers were named
            spec["algo"] = self.algo
        preset = self.preset_settings()
        overridden = sorted(k for k, v in self.settings().items() if k in preset and preset[k] != v)
        if overridden:
            spec["overrides_preset"] = overridden
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class Grid:
    """Tasks × variants × seeds; :meth:`cells` lists the runs."""

    name: str
    seeds: tuple[int, ...]
    tasks: tuple[Task, ...]
    variants: tuple[Variant, ...]
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    description: str = ""
    algo: str = "ppo"

    def cells(self) -> list[Cell]:
        """Every run, seed by seed and within a seed task by task, variant by variant.

        Interleaving the variants this way spreads a machine's slow moments over all of them alike.
        A variant with its own ``seeds`` runs those instead of the grid's.
        """
        every = sorted({s for v in self.variants for s in (v.seeds or self.seeds)})
        return [Cell(task=task, variant=variant, seed=seed, grid_settings=self.settings, grid_algo=self.algo)
                for seed in every for task in self.tasks for variant in self.variants
                if seed in (variant.seeds or self.seeds)]


def _unknown(keys: Any, known: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"
            raise ConfigError(f"{where}: unknown key {key!r}; {hint}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    return value


def _name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-'"
                          " (it names folders)")
    return name


def _settings(value: Any, where: str) -> dict[str, Any]:
    table = _table(value, f"{where}.settings")
    from tether.cli import ALGORITHMS  # noqa: PLC0415 (the trainers' settings are the contract)

    known = dict.fromkeys(name for algo in ALGORITHMS.values() for name in algo.config.field_names())
    _unknown(table, tuple(known), f"{where}.settings")
    for key in _RESERVED:
        if key in table:
            raise ConfigError(f"{where}.settings: {key!r} is set by the harness per cell; remove it"
                              " (seeds go in the grid's 'seeds')")
    return dict(table)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    try:
        return _parse_seeds(value)
    except ConfigError as err:
        raise ConfigError(str(err).replace("seeds:", f"{where}:", 1)) from None


def _parse_seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, dict):
        _unknown(value, ("start", "count"), "seeds")
        start, count = value.get("start", 0), value.get("count")
        if (not isinstance(start, int) or not isinstance(count, int) or isinstance(start, bool)
                or isinstance(count, bool) or count < 1):
            raise ConfigError(f"seeds: expected {{start = INT, count = INT >= 1}}, got {value!r}")
        return tuple(range(start, start + count))
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"seeds: expected a non-empty list of ints or {{start, count}}, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"seeds: expected distinct seeds, got {value!r}")
    return tuple(value)


def _task(name: str, value: Any) -> Task:
    where = f"tasks.{_name(name, 'tasks')}"
    table = _table(value, where)
    _unknown(table, _TASK_KEYS, where)
    if "bar" not in table:
        raise ConfigError(f"{where}: expected a 'bar' (the eval mean return a seed must reach)")
    settings = _settings(table.get("settings", {}), where)
    if "env_id" in table:
        settings = {"env_id": table["env_id"], **settings}
    if "preset" not in table and "env_id" not in settings:
        raise ConfigError(f"{where}: expected a 'preset' or an 'env_id'")
    score_range = None
    if "score_range" in table:
        raw = table["score_range"]
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConfigError(f"{where}.score_range: expected [random, best], got {raw!r}")
        low, high = (_number(v, f"{where}.score_range") for v in raw)
        if low == high:
            raise ConfigError(f"{where}.score_range: expected random != best, got {raw!r}")
        score_range = (low, high)
    return Task(name=name, bar=_number(table["bar"], f"{where}.bar"), preset=table.get("preset"),
                score_range=score_range, settings=settings, label=str(table.get("label", "")))


def _variant(name: str, value: Any) -> Variant:
    where = f"variants.{_name(name, 'variants')}"
    table = _table(value, where)
    _unknown(table, _VARIANT_KEYS, where)
    baseline = table.get("baseline")
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"{where}.baseline: expected one of {sorted(BASELINES)}, got {baseline!r}")
    seeds = _seeds(table["seeds"], f"{where}.seeds") if "seeds" in table else None
    algo = _algo(table["algo"], f"{where}.algo") if "algo" in table else None
    if algo not in (None, "ppo") and baseline is not None:
        raise ConfigError(f"{where}: a baseline runs its own trainer; drop 'algo' or 'baseline'")
    return Variant(name=name, settings=_settings(table.get("settings", {}), where), baseline=baseline,
                   label=str(table.get("label", "")), seeds=seeds, algo=algo)


def _algo(value: Any, where: str) -> str:
    from tether.cli import ALGORITHMS  # noqa: PLC0415

    if value not in ALGORITHMS:
        raise ConfigError(f"{where}: expected one of {sorted(ALGORITHMS)}, got {value!r}")
    return str(value)


def parse_grid(data: Mapping[str, Any], *, source: str = "grid") -> Grid:
    """Build a :class:`Grid` from parsed TOML data.

    Raises:
        ConfigError: naming the key at fault (unknown key, missing bar, bad seeds, unknown setting).
    """
    try:
        _unknown(data, _TOP_KEYS, source)
        for key in ("tasks", "variants"):
            if not data.get(key):
                raise ConfigError(f"{source}: expected at least one [{key}.NAME] table")
        grid = Grid(
            name=str(data.get("name", Path(source).stem)),
            seeds=_seeds(data.get("seeds", [0])),
            tasks=tuple(_task(n, v) for n, v in _table(data["tasks"], "tasks").items()),
            variants=tuple(_variant(n, v) for n, v in _table(data["variants"], "variants").items()),
            settings=_settings(data.get("settings", {}), "grid"),
            description=str(data.get("description", "")),
            algo=_algo(data["algo"], "algo") if "algo" in data else "ppo",
        )
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None
    _check_cells(grid, source)
    return grid


def _check_cells(grid: Grid, source: str) -> None:
    """Build each task × variant's config once, so a bad value fails here, not in cell 37."""
    from tether.cli import ALGORITHMS  # noqa: PLC0415

    for task in grid.tasks:
        for variant in grid.variants:
            seed = (variant.seeds or grid.seeds)[0]
            cell = Cell(task=task, variant=variant, seed=seed, grid_settings=grid.settings,
                        grid_algo=grid.algo)
            config = ALGORITHMS[cell.algo].config
            where = f"{source}: {task.name}/{variant.name}"
            try:
                if task.preset is not None:
                    config.from_preset(task.preset, **cell.settings())
                else:
                    config.from_dict(cell.settings(), source=where)
            except (ConfigError, TypeError) as err:
                message = str(err)
                raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def load_grid(path: str | Path) -> Grid:
    """Read a grid file.

    Raises:
        FileNotFoundError: when the file is missing.
        ConfigError: for invalid TOML or an invalid grid.
    """
    source, data = read_toml(path, "grid")
    return parse_grid(data, source=str(source))
