"""State health and staleness: pure functions over tensors, shared by every trainer.

Two questions a recurrent learner cannot see by itself, answered from tensors it already has:

- **Is the hidden state healthy?** :func:`state_health` reads the states a rollout fed its core
  (``[T, L, B, H]`` per tensor): the root mean square and the largest magnitude of ``h`` (and the
  RMS of ``c``) per layer, how many entries are NaN or infinite, and the norm of the states fed at
  an episode start, which must be exactly 0 (a reset that did not happen shows up here).
  :func:`gate_saturation` recomputes the gates of an ``nn.LSTM`` / ``nn.GRU`` from its weights on
  a sample of those inputs and states (the fused op does not expose them) and counts the saturated
  ones: a sigmoid gate above 0.99 or below 0.01, a tanh gate with ``|tanh| > 0.99``.
- **How stale is a replay?** :func:`sequence_gap` compares what a policy gave at collection with
  what it gives when a sequence is replayed, at the first and at the last counted step of each
  sequence: a KL estimate between the two action distributions and the absolute value gap. An
  off-policy learner's Δq is the same gap over Q-values (``kl=False``).

Nothing here synchronises with the device: every result is a tensor, read once by the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["SequenceGap", "StateHealth", "first_last", "gate_saturation", "sequence_gap", "state_health"]

_SATURATED = 0.99  # a sigmoid above this (or below 1 - this), a |tanh| above this


class StateHealth(NamedTuple):
    """Health of the states a rollout fed its core, one entry per layer (``[L]`` tensors).

    Attributes:
        h_rms: ``sqrt(mean(h²))`` over steps, rows and units.
        h_max: ``max |h|``.
        c_rms: the same for ``c`` (``None`` for a GRU's ``h``-only state).
        nonfinite: how many entries of ``h`` (and ``c``) are NaN or infinite.
        reset_norm: the largest L2 norm (over units, ``h`` and ``c`` together) of a state fed at
            an episode start; 0 when every reset zeroed its row (0 too when no episode started).
    """

    h_rms: torch.Tensor
    h_max: torch.Tensor
    c_rms: torch.Tensor | None
    nonfinite: torch.Tensor
    reset_norm: torch.Tensor


def state_health(states: tuple[torch.Tensor, ...], episode_starts: torch.Tensor) -> StateHealth:
    """Per-layer health of the states fed at every step of a rollout.

    Args:
        states: ``(h,)`` or ``(h, c)``, each ``[T, L, B, H]`` (the state fed at step ``t``).
        episode_starts: bool ``[T, B]``: ``obs[t, b]`` began an episode (the state fed must be 0).

    Returns:
        A :class:`StateHealth` of ``[L]`` tensors.

    >>> h = torch.zeros(3, 1, 2, 4); h[1, 0, 0] = 2.0
    >>> starts = torch.tensor([[False, False], [True, False], [False, False]])
    >>> out = state_health((h,), starts)
    >>> float(out.h_max[0]), float(out.reset_norm[0])
    (2.0, 4.0)
    """
    h = states[0]
    dims = (0, 2, 3)
    h_rms = h.float().pow(2).mean(dim=dims).sqrt()
    h_max = h.abs().amax(dim=dims)
    c_rms = states[1].float().pow(2).mean(dim=dims).sqrt() if len(states) > 1 else None
    nonfinite = torch.stack([(~torch.isfinite(x)).sum(dim=dims) for x in states]).sum(dim=0)
    squares = torch.stack([x.float().pow(2).sum(dim=-1) for x in states]).sum(dim=0)  # [T, L, B]
    at_start = episode_starts.to(h.device)[:, None, :].expand_as(squares)
    reset_norm = torch.where(at_start, squares, torch.zeros_like(squares)).amax(dim=(0, 2)).sqrt()
    return StateHealth(h_rms, h_max, c_rms, nonfinite, reset_norm)


def gate_saturation(module: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The fraction of saturated gates per layer of an ``nn.LSTM`` / ``nn.GRU``, one step from ``state``.

    The gates are recomputed from the module's weights, layer by layer: layer ``l`` takes the
    input ``x`` (layer 0) or the output of layer ``l - 1`` computed here, and its own state. An
    LSTM's input, forget and output gates and a GRU's reset and update gates count as saturated
    outside ``[0.01, 0.99]``; the LSTM's cell candidate and the GRU's new gate when ``|tanh| > 0.99``.

    Args:
        module: a unidirectional ``nn.LSTM`` or ``nn.GRU`` (without projections).
        x: its input ``[N, in]`` (a sample of steps and rows, flattened).
        state: ``(h,)`` or ``(h, c)``, each ``[L, N, H]``: the states fed at those steps.

    Returns:
        ``[L]`` fractions in ``[0, 1]``.

    Raises:
        TypeError: for another module.

    >>> lstm = nn.LSTM(3, 4)
    >>> with torch.no_grad():
    ...     _ = lstm.bias_ih_l0.fill_(100.0)
    >>> float(gate_saturation(lstm, torch.zeros(5, 3), (torch.zeros(1, 5, 4), torch.zeros(1, 5, 4)))[0])
    1.0
    """
    if not isinstance(module, nn.LSTM | nn.GRU) or module.bidirectional or module.proj_size:
        raise TypeError("gate_saturation: expected a unidirectional nn.LSTM or nn.GRU without projections,"
                        f" got {type(module).__name__}")
    lstm = isinstance(module, nn.LSTM)
    fractions = []
    inp = x
    with torch.no_grad():
        for layer in range(module.num_layers):
            h = state[0][layer]
            w_ih, w_hh = getattr(module, f"weight_ih_l{layer}"), getattr(module, f"weight_hh_l{layer}")
            gi = inp @ w_ih.T + _bias(module, f"bias_ih_l{layer}")
            gh = h @ w_hh.T + _bias(module, f"bias_hh_l{layer}")
            if lstm:
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                sig = torch.sigmoid(torch.cat((i, f, o), dim=-1))
                tanh = torch.tanh(g)
                c = torch.sigmoid(f) * state[1][layer] + torch.sigmoid(i) * tanh
                out = torch.sigmoid(o) * torch.tanh(c)
            else:
                ir, iz, in_ = gi.chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                sig = torch.sigmoid(torch.cat((ir + hr, iz + hz), dim=-1))
                tanh = torch.tanh(in_ + sig[..., : h.shape[-1]] * hn)
                z = sig[..., h.shape[-1]:]
                out = (1 - z) * tanh + z * h
            saturated = ((sig > _SATURATED) | (sig < 1 - _SATURATED)).sum() + (tanh.abs() > _SATURATED).sum()
            fractions.append(saturated.float() / (sig.numel() + tanh.numel()))
            inp = out
    return torch.stack(fractions)


def _bias(module: nn.Module, name: str) -> torch.Tensor | float:
    bias: torch.Tensor | None = getattr(module, name, None)
    return 0.0 if bias is None else bias


def first_last(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first and the last counted step of each sequence: ``(first [B], last [B], any [B])``.

    Args:
        mask: bool ``[T, B]``: the steps that count (a sequence with none has ``any`` False).

    >>> first_last(torch.tensor([[False, True], [True, True], [False, False]]))
    (tensor([1, 0]), tensor([1, 1]), tensor([True, True]))
    """
    T = mask.shape[0]
    steps = torch.arange(T, device=mask.device)[:, None]
    first = torch.where(mask, steps, T).amin(dim=0)
    last = torch.where(mask, steps, -1).amax(dim=0)
    has = last >= 0
    return first.clamp(max=T - 1), last.clamp(min=0), has


class SequenceGap(NamedTuple):
    """The collection-to-replay gap at the first and last counted step, averaged over sequences.

    Attributes:
        kl_first / kl_last: mean KL estimate ``(r - 1) - log r``, ``r = π_replay(a) / π_collect(a)``
            with ``a`` the collected action: an unbiased estimate of ``KL(π_collect || π_replay)``
            that needs only the two log-probabilities (0 when ``kl=False``).
        value_first / value_last: mean ``|value_replay - value_collect|``.
        sequences: how many sequences had a counted step.
    """

    kl_first: torch.Tensor
    kl_last: torch.Tensor
    value_first: torch.Tensor
    value_last: torch.Tensor
    sequences: torch.Tensor


def sequence_gap(
    *, log_prob: torch.Tensor | None, old_log_prob: torch.Tensor | None, value: torch.Tensor,
    old_value: torch.Tensor, mask: torch.Tensor,
) -> SequenceGap:
    """How far a replay's outputs are from the collection's, at each sequence's first and last step.

    Args:
        log_prob / old_log_prob: ``[T, B]`` log-probabilities of the collected actions at replay /
            at collection (``None`` for a value-only gap, such as an off-policy learner's Δq).
        value / old_value: ``[T, B]`` values (or Q-values of the taken action) at replay / at
            collection.
        mask: bool ``[T, B]``: the steps that count.

    Returns:
        A :class:`SequenceGap` of scalar tensors (means over the sequences with a counted step).

    >>> z = torch.zeros(2, 1)
    >>> gap = sequence_gap(log_prob=z, old_log_prob=z, value=torch.tensor([[1.0], [3.0]]), old_value=z,
    ...                    mask=torch.ones(2, 1, dtype=torch.bool))
    >>> float(gap.kl_first), float(gap.value_first), float(gap.value_last)
    (0.0, 1.0, 3.0)
    """
    with torch.no_grad():
        first, last, has = first_last(mask)
        cols = torch.arange(mask.shape[1], device=mask.device)
        weight = has.to(value.dtype)
        count = weight.sum().clamp(min=1.0)

        def at(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
            return (x[steps, cols] * weight).sum() / count

        dv = (value - old_value).abs()
        if log_prob is None or old_log_prob is None:
            kl = torch.zeros_like(dv)
        else:
            log_ratio = log_prob - old_log_prob
            kl = log_ratio.exp() - 1 - log_ratio
        return SequenceGap(at(kl, first), at(kl, last), at(dv, first), at(dv, last), has.sum())
