"""PPO's telemetry (``--telemetry``): the state health of each rollout and the staleness of each epoch.

Built on the pure functions of :mod:`tether.telemetry`. Per update: the health of the states the
rollout fed the core (every step, every env), the gate saturation on a sample of those steps with
the weights that collected them (before the update), and, for every epoch, the gap between the
outputs at collection and at replay at the first and last counted step of each sequence. Keys
(``_l{k}`` per state layer when the state has several: the actor's layers first, then a separate
critic's): ``state/h_rms``, ``state/h_max``, ``state/c_rms`` (LSTM), ``state/saturation``,
``state/nonfinite``, ``state/reset_norm``, ``state/stale_kl_first``, ``state/stale_kl_last``,
``state/stale_value_first``, ``state/stale_value_last`` (the mean over the update's epochs, and
``_e{k}`` for epoch ``k``). See docs/staleness.md. Off, nothing of this runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tether.nets import FactoredRecurrentActorCritic
from tether.policy import EvalResult
from tether.rollout import RecurrentRolloutBuffer, SequenceMinibatch
from tether.rollout._obs import tree_map
from tether.telemetry import gate_saturation, sequence_gap, state_health

__all__ = ["UpdateTelemetry"]

_SAMPLE = 256  # at most this many (step, env) pairs for the gate saturation (x 4H gates each)


class UpdateTelemetry:
    """Collects one update's telemetry; :meth:`record` turns it into ``state/...`` metrics."""

    def __init__(self) -> None:
        self._health: dict[str, torch.Tensor] = {}
        self._epochs: list[torch.Tensor] = []
        self._pending: list[tuple[torch.Tensor, ...]] = []  # this epoch's minibatches, measured at its end

    def begin(self, policy: Any, buffer: RecurrentRolloutBuffer) -> None:
        """Measure the rollout's states (and gates, with the weights that collected them)."""
        starts = torch.from_numpy(buffer.episode_starts).to(buffer.device, non_blocking=True)
        health = state_health(buffer.states, starts)
        self._health = {"h_rms": health.h_rms, "h_max": health.h_max, "nonfinite": health.nonfinite,
                        "reset_norm": health.reset_norm}
        if health.c_rms is not None:
            self._health["c_rms"] = health.c_rms
        saturation = _saturation(policy, buffer)
        if saturation is not None:
            self._health["saturation"] = saturation
        self._epochs, self._pending = [], []

    def minibatch(self, epoch: int, out: EvalResult, mb: SequenceMinibatch) -> None:
        """Keep one minibatch's outputs for epoch ``epoch``'s collection-to-replay gap.

        The gap of an epoch's minibatches is measured once, when the next epoch begins (or at
        :meth:`record`): one set of tensor operations per epoch, not per minibatch.
        """
        if epoch != len(self._epochs):
            self._flush()
        kept = (out.log_prob.detach(), mb.log_probs, out.value.detach(), mb.values, mb.loss_mask)
        self._pending.append(kept)

    def _flush(self) -> None:
        if not self._pending:
            return
        parts = [torch.cat(x, dim=1) for x in zip(*self._pending, strict=True)]
        log_prob, old_log_prob, value, old_value, mask = parts
        self._pending = []
        gap = sequence_gap(log_prob=log_prob, old_log_prob=old_log_prob, value=value, old_value=old_value,
                           mask=mask)
        sums = torch.stack([gap.kl_first, gap.kl_last, gap.value_first, gap.value_last]) * gap.sequences
        self._epochs.append(torch.cat([sums, gap.sequences.reshape(1).to(sums.dtype)]))

    def record(self) -> dict[str, float]:
        """The update's ``state/...`` metrics as plain floats (one device read)."""
        self._flush()
        names = list(self._health)
        parts = [self._health[n].float() for n in names]
        epochs = torch.stack(self._epochs) if self._epochs else torch.zeros(0, 5)
        values = torch.cat([*parts, epochs.reshape(-1).to(parts[0].device)]).tolist()
        out: dict[str, float] = {}
        at = 0
        for name, part in zip(names, parts, strict=True):
            layers = values[at:at + part.numel()]
            at += part.numel()
            out[f"state/{name}"] = _overall(name, layers)
            if len(layers) > 1:
                out.update({f"state/{name}_l{k}": v for k, v in enumerate(layers)})
        gaps = [values[at + 5 * e: at + 5 * e + 5] for e in range(len(self._epochs))]
        keys = ("stale_kl_first", "stale_kl_last", "stale_value_first", "stale_value_last")
        for i, key in enumerate(keys):
            per_epoch = [g[i] / g[4] if g[4] else math.nan for g in gaps]
            out[f"state/{key}"] = float(sum(per_epoch) / len(per_epoch)) if per_epoch else math.nan
            out.update({f"state/{key}_e{k}": v for k, v in enumerate(per_epoch)})
        return out


def _overall(name: str, layers: list[float]) -> float:
    """One number over the layers: RMS over them for an RMS, max for a max or norm, sum of counts."""
    if name.endswith("_rms"):
        return math.sqrt(sum(v * v for v in layers) / len(layers))
    if name in ("h_max", "reset_norm"):
        return max(layers)
    if name == "nonfinite":
        return sum(layers)
    return sum(layers) / len(layers)  # saturation: every layer has as many gates


def _saturation(policy: Any, buffer: RecurrentRolloutBuffer) -> torch.Tensor | None:
    """Per state layer, the saturated gates on a sample of the rollout (tether's actor-critic only)."""
    net = getattr(policy, "policy", policy)  # a memoryless wrapper's network
    if not isinstance(net, FactoredRecurrentActorCritic):
        return None
    T, E = buffer.num_steps, buffer.num_envs
    stride = max(1, math.ceil(T * E / _SAMPLE))
    times = torch.arange(0, T, stride, device=buffer.device)
    with torch.no_grad():
        obs = tree_map(lambda x: x[times], buffer.obs)
        features = net.obs_layout.features(obs, 2, net.value_head.weight, "telemetry").flatten(0, 1)
        states = [x[times].transpose(0, 1).flatten(1, 2) for x in buffer.states]  # [L, T' * E, H]
        cut = net.actor_core.spec.num_layers
        actor_in = net.encoder(features)
        parts = [gate_saturation(net.actor_core.module, actor_in, tuple(s[:cut] for s in states))]
        if net.critic_core is not None:
            critic_in = actor_in if net.critic_encoder is None else net.critic_encoder(features)
            parts.append(gate_saturation(net.critic_core.module, critic_in, tuple(s[cut:] for s in states)))
    return torch.cat(parts)
