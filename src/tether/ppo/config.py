"""PPOConfig: every setting of a recurrent PPO run, with its help text, from flags or TOML.

One attrs class holds all settings (as CleanRL's ``Args``); each field carries its help in its
metadata and a precise type (a ``Literal`` for a choice), so the CLI builds its flags from the
types and a TOML file can set any of them by name. Values are checked against the types: a wrong
one is refused in one line naming the setting.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import attrs

from tether._toml import read_toml
from tether.errors import ConfigError
from tether.ppo.presets import PRESETS

__all__ = ["Core", "Mode", "PPOConfig", "Vector", "merge_settings"]

Vector = Literal["sync", "async"]
Core = Literal["lstm", "gru"]
Mode = Literal["strict", "warn", "off"]

def _f(default: Any, help: str, **kwargs: Any) -> Any:
    return attrs.field(default=default, metadata={"help": help}, **kwargs)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, bool) and isinstance(value, int | float) and value <= 0:
        raise ConfigError(f"{attribute.name}: expected a positive value, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, int | float) and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name}: expected a value in [0, 1], got {value!r}")


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
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{name}: expected a number, got {value!r}"
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
    raise TypeError(f"PPOConfig: no check for the field type {hint!r}")  # a new field needs one


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{attribute.name}: expected 0 or more, got {value!r}")


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


@attrs.define(kw_only=True)
class PPOConfig:
    """All settings of a :class:`~tether.RecurrentPPO` run (defaults: CartPole-NoVel, 8 envs)."""

    # environment
    env_id: str = _f("tether/CartPole-NoVel-v0",
                     "gymnasium id of the task, as gymnasium.make takes it ('module:Id' imports module)")
    env_imports: list[str] = attrs.field(
        factory=list, metadata={"help": "modules to import before making the env (they register its id)"})
    env_kwargs: dict[str, Any] = attrs.field(
        factory=dict, metadata={"help": "keyword arguments for the env (a TOML table; flag: key=value)"})
    num_envs: int = _f(8, "parallel environments (per rank on several processes)", validator=_positive)
    vector: Literal["sync", "async"] = _f("sync", "vector env kind: sync or async")
    total_steps: int = _f(50_000, "environment steps to train for (all envs of all ranks together)",
                          validator=_positive)
    seed: int = _f(0, "seed of torch, numpy and the envs")
    device: str = _f("cpu", "torch device (cpu, cuda, cuda:1, ...)")
    torch_threads: int = _f(1, "torch intra-op CPU threads (small recurrent nets run fastest on one)",
                            validator=_positive)
    # rollout and optimisation
    n_steps: int = _f(128, "steps per env per rollout", validator=_positive)
    learning_rate: float = _f(7e-4, "Adam learning rate", validator=_positive)
    anneal_lr: bool = _f(False, "decay the learning rate linearly to 0 over the run")
    gamma: float = _f(0.99, "discount factor", validator=_fraction)
    gae_lambda: float = _f(0.98, "GAE lambda", validator=_fraction)
    n_epochs: int = _f(10, "optimisation epochs per rollout", validator=_positive)
    minibatch_envs: int = _f(2, "env-sequences per minibatch (per rank on several processes)",
                             validator=_positive)
    seq_len: int = _f(0, "sequence length of a minibatch chunk (0: the whole rollout per env)")
    clip_range: float = _f(0.2, "PPO policy clip range", validator=_positive)
    clip_range_vf: float | None = _f(None, "value clip range (none: no value clipping)",
                                     validator=_positive)
    ent_coef: float = _f(0.0, "entropy bonus coefficient")
    vf_coef: float = _f(0.5, "value loss coefficient")
    max_grad_norm: float = _f(1.0, "gradient norm clip", validator=_positive)
    target_kl: float | None = _f(None, "stop an update's epochs early past this approx. KL (none: never)",
                                 validator=_positive)
    normalize_advantage: bool = _f(True, "normalise advantages per minibatch")
    normalize_obs: bool = _f(False, "normalise observations with running mean / std")
    reward_scale: float = _f(1.0, "multiply rewards by this for training (metrics stay unscaled)",
                             validator=_positive)
    # network
    core: Literal["lstm", "gru"] = _f("lstm", "recurrent core: lstm or gru")
    hidden_size: int = _f(64, "recurrent hidden size", validator=_positive)
    num_layers: int = _f(1, "recurrent layers", validator=_positive)
    encoder_size: int = _f(64, "width of the Linear + LayerNorm encoder (0: feed observations to the core)",
                           validator=_non_negative)
    shared_core: bool = _f(False, "actor and critic share one recurrent core (else a separate critic)")
    recurrent: bool = _f(True, "use a recurrent core (false: a feed-forward baseline of the same size)")
    action_masks: bool = _f(False, "read bool action masks from info['action_mask'] (discrete actions only)")
    # bookkeeping
    run_dir: str = _f("runs/tether", "folder for metrics.jsonl, checkpoints and plots")
    checkpoint_every: int = _f(10, "write a checkpoint every N updates (and at the end)", validator=_positive)
    eval_episodes: int = _f(20, "episodes of the deterministic evaluation at the end", validator=_positive)
    progress: bool = _f(True, "show a progress bar")
    mode: Literal["strict", "warn", "off"] = _f("warn", "tether check mode: strict, warn or off")

    def __attrs_post_init__(self) -> None:
        hints = typing.get_type_hints(PPOConfig)
        for field in attrs.fields(PPOConfig):
            problem = _type_error(field.name, hints[field.name], getattr(self, field.name))
            if problem:
                raise ConfigError(problem)
        self.env_imports = list(self.env_imports)
        if self.minibatch_envs > self.num_envs and self.seq_len == 0:
            raise ConfigError(
                f"minibatch_envs: expected at most num_envs={self.num_envs} env-sequences per minibatch"
                f" when seq_len=0, got {self.minibatch_envs}"
            )
        if self.seq_len < 0 or (self.seq_len and self.n_steps % self.seq_len):
            raise ConfigError(
                f"seq_len: expected 0 or a divisor of n_steps={self.n_steps}, got {self.seq_len}")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every setting."""
        return [f.name for f in attrs.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PPOConfig:
        """Build a config from a mapping, refusing unknown keys with a suggestion.

        Raises:
            ConfigError: for an unknown key or an invalid value.
        """
        known = cls.field_names()
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"{source}: expected setting names as strings, got {key!r}")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
                raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"{source}: {err}") from err

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PPOConfig:
        """The tuned settings of one of tether's tasks (:data:`~tether.ppo.presets.PRESETS`), with overrides.

        Raises:
            ConfigError: for an unknown preset name (or a bad override).
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls.from_dict(merge_settings(PRESETS[name], overrides), source=f"preset {name!r}")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> PPOConfig:
        """Read settings from a TOML file (top level or a ``[train]`` table); overrides win.

        Raises:
            FileNotFoundError: when the file is missing.
            ConfigError: for invalid TOML, an unknown key or a bad value.
        """
        source, data = read_toml(path, "config")
        table = data.get("train", data)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: expected [train] to be a table of settings")
        return cls.from_dict(merge_settings(table, overrides), source=str(source))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what checkpoints and metrics store)."""
        return attrs.asdict(self)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Each setting's type, resolved (``Literal[...]`` for a choice)."""
        hints = typing.get_type_hints(cls)
        return {name: hints[name] for name in cls.field_names()}
