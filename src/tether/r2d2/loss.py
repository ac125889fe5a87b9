"""The R2D2 loss as pure functions of tensors: value rescaling, double Q, n-step targets, TD loss, priorities.

Nothing here knows of a network or a buffer; the trainer feeds in what the replay and the networks
give. Every tensor is time-major ``[T, B, ...]`` with K action heads (1 for Discrete) and the
conventions of :mod:`tether.rollout`: ``valid`` is False at the step that follows a done step under
gymnasium's NEXT_STEP autoreset (the env ignored the action there), and ``mask`` is False on the
padding at the end of a sequence cut shorter than the stored length.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from tether.errors import ConfigError

__all__ = [
    "PRIORITY_FLOOR",
    "NStepTargets",
    "TDLoss",
    "double_q_values",
    "n_step_targets",
    "sequence_priorities",
    "td_loss",
    "value_rescale",
    "value_rescale_inverse",
]

#: The least priority a sequence gets back, so one whose TD errors are all 0 (or that had no trained
#: step with a target) can still be sampled after its priority is updated.
PRIORITY_FLOOR = 1e-6


class NStepTargets(NamedTuple):
    """The n-step targets of a batch of sequences.

    Attributes:
        targets: ``[T, B, K]`` the target of each step and head (0 where there is none).
        target_mask: bool ``[T, B]``: the steps that have a target.
    """

    targets: torch.Tensor
    target_mask: torch.Tensor


class TDLoss(NamedTuple):
    """The TD loss of a batch; ``loss`` carries the graph, the rest are detached.

    Attributes:
        loss: the importance-weighted mean of ``0.5 * delta ** 2``, to backpropagate.
        td_abs: ``[T, B]`` mean ``|delta|`` over the heads, 0 at the steps not counted.
        q_mean: mean of ``q_taken`` over the counted steps and heads (0 when none is counted).
        count: int64 scalar tensor, the number of counted steps.
    """

    loss: torch.Tensor
    td_abs: torch.Tensor
    q_mean: torch.Tensor
    count: torch.Tensor  # type: ignore[assignment]  # the agreed field name; shadows tuple.count


def _check_eps(eps: float, where: str) -> None:
    if not eps >= 0:
        raise ConfigError(f"{where}: expected eps >= 0, got {eps}; the paper uses eps=1e-3")


def value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Squash values with the R2D2 rescaling ``h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x``.

    ``sqrt(|x| + 1) - 1`` is computed as ``|x| / (sqrt(|x| + 1) + 1)``, which keeps full precision
    near 0.

    Args:
        x: any tensor of values.
        eps: the linear term that keeps ``h`` invertible and Lipschitz (``>= 0``).

    Returns:
        ``h(x)``, the shape and dtype of ``x``.

    Raises:
        ConfigError: ``eps`` is negative (or NaN).

    Example:
        >>> value_rescale(torch.tensor([0.0, 3.0, -8.0]), eps=0.0).tolist()
        [0.0, 1.0, -2.0]
    """
    _check_eps(eps, "value_rescale")
    magnitude = x.abs()
    return torch.sign(x) * (magnitude / (torch.sqrt(magnitude + 1) + 1)) + eps * x


def value_rescale_inverse(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Undo :func:`value_rescale` exactly, in closed form.

    With ``s = sqrt(1 + 4 eps (|y| + 1 + eps))`` and ``u = (s - 1) / (2 eps)``, the inverse is
    ``sign(y) * (u ** 2 - 1)``; it is computed as ``sign(y) * (u - 1) * (u + 1)`` with
    ``u - 1 = 2 |y| / (s + 1 + 2 eps)``, which keeps full precision near 0 and holds for ``eps = 0``.

    Args:
        x: any tensor of rescaled values.
        eps: the ``eps`` the values were rescaled with (``>= 0``).

    Returns:
        ``h^{-1}(x)``, the shape and dtype of ``x``.

    Raises:
        ConfigError: ``eps`` is negative (or NaN).

    Example:
        >>> value_rescale_inverse(torch.tensor([0.0, 1.0, -2.0]), eps=0.0).tolist()
        [0.0, 3.0, -8.0]
    """
    _check_eps(eps, "value_rescale_inverse")
    magnitude = x.abs()
    s = torch.sqrt(1 + 4 * eps * (magnitude + 1 + eps))
    u_minus_1 = 2 * magnitude / (s + 1 + 2 * eps)
    return torch.sign(x) * u_minus_1 * (u_minus_1 + 2)


def double_q_values(q_online: torch.Tensor, q_target: torch.Tensor) -> torch.Tensor:
    """Read the target network's Q at the online network's greedy action, per head (double Q).

    The argmax skips the ``-inf`` slots (actions a head does not have, or masked ones) and breaks
    ties by the first index; a head whose online slots are all ``-inf`` reads its slot 0.

    Args:
        q_online: ``[T, B, K, N]`` the online network's Q values.
        q_target: ``[T, B, K, N]`` the target network's Q values.

    Returns:
        ``[T, B, K]`` ``q_target[..., argmax(q_online)]``.

    Raises:
        ValueError: the shapes differ or are not 4-D.

    Example:
        >>> inf = float("inf")
        >>> online = torch.tensor([[[[1.0, 3.0, 3.0], [2.0, 1.0, -inf]]]])
        >>> target = torch.tensor([[[[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]]])
        >>> double_q_values(online, target).tolist()
        [[[20.0, 40.0]]]
    """
    if q_online.dim() != 4 or q_online.shape != q_target.shape:
        raise ValueError(f"double_q_values: expected q_online and q_target of one shape [T, B, K, N], got "
                         f"{tuple(q_online.shape)} and {tuple(q_target.shape)}")
    greedy = q_online.argmax(dim=-1, keepdim=True)
    return q_target.gather(-1, greedy).squeeze(-1)


def _check_targets_input(rewards: torch.Tensor, flags: dict[str, torch.Tensor],
                         values: dict[str, torch.Tensor], gamma: float, n: int) -> None:
    where = "n_step_targets"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{where}: expected n to be an int >= 1, got {n!r}; n=1 gives one-step targets")
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"{where}: expected gamma in [0, 1], got {gamma}")
    if rewards.dim() != 2:
        raise ValueError(f"{where}: expected rewards of shape [T, B], got {tuple(rewards.shape)}")
    for name, flag in flags.items():
        if flag.shape != rewards.shape:
            raise ValueError(f"{where}: expected {name} of shape [T, B] = {tuple(rewards.shape)} like"
                             f" rewards, got {tuple(flag.shape)}")
        if flag.dtype != torch.bool:
            raise ValueError(f"{where}: expected {name} to be a bool tensor, got {flag.dtype}; pass x.bool()")
    for name, value in values.items():
        if value.dim() != 3 or value.shape[:2] != rewards.shape:
            raise ValueError(f"{where}: expected {name} of shape [T, B, K] with [T, B] ="
                             f" {tuple(rewards.shape)} like rewards, got {tuple(value.shape)}")
    boot, cut = values["bootstrap"], values["truncation_bootstrap"]
    if boot.shape != cut.shape:
        raise ValueError(f"{where}: expected bootstrap and truncation_bootstrap of one shape, got "
                         f"{tuple(boot.shape)} and {tuple(cut.shape)}")


def _padded(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` with ``n`` zero (False) steps appended along T, so shifted views need no bounds checks."""
    return torch.cat([x, x.new_zeros((n, *x.shape[1:]))])


def n_step_targets(
    *,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    mask: torch.Tensor,
    bootstrap: torch.Tensor,
    truncation_bootstrap: torch.Tensor,
    gamma: float,
    n: int,
    rescale: bool,
    eps: float = 1e-3,
) -> NStepTargets:
    """Compute the n-step double-Q targets of a batch of sequences, stopping at episode ends.

    A step ``t`` that is valid and in the mask starts a window of ``m <= n`` rewards,
    ``G = sum_{k<m} gamma^k r_{t+k}``, which ends at the first of:

    - a done step ``d`` (terminated or truncated), inclusive (``m = d - t + 1``): terminated adds
      nothing (it wins when both flags are set); truncated adds ``gamma^m * truncation_bootstrap[d]``
      (the value of the ended episode's final observation);
    - ``n`` rewards, or the run's last step ``last`` (``m = min(n, last - t)``): adds
      ``gamma^m * bootstrap[t + m]``. ``t = last`` without a done (``m = 0``) has no target.

    ``last`` is the sequence's last step that is in the mask; ``mask`` is expected to be a prefix
    (padding at the end). Invalid steps and steps out of the mask have no target and never join a
    window: under NEXT_STEP autoreset an invalid step only follows a done step, which ends the
    window first. Should one appear without a done before it, or the mask have a hole, the window
    treats it as the end of the sequence (bootstrapping at the step before it).

    With ``rescale``, bootstraps go through :func:`value_rescale_inverse` and each target through
    :func:`value_rescale`: ``h(G + gamma^m h^{-1}(q))``. The work loops over the ``n`` offsets and is
    vectorised over T, B and K.

    Args:
        rewards: ``[T, B]`` float rewards.
        terminated / truncated / valid / mask: ``[T, B]`` bool flags (see above).
        bootstrap: ``[T, B, K]`` the double-Q value of each step's state (:func:`double_q_values`).
        truncation_bootstrap: ``[T, B, K]`` the double-Q value of the final observation of an
            episode truncated at that step; read only where ``truncated``.
        gamma: the discount, in ``[0, 1]``.
        n: the most rewards in a window (``>= 1``).
        rescale: apply value rescaling with ``eps``.
        eps: the rescaling's linear term.

    Returns:
        :class:`NStepTargets`: targets ``[T, B, K]`` (0 where there is none) and ``target_mask [T, B]``.

    Raises:
        ValueError: the shapes do not match (the message names both), or a flag is not bool.
        ConfigError: ``n < 1``, ``gamma`` outside ``[0, 1]`` or ``eps < 0`` (a ``ValueError`` too).

    Example:
        Rewards 1, a truncation at step 1 (final obs worth 4), the NEXT_STEP invalid step 2, then a
        new episode whose step 3 bootstraps from step 4, the last (worth 10):

        >>> T, K = 5, 1
        >>> flag = lambda *steps: torch.tensor([[t in steps] for t in range(T)])
        >>> out = n_step_targets(rewards=torch.ones(T, 1), terminated=flag(), truncated=flag(1),
        ...                      valid=~flag(2), mask=flag(0, 1, 2, 3, 4),
        ...                      bootstrap=torch.full((T, 1, K), 10.0),
        ...                      truncation_bootstrap=torch.full((T, 1, K), 4.0),
        ...                      gamma=0.5, n=2, rescale=False)
        >>> out.targets[:, 0, 0].tolist(), out.target_mask[:, 0].tolist()
        ([2.5, 3.0, 0.0, 6.0, 0.0], [True, True, False, True, False])
    """
    _check_targets_input(rewards, {"terminated": terminated, "truncated": truncated, "valid": valid,
                                   "mask": mask},
                         {"bootstrap": bootstrap, "truncation_bootstrap": truncation_bootstrap}, gamma, n)
    T = rewards.shape[0]
    if rescale:
        bootstrap = value_rescale_inverse(bootstrap, eps)
        truncation_bootstrap = value_rescale_inverse(truncation_bootstrap, eps)
    usable = _padded(valid & mask, n).unsqueeze(-1)  # [T + n, B, 1]
    done = _padded(terminated | truncated, n).unsqueeze(-1)
    # keep[s]: a window open at step s takes r_s (s is a done step, or s + 1 can be bootstrapped
    # from); otherwise its run ends at s and it bootstraps there. go_on[s]: it runs on to s + 1.
    keep = done[:-1] | usable[1:]
    go_on = usable[1:] & ~done[:-1]
    # What an episode's end adds at its done step, one discount already in: gamma * V(final obs) if
    # it was truncated, nothing if it terminated.
    cut = (truncated & ~terminated).unsqueeze(-1)
    end_value = torch.where(cut, gamma * truncation_bootstrap, 0.0)
    boot = _padded(bootstrap, n)
    # what step s adds to an open window, before the discount gamma^k
    contribution = torch.where(keep, _padded(rewards.unsqueeze(-1) + end_value, n)[:-1], boot[:-1])
    alive = usable[:T]  # alive[t]: the window of t is open at step t + k
    has_target = (alive & keep[:T]).squeeze(-1)  # t = last without a done: m = 0, no target
    returns = torch.where(alive, contribution[:T], 0.0)
    for k in range(1, n + 1):
        alive = alive & go_on[k - 1:k - 1 + T]
        # windows still open after n rewards bootstrap at t + n
        value = contribution[k:k + T] if k < n else boot[n:n + T]
        returns.add_(torch.where(alive, value, 0.0), alpha=gamma**k)
    if rescale:
        returns = value_rescale(returns, eps)
    return NStepTargets(torch.where(has_target.unsqueeze(-1), returns, 0.0), has_target)


def td_loss(
    *,
    q_taken: torch.Tensor,
    targets: torch.Tensor,
    target_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    weights: torch.Tensor,
) -> TDLoss:
    """Compute the importance-weighted TD loss ``mean(w_b * 0.5 * delta ** 2)`` of a batch.

    ``delta = targets - q_taken`` with the targets (and the weights) detached, so gradients reach
    ``q_taken`` only. The counted steps are ``loss_mask & target_mask``; the mean runs over them and
    the K heads, each step weighted by its sequence's weight (not renormalised by the weights' sum,
    as prioritised replay has it). With no counted step the loss is 0 (its gradient zeros).

    Args:
        q_taken: ``[T, B, K]`` the online Q of the taken actions.
        targets: ``[T, B, K]`` the n-step targets (:func:`n_step_targets`).
        target_mask: bool ``[T, B]``: the steps with a target.
        loss_mask: bool ``[T, B]``: the trained steps (after burn-in, in the mask).
        weights: ``[B]`` importance weights, one per sequence (ones when uniform).

    Returns:
        :class:`TDLoss`.

    Raises:
        ValueError: the shapes do not match (the message names both), or a mask is not bool.

    Example:
        >>> q = torch.tensor([[[1.0]], [[2.0]]], requires_grad=True)
        >>> counted = torch.tensor([[True], [False]])
        >>> out = td_loss(q_taken=q, targets=torch.full((2, 1, 1), 3.0), target_mask=counted,
        ...               loss_mask=torch.ones(2, 1, dtype=torch.bool), weights=torch.tensor([0.5]))
        >>> out.loss.item(), out.td_abs[:, 0].tolist(), out.q_mean.item(), out.count.item()
        (1.0, [2.0, 0.0], 1.0, 1)
    """
    where = "td_loss"
    if q_taken.dim() != 3 or targets.shape != q_taken.shape:
        raise ValueError(f"{where}: expected q_taken and targets of one shape [T, B, K], got "
                         f"{tuple(q_taken.shape)} and {tuple(targets.shape)}")
    for name, flags in (("target_mask", target_mask), ("loss_mask", loss_mask)):
        if flags.shape != q_taken.shape[:2] or flags.dtype != torch.bool:
            raise ValueError(f"{where}: expected {name} a bool tensor of shape [T, B] ="
                             f" {tuple(q_taken.shape[:2])} like q_taken, got {flags.dtype}"
                             f" {tuple(flags.shape)}")
    if weights.shape != q_taken.shape[1:2]:
        raise ValueError(f"{where}: expected weights of shape [B] = {tuple(q_taken.shape[1:2])} like q_taken,"
                         f" got {tuple(weights.shape)}")
    counted = (loss_mask & target_mask).unsqueeze(-1)
    # where, not a product with the mask: a non-finite target at a step not counted stays out of
    # the loss and its gradient
    delta = torch.where(counted, targets.detach() - q_taken, 0.0)
    count = counted.sum()
    denominator = count.clamp(min=1) * q_taken.shape[-1]
    loss = (weights.detach().view(1, -1, 1) * 0.5 * delta.square()).sum() / denominator
    with torch.no_grad():
        td_abs = delta.abs().mean(dim=-1)
        q_mean = torch.where(counted, q_taken, 0.0).sum() / denominator
    return TDLoss(loss, td_abs, q_mean, count)


def sequence_priorities(td_abs: torch.Tensor, loss_mask: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """Give each sequence the R2D2 priority ``eta * max|delta| + (1 - eta) * mean|delta|``.

    The max and mean run over the sequence's counted steps (pass the steps :func:`td_loss` counted:
    the trained steps with a target). Each priority is at least :data:`PRIORITY_FLOOR` (1e-6): a
    sequence whose errors are all 0, or that has no counted step, keeps a small chance to be sampled
    again rather than none.

    Args:
        td_abs: ``[T, B]`` the absolute TD errors (:attr:`TDLoss.td_abs`), ``>= 0``.
        loss_mask: bool ``[T, B]``: the counted steps.
        eta: the weight of the max, in ``[0, 1]`` (the paper: 0.9).

    Returns:
        ``[B]`` detached priorities, for the replay's ``update_priorities``.

    Raises:
        ValueError: the shapes do not match (the message names both), or the mask is not bool.
        ConfigError: ``eta`` outside ``[0, 1]`` (a ``ValueError`` too).

    Example:
        >>> td = torch.tensor([[1.0, 0.0], [3.0, 5.0]])
        >>> mask = torch.tensor([[True, False], [True, False]])
        >>> [round(p, 7) for p in sequence_priorities(td, mask, eta=0.5).tolist()]
        [2.5, 1e-06]
    """
    where = "sequence_priorities"
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"{where}: expected eta in [0, 1], got {eta}; the paper uses eta=0.9")
    if td_abs.dim() != 2 or loss_mask.shape != td_abs.shape or loss_mask.dtype != torch.bool:
        raise ValueError(f"{where}: expected td_abs [T, B] and a bool loss_mask of one shape, got "
                         f"{tuple(td_abs.shape)} and {loss_mask.dtype} {tuple(loss_mask.shape)}")
    with torch.no_grad():
        errors = torch.where(loss_mask, td_abs, 0.0)
        largest = errors.amax(dim=0) if errors.shape[0] > 0 else errors.new_zeros(errors.shape[1:])
        mean = errors.sum(dim=0) / loss_mask.sum(dim=0).clamp(min=1)
        return (eta * largest + (1 - eta) * mean).clamp(min=PRIORITY_FLOOR)
