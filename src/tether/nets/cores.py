"""The actor-critic's recurrent cores: built, the policy state checked against them, stepped together.

A :class:`~tether.nets.FactoredRecurrentActorCritic` has one tracked core (shared) or two (a
separate critic), and ONE policy state: the actor's layers first, the critic's stacked below them.
This module is its lifecycle layer: host-side checks of that state, the fused one-step call of
both cores through the tracked modules' public check hook (:meth:`~tether.TrackedRNN.check`), and
the one plain call of a core's weights (:func:`run_core`) that the fused step and the exportable
step (:class:`~tether.nets.PolicyStep`) share.
"""

from __future__ import annotations

import torch
from torch import nn

from tether import _aten
from tether.errors import StateMismatchError
from tether.modes import get_mode
from tether.state import RecurrentState
from tether.tracking import TrackedRNN, track

__all__ = ["check_policy_state", "recurrent_core", "run_core", "step_cores"]


def recurrent_core(core: str, in_features: int, hidden: int, layers: int, max_graph_steps: int) -> TrackedRNN:
    """A tracked ``nn.LSTM`` (``core="lstm"``) or ``nn.GRU`` with CleanRL's recurrent init.

    Recurrent weights orthogonal with gain 1, biases zero.
    """
    rnn = (nn.LSTM if core == "lstm" else nn.GRU)(in_features, hidden, layers)
    for name, param in rnn.named_parameters():
        if name.startswith("weight"):
            nn.init.orthogonal_(param, 1.0)
        else:
            nn.init.zeros_(param)
    return track(rnn, max_graph_steps=max_graph_steps)


def run_core(
    module: nn.Module, x: torch.Tensor, tensors: tuple[torch.Tensor, ...], *, has_c: bool, fuse: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One plain call of a core's module on ``x [T, B, E]`` from the state ``tensors``.

    Args:
        module: the tracked core's plain ``nn.LSTM`` / ``nn.GRU``.
        x: the input ``[T, B, E]``.
        tensors: ``(h, c)`` when ``has_c``, else ``(h,)``, each ``[L, B, H]``.
        has_c: whether the module carries an ``(h, c)`` pair.
        fuse: whether the shapes were checked, so the ATen op may be called directly (the
            training hot path); ``False`` calls the module itself (what an exported graph holds).

    Returns:
        ``(y [T, B, H], next tensors)``.
    """
    return _aten.run_sequence_module(module, x, tensors, has_c=has_c, fuse=fuse)


def step_cores(
    actor: TrackedRNN, critic: TrackedRNN | None, z: torch.Tensor, zv: torch.Tensor, state: RecurrentState
) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
    """One step of the actor core (and the critic's): ``(y, yv, next state)``.

    With a separate critic both halves of the state share every lifecycle fact (tick, ids, window,
    graph), and the cores share their spec, so checking the actor's half checks the critic's too:
    one check through the public hook, the two plain calls, one next state (no stack of two
    states). The caller has checked the state's shape (:func:`check_policy_state`).

    Args:
        actor: the actor's tracked core.
        critic: the critic's tracked core, or ``None`` when shared.
        z: the actor's input ``[1, B, E]``.
        zv: the critic's input ``[1, B, E]`` (ignored when shared).
        state: the policy state.
    """
    if critic is None:
        y, next_state = actor(z, state)
        return y, y, next_state
    if critic.spec != actor.spec:  # pragma: no cover - the constructor builds them alike
        pi_state, vf_state = state.split_layers(actor.spec.num_layers)
        y, pi_state = actor(z, pi_state)
        yv, vf_state = critic(zv, vf_state)
        return y, yv, RecurrentState.stack_layers((pi_state, vf_state))
    cut = actor.spec.num_layers
    verified = None
    if get_mode() != "off":
        pi_state, vf_state = state.split_layers(cut)
        verified = actor.check(z, pi_state)
        critic.check_fit(zv, vf_state)  # the critic's device / dtype
        halves = (pi_state.tensors, vf_state.tensors)
    else:
        halves = (tuple(t[:cut] for t in state.tensors), tuple(t[cut:] for t in state.tensors))
    has_c = actor.spec.has_c
    y, pi = run_core(actor.module, z, halves[0], has_c=has_c, fuse=True)
    yv, vf = run_core(critic.module, zv, halves[1], has_c=has_c, fuse=True)
    tensors = tuple(torch.cat(pair) for pair in zip(pi, vf, strict=True))
    return y, yv, state.advanced(tensors, 1, ids_verified=verified is not None, episode_ids=verified)


def check_policy_state(
    actor: TrackedRNN, critic: TrackedRNN | None, state: object, batch: int, where: str
) -> None:
    """Raise unless ``state`` is a policy state for these cores and ``batch`` rows.

    Raises:
        TypeError: when ``state`` is not a :class:`~tether.RecurrentState`.
        StateMismatchError: for another kind (``(h, c)`` vs ``h``), layer count, batch or size.
    """
    if not isinstance(state, RecurrentState):
        raise TypeError(
            f"{where}: expected a RecurrentState, got {type(state).__name__}; build one with"
            " `policy.initial_state(batch_size, clock)`"
        )
    spec = actor.spec
    core = "lstm" if spec.has_c else "gru"
    actor_layers = spec.num_layers
    layers = actor_layers + (0 if critic is None else critic.spec.num_layers)
    want = (layers, batch, spec.hidden_size)
    got = (state.num_layers, state.batch_size, state.hidden_size)
    state_has_c = state.has_c
    if got != want or state_has_c != spec.has_c:
        shown = (f"{layers}" if critic is None else
                 f"{layers} = {actor_layers} actor + {critic.spec.num_layers} critic")
        raise StateMismatchError(
            f"{where}: expected a {core} {'(h, c)' if spec.has_c else 'h'} state shaped"
            f" [layers={shown}, batch={batch} (the obs rows), hidden={spec.hidden_size}], got"
            f" {'(h, c)' if state_has_c else 'h'} shaped {list(got)}",
            fix="build the state with `policy.initial_state(batch_size, clock)`",
            expected=str(want), got=str(got),
        )
