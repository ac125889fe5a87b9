"""Tests for tether.interop.torchrl's LSTMModule / GRUModule: equal to TorchRL's own, step and recurrent mode."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torchrl")

import torch
from tensordict import TensorDict
from torchrl import modules as trl

from tether.errors import ConfigError
from tether.interop.torchrl import GRUModule, LSTMModule

B, T, IN, H = 3, 9, 5, 6


def _pair(kind: str, layers: int, **keys: Any) -> tuple[Any, Any]:
    """TorchRL's module (pad backend) and tether's, with the same weights."""
    keys = keys or {"in_key": "obs", "out_key": "y"}
    ref = (trl.LSTMModule if kind == "lstm" else trl.GRUModule)(
        input_size=IN, hidden_size=H, num_layers=layers, recurrent_backend="pad", **keys)
    ours = (LSTMModule if kind == "lstm" else GRUModule)(input_size=IN, hidden_size=H, num_layers=layers, **keys)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _data(kind: str, layers: int, seed: int, density: float) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    names = ["recurrent_state_h", "recurrent_state_c"] if kind == "lstm" else ["recurrent_state"]
    td = TensorDict({"obs": torch.randn(B, T, IN, generator=g),
                     "is_init": torch.rand(B, T, 1, generator=g) < density}, [B, T])
    for name in names:
        td[name] = torch.randn(B, T, layers, H, generator=g)
    return td


def _grad_leaves(td: TensorDict) -> TensorDict:
    td = td.clone()
    for key in list(td.keys()):
        if td[key].is_floating_point():
            td[key] = td[key].detach().requires_grad_()
    return td


def _out_keys(module: Any) -> list[Any]:
    return list(module.out_keys)


def _compare(ref: Any, ours: Any, td: TensorDict, recurrent: bool) -> None:
    """Forward outputs equal; gradients of one loss over them equal for parameters and inputs."""
    a, b = _grad_leaves(td), _grad_leaves(td)
    leaves_a = [a[k] for k in list(a.keys()) if a[k].requires_grad] + list(ref.parameters())
    leaves_b = [b[k] for k in list(b.keys()) if b[k].requires_grad] + list(ours.parameters())
    with trl.set_recurrent_mode(recurrent):
        out_a, out_b = ref(a), ours(b)
    g = torch.Generator().manual_seed(7)
    weights = {str(k): torch.randn(out_a[k].shape, generator=g) for k in _out_keys(ref)}
    losses = []
    for out in (out_a, out_b):
        losses.append(sum((out[k] * weights[str(k)]).sum() for k in _out_keys(ref)))
    for k in _out_keys(ref):
        torch.testing.assert_close(out_b[k], out_a[k], atol=1e-5, rtol=1e-5)
    grads_a = torch.autograd.grad(losses[0], leaves_a, allow_unused=True)
    grads_b = torch.autograd.grad(losses[1], leaves_b, allow_unused=True)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        if ga is None:
            assert gb is None or not gb.any()
        else:
            torch.testing.assert_close(gb, ga, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("seed", "density"), [(0, 0.0), (1, 0.1), (2, 0.3), (3, 0.7)])
def test_recurrent_mode_equals_torchrl(kind: str, layers: int, seed: int, density: float) -> None:
    """Recurrent mode: outputs, ("next", state) at segment ends and all gradients equal TorchRL's pad backend."""
    ref, ours = _pair(kind, layers)
    _compare(ref, ours, _data(kind, layers, seed, density), recurrent=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_step_mode_equals_torchrl(kind: str, layers: int) -> None:
    """Step mode on [B] and [2, B] batches: is_init rows restart from zeros, as in TorchRL."""
    ref, ours = _pair(kind, layers)
    td = _data(kind, layers, 5, 0.5)[:, 0]
    _compare(ref, ours, td, recurrent=False)
    _compare(ref, ours, torch.stack([td, td.clone()]), recurrent=False)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_time_only_and_deeper_batches_equal_torchrl(kind: str) -> None:
    """A [T] tensordict and a [2, B, T] one are folded as TorchRL folds them."""
    ref, ours = _pair(kind, 2)
    td = _data(kind, 2, 3, 0.3)
    _compare(ref, ours, td[0], recurrent=True)
    _compare(ref, ours, torch.stack([td, td.clone()]), recurrent=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_missing_state_keys_start_from_zeros(kind: str) -> None:
    """Without state keys in the input both modules start from zeros (TorchRL's default)."""
    ref, ours = _pair(kind, 1)
    td = _data(kind, 1, 4, 0.2).select("obs", "is_init")
    _compare(ref, ours, td, recurrent=True)
    _compare(ref, ours, td[:, 0], recurrent=False)


def test_a_short_segment_ends_with_its_own_state() -> None:
    """The state at a segment's last real step is written there, not the state at the longest one's (#3711)."""
    ref, ours = _pair("lstm", 1)
    td = _data("lstm", 1, 6, 0.0)
    td["is_init"][0, 3] = True  # row 0: segments [0, 3) and [3, 9); rows 1, 2: one segment
    with trl.set_recurrent_mode(True):
        out = ours(td.clone())
    alone = ours.lstm(td["obs"][:1, :3], (td["recurrent_state_h"][:1, 0].transpose(0, 1),
                                          td["recurrent_state_c"][:1, 0].transpose(0, 1)))
    torch.testing.assert_close(out["next", "recurrent_state_c"][0, 2], alone[1][1][:, 0])
    assert not out["next", "recurrent_state_c"][0, :2].any()
    _compare(ref, ours, td, recurrent=True)


def test_modes_read_torchrl_context_then_default() -> None:
    """set_recurrent_mode overrides default_recurrent_mode, as for TorchRL's modules; the method is gone."""
    m = LSTMModule(input_size=IN, hidden_size=H, in_key="obs", out_key="y", default_recurrent_mode=True)
    assert m.recurrent_mode
    with trl.set_recurrent_mode(False):
        assert not m.recurrent_mode
    assert not LSTMModule(input_size=IN, hidden_size=H, in_key="obs", out_key="y").recurrent_mode
    with pytest.raises(RuntimeError, match=r"set_recurrent_mode\(\) is gone .* use `with torchrl.modules.set_recurrent_mode\(True\):`"):
        m.set_recurrent_mode(True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_state_dicts_and_primers_match_torchrl(kind: str) -> None:
    """Parameter names (lstm.* / gru.*), keys and the primer's specs are TorchRL's; state_dicts load both ways."""
    ref, ours = _pair(kind, 2)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    assert ours.in_keys == ref.in_keys
    assert ours.out_keys == ref.out_keys
    assert ours.make_tensordict_primer().primers == ref.make_tensordict_primer().primers


def test_an_existing_core_is_adopted() -> None:
    """lstm= / gru= take an existing batch-first module, as TorchRL's do."""
    core = torch.nn.GRU(IN, H, batch_first=True)
    m = GRUModule(gru=core, in_keys=["obs", "h"], out_keys=["y", ("next", "h")])
    assert m.gru is core
    assert m.in_keys == ["obs", "h", "is_init"]


def test_options_it_cannot_honour_say_so() -> None:
    """proj_size, bidirectional, a time-major core, bad keys: one ConfigError line each."""
    with pytest.raises(ConfigError, match=r"LSTMModule: tether runs a unidirectional LSTM without projections"):
        LSTMModule(input_size=IN, hidden_size=H, proj_size=2, in_key="obs", out_key="y")
    with pytest.raises(ConfigError, match=r"GRUModule: expected gru= a batch-first, unidirectional nn.GRU"):
        GRUModule(gru=torch.nn.GRU(IN, H), in_key="obs", out_key="y")
    with pytest.raises(ConfigError, match=r"LSTMModule: expected exactly one of in_key / in_keys"):
        LSTMModule(input_size=IN, hidden_size=H, out_key="y")
    with pytest.raises(ConfigError, match=r"expected in_keys = \[value, 2 state key\(s\) \(, 'is_init'\)\]"):
        LSTMModule(input_size=IN, hidden_size=H, in_keys=["obs", "h"], out_key="y")
    with pytest.raises(ConfigError, match=r"expected recurrent_backend in"):
        GRUModule(input_size=IN, hidden_size=H, in_key="obs", out_key="y", recurrent_backend="fast")
    bad = LSTMModule(input_size=IN, hidden_size=H, in_keys=["obs", "h", "c"], out_keys=["y", "h2", "c2"])
    with pytest.raises(ConfigError, match=r"make_tensordict_primer: expected the out keys to be \('next', <in key>\)"):
        bad.make_tensordict_primer()


def test_moving_the_module_moves_its_step() -> None:
    """After .double() the step runs in float64 (the tracked view follows the parameters)."""
    m = GRUModule(input_size=IN, hidden_size=H, in_key="obs", out_key="y").double()
    td = TensorDict({"obs": torch.randn(2, IN, dtype=torch.float64), "is_init": torch.ones(2, 1, dtype=torch.bool),
                     "recurrent_state": torch.zeros(2, 1, H, dtype=torch.float64)}, [2])
    assert m(td)["y"].dtype == torch.float64
