"""Tests for tether.nets.factors: action layouts, the action tensor and env conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.nets.factors import ActionLayout

DICT = spaces.Dict({
    "move": spaces.Discrete(5, start=-2),
    "fire": spaces.MultiDiscrete([2, 3]),
    "aim": spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
})


def test_single_spaces_have_the_documented_action_shapes() -> None:
    """Discrete -> [N], MultiDiscrete -> [N, n], Box -> [N, d] (flattened)."""
    assert ActionLayout(spaces.Discrete(4)).action_shape == ()
    assert ActionLayout(spaces.MultiDiscrete([[2, 3], [4, 5]])).action_shape == (4,)
    assert ActionLayout(spaces.Box(-1, 1, (2, 3))).action_shape == (6,)
    assert not ActionLayout(spaces.Discrete(4)).is_float
    assert ActionLayout(spaces.Box(-1, 1, (2,))).is_float


def test_dict_layout_follows_the_space_order() -> None:
    """Heads in the Dict's key order; columns and mask offsets accumulate in that order."""
    layout = ActionLayout(DICT)
    assert layout.names() == list(DICT.spaces)
    by_name = {f.name: f for f in layout.factors}
    assert [(f.name, f.column, f.dim) for f in layout.factors] == [("aim", 0, 2), ("fire", 2, 2),
                                                                   ("move", 4, 1)]
    assert by_name["fire"].mask_offset == 0
    assert by_name["move"].mask_offset == 5
    assert by_name["aim"].mask_offset == -1
    assert layout.mask_size == 10
    assert layout.action_shape == (5,)
    assert [f.name for f in layout.discrete] == ["fire", "move"]


def test_tuple_heads_are_named_by_position() -> None:
    """A Tuple's heads are "0", "1", ...; a single space's head is "action"."""
    layout = ActionLayout(spaces.Tuple((spaces.Discrete(2), spaces.Box(-1, 1, (1,)))))
    assert layout.names() == ["0", "1"]
    assert ActionLayout(spaces.Discrete(2)).names() == ["action"]


@pytest.mark.parametrize("space", [
    spaces.Text(5),
    spaces.MultiBinary(3),
    spaces.Dict({"inner": spaces.Dict({"a": spaces.Discrete(2)})}),
    spaces.Tuple((spaces.Discrete(2), spaces.Tuple((spaces.Discrete(2),)))),
])
def test_unsupported_action_spaces_raise_type_error(space: spaces.Space) -> None:
    """Anything but Discrete / MultiDiscrete / Box (or one Dict / Tuple level of them) is refused."""
    with pytest.raises(TypeError, match=r"unsupported action space .*expected Discrete, MultiDiscrete, Box"):
        ActionLayout(space)


def test_nested_space_error_says_to_flatten() -> None:
    """The nested-Dict message names the cause."""
    with pytest.raises(TypeError, match="nested Dict / Tuple action spaces are not supported"):
        ActionLayout(spaces.Dict({"inner": spaces.Dict({"a": spaces.Discrete(2)})}))


def test_empty_composite_space_raises() -> None:
    """A Dict without entries has no head."""
    with pytest.raises(ValueError, match="has no entries"):
        ActionLayout(spaces.Dict({}))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_split_and_join_round_trip(batch: int, seed: int) -> None:
    """join(split(a)) == a for a Dict action tensor; split gives int64 indices and float Box parts."""
    rng = np.random.default_rng(seed)
    layout = ActionLayout(DICT)
    actions = torch.tensor(np.concatenate([
        rng.normal(size=(batch, 2)), rng.integers(0, [2, 3], size=(batch, 2)),
        rng.integers(0, 5, size=(batch, 1)),
    ], axis=1), dtype=torch.float32)
    parts = layout.split(actions)
    assert [p.dtype for p in parts] == [torch.float32, torch.int64, torch.int64]
    assert [tuple(p.shape) for p in parts] == [(batch, 2), (batch, 2), (batch,)]
    torch.testing.assert_close(layout.join(parts, torch.float32), actions)


def test_to_env_dict_clips_boxes_and_adds_starts() -> None:
    """A Dict batch becomes a dict of batched arrays the vector env's space contains."""
    layout = ActionLayout(DICT)
    actions = torch.tensor([[2.5, -0.5, 1.0, 2.0, 0.0], [-3.0, 0.25, 0.0, 0.0, 4.0]])
    env = layout.to_env(actions)
    assert set(env) == {"aim", "fire", "move"}
    np.testing.assert_array_equal(env["aim"], np.array([[1.0, -0.5], [-1.0, 0.25]], dtype=np.float32))
    np.testing.assert_array_equal(env["fire"], [[1, 2], [0, 0]])
    np.testing.assert_array_equal(env["move"], [-2, 2])
    assert env["aim"].dtype == np.float32
    assert batch_space(DICT, 2).contains(env)


def test_to_env_tuple_and_reshaped_spaces() -> None:
    """Tuple -> tuple; a 2-d Box / MultiDiscrete gets its shape back; bf16 actions convert."""
    space = spaces.Tuple((spaces.Box(0.0, 2.0, (2, 2), dtype=np.float64),
                          spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 1], [0, 0]])))
    layout = ActionLayout(space)
    actions = torch.tensor([[0.5, 3.0, -1.0, 1.5, 1.0, 2.0, 3.0, 4.0]], dtype=torch.bfloat16)
    box, multi = layout.to_env(actions)
    assert box.shape == (1, 2, 2)
    assert box.dtype == np.float64
    np.testing.assert_array_equal(box, [[[0.5, 2.0], [0.0, 1.5]]])
    np.testing.assert_array_equal(multi, [[[2, 3], [3, 4]]])
    assert batch_space(space, 1).contains((box, multi))


def test_to_env_single_spaces() -> None:
    """Discrete [B] and Box [B, d] convert to the space dtype; integer Boxes round."""
    np.testing.assert_array_equal(ActionLayout(spaces.Discrete(3, start=1)).to_env(torch.tensor([0, 2])),
                                  [1, 3])
    box = ActionLayout(spaces.Box(0, 10, (2,), dtype=np.int64)).to_env(torch.tensor([[1.6, 12.0]]))
    np.testing.assert_array_equal(box, [[2, 10]])
    assert box.dtype == np.int64


@pytest.mark.parametrize(("space", "bad", "expected"), [
    (spaces.Discrete(3), torch.zeros(2, 1, dtype=torch.long), r"expected actions shaped \[B\]"),
    (DICT, torch.zeros(2, 4), r"expected actions shaped \[B, 5\]"),
])
def test_to_env_rejects_wrong_shapes(space: spaces.Space, bad: torch.Tensor, expected: str) -> None:
    """The message gives the expected layout and what came."""
    with pytest.raises(ValueError, match=expected):
        ActionLayout(space).to_env(bad)
