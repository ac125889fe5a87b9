"""PPOConfig: every setting of a recurrent PPO run: the shared concerns plus PPO's own, from flags or TOML.

The env, network and run settings are :mod:`tether.train.config`'s (shared with every trainer);
this file adds PPO's: the rollout length, the optimiser, GAE, the clipped objective and its
epochs (the ``[ppo]`` table of a TOML file). Each field carries its help and its range in its
metadata and a precise type (a ``Literal`` for a choice), so the CLI builds its flags from the
types and a TOML file can set any of them by name, flat or grouped by concern.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import attrs

from tether.errors import ConfigError
from tether.ppo.presets import PRESETS
from tether.train import config as settings
from tether.train.config import EnvConfig, NetworkConfig, RunConfig, merge_settings

__all__ = ["PPOConfig"]


def _ppo(default: Any, help: str, **kwargs: Any) -> Any:
    return settings.setting(default, help, "ppo", **kwargs)


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class PPOConfig(RunConfig, NetworkConfig, EnvConfig):
    """All settings of a :class:`~tether.RecurrentPPO` run (defaults: CartPole-NoVel, 8 envs).

    The env (:class:`~tether.train.EnvConfig`), network (:class:`~tether.train.NetworkConfig`) and
    run (:class:`~tether.train.RunConfig`) settings, then PPO's own (``[ppo]``). Every setting is
    one attribute: ``PPOConfig(num_envs=4, learning_rate=1e-3).hidden_size``.

    Raises:
        ConfigError: for a value of the wrong type, not finite, or out of its range (named).
    """

    shared_core: bool = settings.setting(
        False, "actor and critic share one recurrent core (else a separate critic)", "network")
    n_steps: int = _ppo(128, "steps per env per rollout", check=(">", 0))
    learning_rate: float = _ppo(7e-4, "Adam learning rate", check=(">", 0))
    anneal_lr: bool = _ppo(False, "decay the learning rate linearly to 0 over the run")
    gamma: float = _ppo(0.99, "discount factor", check=("[0,1]", 0))
    gae_lambda: float = _ppo(0.98, "GAE lambda", check=("[0,1]", 0))
    n_epochs: int = _ppo(10, "optimisation epochs per rollout", check=(">", 0))
    minibatch_envs: int = _ppo(2, "env-sequences per minibatch (per rank on several processes)",
                               check=(">", 0))
    seq_len: int = _ppo(0, "sequence length of a minibatch chunk (0: the whole rollout per env)")
    clip_range: float = _ppo(0.2, "PPO policy clip range", check=(">", 0))
    clip_range_vf: float | None = _ppo(None, "value clip range (none: no value clipping)", check=(">", 0))
    ent_coef: float = _ppo(0.0, "entropy bonus coefficient", check=(">=", 0))
    vf_coef: float = _ppo(0.5, "value loss coefficient", check=(">=", 0))
    max_grad_norm: float = _ppo(1.0, "gradient norm clip", check=(">", 0))
    target_kl: float | None = _ppo(None, "stop an update's epochs early past this approx. KL (none: never)",
                                   check=(">", 0))
    normalize_advantage: bool = _ppo(True, "normalise advantages per minibatch")
    reward_scale: float = _ppo(1.0, "multiply rewards by this for training (metrics stay unscaled)",
                               check=(">", 0))

    def __attrs_post_init__(self) -> None:
        settings.check_fields(self)
        settings.check_device(self.device)
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
    def sections(cls) -> dict[str, str]:
        """Each setting's concern: ``env``, ``network``, ``run`` or ``ppo`` (its TOML table)."""
        return settings.sections_of(cls)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PPOConfig:
        """Build a config from a mapping: flat names, or tables by concern (``{"ppo": {...}}``).

        Raises:
            ConfigError: for an unknown key (with a suggestion), a key in another concern's table,
                or an invalid value.
        """
        return settings.from_dict(cls, data, source)

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
        """Read settings from a TOML file; overrides win.

        The file lists settings flat (at the top level or in a ``[train]`` table) or in tables by
        concern (``[env]``, ``[network]``, ``[run]``, ``[ppo]``); an ``algo`` key, if any, says
        ``"ppo"``.

        Raises:
            FileNotFoundError: when the file is missing.
            ConfigError: for invalid TOML, an unknown key or a bad value.
        """
        source, table = settings.read_settings(path, "ppo")
        flat = settings.flatten(cls, table, source)
        return cls.from_dict(merge_settings(flat, overrides), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a flat plain dict (what checkpoints and metrics store)."""
        return attrs.asdict(self)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Each setting's type, resolved (``Literal[...]`` for a choice)."""
        hints = typing.get_type_hints(cls)
        return {name: hints[name] for name in cls.field_names()}
