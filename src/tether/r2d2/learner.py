"""One R2D2 learner step on a sampled batch of sequences: burn-in, the trained unroll, targets, loss.

Every sequence is replayed with :func:`tether.sequence.unroll` (through the Q-network's
``q_values``: fused, reset-aware, alignment-checked), once per network:

1. the start state: the state stored at collection (``"stored"``), or zeros (``"zero"``);
2. the burn-in (the first ``burn_in`` steps) runs without gradient through the online and the
   target network alike, each from that start, and hands each its own state;
3. the trained part runs with gradient through the online network, and without it through the
   target network (double Q: the online network picks each bootstrap action, the target rates it);
4. a truncated step (an episode cut by a time limit) bootstraps from the ended episode's last
   observation, read from the state after that step: the few rows with a truncation are replayed
   again with that observation appended (no gradient), so the bootstrap is exact;
5. n-step targets (:func:`~tether.r2d2.loss.n_step_targets`), the TD loss with importance weights,
   and each sequence's new priority (η·max|δ| + (1 − η)·mean|δ|).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from tether.r2d2.loss import double_q_values, n_step_targets, sequence_priorities, td_loss
from tether.replay import ReplayBatch
from tether.rollout._obs import tree_map
from tether.state import RecurrentState
from tether.telemetry import first_last

__all__ = ["LearnerStep", "SequencePass", "learner_step", "replay_pass", "start_state"]


class SequencePass(NamedTuple):
    """The Q-values of a batch's trained part, as the learner replays it.

    Attributes:
        q: ``[T', B, K, N]`` online Q-values of the trained steps (with gradient).
        q_target: ``[T', B, K, N]`` target Q-values of the same steps (no gradient).
        q_online_bootstrap: the online Q-values without gradient (for double Q's action choice).
    """

    q: torch.Tensor
    q_target: torch.Tensor
    q_online_bootstrap: torch.Tensor


class LearnerStep(NamedTuple):
    """What one learner step gives back: the loss to minimise and what to log and re-prioritise.

    Attributes:
        loss: the scalar TD loss (with gradient).
        priorities: ``[B]`` the sampled sequences' new priorities (host numpy).
        td_abs: mean ``|δ|`` over the counted steps.
        q_mean: mean ``Q(s, a)`` of the taken actions over the counted steps.
        trained_steps: how many steps the loss counted.
        q_first / q_last: ``[B, K, N]`` the online Q-values at each sequence's first and last
            trained step (detached), for the staleness measure.
        first / last: ``[B]`` those steps' indices in the trained part.
        trained: bool ``[B]``: the sequence has a trained step (else ``first`` / ``last`` mean nothing).
    """

    loss: torch.Tensor
    priorities: np.ndarray
    td_abs: float
    q_mean: float
    trained_steps: int
    q_first: torch.Tensor
    q_last: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor
    trained: torch.Tensor


def _slice(tree: Any, start: int, stop: int | None = None) -> Any:
    return tree_map(lambda x: x[start:stop], tree)


def start_state(batch: ReplayBatch, initial_state: str) -> RecurrentState:
    """The state each sampled sequence starts from: stored at collection, or zeros.

    A zero start is an unchecked state (no clock): the sampled sequences were checked against
    their own stamps when they were drawn (:func:`tether.replay.check_sequences`).
    """
    if initial_state == "stored":
        return batch.initial_state
    return RecurrentState.from_tensors(tuple(torch.zeros_like(t) for t in batch.initial_state.tensors))


def _burn_in(net: Any, batch: ReplayBatch, state: RecurrentState) -> RecurrentState:
    if batch.burn_in == 0:
        return state
    with torch.no_grad():
        burnt: RecurrentState = net.q_values(_slice(batch.obs, 0, batch.burn_in),
                                             batch.episode_starts[:batch.burn_in], state).state
    return burnt.detach()


def replay_pass(online: Any, target: Any, batch: ReplayBatch, initial_state: str) -> SequencePass:
    """Burn in both networks from the start state, then replay the trained part through each.

    Returns:
        The trained part's online Q-values (with gradient) and the target's (without).
    """
    start = start_state(batch, initial_state)
    k = batch.burn_in
    online_state, target_state = _burn_in(online, batch, start), _burn_in(target, batch, start)
    obs, starts = _slice(batch.obs, k), batch.episode_starts[k:]
    q = online.q_values(obs, starts, online_state).q
    with torch.no_grad():
        q_target = target.q_values(obs, starts, target_state).q
    return SequencePass(q=q, q_target=q_target, q_online_bootstrap=q.detach())


def _appended(obs: Any, final_obs: Any, steps: np.ndarray, rows: np.ndarray, device: torch.device) -> Any:
    """Rows ``rows`` of ``obs`` up to ``steps + 1``, each with its final observation after its last step."""
    length = int(steps.max()) + 2
    at = torch.as_tensor(steps + 1, device=device)
    picks = torch.arange(rows.size, device=device)

    def cut(x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        part = x[:length - 1, torch.as_tensor(rows, device=x.device)]
        out = torch.cat([part, part[-1:]], dim=0).clone()  # one step longer: room for the last obs
        out[at, picks] = last.to(out.dtype)
        return out

    return tree_map(cut, obs, final_obs)


def truncation_values(online: Any, target: Any, batch: ReplayBatch, initial_state: str, *,
                      double_q: bool) -> torch.Tensor:
    """``[T', B, K]``: the bootstrap value of each truncated trained step's final observation (0 elsewhere).

    The rows holding a truncation are replayed from their start with the ended episode's last
    observation after the truncated step, through both networks without gradient; the value is
    read at that appended step.
    """
    k = batch.burn_in
    pairs = batch.truncation_steps
    keep = pairs[:, 0] >= k if pairs.size else np.zeros(0, dtype=bool)
    steps, rows = pairs[keep, 0], pairs[keep, 1]
    t_train = int(batch.rewards.shape[0]) - k
    heads = int(online.num_heads)
    out = torch.zeros(t_train, int(batch.rewards.shape[1]), heads, device=batch.rewards.device)
    if steps.size == 0:
        return out
    final = tree_map(lambda x: x[torch.as_tensor(np.flatnonzero(keep), device=x.device)], batch.final_obs)
    device = batch.rewards.device
    obs = _appended(batch.obs, final, steps, rows, device)
    length = int(steps.max()) + 2
    starts = np.zeros((length, rows.size), dtype=bool)
    starts[:length - 1] = batch.episode_starts[:length - 1, rows]
    # The appended step is not what the env stream holds next (the clock recorded the next
    # episode there, or nothing): this replay is unchecked; its prefix was checked when sampled.
    start = start_state(batch, initial_state).select_rows(rows)
    state = RecurrentState.from_tensors(start.tensors)
    with torch.no_grad():
        q_target = target.q_values(obs, starts, state).q
        q_online = online.q_values(obs, starts, state).q if double_q else q_target
    picks = torch.arange(rows.size, device=device)
    at = torch.as_tensor(steps + 1, device=device)
    value = _bootstrap(q_online, q_target, double_q)[at, picks]  # [M, K]
    out[torch.as_tensor(steps - k, device=device), torch.as_tensor(rows, device=device)] = value
    return out


def _bootstrap(q_online: torch.Tensor, q_target: torch.Tensor, double_q: bool) -> torch.Tensor:
    if double_q:
        return double_q_values(q_online, q_target)
    return q_target.amax(dim=-1)


def _taken(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    index = actions if actions.dim() == q.dim() - 1 else actions.unsqueeze(-1)  # [T, B] -> [T, B, 1]
    return q.gather(-1, index.long().unsqueeze(-1)).squeeze(-1)


def learner_step(online: Any, target: Any, batch: ReplayBatch, config: Any) -> LearnerStep:
    """The loss and the new priorities of one sampled batch (see the module doc for the order).

    Args:
        online / target: the Q-networks (:class:`~tether.nets.RecurrentQNetwork`).
        batch: sampled sequences (:meth:`tether.replay.SequenceReplay.sample`).
        config: the run's :class:`~tether.r2d2.R2D2Config` (``initial_state``, ``gamma``,
            ``n_step``, ``double_q``, ``value_rescale``, ``value_rescale_eps``, ``priority_eta``).

    Returns:
        A :class:`LearnerStep`; call ``loss.backward()`` on it.
    """
    c, k = config, batch.burn_in
    passed = replay_pass(online, target, batch, c.initial_state)
    bootstrap = _bootstrap(passed.q_online_bootstrap, passed.q_target, c.double_q)  # [T', B, K]
    truncated = truncation_values(online, target, batch, c.initial_state, double_q=c.double_q)
    valid, mask = batch.valid[k:], batch.mask[k:]
    targets = n_step_targets(rewards=batch.rewards[k:], terminated=batch.terminated[k:],
                             truncated=batch.truncated[k:], valid=valid, mask=mask, bootstrap=bootstrap,
                             truncation_bootstrap=truncated, gamma=c.gamma, n=c.n_step,
                             rescale=c.value_rescale, eps=c.value_rescale_eps)
    loss_mask = targets.target_mask & valid & mask
    q_taken = _taken(passed.q, batch.actions[k:])
    losses = td_loss(q_taken=q_taken, targets=targets.targets, target_mask=targets.target_mask,
                     loss_mask=loss_mask, weights=batch.weights)
    priorities = sequence_priorities(losses.td_abs, loss_mask, eta=c.priority_eta)
    first, last, trained = first_last(loss_mask)
    cols = torch.arange(q_taken.shape[1], device=q_taken.device)
    q = passed.q_online_bootstrap
    return LearnerStep(loss=losses.loss, priorities=priorities.detach().cpu().numpy(),
                       td_abs=float(losses.td_abs.sum() / max(int(losses.count), 1)),
                       q_mean=float(losses.q_mean), trained_steps=int(losses.count),
                       q_first=q[first, cols], q_last=q[last, cols], first=first, last=last,
                       trained=trained)

