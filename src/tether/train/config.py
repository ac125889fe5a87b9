"""Settings by concern: the env, the network and the run, shared by every trainer.

A trainer's config class composes these three concerns with its own algorithm part, one flat
attrs class (``class PPOConfig(EnvConfig, NetworkConfig, RunConfig)`` plus the PPO fields), so
every setting stays one attribute (``config.learning_rate``) and one flag (``--learning-rate``).
Each field says which concern it belongs to (``metadata["section"]``): a TOML file may group the
settings in ``[env]``, ``[network]``, ``[run]`` and ``[<algo>]`` tables, or list them flat (at
the top level or in a ``[train]`` table), and a checkpoint stores them flat.

Every value is checked where it is read: against its type (a ``Literal`` for a choice), finite
for a number, and in its range (a learning rate > 0, a discount in [0, 1], ...); a wrong one is
refused in one line naming the setting, as a :class:`~tether.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar

import attrs
import torch

from tether._toml import read_toml
from tether.distributed import available_devices
from tether.errors import ConfigError

__all__ = ["EnvConfig", "NetworkConfig", "RunConfig", "RunSettings", "TrainerSettings", "merge_settings"]

_C = TypeVar("_C")
SECTIONS = ("env", "network", "run")  # the shared concerns; an algorithm adds its own table


def meta(help: str, section: str, check: tuple[str, float] | None = None) -> dict[str, Any]:
    """A setting's metadata: its help, its concern and its range (``(">", 0)``, ``("[0,1]", 0)``, ...)."""
    return {"help": help, "section": section, "check": check}


def setting(default: Any, help: str, section: str, *, check: tuple[str, float] | None = None) -> Any:
    """An attrs field with a default, its help, its concern and its range."""
    return attrs.field(default=default, metadata=meta(help, section, check))


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def _type_error(name: str, hint: Any, value: Any) -> str | None:
    """Why ``value`` does not fit the field type ``hint`` (None when it fits)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return None if value in args else f"{name}: expected one of {list(args)}, got {value!r}"
    if hint is bool:
        return None if isinstance(value, bool) else f"{name}: expected true or false, got {value!r}"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{name}: expected an integer, got {value!r}"
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{name}: expected a number, got {value!r}"
        return None if math.isfinite(value) else f"{name}: expected a finite number, got {value!r}"
    if hint is str:
        return None if isinstance(value, str) else f"{name}: expected a string, got {value!r}"
    if type(None) in args:  # X | None
        inner = next(a for a in args if a is not type(None))
        return None if value is None else _type_error(name, inner, value)
    if origin is list:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return None if ok else f"{name}: expected a list of strings, got {value!r}"
    if origin is dict:
        ok = isinstance(value, dict) and _plain(value)
        return None if ok else (f"{name}: expected a table of plain values (strings, numbers, booleans,"
                                f" lists, tables), got {value!r}")
    raise TypeError(f"settings: no check for the field type {hint!r}")  # a new field needs one


def _range_error(name: str, check: tuple[str, float] | None, value: Any) -> str | None:
    if check is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    op, bound = check
    if op == ">" and not value > bound:
        return f"{name}: expected a positive value, got {value!r}"
    if op == ">=" and not value >= bound:
        return f"{name}: expected 0 or more, got {value!r}"
    if op == "[0,1]" and not 0.0 <= value <= 1.0:
        return f"{name}: expected a value in [0, 1], got {value!r}"
    if op == "(0,1]" and not 0.0 < value <= 1.0:
        return f"{name}: expected a value in (0, 1], got {value!r}"
    return None


def check_fields(instance: Any) -> None:
    """Check every field of an attrs settings object against its type and its range.

    Raises:
        ConfigError: naming the first setting that does not fit.
    """
    cls = type(instance)
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        value = getattr(instance, field.name)
        problem = (_type_error(field.name, hints[field.name], value)
                   or _range_error(field.name, field.metadata.get("check"), value))
        if problem:
            raise ConfigError(problem)


def check_device(text: str) -> None:
    """Refuse a device string torch cannot parse (``--device banana``), in one line.

    Raises:
        ConfigError: naming the devices of this machine.
    """
    try:
        torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"device: expected a torch device such as {', '.join(available_devices())},"
                          f" got {text!r}") from err


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``: tables (``env_kwargs``) merge key by key, lists
    (``env_imports``) extend, anything else is replaced.

    >>> merge_settings({"env_kwargs": {"a": 1}, "seed": 0}, {"env_kwargs": {"b": 2}, "seed": 3})
    {'env_kwargs': {'a': 1, 'b': 2}, 'seed': 3}
    """
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **value}
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = [*old, *(v for v in value if v not in old)]
        else:
            out[key] = value
    return out


def sections_of(cls: type) -> dict[str, str]:
    """Each setting's concern (``{"env_id": "env", ..., "learning_rate": "ppo"}``)."""
    return {f.name: f.metadata["section"] for f in attrs.fields(cls)}


def flatten(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """Settings given flat or grouped in concern tables (``[env]``, ``[ppo]``, ...) as one flat dict.

    Raises:
        ConfigError: for an unknown key (with a suggestion), a key in another concern's table, or
            a setting given twice.
    """
    sections = sections_of(cls)
    known = list(sections)
    out: dict[str, Any] = {}

    def put(key: Any, value: Any, table: str | None) -> None:
        where = f"{source} [{table}]" if table else source
        if not isinstance(key, str):
            raise ConfigError(f"{where}: expected setting names as strings, got {key!r}")
        if key not in sections:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"{where}: unknown setting {key!r}{hint}")
        if table is not None and sections[key] != table:
            raise ConfigError(f"{where}: {key!r} is a [{sections[key]}] setting; move it there")
        if key in out:
            raise ConfigError(f"{source}: {key!r} is given twice; keep one")
        out[key] = value

    tables = set(sections.values())
    for key, value in data.items():
        if key in tables and isinstance(value, dict):
            for inner, item in value.items():
                put(inner, item, key)
        else:
            put(key, value, None)
    return out


def from_dict(cls: type[_C], data: dict[str, Any], source: str) -> _C:
    """Build the settings object ``cls`` from flat or grouped settings.

    Raises:
        ConfigError: for an unknown key or an invalid value.
    """
    flat = flatten(cls, data, source)
    try:
        return cls(**flat)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from err


def read_settings(path: str | Path, algo: str) -> tuple[str, dict[str, Any]]:
    """The settings a TOML file holds for ``algo``: the top level (or its ``[train]`` table).

    An ``algo = "..."`` key, when present, must name ``algo``.

    Raises:
        FileNotFoundError: when the file is missing.
        ConfigError: for invalid TOML, a ``[train]`` that is not a table, or another algorithm.
    """
    source, data = read_toml(path, "config")
    table = data.get("train", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: expected [train] to be a table of settings")
    table = dict(table)
    named = table.pop("algo", algo)
    if named != algo:
        raise ConfigError(f"{source}: this file holds settings for algo {named!r}, not {algo!r};"
                          f" run it with --algo {named}")
    return str(source), table


class RunSettings(Protocol):
    """What a :class:`Run` reads of a trainer's settings (the env and run concerns)."""

    @property
    def env_id(self) -> str: ...
    @property
    def env_imports(self) -> list[str]: ...
    @property
    def env_kwargs(self) -> dict[str, Any]: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def vector(self) -> Vector: ...
    @property
    def normalize_obs(self) -> bool: ...
    @property
    def action_masks(self) -> bool: ...
    @property
    def seed(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def torch_threads(self) -> int: ...
    @property
    def run_dir(self) -> str: ...
    @property
    def progress(self) -> bool: ...
    @property
    def mode(self) -> Mode: ...
    def to_dict(self) -> dict[str, Any]: ...


Vector = Literal["sync", "async"]
Core = Literal["lstm", "gru"]
Mode = Literal["strict", "warn", "off"]


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class EnvConfig:
    """Which task, how many copies of it, and what the collector reads of it (``[env]``)."""

    env_id: str = setting("tether/CartPole-NoVel-v0", "gymnasium id of the task, as gymnasium.make takes it"
                          " ('module:Id' imports module)", "env")
    env_imports: list[str] = attrs.field(
        factory=list, metadata=meta("modules to import before making the env (they register its id)", "env"))
    env_kwargs: dict[str, Any] = attrs.field(
        factory=dict, metadata=meta("keyword arguments for the env (a TOML table; flag: key=value)", "env"))
    num_envs: int = setting(8, "parallel environments (per rank on several processes)", "env", check=(">", 0))
    vector: Literal["sync", "async"] = setting("sync", "vector env kind: sync or async", "env")
    normalize_obs: bool = setting(False, "normalise observations with running mean / std", "env")
    action_masks: bool = setting(False, "read bool action masks from info['action_mask'] (discrete actions"
                                 " only)",
                                 "env")


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class NetworkConfig:
    """The recurrent network's shape (``[network]``)."""

    core: Literal["lstm", "gru"] = setting("lstm", "recurrent core: lstm or gru", "network")
    hidden_size: int = setting(64, "recurrent hidden size", "network", check=(">", 0))
    num_layers: int = setting(1, "recurrent layers", "network", check=(">", 0))
    encoder_size: int = setting(64, "width of the Linear + LayerNorm encoder (0: feed observations to the"
                                " core)",
                                "network", check=(">=", 0))
    recurrent: bool = setting(True, "use a recurrent core (false: a feed-forward baseline of the same size)",
                              "network")


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class RunConfig:
    """How long, how seeded, where, and what the run leaves behind (``[run]``)."""

    total_steps: int = setting(50_000, "environment steps to train for (all envs of all ranks together)",
                               "run",
                               check=(">", 0))
    seed: int = setting(0, "seed of torch, numpy and the envs", "run", check=(">=", 0))
    device: str = setting("cpu", "torch device (cpu, cuda, cuda:1, ...)", "run")
    torch_threads: int = setting(1, "torch intra-op CPU threads (small recurrent nets run fastest on one)",
                                 "run",
                                 check=(">", 0))
    run_dir: str = setting("runs/tether", "folder for metrics.jsonl, checkpoints and plots", "run")
    checkpoint_every: int = setting(10, "write a checkpoint every N updates (and at the end)", "run",
                                    check=(">", 0))
    eval_episodes: int = setting(20, "episodes of the deterministic evaluation at the end", "run",
                                 check=(">", 0))
    progress: bool = setting(True, "show a progress bar", "run")
    mode: Literal["strict", "warn", "off"] = setting("warn", "tether check mode: strict, warn or off", "run")


class TrainerSettings:
    """What every trainer's settings class has beside its fields: names, concerns, types and readers.

    A trainer's settings compose this with the concerns and its own fields, and name their
    algorithm and presets::

        @attrs.define(kw_only=True, slots=False)
        class PPOConfig(TrainerSettings, RunConfig, NetworkConfig, EnvConfig):
            ALGO: ClassVar[str] = "ppo"
            PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS
            ...
    """

    ALGO: ClassVar[str]
    PRESETS: ClassVar[dict[str, dict[str, Any]]]

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every setting."""
        return [f.name for f in attrs.fields(cls)]  # type: ignore[arg-type]  # an attrs subclass

    @classmethod
    def sections(cls) -> dict[str, str]:
        """Each setting's concern: ``env``, ``network``, ``run`` or the algorithm's (its TOML table)."""
        return sections_of(cls)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Each setting's type, resolved (``Literal[...]`` for a choice)."""
        hints = typing.get_type_hints(cls)
        return {name: hints[name] for name in cls.field_names()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> Self:
        """Build the settings from a mapping: flat names, or tables by concern (``{"ppo": {...}}``).

        Raises:
            ConfigError: for an unknown key (with a suggestion), a key in another concern's table,
                or an invalid value.
        """
        return from_dict(cls, data, source)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Self:
        """The tuned settings of one of tether's tasks (the class's ``PRESETS``), with overrides.

        Raises:
            ConfigError: for an unknown preset name (or a bad override).
        """
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(cls.PRESETS)}")
        return cls.from_dict(merge_settings(cls.PRESETS[name], overrides), source=f"preset {name!r}")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Self:
        """Read settings from a TOML file; overrides win.

        The file lists settings flat (at the top level or in a ``[train]`` table) or in tables by
        concern (``[env]``, ``[network]``, ``[run]``, ``[<algo>]``); an ``algo`` key, if any, must
        name this trainer.

        Raises:
            FileNotFoundError: when the file is missing.
            ConfigError: for invalid TOML, an unknown key or a bad value.
        """
        source, table = read_settings(path, cls.ALGO)
        flat = flatten(cls, table, source)
        return cls.from_dict(merge_settings(flat, overrides), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a flat plain dict (what checkpoints and metrics store)."""
        return attrs.asdict(self)  # type: ignore[arg-type]  # an attrs subclass
