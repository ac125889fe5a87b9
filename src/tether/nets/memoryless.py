"""MemorylessPolicy: the same network with its memory cut at every step (a feed-forward baseline).

Wrapping a recurrent policy this way keeps its size and parameters but zeroes the state before
every step, so it can only react to the current observation. A memory task that the recurrent
policy solves and this one cannot shows that the task needs memory (and that the recurrent policy
uses it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tether.clock import EpisodeClock
from tether.policy import ActResult, EvalResult
from tether.state import RecurrentState

__all__ = ["MemorylessPolicy"]


class MemorylessPolicy(nn.Module):
    """A :class:`~tether.policy.RecurrentPolicy` that forgets everything between steps.

    Args:
        policy: a recurrent policy (e.g. :class:`~tether.nets.FactoredRecurrentActorCritic`).

    Every ``act`` / ``value`` starts from a zeroed state (``state.reset()``), and
    ``evaluate_actions`` treats every step as an episode start, so the two stay consistent.
    """

    policy: Any

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def initial_state(self, batch_size: int, clock: EpisodeClock | None = None) -> RecurrentState:
        """The wrapped policy's initial state."""
        state: RecurrentState = self.policy.initial_state(batch_size, clock)
        return state

    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> ActResult:
        """One step from a zeroed state."""
        result: ActResult = self.policy.act(obs, state.reset(), masks, deterministic)
        return result

    def value(self, obs: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        """``V(obs)`` from a zeroed state."""
        value: torch.Tensor = self.policy.value(obs, state.reset(), bootstrap=bootstrap)
        return value

    def env_actions(self, actions: torch.Tensor) -> Any:
        """The wrapped policy's env actions."""
        return self.policy.env_actions(actions)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, episode_starts: Any,
                         initial_state: RecurrentState, masks: Any = None,
                         return_state: bool = False) -> EvalResult:
        """Evaluate with every step an episode start."""
        starts = np.ones(np.shape(episode_starts), dtype=bool)
        result: EvalResult = self.policy.evaluate_actions(obs, actions, starts, initial_state, masks,
                                                          return_state)
        return result
