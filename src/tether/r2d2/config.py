"""R2D2Config: every setting of a recurrent off-policy (R2D2) run: the shared concerns plus R2D2's own.

The env, network and run settings are :mod:`tether.train.config`'s (shared with every trainer);
this file adds R2D2's (the ``[r2d2]`` table of a TOML file): the replay's sequences (length,
burn-in, period, where a replayed sequence starts), its capacity and priorities, the learner
(n-step double Q, value rescaling, target network, optimiser), the actors' ε-greedy schedule and
the staleness measure. Defaults follow Kapturowski et al. (ICLR 2019), scaled to small tasks
where the paper's Atari numbers would not fit (a 100-sequence target period, not 2 500 updates).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

from tether.errors import ConfigError
from tether.r2d2.presets import PRESETS
from tether.train import config as settings
from tether.train.config import EnvConfig, NetworkConfig, RunConfig, TrainerSettings

__all__ = ["R2D2Config"]


def _r2d2(default: Any, help: str, **kwargs: Any) -> Any:
    return settings.setting(default, help, "r2d2", **kwargs)


@attrs.define(kw_only=True, slots=False)  # composed by multiple inheritance: no slots
class R2D2Config(TrainerSettings, RunConfig, NetworkConfig, EnvConfig):
    """All settings of an :class:`~tether.r2d2.R2D2` run (defaults: CartPole-NoVel, 8 envs).

    The env, network and run concerns (:class:`~tether.train.EnvConfig`,
    :class:`~tether.train.NetworkConfig`, :class:`~tether.train.RunConfig`), then R2D2's own
    (``[r2d2]``). A replayed sequence is ``burn_in + seq_len`` steps: the first ``burn_in`` run
    without gradient from its start state (``initial_state``: the state stored at collection, or
    zeros), the rest are trained on.

    Raises:
        ConfigError: for a value of the wrong type, not finite, or out of its range (named).
    """

    ALGO: ClassVar[str] = "r2d2"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    # the replay
    seq_len: int = _r2d2(40, "trained steps of a replayed sequence (after its burn-in)", check=(">", 0))
    burn_in: int = _r2d2(20, "steps run without gradient before the trained part", check=(">=", 0))
    period: int = _r2d2(0, "steps between two stored sequences' starts (0: seq_len; less overlaps them)",
                        check=(">=", 0))
    initial_state: Literal["stored", "zero"] = _r2d2(
        "stored", "where a replayed sequence starts: the state stored at collection, or zeros")
    cut_at_episode_end: bool = _r2d2(
        False, "end a stored sequence at its episode's end (padded) instead of running across it")
    capacity: int = _r2d2(4_000, "replay capacity in sequences", check=(">", 0))
    prioritized: bool = _r2d2(True, "sample sequences by priority (else uniformly)")
    priority_exponent: float = _r2d2(0.9, "priority exponent alpha: P(i) ~ p_i^alpha", check=(">=", 0))
    priority_eta: float = _r2d2(0.9, "a sequence's priority: eta max|delta| + (1 - eta) mean|delta|",
                                check=("[0,1]", 0))
    importance_exponent: float = _r2d2(0.6, "importance-sampling exponent beta (0: no weights)",
                                       check=(">=", 0))
    save_replay: bool = _r2d2(False, "keep the replay in checkpoints (an exact resume; larger files)")
    # the learner
    batch_size: int = _r2d2(32, "sequences per learner update", check=(">", 0))
    learning_rate: float = _r2d2(1e-3, "Adam learning rate", check=(">", 0))
    adam_eps: float = _r2d2(1e-5, "Adam epsilon (the paper's 1e-3 stalls the small gradients of small tasks)",
                            check=(">", 0))
    gamma: float = _r2d2(0.99, "discount factor", check=("[0,1]", 0))
    n_step: int = _r2d2(5, "steps of the n-step return", check=(">", 0))
    double_q: bool = _r2d2(True, "double Q: the online net picks the bootstrap action, the target rates it")
    dueling: bool = _r2d2(True, "dueling Q head: Q = V + A - mean A")
    value_rescale: bool = _r2d2(True, "value rescaling h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x")
    value_rescale_eps: float = _r2d2(1e-3, "eps of the value rescaling", check=(">", 0))
    target_update_every: int = _r2d2(100, "learner updates between target-network updates", check=(">", 0))
    target_tau: float = _r2d2(1.0, "target update weight (1: copy; less: Polyak averaging)",
                              check=("(0,1]", 0))
    max_grad_norm: float = _r2d2(10.0, "gradient norm clip", check=(">", 0))
    # the actors and the schedule
    collect_steps: int = _r2d2(8, "env steps per env between learner phases", check=(">", 0))
    updates_per_collect: int = _r2d2(1, "learner updates after each collection", check=(">", 0))
    learning_starts: int = _r2d2(2_000, "env steps collected before the first update", check=(">=", 0))
    epsilon_start: float = _r2d2(1.0, "epsilon-greedy exploration at the start", check=("[0,1]", 0))
    epsilon_end: float = _r2d2(0.05, "epsilon after the decay", check=("[0,1]", 0))
    epsilon_decay: float = _r2d2(0.5, "fraction of total_steps over which epsilon decays linearly",
                                 check=("[0,1]", 0))
    epsilon_alpha: float = _r2d2(0.0, "per-env spread: env i explores with epsilon^(1 + alpha i / (E - 1))"
                                 " (Ape-X: 7)", check=(">=", 0))
    log_every: int = _r2d2(16, "collections per metrics record (checkpoint_every counts records)",
                           check=(">", 0))
    # the staleness measure
    staleness_every: int = _r2d2(10, "measure the replay's staleness (dq) every N updates (0: never)",
                                 check=(">=", 0))
    staleness_history: int = _r2d2(1_000, "steps back the recomputed state may start (longer: skipped)",
                                   check=(">", 0))

    def __attrs_post_init__(self) -> None:
        settings.check_fields(self)
        settings.check_device(self.device)
        self.env_imports = list(self.env_imports)
        if self.period > self.seq_len + self.burn_in:
            raise ConfigError(f"period: expected at most burn_in + seq_len = {self.burn_in + self.seq_len}"
                              f" (else steps between sequences are never stored), got {self.period}")
        if self.action_masks:
            raise ConfigError("action_masks: R2D2 does not read action masks yet; drop --action-masks")

    @property
    def sequence_period(self) -> int:
        """Steps between two stored sequences' starts (``period``, or ``seq_len`` when 0)."""
        return self.period or self.seq_len
