"""PPOConfig: every setting of a recurrent PPO run, with its help text, from flags or TOML.

One attrs class holds all settings (as CleanRL's ``Args``); each field carries its help in its
metadata, so the CLI builds its flags from it and a TOML file can set any of them by name.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import attrs

from tether.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PRESETS", "ConfigError", "PPOConfig"]

#: Tuned settings for tether's own tasks (``tether train --preset NAME``); any flag still wins.
PRESETS: dict[str, dict[str, Any]] = {
    # sb3-contrib's RecurrentPPO CartPoleNoVel test budget: 8 envs, 50 000 steps; normalised
    # observations and one env-sequence per minibatch made the 5 seeds reliable.
    "cartpole": {"env_id": "tether/CartPole-NoVel-v0", "total_steps": 50_000, "normalize_obs": True,
                 "minibatch_envs": 1},
    "pendulum": {"env_id": "tether/Pendulum-NoVel-v0", "total_steps": 100_000, "num_envs": 4,
                 "n_steps": 1024, "seq_len": 128, "minibatch_envs": 1, "gamma": 0.9, "gae_lambda": 0.95,
                 "learning_rate": 1e-3, "normalize_obs": True, "reward_scale": 0.1},
    "recall": {"env_id": "tether/Recall-v0", "total_steps": 50_000, "n_steps": 64, "minibatch_envs": 2,
               "gae_lambda": 0.95, "ent_coef": 0.01, "learning_rate": 1e-3},
}


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    return attrs.field(default=default, metadata={"help": help}, **kwargs)


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{attribute.name}: expected a positive value, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name}: expected a value in [0, 1], got {value!r}")


def _one_of(*choices: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{attribute.name}: expected one of {list(choices)}, got {value!r}")

    return check


@attrs.define(kw_only=True)
class PPOConfig:
    """All settings of a :class:`~tether.RecurrentPPO` run (defaults: CartPole-NoVel, 8 envs)."""

    # environment
    env_id: str = _f("tether/CartPole-NoVel-v0", "gymnasium id of the task (tether/ tasks are built in)")
    num_envs: int = _f(8, "parallel environments", validator=_positive)
    vector: str = _f("sync", "vector env kind: sync or async", validator=_one_of("sync", "async"))
    total_steps: int = _f(50_000, "environment steps to train for (all envs together)",
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
    minibatch_envs: int = _f(2, "env-sequences per minibatch", validator=_positive)
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
    core: str = _f("lstm", "recurrent core: lstm or gru", validator=_one_of("lstm", "gru"))
    hidden_size: int = _f(64, "recurrent hidden size", validator=_positive)
    num_layers: int = _f(1, "recurrent layers", validator=_positive)
    encoder_size: int = _f(64, "width of the Linear + LayerNorm encoder (0: feed observations to the core)",
                           validator=attrs.validators.ge(0))
    shared_core: bool = _f(False, "actor and critic share one recurrent core (else a separate critic)")
    recurrent: bool = _f(True, "use a recurrent core (false: a feed-forward baseline of the same size)")
    action_masks: bool = _f(False, "read bool action masks from info['action_mask'] (discrete actions only)")
    # bookkeeping
    run_dir: str = _f("runs/tether", "folder for metrics.jsonl, checkpoints and plots")
    checkpoint_every: int = _f(10, "write a checkpoint every N updates (and at the end)", validator=_positive)
    eval_episodes: int = _f(20, "episodes of the deterministic evaluation at the end", validator=_positive)
    progress: bool = _f(True, "show a progress bar")
    mode: str = _f("warn", "tether check mode: strict, warn or off",
                   validator=_one_of("strict", "warn", "off"))

    def __attrs_post_init__(self) -> None:
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
        """The tuned settings of one of tether's tasks (see :data:`PRESETS`), with overrides.

        Raises:
            ConfigError: for an unknown preset name (or a bad override).
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides}, source=f"preset {name!r}")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> PPOConfig:
        """Read settings from a TOML file (top level or a ``[train]`` table); overrides win.

        Raises:
            FileNotFoundError: when the file is missing.
            ConfigError: for invalid TOML, an unknown key or a bad value.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"no config file at {source}")
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: not valid TOML ({err})") from err
        table = data.get("train", data)
        return cls.from_dict({**table, **overrides}, source=str(source))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what checkpoints and metrics store)."""
        return attrs.asdict(self)
