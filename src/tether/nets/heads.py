"""Action heads: one small module per factor, and :class:`FactoredHeads` that runs them all.

Every ``forward`` here is a pure function of tensors (no host synchronisation, no lifecycle
bookkeeping), so the heads compile with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch
from torch import nn

from tether.nets.distributions import (
    categorical_entropy,
    categorical_log_prob,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
    gaussian_sample,
    masked_logits,
    normalized_log_probs,
)
from tether.nets.factors import ActionFactor, ActionLayout

__all__ = ["CategoricalHead", "FactoredHeads", "GaussianHead", "orthogonal_init", "value_head"]

HeadOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# Float dtype floor of a Dict / Tuple action tensor: indices stay exact even for a bf16 model.
_MIN_ACTION_DTYPE = torch.float32


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain`` and a zero bias (the PPO convention); returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class CategoricalHead(nn.Module):
    """Logits for one Discrete head, or for the components of a MultiDiscrete head.

    Args:
        in_features: features of the core output.
        sizes: choices per component: ``(n,)`` for Discrete, the ``nvec`` for MultiDiscrete.
        multi: whether actions carry a component axis (``[N, k]``, MultiDiscrete) or not (``[N]``).
    """

    def __init__(self, in_features: int, sizes: tuple[int, ...], multi: bool) -> None:
        super().__init__()
        self.sizes = sizes
        self.multi = multi
        self.linear = orthogonal_init(nn.Linear(in_features, sum(sizes)), 0.01)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None, actions: torch.Tensor | None,
        deterministic: bool = False,
    ) -> HeadOutput:
        """Sample (``actions is None``) or score ``actions``.

        Shapes:
            features ``[N, in]``, mask bool ``[N, sum(sizes)]`` or ``None``, actions int64 ``[N]``
            (``[N, k]`` when ``multi``) -> (actions, log_prob ``[N]``, entropy ``[N]``).
        """
        logits = masked_logits(self.linear(features), mask)
        chosen, log_prob, entropy = [], [], []
        start = 0
        for i, n in enumerate(self.sizes):
            log_probs = normalized_log_probs(logits[:, start : start + n])
            if actions is None:
                action = categorical_sample(log_probs, deterministic)
            else:
                action = actions[:, i] if self.multi else actions
            chosen.append(action)
            log_prob.append(categorical_log_prob(log_probs, action))
            entropy.append(categorical_entropy(log_probs))
            start += n
        if not self.multi:
            return chosen[0], log_prob[0], entropy[0]
        return torch.stack(chosen, -1), torch.stack(log_prob, -1).sum(-1), torch.stack(entropy, -1).sum(-1)

    def sample(
        self, features: torch.Tensor, mask: torch.Tensor | None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample as :meth:`forward` does (the same draws), without the entropy ``act`` never reads.

        Shapes:
            features ``[N, in]``, mask bool ``[N, sum(sizes)]`` or ``None`` -> (actions, log_prob ``[N]``).
        """
        logits = masked_logits(self.linear(features), mask)
        if not self.multi:
            log_probs = normalized_log_probs(logits)
            action = categorical_sample(log_probs, deterministic)
            return action, categorical_log_prob(log_probs, action)
        chosen, log_prob = [], []
        start = 0
        for n in self.sizes:
            log_probs = normalized_log_probs(logits[:, start : start + n])
            chosen.append(categorical_sample(log_probs, deterministic))
            log_prob.append(categorical_log_prob(log_probs, chosen[-1]))
            start += n
        return torch.stack(chosen, -1), torch.stack(log_prob, -1).sum(-1)

    def distribution(self, features: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor]:
        """The distribution's parameters: normalised log-probabilities of every choice.

        Shapes:
            features ``[N, in]``, mask bool ``[N, sum(sizes)]`` or ``None`` -> (``[N, sum(sizes)]``:
            each component's ``log_softmax`` of its masked logits, components concatenated).
        """
        logits = masked_logits(self.linear(features), mask)
        if not self.multi:
            return (normalized_log_probs(logits),)
        parts = torch.split(logits, list(self.sizes), dim=-1)
        return (torch.cat([normalized_log_probs(part) for part in parts], dim=-1),)


class GaussianHead(nn.Module):
    """A diagonal Gaussian over a Box factor: state-dependent mean, learnable state-independent log-std.

    Actions are not squashed; the env-side conversion clips them to the Box bounds.

    Args:
        in_features: features of the core output.
        dim: action dimensions ``d`` (the Box flattened).
        log_std_init: initial log standard deviation of every dimension.
    """

    def __init__(self, in_features: int, dim: int, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.linear = orthogonal_init(nn.Linear(in_features, dim), 0.01)
        self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None, actions: torch.Tensor | None,
        deterministic: bool = False,
    ) -> HeadOutput:
        """Sample (``actions is None``) or score ``actions``; ``mask`` must be ``None``.

        Shapes:
            features ``[N, in]``, actions float ``[N, d]`` -> (actions, log_prob ``[N]``, entropy ``[N]``).
        """
        del mask  # a Box head is never masked; normalize_masks rejects masks for it
        mean = self.linear(features)
        log_std = self.log_std.to(mean.dtype)
        action = gaussian_sample(mean, log_std, deterministic) if actions is None else actions
        return action, gaussian_log_prob(mean, log_std, action), gaussian_entropy(mean, log_std)

    def sample(
        self, features: torch.Tensor, mask: torch.Tensor | None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample as :meth:`forward` does (the same draws), without the entropy."""
        del mask
        mean = self.linear(features)
        log_std = self.log_std.to(mean.dtype)
        action = gaussian_sample(mean, log_std, deterministic)
        return action, gaussian_log_prob(mean, log_std, action)

    def distribution(
        self, features: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The distribution's parameters ``(mean [N, d], log_std [N, d])`` (the log-std per row)."""
        del mask
        mean = self.linear(features)
        return mean, self.log_std.to(mean.dtype).expand_as(mean)


class FactoredHeads(nn.Module):
    """One head per action factor; log-probs and entropies summed over factors.

    Args:
        layout: the action layout (see :class:`~tether.nets.factors.ActionLayout`).
        in_features: features of the core output.
        log_std_init: initial log-std of the Gaussian heads.

    >>> from gymnasium import spaces
    >>> heads = FactoredHeads(ActionLayout(spaces.Tuple((spaces.Discrete(3), spaces.Box(-1, 1, (2,))))), 8)
    >>> actions, log_prob, entropy = heads(torch.zeros(4, 8))
    >>> actions.shape, log_prob.shape, entropy.shape
    (torch.Size([4, 3]), torch.Size([4]), torch.Size([4]))
    """

    def __init__(self, layout: ActionLayout, in_features: int, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.layout = layout
        self.heads = nn.ModuleList(_make_head(f, in_features, log_std_init) for f in layout.factors)

    def forward(
        self,
        features: torch.Tensor,
        masks: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> HeadOutput:
        """Sample actions (``actions is None``) or score the given ones; a pure tensor function.

        Args:
            features: core output ``[N, H]``.
            masks: bool ``[N, D]`` (discrete heads concatenated) or ``None``.
            actions: ``[N, *action_shape]`` to score, or ``None`` to sample.
            deterministic: take each head's mode instead of sampling.

        Returns:
            ``(actions [N, *action_shape], log_prob [N], entropy [N])``.
        """
        parts = None if actions is None else self.layout.split(actions)
        chosen, log_prob, entropy = [], [], []
        for i, (factor, head) in enumerate(zip(self.layout.factors, self.heads, strict=True)):
            mask = None
            if masks is not None and factor.is_discrete:
                mask = masks[:, factor.mask_offset : factor.mask_offset + factor.mask_size]
            action, lp, ent = head(features, mask, None if parts is None else parts[i], deterministic)
            chosen.append(action)
            log_prob.append(lp)
            entropy.append(ent)
        dtype = torch.promote_types(features.dtype, _MIN_ACTION_DTYPE)
        total_lp = log_prob[0] if len(log_prob) == 1 else torch.stack(log_prob, -1).sum(-1)
        total_ent = entropy[0] if len(entropy) == 1 else torch.stack(entropy, -1).sum(-1)
        return self.layout.join(chosen, dtype), total_lp, total_ent


    def sample(
        self, features: torch.Tensor, masks: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions as :meth:`forward` does (the same draws in the same order), without the
        entropies: the one-step path of ``act``.

        Returns:
            ``(actions [N, *action_shape], log_prob [N])``.
        """
        heads, dtype = self.heads, torch.promote_types(features.dtype, _MIN_ACTION_DTYPE)
        if len(heads) == 1:  # one factor: no per-factor slicing, stacking or joining
            factor = self.layout.factors[0]
            mask = masks if factor.is_discrete else None
            action, log_prob = heads[0].sample(features, mask, deterministic)  # type: ignore[operator]
            return self.layout.join([action], dtype), log_prob
        chosen, log_probs = [], []
        for factor, head in zip(self.layout.factors, heads, strict=True):
            mask = None
            if masks is not None and factor.is_discrete:
                mask = masks[:, factor.mask_offset : factor.mask_offset + factor.mask_size]
            action, lp = head.sample(features, mask, deterministic)  # type: ignore[operator]
            chosen.append(action)
            log_probs.append(lp)
        return self.layout.join(chosen, dtype), torch.stack(log_probs, -1).sum(-1)


    def head_masks(self, masks: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Each head's columns of ``masks [N, D]`` (``None`` for a Box head or without masks)."""
        return [None if masks is None or not f.is_discrete
                else masks[:, f.mask_offset : f.mask_offset + f.mask_size] for f in self.layout.factors]

    def modes(self, features: torch.Tensor, masks: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each head's deterministic action, as ``sample(..., deterministic=True)`` takes it.

        Returns:
            per head: int64 ``[N]`` (Discrete), int64 ``[N, k]`` (MultiDiscrete), float ``[N, d]`` (Box).
        """
        return [head.sample(features, mask, True)[0]  # type: ignore[operator]
                for head, mask in zip(self.heads, self.head_masks(masks), strict=True)]

    def distributions(
        self, features: torch.Tensor, masks: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, ...]]:
        """Each head's distribution parameters (see the heads' ``distribution``)."""
        return [head.distribution(features, mask)  # type: ignore[operator]
                for head, mask in zip(self.heads, self.head_masks(masks), strict=True)]


def _make_head(factor: ActionFactor, in_features: int, log_std_init: float) -> nn.Module:
    if factor.kind == "box":
        return GaussianHead(in_features, factor.dim, log_std_init)
    return CategoricalHead(in_features, factor.sizes, multi=factor.kind == "multi_discrete")


def value_head(in_features: int) -> nn.Linear:
    """The critic's output layer ``[N, H] -> [N, 1]`` (orthogonal, gain 1)."""
    return orthogonal_init(nn.Linear(in_features, 1), 1.0)

