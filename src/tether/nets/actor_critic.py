"""FactoredRecurrentActorCritic: encoder -> tracked LSTM / GRU core -> factored action heads + value.

The work splits in two layers. The *tensor stages* (the encoder, the action heads, the value
head) are pure functions of tensors that compile with ``torch.compile(fullgraph=True)``. The
*lifecycle layer* around them (input checks, the tracked core's state checks, splitting and
merging the actor / critic layers of the one policy state) runs in Python with host-side integers
only, outside any compiled region. :meth:`FactoredRecurrentActorCritic.compile` compiles the
stages in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tether import _aten
from tether.clock import EpisodeClock
from tether.errors import StateMismatchError
from tether.modes import get_mode
from tether.nets.encoders import ObservationLayout, activation_class, mlp_encoder
from tether.nets.factors import ActionLayout
from tether.nets.heads import FactoredHeads, value_head
from tether.nets.inputs import as_actions, as_episode_starts
from tether.nets.masks import check_allowed, normalize_masks
from tether.policy import ActResult, EvalResult
from tether.sequence import plan_unroll, unroll
from tether.state import RecurrentState
from tether.tracking import DEFAULT_MAX_GRAPH_STEPS, TrackedRNN, track

__all__ = ["FactoredRecurrentActorCritic"]

def _recurrent(kind: str, in_features: int, hidden: int, layers: int, max_graph_steps: int) -> TrackedRNN:
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(in_features, hidden, layers)
    for name, param in rnn.named_parameters():
        # CleanRL's recurrent PPO convention: orthogonal recurrent weights (gain 1), zero biases.
        if name.startswith("weight"):
            nn.init.orthogonal_(param, 1.0)
        else:
            nn.init.zeros_(param)
    return track(rnn, max_graph_steps=max_graph_steps)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"FactoredRecurrentActorCritic: expected {name} to be a positive int, got {value!r}")
    return int(value)


def _no_custom_parts(**parts: Any) -> None:
    given = sorted(name for name, value in parts.items() if value is not None)
    if given:
        raise ValueError(f"FactoredRecurrentActorCritic: {' and '.join(given)} go with encoder=, which"
                         " was not given; pass encoder=your_module too, or drop them")


def _custom_encoder(encoder: Any, encoder_out: Any, critic_encoder: Any, shared_core: bool,
                    hidden_sizes: Any, activation: Any) -> int:
    """Check a user-supplied encoder's companions; return its output features."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"FactoredRecurrentActorCritic: expected encoder to be an nn.Module, got"
                        f" {type(encoder).__name__}")
    if hidden_sizes is not None or activation is not None:
        raise ValueError("FactoredRecurrentActorCritic: hidden_sizes and activation shape the built-in"
                         " encoder; with encoder= your module replaces it, so leave them unset")
    if encoder_out is None:
        raise ValueError("FactoredRecurrentActorCritic: expected encoder_out= (the features your encoder"
                         " returns per row) with encoder=")
    out = _positive("encoder_out", encoder_out)
    if shared_core and critic_encoder is not None:
        raise ValueError("FactoredRecurrentActorCritic: critic_encoder= is for a separate critic; pass"
                         " shared_core=False, or drop critic_encoder")
    if not shared_core and (not isinstance(critic_encoder, nn.Module) or critic_encoder is encoder):
        raise ValueError(
            "FactoredRecurrentActorCritic: shared_core=False with encoder= needs critic_encoder=, a"
            " second instance of your encoder (its own parameters, same encoder_out), e.g. build it twice"
        )
    return out


class FactoredRecurrentActorCritic(nn.Module):
    """A recurrent actor-critic over factored action spaces, built from gymnasium spaces.

    Observations of any Box / Discrete / MultiDiscrete / MultiBinary / Tuple / Dict space become
    one feature vector (:class:`~tether.nets.encoders.ObservationLayout`: one-hots for discrete
    leaves, the features concatenated in leaf order) -> encoder (Linear + LayerNorm + activation
    per hidden size, or a module of your own) -> tracked LSTM / GRU core -> one head per action
    factor (categorical for Discrete / MultiDiscrete, diagonal Gaussian with a learnable
    state-independent log-std for Box), plus a value head. With ``shared_core=False`` the critic
    has its own encoder and core (same sizes); the policy's state is still ONE
    :class:`~tether.RecurrentState`: the actor's layers first, the critic's stacked below them,
    ``[num_layers * 2, B, H]``, so ``reset`` / ``detach`` / ``snapshot`` cover both.

    Follows :class:`~tether.policy.RecurrentPolicy`. Init: orthogonal with gain sqrt(2) for the
    encoder, 0.01 for the action heads, 1.0 for the value head and the recurrent weights; biases 0.

    Args:
        observation_space: Box (any dtype), Discrete, MultiDiscrete, MultiBinary, or a Tuple / Dict
            of those, nested to any depth: ``obs_size`` features (see docs/observations.md).
        action_space: Discrete, MultiDiscrete, Box, or a Dict / Tuple of those (one head each).
        hidden_sizes: encoder widths (default ``(64,)``); ``()`` feeds the features to the core.
        activation: ``"tanh"`` (default), ``"relu"``, ``"gelu"``, ``"silu"``, ``"elu"``,
            ``"leaky_relu"`` or an ``nn.Module`` class.
        core: ``"lstm"`` or ``"gru"``.
        core_hidden_size: ``H`` of the core.
        num_layers: layers of each core.
        shared_core: one core for actor and critic; ``False`` gives the critic its own core.
        log_std_init: initial log-std of the Gaussian heads.
        max_graph_steps: passed to :func:`~tether.track`.
        encoder: your own module in place of the built-in MLP: it maps the features
            ``[N, obs_size]`` (float, in the policy's dtype) to ``[N, encoder_out]``. Kept as given
            (your init); replaces ``hidden_sizes`` / ``activation``, which must then be left unset.
        encoder_out: the features ``encoder`` returns; required with ``encoder``.
        critic_encoder: with ``encoder`` and ``shared_core=False``, the critic's own encoder: a
            second instance (built the same way, its own parameters), same ``encoder_out``.

    Raises:
        TypeError: for an unsupported observation or action space.
        ValueError: for a bad size, core kind or activation, or an incomplete custom encoder.

    Shapes:
        one step: obs ``[B, *obs_shape]`` (or ``[B, obs_size]`` for a Box; a dict / tuple of
        ``[B, *leaf_shape]`` for a Dict / Tuple space), masks bool ``[B, D]``;
        sequences: obs ``[T, B, ...]``, actions ``[T, B, *action_shape]``, episode_starts ``[T, B]``;
        state ``[L, B, H]`` with ``L = num_layers`` (shared) or ``2 * num_layers`` (separate).

    Example:
        >>> import gymnasium as gym, numpy as np, torch
        >>> from tether import EpisodeClock
        >>> policy = FactoredRecurrentActorCritic(
        ...     gym.spaces.Box(-1.0, 1.0, (4,)),
        ...     gym.spaces.Dict({"move": gym.spaces.Discrete(3), "aim": gym.spaces.Box(-1.0, 1.0, (2,))}))
        >>> clock = EpisodeClock(2)
        >>> state = policy.initial_state(2, clock)
        >>> out = policy.act(torch.zeros(2, 4), state, masks={"move": torch.tensor([[True] * 3] * 2)})
        >>> out.actions.shape, out.log_prob.shape, out.value.shape
        (torch.Size([2, 3]), torch.Size([2]), torch.Size([2]))
        >>> sorted(policy.env_actions(out.actions))
        ['aim', 'move']
        >>> done = np.array([False, True])
        >>> _ = clock.advance(done)
        >>> state = out.state.reset(done)  # the next act() takes this state

        A Dict observation, and an encoder of your own:

        >>> obs_space = gym.spaces.Dict({"cue": gym.spaces.Discrete(4), "pos": gym.spaces.Box(-1, 1, (2,))})
        >>> policy = FactoredRecurrentActorCritic(
        ...     obs_space, gym.spaces.Discrete(4), encoder=torch.nn.Linear(6, 32), encoder_out=32)
        >>> obs = {"cue": np.array([3, 0]), "pos": np.zeros((2, 2), np.float32)}
        >>> policy.act(obs, policy.initial_state(2)).value.shape
        torch.Size([2])
    """

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        *,
        hidden_sizes: Sequence[int] | None = None,
        activation: str | type[nn.Module] | None = None,
        core: Literal["lstm", "gru"] = "lstm",
        core_hidden_size: int = 64,
        num_layers: int = 1,
        shared_core: bool = True,
        log_std_init: float = 0.0,
        max_graph_steps: int = DEFAULT_MAX_GRAPH_STEPS,
        encoder: nn.Module | None = None,
        encoder_out: int | None = None,
        critic_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if core not in ("lstm", "gru"):
            raise ValueError(f"FactoredRecurrentActorCritic: expected core 'lstm' or 'gru', got {core!r}")
        hidden = _positive("core_hidden_size", core_hidden_size)
        layers = _positive("num_layers", num_layers)
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_layout = ObservationLayout(observation_space)
        self.obs_size = self.obs_layout.size
        self.layout = ActionLayout(action_space)
        self.core_kind = core
        if encoder is None:
            _no_custom_parts(encoder_out=encoder_out, critic_encoder=critic_encoder)
            widths = (64,) if hidden_sizes is None else hidden_sizes
            sizes = [_positive("each hidden size", s) for s in widths]
            act = activation_class("tanh" if activation is None else activation)
            self.encoder: nn.Module = mlp_encoder(self.obs_size, sizes, act)
            # A separate critic gets its own encoder too: the value loss's large gradients then
            # never reach the features the actor reads (as with sb3-contrib's enable_critic_lstm).
            self.critic_encoder: nn.Module | None = (None if shared_core
                                                     else mlp_encoder(self.obs_size, sizes, act))
            features = sizes[-1] if sizes else self.obs_size
        else:
            features = _custom_encoder(encoder, encoder_out, critic_encoder, shared_core,
                                       hidden_sizes, activation)
            self.encoder = encoder
            self.critic_encoder = critic_encoder
        self.encoder_out = features
        self.actor_core = _recurrent(core, features, hidden, layers, max_graph_steps)
        self.critic_core = None if shared_core else _recurrent(core, features, hidden, layers,
                                                               max_graph_steps)
        self.heads = FactoredHeads(self.layout, hidden, log_std_init)
        self.value_head = value_head(hidden)
        # torch.compile options set by compile(), and the compiled stages built from them lazily.
        self._compile_options: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._compiled: dict[str, Callable[..., Any]] = {}

    # ------------------------------------------------------------------------------------------
    # facts
    @property
    def shared_core(self) -> bool:
        """Whether actor and critic share one core."""
        return self.critic_core is None

    @property
    def hidden_size(self) -> int:
        """``H`` of the core(s)."""
        return self.actor_core.spec.hidden_size

    @property
    def state_layers(self) -> int:
        """``L`` of the policy state: the actor's layers, plus the critic's when separate."""
        critic = 0 if self.critic_core is None else self.critic_core.spec.num_layers
        return self.actor_core.spec.num_layers + critic

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one step's actions after the batch dim (see :class:`~tether.policy.ActResult`)."""
        return self.layout.action_shape

    # ------------------------------------------------------------------------------------------
    # the RecurrentPolicy protocol
    def initial_state(
        self, batch_size: int, clock: EpisodeClock | None = None, *, env_rows: Any = None
    ) -> RecurrentState:
        """A zero state ``[state_layers, batch_size, H]`` on the policy's device and dtype.

        Args:
            batch_size: rows ``B`` (``clock.num_envs`` unless ``env_rows`` is given).
            clock: the clock to check against; ``None`` makes an unchecked state.
            env_rows: which clock rows the state covers, when not all of them.
        """
        weight = self.value_head.weight
        return RecurrentState.zeros(
            self.state_layers, batch_size, self.hidden_size, has_c=self.core_kind == "lstm",
            clock=clock, env_rows=env_rows, device=weight.device, dtype=weight.dtype,
        )

    @torch.no_grad()
    def act(
        self, obs: Any, state: RecurrentState, masks: Any = None, deterministic: bool = False
    ) -> ActResult:
        """One inference step (no autograd graph): sample actions, their log-prob and ``V(obs)``.

        Args:
            obs: ``[B, *obs_shape]`` or ``[B, obs_size]`` (tensor or array).
            state: the policy state valid for the clock's current tick.
            masks: optional bool action masks (True = allowed): one tensor ``[B, D]`` with the
                discrete heads concatenated in head order, or a list / tuple / dict per head.
            deterministic: take each head's mode instead of sampling.

        Returns:
            :class:`~tether.policy.ActResult` ``(actions, log_prob [B], value [B], state)``.

        Raises:
            ValueError: for obs or masks of the wrong shape, a mask for a Box head, or a row whose
                mask allows no action (:class:`~tether.nets.ActionMaskError`).
            StateMismatchError / StaleStateError / GraphLeakError: from the state checks.
        """
        x = self._obs(obs, 1, "act")
        if not self._state_fits(state, x.shape[0]):
            self._check_state(state, x.shape[0], "act")  # raises, saying what was expected
        mask = None if masks is None else self._masks(masks, (x.shape[0],), "act")
        z, zv = self._stage("_encode")(x)
        # [B, E] -> [1, B, E]: one step of the core(s)
        y, yv, next_state = self._step_cores(z.unsqueeze(0), zv.unsqueeze(0), state)
        actions, log_prob, value = self._stage("_sample")(y[0], yv[0], mask, deterministic)
        return ActResult(actions, log_prob, value, next_state)

    @torch.no_grad()
    def value(self, obs: Any, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        """``V(obs) [B]`` from ``state``, without an autograd graph; the state is not advanced.

        Args:
            obs: ``[B, *obs_shape]`` or ``[B, obs_size]``.
            state: the policy state.
            bootstrap: the truncation bootstrap read ``V(final_obs)`` of rows whose episode just
                ended, from their own pre-reset state (passed to the tracked core as
                ``bootstrap=True``, the one read strict mode allows).

        Raises:
            ValueError / StateMismatchError / StaleStateError: as :meth:`act`.
        """
        x = self._obs(obs, 1, "value")
        self._check_state(state, x.shape[0], "value")
        z, zv = self._stage("_encode")(x)
        if self.critic_core is None:
            y, _ = self.actor_core(z.unsqueeze(0), state, bootstrap=bootstrap)
        else:
            y, _ = self.critic_core(zv.unsqueeze(0), self._split(state)[1], bootstrap=bootstrap)
        value: torch.Tensor = self.value_head(y[0]).squeeze(-1)
        return value

    def env_actions(self, actions: torch.Tensor) -> Any:
        """Turn ``act``'s actions ``[B, *action_shape]`` into what the vector env's ``step`` takes.

        Returns:
            numpy arrays in the space's dtype and shape (Box clipped to its bounds, Discrete /
            MultiDiscrete with ``start`` added); a dict of them for a Dict space, a tuple for Tuple.

        Raises:
            ValueError: when ``actions`` is not shaped ``[B, *action_shape]``.
        """
        return self.layout.to_env(actions)

    def evaluate_actions(
        self,
        obs: Any,
        actions: Any,
        episode_starts: Any,
        initial_state: RecurrentState,
        masks: Any = None,
        return_state: bool = False,
    ) -> EvalResult:
        """Log-prob, entropy and value of ``actions`` along a sequence, with episode restarts.

        Args:
            obs: ``[T, B, *obs_shape]`` or ``[T, B, obs_size]``.
            actions: ``[T, B, *action_shape]`` as ``act`` returned them (``[T, B, 1]`` is also
                accepted for a Discrete space).
            episode_starts: bool ``[T, B]``: True where ``obs[t, b]`` starts a new episode (the
                state of that row restarts from zeros).
            initial_state: the state before step 0 (usually a stored snapshot).
            masks: the masks ``act`` used, shaped ``[T, B, D]`` or per head ``[T, B, n]``.
            return_state: also return the state after step ``T - 1``.

        Returns:
            :class:`~tether.policy.EvalResult` ``(log_prob, entropy, value)``, each ``[T, B]``,
            and the final state (``None`` unless ``return_state``).

        Raises:
            ValueError: for obs / actions / masks / episode_starts of the wrong shape or dtype,
                actions outside their Discrete range, or a row whose mask allows no action.
            StateMismatchError: when the state does not fit the policy or the batch.
        """
        where = "evaluate_actions"
        x = self._obs(obs, 2, where)
        T, B = int(x.shape[0]), int(x.shape[1])
        self._check_state(initial_state, B, where)
        starts = as_episode_starts(episode_starts, T, B, where)
        flat_actions = as_actions(actions, self.layout, T, B, x.device, where)
        mask = self._masks(masks, (T, B), where)
        # (T, B, F) -> (T * B, F): the tensor stages always see [N, ...], one compiled graph.
        z, zv = self._stage("_encode")(x.reshape(T * B, -1))
        z, zv = z.reshape(T, B, -1), zv.reshape(T, B, -1)
        pi_state, vf_state = self._split(initial_state)
        plan = plan_unroll(self.actor_core, starts)  # one plan for both cores
        y, pi_final = unroll(self.actor_core, z, plan, pi_state)
        yv, final = y, pi_final
        if self.critic_core is not None:
            yv, vf_final = unroll(self.critic_core, zv, plan, vf_state)
            if return_state:
                final = RecurrentState.stack_layers((pi_final, vf_final))
        _, log_prob, entropy, value = self._stage("_outputs")(
            y.reshape(T * B, -1), yv.reshape(T * B, -1),
            None if mask is None else mask.reshape(T * B, -1), flat_actions)
        return EvalResult(log_prob.reshape(T, B), entropy.reshape(T, B), value.reshape(T, B),
                          final if return_state else None)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Compile the pure-tensor stages in place with :func:`torch.compile`.

        The stages are :meth:`_encode` (the encoder), :meth:`_sample` (``act``'s heads and value
        head) and :meth:`_outputs` (scoring: heads, entropies, value head); each is compiled on
        first use, with these arguments (e.g.
        ``backend="aot_eager"``, ``fullgraph=True``, ``dynamic=True``). The input checks, the
        tracked core and its lifecycle checks stay eager, so a misuse still raises with its full
        message. Parameter names and ``state_dict`` keys are unchanged; a pickled / deep-copied
        policy keeps the options and compiles again on first use.
        """
        self._compile_options = (args, kwargs)
        self._compiled = {}

    # ------------------------------------------------------------------------------------------
    # the tensor stages: pure functions of tensors, compiled by compile()
    def _encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic encoder features ``[N, E]`` each, of observations ``[N, obs_size]``.

        The critic's are the actor's when there is no separate critic.
        """
        z = self.encoder(obs)
        return z, (z if self.critic_encoder is None else self.critic_encoder(obs))

    def _outputs(
        self,
        actor_features: torch.Tensor,
        critic_features: torch.Tensor,
        masks: torch.Tensor | None,
        actions: torch.Tensor | None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (``actions is None``) or score actions, and the value, from core outputs ``[N, H]``.

        Returns:
            ``(actions [N, *action_shape], log_prob [N], entropy [N], value [N])``.
        """
        chosen, log_prob, entropy = self.heads(actor_features, masks, actions, deterministic)
        return chosen, log_prob, entropy, self.value_head(critic_features).squeeze(-1)

    def _sample(
        self, actor_features: torch.Tensor, critic_features: torch.Tensor, masks: torch.Tensor | None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``act``'s outputs: what :meth:`_outputs` samples (the same draws), without the entropy.

        Returns:
            ``(actions [N, *action_shape], log_prob [N], value [N])``.
        """
        chosen, log_prob = self.heads.sample(actor_features, masks, deterministic)
        return chosen, log_prob, self.value_head(critic_features).squeeze(-1)

    def _stage(self, name: str) -> Callable[..., Any]:
        """The stage ``name``, compiled when :meth:`compile` was called."""
        if self._compile_options is None:
            eager: Callable[..., Any] = getattr(self, name)
            return eager
        stage = self._compiled.get(name)
        if stage is None:
            args, kwargs = self._compile_options
            stage = self._compiled[name] = torch.compile(getattr(self, name), *args, **kwargs)
        return stage

    def __getstate__(self) -> dict[str, Any]:
        # Compiled functions do not pickle; the options do, and the stages recompile on first use.
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        state["_compiled"] = {}
        return state

    # ------------------------------------------------------------------------------------------
    # the lifecycle layer: input checks, state split / merge (host side, never compiled)
    def _split(self, state: RecurrentState) -> tuple[RecurrentState, RecurrentState]:
        """The actor's and the critic's views of the policy state (the same one when shared)."""
        if self.critic_core is None:
            return state, state
        # Each tracked core checks its own half; stack_layers joins the next states again.
        return state.split_layers(self.actor_core.spec.num_layers)

    def _step_cores(
        self, z: torch.Tensor, zv: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
        """One step of the actor core (and the critic's): ``(y, yv, next state)``.

        With a separate critic both halves of the state share every lifecycle fact (tick, ids,
        window, graph), and the cores share their spec, so checking the actor's half checks the
        critic's too: one check, the two plain calls, one next state (no stack of two states).
        """
        actor, critic = self.actor_core, self.critic_core
        if critic is None:
            y, next_state = actor(z, state)
            return y, y, next_state
        if critic.spec != actor.spec:  # pragma: no cover - the constructor builds them alike
            pi_state, vf_state = self._split(state)
            y, pi_state = actor(z, pi_state)
            yv, vf_state = critic(zv, vf_state)
            return y, yv, RecurrentState.stack_layers((pi_state, vf_state))
        cut = actor.spec.num_layers
        verified = None
        if get_mode() != "off":  # (the shapes were checked by act, in every mode)
            pi_state, vf_state = state.split_layers(cut)
            verified = actor.check(z, pi_state)
            critic.check_fit(zv, vf_state)  # the critic's device / dtype
            halves = (pi_state.tensors, vf_state.tensors)
        else:
            halves = (tuple(t[:cut] for t in state.tensors), tuple(t[cut:] for t in state.tensors))
        paired = actor.spec.has_c
        y, pi = _aten.run_sequence_module(actor.module, z, halves[0], has_c=paired, fuse=True)
        yv, vf = _aten.run_sequence_module(critic.module, zv, halves[1], has_c=paired, fuse=True)
        tensors = tuple(torch.cat(pair) for pair in zip(pi, vf, strict=True))
        return y, yv, state.advanced(tensors, 1, ids_verified=verified is not None, episode_ids=verified)

    def _state_fits(self, state: Any, batch: int) -> bool:
        """The cheap test behind :meth:`_check_state` (the state's kind, layers, rows and size)."""
        facts = self.__dict__.get("_state_facts")
        if facts is None:  # the cores never change kind or size after construction
            facts = self.__dict__["_state_facts"] = (
                2 if self.core_kind == "lstm" else 1, self.state_layers, self.hidden_size)
        if not isinstance(state, RecurrentState) or len(state.tensors) != facts[0]:
            return False
        shape = state.tensors[0].shape
        return len(shape) == 3 and shape[0] == facts[1] and shape[1] == batch and shape[2] == facts[2]

    def _check_state(self, state: Any, batch: int, where: str) -> None:
        if not isinstance(state, RecurrentState):
            raise TypeError(
                f"{where}: expected a RecurrentState, got {type(state).__name__}; build one with"
                " `policy.initial_state(batch_size, clock)`"
            )
        kind = "(h, c)" if self.core_kind == "lstm" else "h"
        want = (self.state_layers, batch, self.hidden_size)
        got = (state.num_layers, state.batch_size, state.hidden_size)
        if got != want or state.has_c != (self.core_kind == "lstm"):
            layers = (f"{self.state_layers}" if self.critic_core is None else
                      f"{self.state_layers} = {self.actor_core.spec.num_layers} actor +"
                      f" {self.critic_core.spec.num_layers} critic")
            raise StateMismatchError(
                f"{where}: expected a {self.core_kind} {kind} state shaped [layers={layers},"
                f" batch={batch} (the obs rows), hidden={self.hidden_size}], got"
                f" {'(h, c)' if state.has_c else 'h'} shaped {list(got)}",
                fix="build the state with `policy.initial_state(batch_size, clock)`",
                expected=str(want), got=str(got),
            )

    def _obs(self, obs: Any, lead: int, where: str) -> torch.Tensor:
        # The one conversion of observations to features, shared by act / value / evaluate_actions.
        return self.obs_layout.features(obs, lead, self.value_head.weight, where)

    def _masks(self, masks: Any, lead: tuple[int, ...], where: str) -> torch.Tensor | None:
        mask = normalize_masks(masks, self.layout, lead, self.value_head.weight.device, where)
        if mask is not None:
            check_allowed(mask, self.layout, where)
        return mask
