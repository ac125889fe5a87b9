"""LSTMModule and GRUModule: TorchRL's recurrent TensorDict modules, run on tether's engine."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase, unravel_key_list
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.modules import recurrent_mode

from tether import track
from tether.errors import ConfigError
from tether.sequence import unroll_segments
from tether.state import RecurrentState
from tether.tracking import TrackedRNN

__all__ = ["GRUModule", "LSTMModule"]

_BACKENDS = ("auto", "pad", "scan", "triton")


def _keys(name: str, key: Any, keys: Any, defaults: list[Any], side: str) -> list[Any]:
    if (key is None) == (keys is None):
        raise ConfigError(f"{name}: expected exactly one of {side}_key / {side}_keys, got {side}_key={key!r}"
                          f" and {side}_keys={keys!r}")
    return list(unravel_key_list([key, *defaults] if key is not None else list(keys)))


class _RecurrentModule(TensorDictModuleBase):  # type: ignore[misc]
    """What LSTMModule and GRUModule share; the subclasses only name their core and keys."""

    KIND: ClassVar[type[nn.LSTM] | type[nn.GRU]]
    ATTR: ClassVar[str]
    DEFAULT_IN_KEYS: ClassVar[list[Any]]
    DEFAULT_OUT_KEYS: ClassVar[list[Any]]

    def __init__(
        self, input_size: int | None, hidden_size: int | None, num_layers: int, bias: bool,
        batch_first: bool, dropout: float, proj_size: int, bidirectional: bool, python_based: bool,
        recurrent_backend: str, in_key: Any, in_keys: Any, out_key: Any, out_keys: Any,
        device: Any, core: nn.RNNBase | None, default_recurrent_mode: bool | None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if recurrent_backend not in _BACKENDS:
            raise ConfigError(f"{name}: expected recurrent_backend in {_BACKENDS}, got {recurrent_backend!r}")
        if proj_size or bidirectional or python_based:
            raise ConfigError(f"{name}: tether runs a unidirectional {self.KIND.__name__} without"
                              " projections in its fused engine; use torchrl.modules for proj_size /"
                              " bidirectional / python_based")
        if core is None:
            if not batch_first:
                raise ConfigError(f"{name}: expected batch_first=True (TorchRL's layout), got False")
            if not hidden_size or input_size is None:
                raise ConfigError(f"{name}: expected input_size and hidden_size, got {input_size!r},"
                                  f" {hidden_size!r}")
            core = self.KIND(input_size, hidden_size, num_layers=num_layers, bias=bias, dropout=dropout,
                             batch_first=True, device=device)
        elif input_size is not None or hidden_size is not None:
            raise ConfigError(f"{name}: pass either an {self.ATTR}= module or its sizes, not both")
        if type(core) is not self.KIND or not core.batch_first or core.bidirectional:
            raise ConfigError(f"{name}: expected {self.ATTR}= a batch-first, unidirectional"
                              f" nn.{self.KIND.__name__}, got {core!r}")
        width = len(self.DEFAULT_IN_KEYS) + 1
        ins = _keys(name, in_key, in_keys, self.DEFAULT_IN_KEYS, "in")
        outs = _keys(name, out_key, out_keys, self.DEFAULT_OUT_KEYS, "out")
        if len(ins) not in (width, width + 1) or (len(ins) == width + 1 and ins[-1] != "is_init"):
            raise ConfigError(f"{name}: expected in_keys = [value, {width - 1} state key(s)"
                              f" (, 'is_init')], got {ins}")
        if len(outs) != width:
            raise ConfigError(f"{name}: expected out_keys = [value, {width - 1} ('next', state) key(s)],"
                              f" got {outs}")
        setattr(self, self.ATTR, core)
        self.in_keys: list[NestedKey] = ins if ins[-1] == "is_init" else [*ins, "is_init"]
        self.out_keys: list[NestedKey] = outs
        self.recurrent_backend = recurrent_backend
        self._recurrent_mode = default_recurrent_mode
        # The step mode's tracked view of the core; kept out of the module tree (no new names).
        self.__dict__["_tracked"] = track(core)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> _RecurrentModule:
        out = super()._apply(fn, *args, **kwargs)
        self.__dict__["_tracked"] = track(self.core)  # the tracked view checks the new device / dtype
        return out  # type: ignore[no-any-return]

    @property
    def core(self) -> nn.RNNBase:
        """The plain ``nn.LSTM`` / ``nn.GRU`` (``self.lstm`` / ``self.gru``)."""
        return getattr(self, self.ATTR)  # type: ignore[no-any-return]

    @property
    def recurrent_mode(self) -> bool:
        """Whether the module runs whole sequences: TorchRL's ``set_recurrent_mode`` context first,
        then the ``default_recurrent_mode`` the module was built with."""
        mode = recurrent_mode()
        return bool(self._recurrent_mode) if mode is None else bool(mode)

    def set_recurrent_mode(self, mode: bool = True) -> None:
        """Removed in TorchRL; raises as TorchRL's does, naming the replacement.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(f"{type(self).__name__}.set_recurrent_mode() is gone (as in TorchRL >= 0.8): use"
                           " `with torchrl.modules.set_recurrent_mode(True):` or default_recurrent_mode=")

    @property
    def _state_keys(self) -> list[NestedKey]:
        return list(self.in_keys[1 : len(self.out_keys)])

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """A ``TensorDictPrimer`` that registers the state keys with the env and zeroes them at reset.

        Raises:
            ConfigError: when the out keys are not ``("next", <in key>)``.
        """
        specs = {}
        core = self.core
        for given, out in zip(self._state_keys, self.out_keys[1:], strict=True):
            key = given if isinstance(given, tuple) else (given,)
            if (out if isinstance(out, tuple) else (out,)) != ("next", *key):
                raise ConfigError(f"{type(self).__name__}.make_tensordict_primer: expected the out keys"
                                  " to be ('next', <in key>), got"
                                  f" in_keys={self.in_keys}, out_keys={self.out_keys}")
            specs[key] = Unbounded(shape=(core.num_layers, core.hidden_size))
        return TensorDictPrimer(specs, expand_specs=True)

    # ----------------------------------------------------------------------------------------
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Run one step (step mode) or whole sequences (recurrent mode) on ``tensordict``.

        Step mode: ``tensordict`` has any batch shape; rows with ``is_init`` restart from zeros;
        writes the output and the ``("next", state)`` keys. Recurrent mode: ``[*B, T]`` (time
        last); every row restarts at ``t = 0`` and at each ``is_init`` from the state stored at
        that step, and the ``("next", state)`` keys hold the state at each segment's last step
        (zeros elsewhere), as TorchRL's modules write them.

        Raises:
            ValueError: for a 0-d tensordict in recurrent mode, or tensors of the wrong shape.
        """
        shape = tensordict.shape
        if self.recurrent_mode:
            if tensordict.ndim == 0:
                raise ValueError(f"{type(self).__name__}(recurrent_mode=True): expected a tensordict"
                                 " with at least one batch dim (time), got a 0-d one")
            shaped = (tensordict.unsqueeze(0) if tensordict.ndim == 1 else
                      tensordict if tensordict.ndim == 2 else tensordict.flatten(0, -2))
            self._sequence(shaped)
        else:
            shaped = tensordict.reshape(-1)
            self._step(shaped)
        if shaped is not tensordict:
            tensordict.update(shaped.reshape(shape))
        return tensordict

    def _states(self, td: TensorDictBase, lead: tuple[int, ...], like: torch.Tensor) -> list[torch.Tensor]:
        core = self.core
        got = [td.get(key, None) for key in self._state_keys]
        if all(s is None for s in got):  # TorchRL's default: no state keys -> zeros
            shape = (*lead, core.num_layers, core.hidden_size)
            return [like.new_zeros(shape) for _ in got]
        if any(s is None for s in got):
            raise ValueError(f"{type(self).__name__}: expected all of {self._state_keys} or none, got"
                             f" {[k for k, s in zip(self._state_keys, got, strict=True) if s is not None]}")
        return got

    def _step(self, td: TensorDictBase) -> None:
        x = td.get(self.in_keys[0])
        states = self._states(td, (x.shape[0],), x)
        is_init = td.get("is_init").reshape(-1, 1, 1)
        tensors = tuple(torch.where(is_init, torch.zeros((), dtype=s.dtype, device=s.device), s)
                        .transpose(0, 1) for s in states)  # [N, L, H] -> [L, N, H]
        tracked: TrackedRNN = self.__dict__["_tracked"]
        y, new = tracked(x.unsqueeze(1), RecurrentState.from_tensors(tensors))
        td.set(self.out_keys[0], y.squeeze(1))
        for key, s in zip(self.out_keys[1:], new.tensors, strict=True):
            td.set(key, s.transpose(0, 1))

    def _sequence(self, td: TensorDictBase) -> None:
        x = td.get(self.in_keys[0])  # [B, T, in]
        B, T = int(x.shape[0]), int(x.shape[1])
        states = self._states(td, (B, T), x)  # each [B, T, L, H]
        starts = td.get("is_init").reshape(B, T).t()  # [T, B]
        restarts = tuple(s.permute(1, 2, 0, 3) for s in states)  # [T, L, B, H]
        y, ends = unroll_segments(self.core, x, starts, restarts)
        td.set(self.out_keys[0], y)
        for key, s in zip(self.out_keys[1:], ends, strict=True):
            td.set(key, s.permute(2, 0, 1, 3))


class LSTMModule(_RecurrentModule):
    """TorchRL's ``LSTMModule`` on tether's engine: same arguments, keys, parameters and results.

    Loads a ``torchrl.modules.LSTMModule``'s ``state_dict`` (parameters ``lstm.*``) and back.
    Step mode (collection) runs tether's tracked step; recurrent mode (``with
    torchrl.modules.set_recurrent_mode(True):`` or ``default_recurrent_mode=True``) runs
    :func:`tether.sequence.unroll_segments`, restarting each row at ``t = 0`` and at every
    ``is_init`` from the state stored at that step, exactly as TorchRL's ``"pad"`` backend does.
    ``recurrent_backend`` is accepted for compatibility; the engine is always tether's.

    Args:
        input_size / hidden_size / num_layers / bias / dropout / device: as for ``nn.LSTM``.
        batch_first: must be True (TorchRL's layout).
        proj_size / bidirectional / python_based: must be left off (use TorchRL's module for them).
        recurrent_backend: ``"auto"``, ``"pad"``, ``"scan"`` or ``"triton"`` (no effect).
        in_key / in_keys: the value key (then the state keys default to ``recurrent_state_h`` /
            ``recurrent_state_c``), or ``[value, h, c]`` (``"is_init"`` is appended).
        out_key / out_keys: likewise, ``[value, ("next", h), ("next", c)]``.
        lstm: an existing batch-first ``nn.LSTM`` instead of the sizes.
        default_recurrent_mode: the mode outside any ``set_recurrent_mode`` context.

    Raises:
        ConfigError: for keys, sizes or options it cannot honour.

    Shapes:
        step mode: value ``[*B, in]``, states ``[*B, L, H]``; recurrent mode: value ``[*B, T, in]``,
        states ``[*B, T, L, H]``, ``is_init [*B, T, 1]``.
    """

    KIND = nn.LSTM
    ATTR = "lstm"
    DEFAULT_IN_KEYS: ClassVar[list[Any]] = ["recurrent_state_h", "recurrent_state_c"]
    DEFAULT_OUT_KEYS: ClassVar[list[Any]] = [("next", "recurrent_state_h"), ("next", "recurrent_state_c")]

    def __init__(
        self, input_size: int | None = None, hidden_size: int | None = None, num_layers: int = 1,
        bias: bool = True, batch_first: bool = True, dropout: float = 0.0, proj_size: int = 0,
        bidirectional: bool = False, python_based: bool = False, recurrent_backend: str = "pad", *,
        in_key: NestedKey | None = None, in_keys: list[NestedKey] | None = None,
        out_key: NestedKey | None = None, out_keys: list[NestedKey] | None = None, device: Any = None,
        lstm: nn.LSTM | None = None, default_recurrent_mode: bool | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size,
                         bidirectional, python_based, recurrent_backend, in_key, in_keys, out_key, out_keys,
                         device, lstm, default_recurrent_mode)


class GRUModule(_RecurrentModule):
    """TorchRL's ``GRUModule`` on tether's engine: same arguments, keys, parameters and results.

    As :class:`LSTMModule`, with one state key (default ``recurrent_state``), parameters
    ``gru.*`` and ``gru=`` for an existing batch-first ``nn.GRU``.

    Raises:
        ConfigError: for keys, sizes or options it cannot honour.
    """

    KIND = nn.GRU
    ATTR = "gru"
    DEFAULT_IN_KEYS: ClassVar[list[Any]] = ["recurrent_state"]
    DEFAULT_OUT_KEYS: ClassVar[list[Any]] = [("next", "recurrent_state")]

    def __init__(
        self, input_size: int | None = None, hidden_size: int | None = None, num_layers: int = 1,
        bias: bool = True, batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
        python_based: bool = False, recurrent_backend: str = "pad", *,
        in_key: NestedKey | None = None, in_keys: list[NestedKey] | None = None,
        out_key: NestedKey | None = None, out_keys: list[NestedKey] | None = None, device: Any = None,
        gru: nn.GRU | None = None, default_recurrent_mode: bool | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, 0,
                         bidirectional, python_based, recurrent_backend, in_key, in_keys, out_key, out_keys,
                         device, gru, default_recurrent_mode)
