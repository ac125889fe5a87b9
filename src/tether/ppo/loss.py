"""The PPO-clip loss as a pure function of tensors: no trainer, no side effects.

Every mean is over the real steps of a minibatch only (``loss_mask``: padding and next-step
autoreset steps count for nothing), so a chunk that is half padding weighs as its real steps do.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["PPOLoss", "ppo_loss"]


class PPOLoss(NamedTuple):
    """The parts of one minibatch's loss; ``loss`` carries the graph, the rest are detached.

    Attributes:
        loss: ``policy_loss + vf_coef * value_loss - ent_coef * entropy``, to backpropagate.
        policy_loss: the clipped surrogate, negated (lower is better).
        value_loss: mean squared error of the value (clipped when ``clip_range_vf`` is set).
        entropy: mean entropy of the policy.
        approx_kl: ``mean((ratio - 1) - log ratio)``, the low-variance KL estimate.
        clip_fraction: share of steps whose ratio left ``[1 - clip_range, 1 + clip_range]``.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_loss(
    *,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    loss_mask: torch.Tensor,
    clip_range: float,
    clip_range_vf: float | None = None,
    vf_coef: float = 0.5,
    ent_coef: float = 0.0,
    normalize_advantage: bool = True,
) -> PPOLoss:
    """Compute the PPO-clip loss of one minibatch.

    Args:
        log_probs / values / entropy: what the current weights give on the minibatch ``[T, B]``.
        old_log_probs / old_values: what the rollout stored ``[T, B]``.
        advantages / returns: GAE advantages and returns ``[T, B]``.
        loss_mask: bool ``[T, B]``: the steps that count.
        clip_range: the policy ratio's clip range.
        clip_range_vf: clip the value's change to this range (``None``: no value clipping).
        vf_coef / ent_coef: weights of the value loss and the entropy bonus.
        normalize_advantage: centre and scale the advantages over the counted steps.

    Returns:
        A :class:`PPOLoss`.

    Shapes:
        every tensor argument ``[T, B]`` (any one shape, the same for all); results are scalars.

    Example:
        >>> z = torch.zeros(2, 1)
        >>> out = ppo_loss(log_probs=z, old_log_probs=z, advantages=torch.tensor([[1.0], [-1.0]]),
        ...                values=z, old_values=z, returns=torch.ones(2, 1), entropy=z,
        ...                loss_mask=torch.ones(2, 1, dtype=torch.bool), clip_range=0.2)
        >>> float(out.policy_loss), float(out.value_loss), float(out.loss)
        (0.0, 1.0, 0.5)
    """
    mask = loss_mask.to(log_probs.dtype)
    count = mask.sum().clamp(min=1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * mask).sum() / count

    adv = advantages
    if normalize_advantage:
        centred = adv - mean(adv)
        adv = centred / (mean(centred.pow(2)).sqrt() + 1e-8)
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    policy_loss = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip_range, 1 + clip_range)))
    if clip_range_vf is not None:
        clipped = old_values + (values - old_values).clamp(-clip_range_vf, clip_range_vf)
        value_loss = mean(torch.max((values - returns).pow(2), (clipped - returns).pow(2)))
    else:
        value_loss = mean((values - returns).pow(2))
    mean_entropy = mean(entropy)
    loss = policy_loss + vf_coef * value_loss - ent_coef * mean_entropy
    with torch.no_grad():
        approx_kl = mean((ratio - 1) - log_ratio)
        clip_fraction = mean(((ratio - 1).abs() > clip_range).to(mask.dtype))
    return PPOLoss(loss, policy_loss.detach(), value_loss.detach(), mean_entropy.detach(), approx_kl,
                   clip_fraction)
