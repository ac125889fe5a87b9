"""RecurrentQNetwork: encoder -> tracked LSTM / GRU core -> Q head, for R2D2-style off-policy learning.

The network acts on the rollout path like a policy (``initial_state`` / ``act`` / ``value`` /
``env_actions``, so :class:`~tether.rollout.RolloutCollector` and
:func:`~tether.train.evaluate_policy` run it) with per-env ε-greedy exploration, and replays
stored sequences with :meth:`RecurrentQNetwork.q_values`: one fused, reset-aware
:func:`tether.sequence.unroll` with its lifecycle checks. The observation encoding
(:class:`~tether.nets.ObservationLayout`, ``build_encoders``), the core and the policy-state rules
(``cores.py``) are the actor-critic's; the Q head and the ε-greedy choice are in ``q_heads.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tether.clock import EpisodeClock
from tether.errors import ConfigError
from tether.nets.cores import check_policy_state, recurrent_core
from tether.nets.encoders import ObservationLayout, build_encoders
from tether.nets.inputs import as_episode_starts, positive_int
from tether.nets.masks import check_allowed, normalize_masks
from tether.nets.q_heads import QHead, actor_epsilons, discrete_layout, epsilon_greedy
from tether.sequence import UnrollPlan, unroll
from tether.state import RecurrentState
from tether.tracking import DEFAULT_MAX_GRAPH_STEPS

__all__ = ["QActResult", "QValues", "RecurrentQNetwork"]


class QActResult(NamedTuple):
    """One ε-greedy step of a :class:`RecurrentQNetwork` (the collector passes ``log_prob`` / ``value`` on).

    Attributes:
        actions: int64 ``[B]`` (Discrete) or ``[B, K]`` (MultiDiscrete), zero-based.
        log_prob: ``[B]``: log of the ε-greedy probability of the actions taken, summed over heads
            (0 when acting greedily).
        value: ``[B]``: the highest allowed Q of each head, averaged over the heads.
        state: the state valid for the next tick.
    """

    actions: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    state: RecurrentState


class QValues(NamedTuple):
    """Q-values along a sequence.

    Attributes:
        q: ``[T, B, K, N]``: ``K`` heads (1 for Discrete), ``N`` the most actions of any head; slots
            a head does not have (see :attr:`RecurrentQNetwork.action_valid`) and masked actions
            are ``-inf``.
        state: the state after step ``T - 1``.
    """

    q: torch.Tensor
    state: RecurrentState


class RecurrentQNetwork(nn.Module):
    """A recurrent Q-network over Discrete / MultiDiscrete actions: R2D2's learner and actor in one.

    Observations of any Box / Discrete / MultiDiscrete / MultiBinary / Tuple / Dict space become
    features as for :class:`~tether.nets.FactoredRecurrentActorCritic` -> encoder (Linear +
    LayerNorm + activation per hidden size) -> tracked LSTM / GRU core -> Q head: ``Q(s, k, a)``
    for each head ``k`` (one for Discrete, one per component for MultiDiscrete, acting
    independently), or with ``dueling=True`` ``Q = V + A - mean(A over the head's actions)``.
    The state is the actor-critic's (one :class:`~tether.RecurrentState` ``[L, B, H]``).

    Acting is ε-greedy per env row: row ``b`` explores with probability ``epsilon[b]`` (each head
    on its own coin), taking a uniformly random allowed action; otherwise the allowed action of
    highest Q. :attr:`epsilon` starts at ``[0.0]`` (greedy); set it with :meth:`set_epsilon`, e.g.
    to R2D2's per-actor rates :meth:`actor_epsilons`. Draws use torch's global generator (as the
    actor-critic's sampling does), so a seed reproduces the choices and a checkpoint of the RNG
    states resumes them exactly.

    ``memoryless=True`` is the same network with its memory cut at every step (``act`` / ``value``
    zero the state first; :meth:`q_values` treats every step as an episode start): the baseline
    that shows a task needs memory.

    Args:
        observation_space: as for the actor-critic (see docs/observations.md).
        action_space: Discrete, or MultiDiscrete (independent heads).
        hidden_sizes: encoder widths (default ``(64,)``); ``()`` feeds the features to the core.
        core: ``"lstm"`` or ``"gru"``.
        core_hidden_size: ``H`` of the core.
        num_layers: ``L`` of the core.
        dueling: separate value and advantage streams.
        memoryless: cut the memory at every step.
        activation: ``"relu"`` (default), ``"tanh"``, ``"gelu"``, ... or an ``nn.Module`` class.
        max_graph_steps: passed to :func:`~tether.track`.

    Attributes:
        action_valid: bool ``[K, N]`` buffer, False on the padding slots of heads with fewer actions.
        num_heads: ``K``.
        num_actions: ``N``, the most actions of any head.
        epsilon: float ``[1]`` or ``[E]`` (a non-persistent buffer: not in ``state_dict``).

    Raises:
        ConfigError: (a ``ValueError``) for an action space other than Discrete / MultiDiscrete.
        TypeError / ValueError: for an unsupported observation space, a bad size, core kind or
            activation.

    Example:
        >>> import gymnasium as gym, numpy as np, torch
        >>> from tether import EpisodeClock
        >>> qnet = RecurrentQNetwork(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(3), dueling=True)
        >>> qnet.set_epsilon([0.5, 0.01])  # one rate per env row
        >>> clock = EpisodeClock(2)
        >>> out = qnet.act(torch.zeros(2, 4), qnet.initial_state(2, clock))
        >>> out.actions.shape, out.log_prob.shape, out.value.shape, qnet.env_actions(out.actions).dtype
        (torch.Size([2]), torch.Size([2]), torch.Size([2]), dtype('int64'))
        >>> done = np.array([False, True])
        >>> _ = clock.advance(done)
        >>> state = out.state.reset(done)  # the next act() takes this state

        Replay a stored sequence from its snapshot, restarting row 1 at t = 2:

        >>> starts = np.zeros((5, 2), dtype=bool)
        >>> starts[2, 1] = True
        >>> q = qnet.q_values(torch.randn(5, 2, 4), starts, qnet.initial_state(2).snapshot()).q
        >>> q.shape  # [T, B, K, N]
        torch.Size([5, 2, 1, 3])
    """

    epsilon: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        *,
        hidden_sizes: Sequence[int] = (64,),
        core: Literal["lstm", "gru"] = "lstm",
        core_hidden_size: int = 64,
        num_layers: int = 1,
        dueling: bool = False,
        memoryless: bool = False,
        activation: str | type[nn.Module] = "relu",
        max_graph_steps: int = DEFAULT_MAX_GRAPH_STEPS,
    ) -> None:
        super().__init__()
        self.layout = discrete_layout(action_space)
        if core not in ("lstm", "gru"):
            raise ConfigError(f"RecurrentQNetwork: expected core 'lstm' or 'gru', got {core!r}")
        hidden = positive_int("core_hidden_size", core_hidden_size)
        layers = positive_int("num_layers", num_layers)
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_layout = ObservationLayout(observation_space)
        self.core: Literal["lstm", "gru"] = core
        self.dueling = bool(dueling)
        self.memoryless = bool(memoryless)
        self.encoder: nn.Module
        self.encoder, _, features = build_encoders(
            self.obs_layout.size, shared_core=True, hidden_sizes=hidden_sizes, activation=activation,
            encoder=None, encoder_out=None, critic_encoder=None)
        self.rnn = recurrent_core(core, features, hidden, layers, max_graph_steps)
        self.head = QHead(hidden, self.layout.discrete[0].sizes, self.dueling)
        self.num_heads, self.num_actions = self.head.num_heads, self.head.num_actions
        self.register_buffer("epsilon", torch.zeros(1), persistent=False)

    # ------------------------------------------------------------------------------------------
    # facts
    @property
    def action_valid(self) -> torch.Tensor:
        """Bool ``[K, N]``: which slots of the Q grid are actions (the head's buffer)."""
        return self.head.action_valid

    @property
    def hidden_size(self) -> int:
        """``H`` of the core."""
        return self.rnn.spec.hidden_size

    @property
    def state_layers(self) -> int:
        """``L`` of the state."""
        return self.rnn.spec.num_layers

    actor_epsilons = staticmethod(actor_epsilons)

    def set_epsilon(self, values: float | Sequence[float] | torch.Tensor) -> None:
        """Set the exploration rates: one for every env row, or one per row ``[E]``.

        Args:
            values: a number, or a sequence / 1-D tensor of numbers in ``[0, 1]``.

        Raises:
            ConfigError: (a ``ValueError``) for a value outside ``[0, 1]`` (or NaN), an empty or
                multi-dimensional sequence, or something that is not numbers.
        """
        try:
            rates = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"RecurrentQNetwork.set_epsilon: expected a number or a 1-D sequence of"
                              f" numbers in [0, 1], got {values!r}") from err
        rates = rates.reshape(1) if rates.dim() == 0 else rates
        if isinstance(values, bool) or rates.dim() != 1 or rates.numel() == 0:
            raise ConfigError(f"RecurrentQNetwork.set_epsilon: expected one rate or one per env row"
                              f" (a 1-D sequence), got shape {list(rates.shape)}")
        bad = ~((rates >= 0) & (rates <= 1))  # NaN fails both comparisons
        if bool(bad.any()):
            raise ConfigError(f"RecurrentQNetwork.set_epsilon: expected rates in [0, 1], got"
                              f" {rates[bad][0].item()!r} at index {int(torch.nonzero(bad)[0, 0])}")
        self.epsilon = rates.to(self.epsilon.device, self.epsilon.dtype)

    # ------------------------------------------------------------------------------------------
    # the collection protocol
    def initial_state(
        self, batch_size: int, clock: EpisodeClock | None = None, *, env_rows: Any = None
    ) -> RecurrentState:
        """A zero state ``[L, batch_size, H]`` on the network's device and dtype.

        Args:
            batch_size: rows ``B`` (``clock.num_envs`` unless ``env_rows`` is given).
            clock: the clock to check against; ``None`` makes an unchecked state.
            env_rows: which clock rows the state covers, when not all of them.
        """
        weight = self.head.linear.weight
        return RecurrentState.zeros(
            self.state_layers, batch_size, self.hidden_size, has_c=self.core == "lstm", clock=clock,
            env_rows=env_rows, device=weight.device, dtype=weight.dtype)

    @torch.no_grad()
    def act(
        self, obs: Any, state: RecurrentState, masks: Any = None, deterministic: bool = False
    ) -> QActResult:
        """One ε-greedy step through the tracked core (its lifecycle checks), without autograd graph.

        Args:
            obs: ``[B, *obs_shape]`` or ``[B, obs_size]`` (a dict / tuple of them for Dict / Tuple).
            state: the state valid for the clock's current tick.
            masks: optional bool action masks (True = allowed), as the actor-critic takes them:
                ``[B, D]`` with the heads' columns concatenated, or per head. A masked action is
                never chosen, greedy or random.
            deterministic: act greedily (ε = 0; ``log_prob`` is 0) whatever :attr:`epsilon` holds.

        Returns:
            :class:`QActResult` ``(actions, log_prob [B], value [B], state)``.

        Raises:
            ConfigError: when :attr:`epsilon` holds neither one rate nor one per row.
            ValueError: for obs or masks of the wrong shape, or a row whose mask allows no action
                (:class:`~tether.nets.ActionMaskError`).
            StateMismatchError / StaleStateError / GraphLeakError: from the state checks.
        """
        x = self._obs(obs, 1, "act")
        B = int(x.shape[0])
        check_policy_state(self.rnn, None, state, B, "act")
        eps = None if deterministic else self._epsilon_rows(B)
        mask = self._masks(masks, (B,), "act")
        if self.memoryless:
            state = state.reset()
        y, next_state = self.rnn(self.encoder(x).unsqueeze(0), state)  # [B, E] -> [1, B, E]: one step
        q = self.head(y[0])
        actions, log_prob, value = epsilon_greedy(q, self.head.allowed(mask, (B,)), eps)
        return QActResult(self._as_actions(actions), log_prob, value, next_state)

    @torch.no_grad()
    def value(self, obs: Any, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        """``max Q [B]`` (averaged over heads) from ``state``, without graph; the state is not advanced.

        Args:
            obs: ``[B, *obs_shape]`` or ``[B, obs_size]``.
            state: the state.
            bootstrap: the truncation bootstrap read of rows whose episode just ended, from their
                own pre-reset state (the one read strict mode allows).

        Raises:
            ValueError / StateMismatchError / StaleStateError: as :meth:`act`.
        """
        x = self._obs(obs, 1, "value")
        check_policy_state(self.rnn, None, state, int(x.shape[0]), "value")
        if self.memoryless:
            state = state.reset()
        y, _ = self.rnn(self.encoder(x).unsqueeze(0), state, bootstrap=bootstrap)
        best: torch.Tensor = self.head(y[0]).amax(-1).mean(-1)
        return best

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Turn ``act``'s actions into what the vector env's ``step`` takes (``start`` added back).

        Raises:
            ValueError: when ``actions`` is not shaped ``[B]`` (Discrete) / ``[B, K]`` (MultiDiscrete).
        """
        env: np.ndarray = self.layout.to_env(actions)
        return env

    # ------------------------------------------------------------------------------------------
    # the learner's replay
    def q_values(
        self, obs: Any, episode_starts: Any, state: RecurrentState, masks: Any = None
    ) -> QValues:
        """Q-values along sequences ``[T, B, ...]``, restarting rows at their episode starts.

        One fused, reset-aware :func:`tether.sequence.unroll` of the core, with its checks: from a
        live state it is a checked step of ``T``; from a stored snapshot it is checked against what
        the clock recorded. Builds an autograd graph unless called under ``torch.no_grad()`` (the
        burn-in and the target network's pass).

        Args:
            obs: ``[T, B, *obs_shape]`` (a dict / tuple of them for Dict / Tuple spaces).
            episode_starts: bool ``[T, B]`` (numpy preferred: the unroll plans on the host), True
                where ``obs[t, b]`` is the first observation of an episode; or an
                :class:`~tether.sequence.UnrollPlan` from ``plan_unroll(net.rnn, starts)``, to plan
                once for the online and the target network.
            state: the state before step 0 (a stored snapshot, zeros, or a burn-in's final state).
            masks: optional bool masks ``[T, B, D]`` (or per head ``[T, B, n]``): ``-inf`` on the
                masked actions.

        Returns:
            :class:`QValues` ``(q [T, B, K, N], final state)``.

        Raises:
            ValueError: for obs / starts / masks of the wrong shape or dtype, or a ``(t, b)`` whose
                mask allows no action.
            StateMismatchError: when the state does not fit the network or the batch.
            StaleStateError / GraphLeakError / ReplayAlignmentError: from the unroll's checks.
        """
        where = "q_values"
        x = self._obs(obs, 2, where)
        T, B = int(x.shape[0]), int(x.shape[1])
        check_policy_state(self.rnn, None, state, B, where)
        starts: Any
        if self.memoryless:
            starts = np.ones((T, B), dtype=bool)
        elif isinstance(episode_starts, UnrollPlan):
            starts = episode_starts  # unroll checks its shape and module type
        else:
            starts = as_episode_starts(episode_starts, T, B, where)
        mask = self._masks(masks, (T, B), where)
        # (T, B, F) -> (T * B, F) through the encoder and the head; the core unrolls [T, B, E].
        z = self.encoder(x.reshape(T * B, -1)).reshape(T, B, -1)
        y, final = unroll(self.rnn, z, starts, state)
        q = self.head(y.reshape(T * B, -1)).reshape(T, B, self.num_heads, self.num_actions)
        if mask is not None:
            q = q.masked_fill(~self.head.allowed(mask, (T, B)), float("-inf"))
        return QValues(q, final)

    # ------------------------------------------------------------------------------------------
    # input checks (host side)
    def _obs(self, obs: Any, lead: int, where: str) -> torch.Tensor:
        return self.obs_layout.features(obs, lead, self.head.linear.weight, where)

    def _masks(self, masks: Any, lead: tuple[int, ...], where: str) -> torch.Tensor | None:
        mask = normalize_masks(masks, self.layout, lead, self.head.linear.weight.device, where)
        if mask is not None:
            check_allowed(mask, self.layout, where)
        return mask

    def _epsilon_rows(self, batch: int) -> torch.Tensor:
        eps = self.epsilon
        if eps.numel() not in (1, batch):
            raise ConfigError(
                f"act: epsilon holds {eps.numel()} rates but obs has {batch} rows; call"
                f" set_epsilon with one rate or {batch} (one per env row)")
        return eps

    def _as_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` -> the layout's action tensor: ``[B]`` for Discrete, ``[B, K]`` for MultiDiscrete."""
        return actions[:, 0] if self.layout.action_shape == () else actions
