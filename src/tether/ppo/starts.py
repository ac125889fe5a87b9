"""Where a replayed sequence starts: the rollout's first state, the stored state, or a burn-in.

Three answers to one question of recurrent PPO: which hidden state does a ``seq_len`` chunk of a
rollout start from when the current weights replay it?

- ``rollout``: each env's rollout is replayed from the state it started from, the chunks chained.
  With one chunk per env (``seq_len=0``) that is the whole rollout from its first stored state
  (nothing else is computed); with several, the chunk starts are recomputed once per epoch by a
  replay of the whole rollout with the current weights, without gradient.
- ``stored``: each chunk starts from the state the policy was fed when the chunk's first step was
  collected (a snapshot stored at every chunk start).
- ``burn-in:K``: each chunk starts from the state stored ``K`` steps earlier (clamped at the
  rollout's start), run through those ``K`` steps without gradient (the same fused
  :func:`~tether.sequence.unroll`, episode starts respected), then the trained chunk.

The loss masks are the same in every mode. Every replay goes through the lifecycle checks: a
replay from a snapshot is checked against what the clock recorded, the burn-in and the refresh
included.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import numpy as np
import torch

from tether.errors import ConfigError
from tether.rollout import RecurrentRolloutBuffer, SequenceMinibatch
from tether.state import RecurrentState

__all__ = ["SequenceStart", "burned_in_state", "refreshed_chunk_states"]

_EXPECTED = "'rollout', 'stored' or 'burn-in:K' with K an integer >= 1 (e.g. burn-in:16)"


@attrs.frozen(kw_only=True)
class SequenceStart:
    """A parsed ``--sequence-start``: the kind and, for a burn-in, its length ``K``."""

    kind: Literal["rollout", "stored", "burn-in"]
    burn_in: int = 0

    @classmethod
    def parse(cls, text: str) -> SequenceStart:
        """Read ``rollout``, ``stored`` or ``burn-in:K``.

        Raises:
            ConfigError: for any other spelling, or ``K`` not an integer >= 1.

        >>> SequenceStart.parse("burn-in:8")
        SequenceStart(kind='burn-in', burn_in=8)
        """
        if text in ("rollout", "stored"):
            return cls(kind=text)  # type: ignore[arg-type]  # one of the two literals
        name, sep, k = str(text).partition(":")
        if name == "burn-in" and sep and k.isdigit() and int(k) >= 1:
            return cls(kind="burn-in", burn_in=int(k))
        raise ConfigError(f"sequence_start: expected {_EXPECTED}, got {text!r}")


def refreshed_chunk_states(policy: Any, buffer: RecurrentRolloutBuffer) -> list[RecurrentState]:
    """The start state of every chunk, recomputed from each env's first state with the current weights.

    Chunk ``k + 1`` starts where the replay of chunk ``k`` ends (no gradient); chunk 0 starts from
    the state stored at the rollout's start.

    Returns:
        One state ``[L, E, H]`` per chunk (for :meth:`RecurrentRolloutBuffer.minibatches`).
    """
    rows = np.arange(buffer.num_envs)
    L = buffer.seq_len
    states = [buffer.snapshot_at(0)]
    with torch.no_grad():
        for k in range(1, buffer.num_chunks):
            w = buffer.window(rows, np.full(buffer.num_envs, (k - 1) * L), L)
            out = policy.evaluate_actions(w.obs, w.actions, w.episode_starts, states[-1], w.action_masks,
                                          return_state=True)
            states.append(out.state)
    return states


def burned_in_state(policy: Any, mb: SequenceMinibatch) -> RecurrentState:
    """The start state of a minibatch's sequences after their burn-in (no gradient).

    Each group of sequences with one burn-in length runs its window from the snapshot stored
    there; a group without a burn-in (a chunk at the rollout's start) keeps its stored state.

    Returns:
        The state ``[L, B_mb, H]``, its rows in the minibatch's order.
    """
    parts, positions = [], []
    with torch.no_grad():
        for group in mb.burn_in:
            w = group.window
            if w is None:
                parts.append(mb.initial_state.select_rows(group.positions))
            else:
                out = policy.evaluate_actions(w.obs, w.actions, w.episode_starts, w.initial_state,
                                              w.action_masks, return_state=True)
                parts.append(out.state)
            positions.append(group.positions)
    if len(parts) == 1:
        state: RecurrentState = parts[0]
        return state
    order = np.argsort(np.concatenate(positions), kind="stable")
    return RecurrentState.cat(parts).select_rows(order)
