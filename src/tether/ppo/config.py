"""PPOConfig: every setting of a recurrent PPO run: the shared concerns plus PPO's own, from flags or TOML.

The env, network and run settings are :mod:`tether.train.config`'s (shared with every trainer);
this file adds PPO's: the rollout length, the optimiser, GAE, the clipped objective and its
epochs (the ``[ppo]`` table of a TOML file). Each field carries its help and its range in its
metadata and a precise type (a ``Literal`` for a choice), so the CLI builds its flags from the
types and a TOML file can set any of them by name, flat or grouped by concern.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from tether.errors import ConfigError
from tether.ppo.presets import PRESETS
from tether.ppo.starts import SequenceStart
from tether.train import config as settings
from tether.train.config import EnvConfig, NetworkConfig, RunConfig, TrainerSettings

__all__ = ["PPOConfig"]


def _ppo(default: Any, help: str, **kwargs: Any) -> Any:
    return settings.setting(default, help, "ppo", **kwargs)


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class PPOConfig(TrainerSettings, RunConfig, NetworkConfig, EnvConfig):
    """All settings of a :class:`~tether.RecurrentPPO` run (defaults: CartPole-NoVel, 8 envs).

    The env (:class:`~tether.train.EnvConfig`), network (:class:`~tether.train.NetworkConfig`) and
    run (:class:`~tether.train.RunConfig`) settings, then PPO's own (``[ppo]``). Every setting is
    one attribute: ``PPOConfig(num_envs=4, learning_rate=1e-3).hidden_size``.

    Raises:
        ConfigError: for a value of the wrong type, not finite, or out of its range (named).
    """

    ALGO: ClassVar[str] = "ppo"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

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
    sequence_start: str = _ppo(
        "stored", "where a replayed chunk starts: stored (the state stored at collection), rollout (the"
        " rollout's first state, chunks chained) or burn-in:K (K steps earlier, run without gradient)")
    telemetry: bool = settings.setting(
        False, "log hidden-state health and staleness per update (state/... metrics)", "run")

    def __attrs_post_init__(self) -> None:
        settings.check_fields(self)
        settings.check_device(self.device)
        SequenceStart.parse(self.sequence_start)
        self.env_imports = list(self.env_imports)
        if self.minibatch_envs > self.num_envs and self.seq_len == 0:
            raise ConfigError(
                f"minibatch_envs: expected at most num_envs={self.num_envs} env-sequences per minibatch"
                f" when seq_len=0, got {self.minibatch_envs}"
            )
        if self.seq_len < 0 or (self.seq_len and self.n_steps % self.seq_len):
            raise ConfigError(
                f"seq_len: expected 0 or a divisor of n_steps={self.n_steps}, got {self.seq_len}")
