"""tether.tracking: track() wraps an LSTM / GRU (or their cells) so it takes and returns a RecurrentState.

:class:`StateSpec` says how a module takes its state; :class:`TrackedRNN` checks a state against
its clock, runs the plain module and returns the next state (built by
:meth:`RecurrentState.advanced <tether.RecurrentState.advanced>`, where the rules live).

The wrapper checks the state against its clock with host-side integers only, runs the plain
module and stamps the new state with the next tick. No device synchronisation happens per step.
Under ``torch.compile`` the checks and the stamp run eagerly (``torch.compiler.disable``) on each
side of the compiled module call, so a compiled tracked module checks what an eager one checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import nn

from tether import _aten
from tether._lifecycle_checks import (
    GRAPH_BYTES_PER_STATE_BYTE,
    check_ids,
    report_graph_limit,
    report_spent,
    report_tick,
    report_window,
)
from tether.clock import EpisodeClock
from tether.errors import StateMismatchError
from tether.modes import get_mode
from tether.state import RecurrentState

__all__ = ["DEFAULT_MAX_GRAPH_STEPS", "GRAPH_BYTES_PER_STATE_BYTE", "StateSpec", "TrackedRNN", "track"]

#: Grad-carrying steps a state may accumulate before a tracked module calls it a leak.
DEFAULT_MAX_GRAPH_STEPS = 2048



@attrs.frozen
class StateSpec:
    """How a recurrent module takes and returns its state (the adapter for custom modules).

    Args:
        num_layers: ``L`` of the state (layers x directions for a sequence module, 1 for a cell).
        hidden_size: ``H``.
        has_c: ``True`` when the module carries an ``(h, c)`` pair like an LSTM, ``False`` for
            ``h`` only (GRU, RNN).
        style: ``"sequence"``: ``module(x, hx) -> (y, hx')`` with ``hx`` shaped ``[L, B, H]``
            (like ``nn.LSTM``); ``"cell"``: ``module(x, hx) -> hx'`` with ``hx`` shaped ``[B, H]``
            (like ``nn.LSTMCell``).
        batch_first: for sequence style, whether ``x`` is ``[B, T, ...]``.

    >>> StateSpec(1, 8, has_c=False)
    StateSpec(num_layers=1, hidden_size=8, has_c=False, style='sequence', batch_first=False)
    """

    num_layers: int
    hidden_size: int
    has_c: bool = attrs.field(converter=bool)
    style: Literal["sequence", "cell"] = "sequence"
    batch_first: bool = False

    @classmethod
    def of(cls, module: nn.Module) -> StateSpec:
        """The spec of a built-in ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` or their cells.

        Raises:
            TypeError: for another module (pass a :class:`StateSpec` to :func:`track` instead).
            ValueError: for an ``nn.LSTM`` with ``proj_size`` (h and c differ in size).
        """
        if isinstance(module, nn.LSTM | nn.GRU | nn.RNN):
            if getattr(module, "proj_size", 0):
                raise ValueError("track: nn.LSTM with proj_size > 0 is not supported (h and c sizes differ)")
            layers = module.num_layers * (2 if module.bidirectional else 1)
            return cls(layers, module.hidden_size, isinstance(module, nn.LSTM), "sequence",
                       module.batch_first)
        if isinstance(module, nn.LSTMCell | nn.GRUCell | nn.RNNCell):
            return cls(1, module.hidden_size, isinstance(module, nn.LSTMCell), "cell")
        raise TypeError(
            f"track: expected nn.LSTM, nn.GRU, nn.RNN or one of their cells, got"
            f" {type(module).__name__}; for a custom module pass spec=StateSpec(...)"
        )


def _param_meta(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in module.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


class TrackedRNN(nn.Module):
    """A recurrent module that takes and returns a :class:`RecurrentState`; see :func:`track`.

    Transparent where a port from the plain module needs it: the wrapped module's attributes
    read through (``tracked.hidden_size``, ``tracked.weight_ih_l0``); ``state_dict`` /
    ``load_state_dict`` use the plain module's keys (``weight_ih_l0``, not
    ``module.weight_ih_l0``; the latter still loads), so a checkpoint of a model holding
    ``nn.LSTM`` loads into the same model holding ``track(nn.LSTM)`` and back; and
    ``named_parameters`` / ``named_buffers`` give the same names (see :meth:`named_modules`).

    Args:
        module: the plain recurrent module; it is registered as ``self.module``.
        spec: how it takes its state.
        max_graph_steps: grad-carrying steps a state may accumulate before it counts as a leak.
    """

    def __init__(self, module: nn.Module, spec: StateSpec, max_graph_steps: int) -> None:
        super().__init__()
        if max_graph_steps < 1:
            raise ValueError(f"track: expected max_graph_steps >= 1, got {max_graph_steps}")
        self.module = module
        self.spec = spec
        self.max_graph_steps = int(max_graph_steps)
        self._device, self._dtype = _param_meta(module)
        _aten.hide_child_in_state_dict(self, "module")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("module")
            if inner is None or name.startswith("_"):
                raise
            return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # The wrapped module's parameters and buffers are named as if they were this module's
        # (named_parameters, state_dict): assigning one here assigns it there, as torch.func's
        # functional_call does with those names.
        inner = self.__dict__.get("_modules", {}).get("module")
        if inner is not None and name not in self.__dict__ and _aten.owns_tensor(inner, name):
            _aten.set_own_tensor(inner, name, value)
            return
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        inner = self.__dict__.get("_modules", {}).get("module")
        if inner is not None and name not in self.__dict__ and _aten.owns_tensor(inner, name):
            delattr(inner, name)
            return
        super().__delattr__(name)

    def named_modules(
        self, memo: set[nn.Module] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Module]]:
        """This module, then the wrapped module under the same name (not ``<name>.module``).

        ``named_parameters`` and ``named_buffers`` (of this module and of any model holding it)
        walk these names, so they give the plain module's names (``weight_ih_l0``), as
        ``state_dict`` does: a port's weight-decay filters and parameter groups find them.
        """
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        yield from self.module.named_modules(memo, prefix, remove_duplicate)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> TrackedRNN:
        super()._apply(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        self._device, self._dtype = _param_meta(self.module)
        return self

    def _shapes_fit(self, x: torch.Tensor, state: RecurrentState) -> bool:
        """Whether ``x`` and ``state`` fit a sequence module (the check off mode still makes)."""
        return x.dim() == 3 and state.tensors[0].shape == (
            self.spec.num_layers, x.shape[0 if self.spec.batch_first else 1], self.spec.hidden_size)

    def initial_state(
        self,
        batch_size: int,
        clock: EpisodeClock | None = None,
        *,
        env_rows: Any = None,
    ) -> RecurrentState:
        """A zero state for ``batch_size`` rows on the module's device and dtype.

        Args:
            batch_size: rows ``B`` (``clock.num_envs`` unless ``env_rows`` is given).
            clock: the clock to check against; ``None`` makes an unchecked state.
            env_rows: which clock rows the state covers, when not all of them.
        """
        device, dtype = _param_meta(self.module)
        return RecurrentState.zeros(
            self.spec.num_layers, batch_size, self.spec.hidden_size, has_c=self.spec.has_c,
            clock=clock, env_rows=env_rows, device=device, dtype=dtype,
        )

    def forward(
        self, x: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Run one step (or ``T`` steps) from ``state``; return the output and the next state.

        Args:
            x: ``[T, B, in]`` (``[B, T, in]`` when batch-first) for a sequence module, ``[B, in]``
                for a cell.
            state: the state valid for the clock's current tick.
            bootstrap: a read of the ending episode's own state (the truncation bootstrap
                ``V(final_obs)``): rows whose episode ended at the latest ``advance`` are allowed;
                the returned state is spent and may not be stepped again.

        Returns:
            ``(y, new_state)``: ``y`` as the plain module returns it (``h'`` for a cell), and the
            state valid for tick ``tick + T``.

        Raises:
            StaleStateError: a row of an ended episode was not reset, the state belongs to another
                tick, or it came from a bootstrap read.
            GraphLeakError: the state carries a graph across ``end_window()`` or past the limit.
            StateMismatchError: shapes, device or dtype do not fit the module or the input.
        """
        spec = self.spec
        sequence = spec.style == "sequence"
        steps = int(x.shape[1 if spec.batch_first else 0]) if sequence and x.dim() == 3 else 1
        if torch.compiler.is_compiling():
            return self._compiled_forward(x, state, steps, bootstrap)
        checking = get_mode() != "off"
        verified = self.check(x, state, steps=steps, bootstrap=bootstrap) if checking else None
        if sequence:
            # Checked shapes (or the cheap shape test in off mode) let nn.LSTM / nn.GRU skip their
            # Python re-validation and go straight to the ATen op, bit for bit the same.
            fuse = checking or self._shapes_fit(x, state)
            y, tensors = _aten.run_sequence_module(self.module, x, state.tensors, has_c=spec.has_c,
                                                   fuse=fuse)
        elif spec.has_c:
            h, c = self.module(x, (state.tensors[0][0], state.tensors[1][0]))
            tensors = (h.unsqueeze(0), c.unsqueeze(0))
            y = h
        else:
            y = self.module(x, state.tensors[0][0])
            tensors = (y.unsqueeze(0),)
        return y, state.advanced(tensors, steps, ids_verified=verified is not None, bootstrap=bootstrap,
                                 episode_ids=verified)

    def _compiled_forward(
        self, x: torch.Tensor, state: RecurrentState, steps: int, bootstrap: bool
    ) -> tuple[torch.Tensor, RecurrentState]:
        """:meth:`forward` as torch.compile traces it: the checks and the new state's bookkeeping
        (host-side Python on an attrs object, which dynamo cannot trace) run eagerly around the
        traced module call."""
        verified = _check_eagerly(self, x, state, steps, bootstrap)
        spec = self.spec
        if spec.style == "sequence":
            y, tensors = _aten.run_sequence_module(self.module, x, state.tensors, has_c=spec.has_c,
                                                   fuse=False)
        elif spec.has_c:
            h, c = self.module(x, (state.tensors[0][0], state.tensors[1][0]))
            tensors, y = (h.unsqueeze(0), c.unsqueeze(0)), h
        else:
            y = self.module(x, state.tensors[0][0])
            tensors = (y.unsqueeze(0),)
        return y, _advance_eagerly(state, tensors, steps, verified, bootstrap)

    # ----------------------------------------------------------------------------------------
    def check(
        self, x: torch.Tensor, state: RecurrentState, *, steps: int = 1,
        starts: np.ndarray | None = None, bootstrap: bool = False,
    ) -> np.ndarray | None:
        """Run the lifecycle checks of a step of ``steps`` from ``state``; return the verified ids.

        The one hook every layer that runs this module's weights itself calls (the sequence engine,
        the actor-critic's fused step, adapters) before its own plain call, so that the checks of
        :meth:`forward` hold there too. In ``off`` mode it checks nothing and returns ``None``.

        Args:
            x: the input of the step (its shape and the state's must fit the module).
            state: the state the step starts from.
            steps: how many steps the call runs (``T`` of a sequence).
            starts: bool ``[B]``, rows the caller zeroes before the first step (an unroll's
                ``episode_starts[0]``): they may hold an ended episode, and take the clock's ids.
            bootstrap: a read of the ending episode's own state (see :meth:`forward`).

        Returns:
            The rows' verified episode ids (the state's own, with restarting rows and rows whose
            episode was unknown set to the clock's), or ``None`` when they could not be verified
            (no clock, a snapshot, a reported mismatch, or ``off`` mode).

        Raises:
            StaleStateError, GraphLeakError: in strict mode (warn mode warns, and returns ``None``).
            StateMismatchError: shapes, device or dtype do not fit the module, in every mode but off.
        """
        if get_mode() == "off":
            return None
        restarting = starts
        if not isinstance(state, RecurrentState):
            raise TypeError(
                f"tracked {type(self.module).__name__}: expected a RecurrentState, got"
                f" {type(state).__name__}; build one with `tracked.initial_state(batch, clock)`"
            )
        self.check_fit(x, state)
        if state.spent:
            report_spent()
        # The limit catches a live state carried on call after call without detach(); a replay
        # (from a snapshot), one long call and a bootstrap read (its result is discarded) are exempt.
        if (state.graph_steps and state.graph_steps + steps > self.max_graph_steps and not bootstrap
                and not state.is_snapshot and state.tensors[0].requires_grad):
            report_graph_limit(state, steps, self.max_graph_steps)
        clock = state.clock
        if clock is None or state.is_snapshot:
            return None
        if state.tick != clock.tick:
            report_tick(state, clock)
        if state.window != clock.window and state.tensors[0].requires_grad:
            report_window(state, clock)
        if state.verified == clock.renewals and restarting is None:
            return state.episode_ids
        return check_ids(state, clock, bootstrap=bootstrap, restarting=restarting)

    def check_fit(self, x: torch.Tensor, state: RecurrentState) -> None:
        """Check that ``x`` and ``state`` fit this module: input dims, state kind, shape, device, dtype.

        Raises:
            StateMismatchError: naming what the module expects and what it got.
        """
        spec = self.spec
        name = f"tracked {type(self.module).__name__}"
        want_dim = 3 if spec.style == "sequence" else 2
        if x.dim() != want_dim:
            raise StateMismatchError(
                f"{name}: expected a batched input with {want_dim} dims"
                f" ({'[B, T, in]' if spec.batch_first else '[T, B, in]'} for a sequence module,"
                f" [B, in] for a cell), got shape {tuple(x.shape)}",
                expected=f"{want_dim} dims", got=str(tuple(x.shape)),
            )
        batch = int(x.shape[0 if spec.style == "cell" or spec.batch_first else 1])
        shape = state.tensors[0].shape
        expected = (spec.num_layers, batch, spec.hidden_size)
        if shape != expected or len(state.tensors) != (2 if spec.has_c else 1):
            raise StateMismatchError(
                f"{name}: expected a {'(h, c)' if spec.has_c else 'h'} state shaped"
                f" [layers={expected[0]}, batch={expected[1]}, hidden={expected[2]}], got"
                f" {len(state.tensors)} tensor(s) shaped {list(shape)}",
                fix="build the state with `tracked.initial_state(batch_size, clock)`",
                expected=str(expected), got=str(shape),
            )
        device, dtype = self._device, self._dtype
        state_device = state.tensors[0].device
        if state_device != device or (state.tensors[0].dtype != dtype
                                      and not torch.is_autocast_enabled(state_device.type)):
            raise StateMismatchError(
                f"{name}: expected a state on {device} with dtype {dtype} (the module's), got"
                f" {state_device} / {state.tensors[0].dtype}",
                fix=f"use `state.to({str(device)!r}, {dtype})` or move the module",
                expected=f"{device} {dtype}", got=f"{state_device} {state.tensors[0].dtype}",
            )

    def extra_repr(self) -> str:
        return f"max_graph_steps={self.max_graph_steps}"


@torch.compiler.disable  # type: ignore[untyped-decorator]
def _check_eagerly(
    core: TrackedRNN, x: torch.Tensor, state: RecurrentState, steps: int, bootstrap: bool
) -> np.ndarray | None:
    return core.check(x, state, steps=steps, bootstrap=bootstrap) if get_mode() != "off" else None


@torch.compiler.disable  # type: ignore[untyped-decorator]
def _advance_eagerly(
    state: RecurrentState, tensors: tuple[torch.Tensor, ...], steps: int, verified: np.ndarray | None,
    bootstrap: bool,
) -> RecurrentState:
    return state.advanced(tensors, steps, ids_verified=verified is not None, bootstrap=bootstrap,
                          episode_ids=verified)


def track(
    module: nn.Module,
    *,
    spec: StateSpec | None = None,
    max_graph_steps: int = DEFAULT_MAX_GRAPH_STEPS,
) -> TrackedRNN:
    """Wrap a recurrent module so that it takes and returns a :class:`RecurrentState`.

    Supports ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` (any layers, either ``batch_first``,
    bidirectional) and ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell``; any other module with
    the ``(x, hx) -> (y, hx)`` (or cell) protocol through ``spec``.

    Args:
        module: the plain recurrent module. Its outputs are unchanged, bit for bit.
        spec: how a custom module takes its state; inferred for the built-in ones.
        max_graph_steps: grad-carrying steps a state may accumulate before a
            :class:`GraphLeakError` (default :data:`DEFAULT_MAX_GRAPH_STEPS`).

    Returns:
        A :class:`TrackedRNN`: ``y, state = tracked(x, state)``; a tracked module is returned as it is.

    Raises:
        TypeError: for a module it cannot infer a spec for.
        ValueError: for a tracked module with other settings than its own.

    Example:
        >>> import torch
        >>> from tether import EpisodeClock, track
        >>> lstm = track(torch.nn.LSTM(3, 5))
        >>> clock = EpisodeClock(2)
        >>> state = lstm.initial_state(2, clock)
        >>> y, state = lstm(torch.zeros(1, 2, 3), state)
        >>> _ = clock.advance([False, True])
        >>> state = state.reset([False, True])
        >>> y.shape, state.tick
        (torch.Size([1, 2, 5]), 1)
    """
    if isinstance(module, TrackedRNN):
        if (spec is not None and spec != module.spec) or max_graph_steps not in (
                DEFAULT_MAX_GRAPH_STEPS, module.max_graph_steps):
            raise ValueError(
                "track: the module is tracked already (with max_graph_steps="
                f"{module.max_graph_steps}); pass the plain module to track it with other settings")
        return module
    return TrackedRNN(module, spec if spec is not None else StateSpec.of(module), max_graph_steps)
