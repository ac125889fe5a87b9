"""Tests for tether.nets.masks: accepted mask forms, their errors, and the no-allowed-action check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.nets.factors import ActionLayout
from tether.nets.masks import ActionMaskError, check_allowed, normalize_masks

CPU = torch.device("cpu")
LAYOUT = ActionLayout(spaces.Dict({
    "aim": spaces.Box(-1.0, 1.0, (2,)),
    "fire": spaces.MultiDiscrete([2, 3]),
    "move": spaces.Discrete(4),
}))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**16))
def test_every_form_gives_the_same_concatenated_mask(batch: int, seed: int) -> None:
    """Tensor, array, list per discrete head, list per head and dict all agree."""
    rng = np.random.default_rng(seed)
    fire = torch.from_numpy(rng.random((batch, 5)) < 0.6)
    move = torch.from_numpy(rng.random((batch, 4)) < 0.6)
    full = torch.cat([fire, move], dim=-1)
    forms = [full, full.numpy(), [fire, move], (None, fire, move), {"fire": fire, "move": move},
             [fire.numpy(), move.numpy()]]
    for form in forms:
        torch.testing.assert_close(normalize_masks(form, LAYOUT, (batch,), CPU, "act"), full)


def test_heads_left_out_are_unmasked() -> None:
    """A dict naming one head, or None entries, allow every action of the others."""
    move = torch.tensor([[True, False, False, True]])
    out = normalize_masks({"move": move}, LAYOUT, (1,), CPU, "act")
    assert out is not None
    assert out[:, :5].all()
    torch.testing.assert_close(out[:, 5:], move)
    assert normalize_masks([None, None], LAYOUT, (1,), CPU, "act").all()  # type: ignore[union-attr]
    assert normalize_masks(None, LAYOUT, (1,), CPU, "act") is None


def test_sequence_masks_take_t_b_leading_dims() -> None:
    """For evaluate_actions the masks are [T, B, D]."""
    mask = torch.ones(3, 2, 9, dtype=torch.bool)
    assert normalize_masks(mask, LAYOUT, (3, 2), CPU, "evaluate_actions") is not None
    with pytest.raises(ValueError, match=r"evaluate_actions: masks .*expected a bool mask shaped \[3, 2, 9\]"):
        normalize_masks(mask[0], LAYOUT, (3, 2), CPU, "evaluate_actions")


def test_a_mask_for_a_box_head_is_refused() -> None:
    """Masking a Box action is a clear ValueError, by dict or by per-head list."""
    box_mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"act: got a mask for head 'aim', a Box action"):
        normalize_masks({"aim": box_mask}, LAYOUT, (1,), CPU, "act")
    with pytest.raises(ValueError, match=r"got a mask for head 'aim', a Box action"):
        normalize_masks([box_mask, None, None], LAYOUT, (1,), CPU, "act")


def test_masks_on_a_policy_without_discrete_heads_are_refused() -> None:
    """A Box-only policy has nothing to mask."""
    layout = ActionLayout(spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="has no discrete head; masks apply to Discrete / MultiDiscrete"):
        normalize_masks(torch.ones(1, 2, dtype=torch.bool), layout, (1,), CPU, "act")


@pytest.mark.parametrize(("masks", "expected"), [
    (torch.ones(2, 8, dtype=torch.bool), r"expected a bool mask shaped \[2, 9\], got \[2, 8\]"),
    (torch.ones(2, 9), r"expected a bool mask \(True = allowed\), got dtype torch.float32"),
    ({"jump": torch.ones(2, 2, dtype=torch.bool)}, r"masks name an unknown head 'jump'; heads are"),
    ([torch.ones(2, 5, dtype=torch.bool)], r"expected 2 masks \(one per discrete head \['fire', 'move'\]\), got 1"),
    ({"move": torch.ones(2, 5, dtype=torch.bool)}, r"mask of head 'move': expected a bool mask shaped \[2, 4\]"),
    ("fire", r"expected masks as a bool tensor, a list / tuple or a dict, got str"),
])
def test_malformed_masks_raise_with_what_was_expected(masks: object, expected: str) -> None:
    """Wrong shape, dtype, head name, count or type: each says what it expected."""
    with pytest.raises(ValueError, match=expected):
        normalize_masks(masks, LAYOUT, (2,), CPU, "act")


def test_no_allowed_action_names_the_head_and_rows() -> None:
    """Rows with an all-False mask are listed, the first 8 then "and N more"."""
    mask = torch.ones(12, 9, dtype=torch.bool)
    mask[:, 5:] = False
    with pytest.raises(ActionMaskError, match=r"act: the action mask of head 'move' allows no action in rows"
                       r" \[0, 1, 2, 3, 4, 5, 6, 7, and 4 more\]") as info:
        check_allowed(mask, LAYOUT, "act")
    assert isinstance(info.value, ValueError)
    assert info.value.head == "move"
    assert info.value.component is None
    assert info.value.rows == list(range(12))


def test_no_allowed_action_names_the_multidiscrete_component() -> None:
    """For MultiDiscrete, the component whose choices are all masked is named."""
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 2:5] = False  # fire's second component (3 choices) in row 1
    with pytest.raises(ActionMaskError, match=r"head 'fire' \(component 1 of 2\) allows no action in rows \[1\]"):
        check_allowed(mask, LAYOUT, "act")


def test_no_allowed_action_in_a_sequence_names_t_b_positions() -> None:
    """For [T, B] masks the positions are (t, b) pairs."""
    mask = torch.ones(4, 2, 9, dtype=torch.bool)
    mask[2, 1, :2] = False
    with pytest.raises(ActionMaskError, match=r"\(t, b\) positions \[\(2, 1\)\]") as info:
        check_allowed(mask, LAYOUT, "evaluate_actions")
    assert info.value.rows == [(2, 1)]


def test_valid_masks_pass_the_check() -> None:
    """At least one allowed action per row and component: no error."""
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, [0, 2, 5]] = True
    check_allowed(mask, LAYOUT, "act")
