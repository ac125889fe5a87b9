"""The recurrent-policy protocol the rollout collector and the PPO trainer work with.

:class:`~tether.nets.FactoredRecurrentActorCritic` follows it; so can a user's own module. A
policy's state is one :class:`~tether.RecurrentState` (a separate critic core, when there is one,
is stacked below the actor's layers on the layer axis, so every lifecycle operation covers both).

A policy may also be exportable (:class:`ExportablePolicy`, optional): ``export_step()`` hands out
one step as a plain ``nn.Module`` of tensors, the math of ``act`` without the bookkeeping, that
``torch.export`` / ``torch.onnx`` can take whole. Its contract:

- forward ``(obs tensors..., state tensors..., episode_start[, action mask]) -> (per action head:
  the deterministic action or the distribution parameters..., value, next state tensors...)``;
  its ``input_names`` / ``output_names`` name them in order;
- ``episode_start`` is bool ``[B]``; its rows of the state are zeroed inside the graph before the
  step (so a caller feeds the previous step's next state and the done flags, never resets itself);
- the state tensors are laid out as ``initial_state`` lays them out (``[L, B, H]`` each);
- observation encoding and normalisation happen inside the graph; no numpy, no Python objects,
  no branching on data;
- the outputs equal ``act(deterministic=True)`` / ``value`` (and the distributions
  ``evaluate_actions`` scores) on the same inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from tether.clock import EpisodeClock
from tether.state import RecurrentState

__all__ = ["ActResult", "EvalResult", "ExportablePolicy", "RecurrentPolicy"]


class ActResult(NamedTuple):
    """One inference step of a policy.

    Attributes:
        actions: ``[B, ...]``: int64 ``[B]`` for a Discrete space, int64 ``[B, n]`` for
            MultiDiscrete, float ``[B, d]`` for Box, float ``[B, A]`` (factors concatenated) for a
            Dict / Tuple of those. ``policy.env_actions(actions)`` turns it into what the env takes.
        log_prob: ``[B]``, summed over factors.
        value: ``[B]``: ``V(obs_t)``.
        state: the state valid for the next tick.
    """

    actions: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    state: RecurrentState


class EvalResult(NamedTuple):
    """A sequence evaluation: per step log-prob, entropy and value, ``[T, B]`` each.

    Attributes:
        state: the final state, only when ``return_state=True`` was asked (else ``None``).
    """

    log_prob: torch.Tensor
    entropy: torch.Tensor
    value: torch.Tensor
    state: RecurrentState | None


@runtime_checkable
class RecurrentPolicy(Protocol):
    """What the collector and trainer need of a recurrent policy."""

    def initial_state(self, batch_size: int, clock: EpisodeClock | None = None) -> RecurrentState:
        """A zero state for ``batch_size`` rows, checked against ``clock``."""
        ...

    def act(
        self,
        obs: torch.Tensor,
        state: RecurrentState,
        masks: Any = None,
        deterministic: bool = False,
    ) -> ActResult:
        """One step without autograd graph: ``obs [B, ...]`` -> actions, log-prob, value, state."""
        ...

    def value(self, obs: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        """``V(obs) [B]`` from ``state``; ``bootstrap=True`` is the truncation read of ending rows."""
        ...

    def env_actions(self, actions: torch.Tensor) -> Any:
        """Turn ``act``'s actions into what the (vector) env's ``step`` takes (numpy / dict / tuple)."""
        ...

    def evaluate_actions(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        episode_starts: Any,
        initial_state: RecurrentState,
        masks: Any = None,
        return_state: bool = False,
    ) -> EvalResult:
        """Log-prob, entropy and value of ``actions [T, B, ...]`` along ``obs [T, B, ...]``."""
        ...


@runtime_checkable
class ExportablePolicy(RecurrentPolicy, Protocol):
    """A recurrent policy that can hand out its step as a plain module (optional; see the module doc)."""

    def export_step(self, *, deterministic: bool = True) -> nn.Module:
        """One policy step as an ``nn.Module`` of tensors, with the episode reset inside the graph."""
        ...
