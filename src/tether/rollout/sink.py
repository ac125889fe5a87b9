"""Where the collector writes: :class:`Transition`, one env step of every row, and :class:`RolloutSink`.

The collector knows the transition: what was observed and done, how the episodes went, the state
that was fed, and whatever else the policy returned with its actions (``ActResult``'s other
fields, passed through by name as :attr:`Transition.extras`, never interpreted). What a trainer
keeps beside the transition is the sink's business: the on-policy
:class:`~tether.rollout.RecurrentRolloutBuffer` stores ``extras["log_prob"]`` / ``extras["value"]``
and the truncation bootstrap for GAE; a sequence replay buffer stores the state as a stamped
snapshot and the episode ids and ticks beside every step.

Stamps: ``step.state`` is the state fed at this step, bound to the env clock, so
``step.state.episode_ids`` are the rows' episode ids and ``step.state.tick`` the clock tick of
``step.obs`` (the clock itself is handed to :meth:`RolloutSink.begin`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.state import RecurrentState

__all__ = ["RolloutSink", "Transition"]


class Transition(NamedTuple):
    """One step of every env row ``[E, ...]``, as the collector took it.

    Attributes:
        obs: the observation fed to the policy (a tensor, or a dict / tuple of them).
        actions: what the policy chose, as it returned them.
        rewards: float ``[E]`` (host).
        terminated / truncated: bool ``[E]``: the episode ended at this step, and how.
        episode_starts: bool ``[E]``: ``obs`` is the first observation of a new episode.
        valid: bool ``[E]``: False at next-step autoreset steps (the action was ignored).
        state: the state fed at this step (before it), with its episode ids and tick; detached
            (collection runs without autograd). Store it through ``state.for_buffer()``.
        extras: the policy's other outputs by ``ActResult`` field name (e.g. ``log_prob``, ``value``),
            each ``[E]`` on the policy's device.
        bootstrap_values: float ``[E]``: ``policy.value(final_obs, pre-reset state, bootstrap=True)``
            where ``truncated``, 0 elsewhere.
        final_obs: the last observation of the episodes that ended at this step (rows where
            ``terminated | truncated``; other rows hold filler), as the env gave it.
        action_masks: bool ``[E, ...]`` the action was chosen under, or ``None``.
    """

    obs: Any
    actions: torch.Tensor
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_starts: np.ndarray
    valid: np.ndarray
    state: RecurrentState
    extras: Mapping[str, torch.Tensor]
    bootstrap_values: torch.Tensor
    final_obs: Any
    action_masks: torch.Tensor | None


@runtime_checkable
class RolloutSink(Protocol):
    """What :meth:`RolloutCollector.collect <tether.rollout.RolloutCollector.collect>` writes to.

    ``begin`` once, ``write`` once per step, ``finish`` once, in that order. A sink may refuse a
    step (raising); the collector keeps its own run consistent either way.
    """

    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        """A rollout of ``num_steps`` steps of ``clock.num_envs`` rows starts; refuse here what cannot fit."""
        ...

    def write(self, step: Transition) -> None:
        """Keep what this sink needs of one step."""
        ...

    def finish(self, last_value: torch.Tensor) -> None:
        """The rollout ended; ``last_value`` ``[E]`` is ``V`` of the observation after the last step."""
        ...
