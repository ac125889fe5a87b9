"""Pure-tensor action distributions: masked categorical and diagonal Gaussian.

Plain functions of tensors (no ``torch.distributions`` objects, no host synchronisation), so they
trace into one graph under ``torch.compile(fullgraph=True)``. Masked logits take the dtype's most
negative *finite* value rather than ``-inf`` and log-probabilities are clamped to it, so log-probs,
entropies and their gradients stay finite in float16 / bfloat16 too.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "categorical_entropy",
    "categorical_log_prob",
    "categorical_sample",
    "gaussian_entropy",
    "gaussian_log_prob",
    "gaussian_sample",
    "masked_logits",
    "normalized_log_probs",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Replace the logits of disallowed actions by the dtype's minimum (finite, never ``-inf``).

    Args:
        logits: ``[..., n]``.
        mask: bool ``[..., n]``, True where the action is allowed; ``None`` keeps every action.

    Returns:
        ``[..., n]`` logits of the same dtype.

    >>> masked_logits(torch.zeros(1, 3), torch.tensor([[True, False, True]]))[0, 1].item() < -1e38
    True
    """
    if mask is None:
        return logits
    floor = torch.finfo(logits.dtype).min
    return torch.where(mask, logits, torch.full((), floor, dtype=logits.dtype, device=logits.device))


def normalized_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last dim, clamped to the dtype's minimum so it is never ``-inf``.

    A masked action's probability underflows to exactly zero; without the clamp its log would be
    ``-inf`` in float16 and ``0 * -inf`` would turn the entropy (and its gradient) into NaN.
    """
    return torch.log_softmax(logits, dim=-1).clamp(min=torch.finfo(logits.dtype).min)


def categorical_log_prob(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``actions`` (int64 ``[...]``) under normalised ``log_probs [..., n]``."""
    return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def categorical_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy ``[...]`` of normalised (clamped) ``log_probs [..., n]``."""
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def categorical_sample(logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """Draw int64 actions ``[...]`` from ``logits [..., n]`` (the mode when ``deterministic``).

    Sampling is the Gumbel-max trick in float32: ``argmax(logits + Gumbel noise)``. A masked logit
    sits at the dtype's minimum, far below any noise, so a masked action is never drawn while any
    action of the row is allowed.
    """
    if deterministic:
        return logits.argmax(dim=-1)
    tiny = torch.finfo(torch.float32).tiny
    uniform = torch.rand(logits.shape, device=logits.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - 1e-7)))
    return (logits.float() + gumbel).argmax(dim=-1)


def gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """Draw ``[..., d]`` from ``N(mean, exp(log_std)^2)`` per dim (``mean`` when deterministic)."""
    if deterministic:
        return mean
    return mean + log_std.exp() * torch.randn_like(mean)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-density ``[...]`` of ``actions [..., d]`` under the diagonal Gaussian, summed over ``d``."""
    z = (actions.to(mean.dtype) - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - _HALF_LOG_2PI).sum(dim=-1)


def gaussian_entropy(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Entropy ``[...]`` of the diagonal Gaussian (it depends on ``log_std`` only)."""
    per_dim = (0.5 + _HALF_LOG_2PI + log_std).sum(dim=-1)
    return per_dim.expand(mean.shape[:-1])
