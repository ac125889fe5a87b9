"""The Q-network's tensor stages: discrete action heads padded to one grid, and ε-greedy selection.

A Discrete(n) space is one head of ``n`` actions; a MultiDiscrete space is one independent head
per component (the ``nvec`` flattened in C order). Q-values live on one grid ``[..., K, N]``: ``K``
heads, ``N`` the most actions of any head. Slots a head does not have are ``-inf``
(:attr:`QHead.action_valid` is False there), so ``max`` / ``argmax`` over the last dim never pick
them. Everything here but :func:`discrete_layout` is a pure function of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tether.errors import ConfigError
from tether.nets.factors import ActionLayout
from tether.nets.heads import orthogonal_init

__all__ = ["QHead", "actor_epsilons", "discrete_layout", "epsilon_greedy"]


def discrete_layout(space: spaces.Space[Any]) -> ActionLayout:
    """The action layout of a Discrete or MultiDiscrete space; refuse every other space.

    Raises:
        ConfigError: (a ``ValueError``) naming the space, for anything but Discrete / MultiDiscrete.
    """
    if not isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        raise ConfigError(
            f"RecurrentQNetwork: R2D2 takes discrete actions: expected a Discrete or MultiDiscrete"
            f" action space, got {space!r}; discretise the actions (e.g. a Discrete over chosen"
            " values) or train this task with PPO")
    return ActionLayout(space)


class QHead(nn.Module):
    """Q-values ``[N, K, A]`` of core outputs ``[N, H]``; dueling optional.

    Plain: one linear layer gives every ``Q(s, k, a)``. Dueling: a value stream ``V(s)`` (one per
    row, shared by the heads) and an advantage stream, ``Q = V + A - mean(A)`` with the mean over
    each head's own actions. Both layers orthogonal with gain 1, biases 0.

    Args:
        in_features: ``H`` of the core.
        sizes: actions per head (``(n,)`` for Discrete, the flattened ``nvec`` for MultiDiscrete).
        dueling: add the value stream.

    Attributes:
        action_valid: bool ``[K, A]``, False on the padding slots (a non-persistent buffer).
        mask_slots: int64 ``[D]``: where each column of a concatenated action mask ``[..., D]``
            (``D = sum(sizes)``) lands on the flattened grid ``K * A``.

    >>> head = QHead(8, (3, 2), dueling=True)
    >>> q = head(torch.randn(5, 8))
    >>> q.shape, bool(torch.isinf(q[:, 1, 2]).all())
    (torch.Size([5, 2, 3]), True)
    """

    action_valid: torch.Tensor
    mask_slots: torch.Tensor

    def __init__(self, in_features: int, sizes: Sequence[int], dueling: bool) -> None:
        super().__init__()
        self.sizes = tuple(int(n) for n in sizes)
        self.num_heads, self.num_actions = len(self.sizes), max(self.sizes)
        grid = np.arange(self.num_actions)[None, :] < np.asarray(self.sizes)[:, None]  # [K, A]
        self.register_buffer("action_valid", torch.from_numpy(grid), persistent=False)
        slots = np.flatnonzero(grid.reshape(-1))  # row-major: head k's actions in order, as masks list them
        self.register_buffer("mask_slots", torch.from_numpy(slots).long(), persistent=False)
        self.dueling = bool(dueling)
        self.linear = orthogonal_init(nn.Linear(in_features, self.num_heads * self.num_actions), 1.0)
        self.value = orthogonal_init(nn.Linear(in_features, 1), 1.0) if self.dueling else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``Q [N, K, A]`` of ``features [N, H]``, ``-inf`` on the padding slots."""
        out = self.linear(features).reshape(*features.shape[:-1], self.num_heads, self.num_actions)
        valid = self.action_valid
        if self.value is not None:
            kept = torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))
            mean = kept.sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).to(out.dtype)
            out = self.value(features).unsqueeze(-1) + out - mean
        q: torch.Tensor = out.masked_fill(~valid, float("-inf"))
        return q

    def allowed(self, masks: torch.Tensor | None, lead: Sequence[int]) -> torch.Tensor:
        """The allowed slots bool ``[*lead, K, A]``: :attr:`action_valid` and the masks' True columns.

        Args:
            masks: bool ``[*lead, D]``, the heads' columns concatenated, or ``None`` (all allowed).
            lead: the leading dims.
        """
        valid = self.action_valid.expand(*lead, self.num_heads, self.num_actions)
        if masks is None:
            return valid
        grid = torch.zeros((*lead, self.num_heads * self.num_actions), dtype=torch.bool, device=masks.device)
        grid[..., self.mask_slots] = masks
        return grid.reshape(*lead, self.num_heads, self.num_actions)


def epsilon_greedy(
    q: torch.Tensor, allowed: torch.Tensor, epsilon: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose actions ε-greedily per head, with their log-probability and the greedy value.

    Each head of row ``b`` explores independently with probability ``epsilon[b]``: it then takes
    one of its allowed actions uniformly, else the allowed action of highest Q (the first one on a
    tie). The probability of the chosen action ``a_k`` is ``(1 - ε) [a_k = greedy_k] + ε / n_k``
    (``n_k`` the allowed actions of head ``k``), and ``log_prob`` sums its log over the heads.
    ``epsilon=None`` is greedy (ε = 0, log-prob 0) and draws nothing. Otherwise two draws of
    torch's global generator on ``q``'s device, ``[N, K]`` then ``[N, K, A]``, whatever ε is.

    Args:
        q: ``[N, K, A]``.
        allowed: bool ``[N, K, A]``; every head of every row allows at least one action.
        epsilon: ``[N]`` or ``[1]`` in ``[0, 1]``, or ``None``.

    Returns:
        ``(actions int64 [N, K], log_prob [N], value [N])``: ``value`` is the highest allowed Q
        per head, averaged over the heads.

    >>> q = torch.tensor([[[1.0, 3.0, float("-inf")]]])
    >>> actions, log_prob, value = epsilon_greedy(q, torch.isfinite(q), None)
    >>> actions.tolist(), log_prob.tolist(), value.tolist()
    ([[1]], [0.0], [3.0])
    """
    masked = q.masked_fill(~allowed, float("-inf"))
    best, greedy = masked.max(-1)
    value = best.mean(-1)
    if epsilon is None:
        return greedy, torch.zeros_like(value), value
    eps = epsilon.to(q.dtype).unsqueeze(-1)  # [N, 1] (or [1, 1]): one ε per row, for every head
    explore = torch.rand(greedy.shape, device=q.device) < eps
    # Uniform among the allowed actions: the argmax of iid uniforms over them (-1 elsewhere).
    noise = torch.rand(q.shape, device=q.device).masked_fill(~allowed, -1.0)
    actions = torch.where(explore, noise.argmax(-1), greedy)
    n_allowed = allowed.sum(-1).to(q.dtype)
    prob = eps / n_allowed + (1.0 - eps) * (actions == greedy).to(q.dtype)
    return actions, torch.log(prob).sum(-1), value


def actor_epsilons(num_envs: int, base: float = 0.4, alpha: float = 7.0) -> torch.Tensor:
    """The Ape-X / R2D2 per-actor exploration rates ``ε_i = base ** (1 + alpha * i / (E - 1))``.

    Actor 0 explores most (``base``), actor ``E - 1`` least (``base ** (1 + alpha)``); one actor
    gets ``base``. Pass the result to :meth:`RecurrentQNetwork.set_epsilon
    <tether.nets.RecurrentQNetwork.set_epsilon>` (one env row per actor).

    Raises:
        ConfigError: for ``num_envs < 1``, ``base`` outside ``[0, 1]`` or ``alpha < 0``.

    >>> [round(e, 4) for e in actor_epsilons(3).tolist()]
    [0.4, 0.0162, 0.0007]
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"actor_epsilons: expected num_envs to be an int >= 1, got {num_envs!r}")
    if not 0.0 <= base <= 1.0 or not alpha >= 0.0:
        raise ConfigError(f"actor_epsilons: expected base in [0, 1] and alpha >= 0, got base={base!r},"
                          f" alpha={alpha!r}")
    exponents = 1.0 + alpha * torch.arange(num_envs, dtype=torch.float64) / max(num_envs - 1, 1)
    return (float(base) ** exponents).float()
