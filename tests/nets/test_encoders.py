"""Tests for tether.nets.encoders: every observation space as features, and the bad-input errors."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import ObservationError, TetherError
from tether.nets.encoders import ObservationLayout, mlp_encoder, observation_size

F32 = torch.zeros(1)
F64 = torch.zeros(1, dtype=torch.float64)


def _one_hot(values: np.ndarray, n: int) -> np.ndarray:
    """A numpy reference one-hot of zero-based ``values`` ``[N] -> [N, n]``."""
    return np.eye(n, dtype=np.float32)[values]


def test_box_of_any_dtype_is_flattened_as_floats() -> None:
    """A uint8 image [B, 2, 3, 2] becomes float [B, 12] with its raw values (no rescaling)."""
    image = np.arange(2 * 12, dtype=np.uint8).reshape(2, 2, 3, 2) * 10
    layout = ObservationLayout(spaces.Box(0, 255, (2, 3, 2), dtype=np.uint8))
    out = layout.features(image, 1, F64, "act")
    assert (out.shape, out.dtype, layout.size) == ((2, 12), torch.float64, 12)
    torch.testing.assert_close(out, torch.as_tensor(image.reshape(2, 12), dtype=torch.float64))
    ints = ObservationLayout(spaces.Box(-5, 5, (3,), dtype=np.int64))
    torch.testing.assert_close(ints.features(np.array([[-5, 0, 5]]), 1, F32, "act"), torch.tensor([[-5.0, 0, 5]]))


def test_box_accepts_its_shape_or_flattened_and_refuses_others() -> None:
    """[T, B, 2, 3] and [T, B, 6] are the same features; another shape names both accepted forms."""
    layout = ObservationLayout(spaces.Box(0, 1, (2, 3)))
    obs = torch.rand(4, 5, 2, 3)
    torch.testing.assert_close(layout.features(obs, 2, F32, "evaluate_actions"),
                               layout.features(obs.reshape(4, 5, 6), 2, F32, "evaluate_actions"))
    for shape in [(6,), (2, 3, 2), (2, 5)]:
        with pytest.raises(ObservationError,
                           match=r"^act: expected obs shaped \[B, 2, 3\] \(or flattened \[B, 6\]\) for Box"):
            layout.features(torch.zeros(shape), 1, F32, "act")


def test_discrete_is_one_hot_of_the_value_minus_start() -> None:
    """Discrete(3, start=-1): values -1, 0, 1 are columns 0, 1, 2; [B] and [B, 1] are both accepted."""
    layout = ObservationLayout(spaces.Discrete(3, start=-1))
    out = layout.features(np.array([1, -1, 0]), 1, F32, "act")
    torch.testing.assert_close(out, torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]))
    torch.testing.assert_close(layout.features(torch.tensor([[1], [-1], [0]]), 1, F32, "act"), out)


def test_discrete_given_as_whole_floats_matches_ints() -> None:
    """A float array of whole numbers (as a float-only loop passes it) gives the int features."""
    layout = ObservationLayout(spaces.Discrete(5))
    ints = np.array([[0, 4], [3, 2]])
    torch.testing.assert_close(layout.features(ints.astype(np.float32), 2, F32, "evaluate_actions"),
                               layout.features(ints, 2, F32, "evaluate_actions"), rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(-3, 3), st.integers(1, 4),
       st.integers(0, 2**16))
def test_multi_discrete_is_concatenated_one_hots(nvec: list[int], start: int, batch: int, seed: int) -> None:
    """Each component's one-hot of obs[i] - start[i], in nvec order, against a numpy reference."""
    space = spaces.MultiDiscrete(nvec, start=[start] * len(nvec))
    rng = np.random.default_rng(seed)
    values = np.stack([rng.integers(0, n, batch) for n in nvec], axis=1)
    out = ObservationLayout(space).features(values + start, 1, F32, "act")
    expected = np.concatenate([_one_hot(values[:, i], n) for i, n in enumerate(nvec)], axis=1)
    torch.testing.assert_close(out, torch.as_tensor(expected), rtol=0, atol=0)


def test_multi_discrete_of_two_dims_flattens_in_c_order() -> None:
    """nvec [[2, 3], [1, 2]] gives 8 features: components (0,0), (0,1), (1,0), (1,1) in turn."""
    layout = ObservationLayout(spaces.MultiDiscrete([[2, 3], [1, 2]]))
    out = layout.features(np.array([[[1, 2], [0, 1]]]), 1, F32, "act")
    assert layout.size == 8
    torch.testing.assert_close(out, torch.tensor([[0.0, 1, 0, 0, 1, 1, 0, 1]]))


def test_multi_binary_is_its_bits_as_floats() -> None:
    """MultiBinary((2, 2)) int8 bits become 4 float features."""
    layout = ObservationLayout(spaces.MultiBinary((2, 2)))
    bits = np.array([[[1, 0], [0, 1]]], dtype=np.int8)
    torch.testing.assert_close(layout.features(bits, 1, F32, "act"), torch.tensor([[1.0, 0, 0, 1]]))


def test_nested_tuple_and_dict_concatenate_in_leaf_order() -> None:
    """Tuple(Discrete, Dict(z=Box, a=MultiBinary)): Discrete, then 'a', then 'z' (the Dict sorts)."""
    space = spaces.Tuple((spaces.Discrete(2), spaces.Dict({"z": spaces.Box(-1, 1, (2,)), "a": spaces.MultiBinary(1)})))
    layout = ObservationLayout(space)
    assert [(leaf.name, leaf.column, leaf.size) for leaf in layout.leaves] == [
        ("obs[0]", 0, 2), ("obs[1]['a']", 2, 1), ("obs[1]['z']", 3, 2)]
    obs = (np.array([1]), {"z": np.array([[0.5, -0.5]], np.float32), "a": np.array([[1]], np.int8)})
    torch.testing.assert_close(layout.features(obs, 1, F32, "act"), torch.tensor([[0.0, 1, 1, 0.5, -0.5]]))
    # a list for the Tuple and dict keys in any order give the same features
    again = [np.array([1]), {"a": np.array([[1]], np.int8), "z": np.array([[0.5, -0.5]], np.float32)}]
    torch.testing.assert_close(layout.features(again, 1, F32, "act"), layout.features(obs, 1, F32, "act"))


def test_an_ordered_dict_space_keeps_its_own_key_order() -> None:
    """The order is the space's own: gymnasium sorts a plain dict, keeps an OrderedDict as given."""
    space = spaces.Dict(OrderedDict([("b", spaces.Discrete(2)), ("a", spaces.Discrete(3))]))
    assert [leaf.path for leaf in ObservationLayout(space).leaves] == [("b",), ("a",)]
    assert [leaf.path for leaf in ObservationLayout(spaces.Dict({"b": spaces.Discrete(2),
                                                                 "a": spaces.Discrete(3)})).leaves] == [("a",), ("b",)]


def test_observation_size_and_unsupported_spaces() -> None:
    """observation_size sums the leaves; Text, Graph or an empty Dict are refused at construction."""
    assert observation_size(spaces.Dict({"a": spaces.Discrete(4), "b": spaces.Box(0, 1, (2, 3))})) == 10
    with pytest.raises(TypeError, match=r"unsupported observation space Text\(.*at obs; expected Box, Discrete"):
        ObservationLayout(spaces.Text(3))
    with pytest.raises(ValueError, match="has no entries"):
        ObservationLayout(spaces.Dict({}))


@pytest.mark.parametrize(("space", "obs", "match"), [
    (spaces.Discrete(3, start=1), np.array([1, 4]), r"expected obs to hold whole numbers in \[1, 3\] for"
                                                     r" Discrete\(3, start=1\), got 4;"),
    (spaces.Discrete(3, start=1), np.array([0]), r"whole numbers in \[1, 3\] .*got 0;"),
    (spaces.Discrete(3), np.array([1.5]), r"whole numbers in \[0, 2\] .*got 1.5;"),
    (spaces.MultiDiscrete([2, 3]), np.array([[1, 3]]), r"per component .*got 3;"),
    (spaces.MultiBinary(2), np.array([[0, 2]]), r"expected obs to hold only 0 / 1 .*got 2;"),
    (spaces.Dict({"cue": spaces.Discrete(2)}), {"cue": np.array([2])}, r"expected obs\['cue'\] to hold"),
])
def test_values_outside_the_space_raise_one_line(space: spaces.Space[Any], obs: Any, match: str) -> None:
    """Out-of-range or fractional discrete values and non-bits name the leaf, the range and a value."""
    with pytest.raises(ObservationError, match=match) as info:
        ObservationLayout(space).features(obs, 1, F32, "act")
    assert isinstance(info.value, TetherError)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


DICT = spaces.Dict({"cue": spaces.Discrete(2), "pos": spaces.Box(-1, 1, (2,))})


@pytest.mark.parametrize(("obs", "match"), [
    ({"cue": np.zeros(3, np.int64)}, r"expected obs as a dict with keys \['cue', 'pos'\] \(a Dict space\),"
                                     r" got a dict with keys \['cue'\]"),
    ({"cue": np.zeros(3, np.int64), "pos": np.zeros((3, 2)), "x": 0}, r"got a dict with keys \['cue', 'pos', 'x'\]"),
    (np.zeros((3, 3)), r"expected obs as a dict .*got ndarray"),
    ({"cue": np.zeros((3, 2), np.int64), "pos": np.zeros((3, 2))},
     r"expected obs\['cue'\] shaped \[B\] \(or flattened \[B, 1\]\) for Discrete\(2\), got \[3, 2\]"),
    ({"cue": np.zeros(3, np.int64), "pos": np.zeros((4, 2))},
     r"expected every leaf of obs with the same \[B\] = \[3\], got \[4\] for obs\['pos'\]"),
    ({"cue": {"a": 0}, "pos": np.zeros((3, 2))}, r"expected obs\['cue'\] as an array for Discrete\(2\), got a dict"),
])
def test_trees_that_do_not_match_the_space_raise(obs: Any, match: str) -> None:
    """Missing / extra keys, a bare array, a wrong leaf shape or lead dims: one line naming the leaf."""
    with pytest.raises(ObservationError, match=match):
        ObservationLayout(DICT).features(obs, 1, F32, "act")


def test_tuple_of_the_wrong_length_raises() -> None:
    """A Tuple space wants a tuple (or list) of as many entries."""
    layout = ObservationLayout(spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))))
    with pytest.raises(ObservationError, match=r"expected obs as a tuple of 2 entries \(a Tuple space\), got a tuple of 1"):
        layout.features((np.zeros(2, np.int64),), 1, F32, "act")


def test_mlp_encoder_layers_and_empty() -> None:
    """Linear -> LayerNorm -> activation per width; no widths is the identity."""
    encoder = mlp_encoder(5, [8, 4], torch.nn.ReLU)
    assert [type(m) for m in encoder] == [torch.nn.Linear, torch.nn.LayerNorm, torch.nn.ReLU] * 2
    assert encoder(torch.zeros(3, 5)).shape == (3, 4)
    x = torch.rand(2, 5)
    assert torch.equal(mlp_encoder(5, [], torch.nn.Tanh)(x), x)
