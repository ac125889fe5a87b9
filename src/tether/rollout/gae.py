"""Generalised advantage estimation that tells termination from truncation.

A terminated episode has no future: its last step bootstraps from 0. A truncated one was cut by a
time limit: its last step bootstraps from ``V(final_obs)``, computed from the ending episode's own
(pre-reset) state and passed in as ``bootstrap_values``. Either way nothing flows back across the
boundary, and next-step autoreset steps (``valid=False``) carry no advantage at all.
"""

from __future__ import annotations

import torch

__all__ = ["compute_gae"]


def _check(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"compute_gae: expected {name} shaped {list(shape)}, got {list(tensor.shape)}")


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    last_value: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(γ, λ) over a rollout, bootstrapping truncated episodes and not terminated ones.

    For each step ``t`` (row by row)::

        next_value = 0                     if terminated[t]
                   = bootstrap_values[t]   elif truncated[t]
                   = values[t + 1]         otherwise (last_value after the last step)
        delta[t]   = rewards[t] + γ · next_value − values[t]
        adv[t]     = delta[t] + γλ · adv[t + 1] · (not done[t])
        adv[t]     = 0 where not valid[t];   returns = adv + values (0 where not valid)

    Args:
        rewards: float ``[T, B]``.
        values: ``V(obs_t)`` float ``[T, B]``.
        terminated: bool ``[T, B]``: the episode ended at step ``t`` by termination.
        truncated: bool ``[T, B]``: it ended by truncation (time limit).
        bootstrap_values: float ``[T, B]``: ``V(final_obs)`` from the pre-reset state where
            ``truncated`` (ignored elsewhere).
        last_value: float ``[B]``: ``V(obs_T)``, the value of the observation after the last step.
        valid: bool ``[T, B]``: False at next-step autoreset steps; all valid when ``None``.
        gamma: discount γ in ``[0, 1]``.
        gae_lambda: GAE λ in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, float ``[T, B]`` each (not normalised: that is the trainer's).

    Raises:
        ValueError: for mismatched shapes or γ / λ outside ``[0, 1]``.

    Example:
        >>> r = torch.tensor([[1.0], [1.0]])
        >>> no = torch.zeros(2, 1, dtype=torch.bool)
        >>> adv, ret = compute_gae(r, torch.zeros(2, 1), no, torch.tensor([[False], [True]]),
        ...                        torch.tensor([[0.0], [10.0]]), torch.zeros(1), gamma=0.5, gae_lambda=1.0)
        >>> ret.flatten().tolist()
        [4.0, 6.0]
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= gae_lambda <= 1.0):
        raise ValueError(f"compute_gae: expected gamma and gae_lambda in [0, 1], got gamma={gamma},"
                         f" gae_lambda={gae_lambda}")
    if rewards.dim() != 2:
        raise ValueError(f"compute_gae: expected rewards shaped [T, B], got {list(rewards.shape)}")
    T, B = rewards.shape
    for name, tensor in (("values", values), ("terminated", terminated), ("truncated", truncated),
                         ("bootstrap_values", bootstrap_values)):
        _check(name, tensor, (T, B))
    _check("last_value", last_value, (B,))
    if valid is None:
        valid = torch.ones(T, B, dtype=torch.bool, device=rewards.device)
    _check("valid", valid, (T, B))
    terminated, truncated, valid = terminated.bool(), truncated.bool(), valid.bool()
    values = values.to(rewards.dtype)
    # Signpost: next_values[t] is what step t bootstraps from; a done step never reads step t+1.
    following = torch.cat([values[1:], last_value.to(rewards.dtype).view(1, B)], dim=0)
    next_values = torch.where(truncated, bootstrap_values.to(rewards.dtype), following)
    next_values = torch.where(terminated, torch.zeros_like(next_values), next_values)
    deltas = rewards + gamma * next_values - values
    carry_on = (~(terminated | truncated)).to(rewards.dtype) * (gamma * gae_lambda)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in range(T - 1, -1, -1):
        running = deltas[t] + carry_on[t] * running
        running = torch.where(valid[t], running, torch.zeros_like(running))
        advantages[t] = running
    returns = torch.where(valid, advantages + values, torch.zeros_like(values))
    return advantages, returns
