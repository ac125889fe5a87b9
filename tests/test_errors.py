"""Tests for tether.errors: one root, builtin mix-ins, two-layer messages, row formatting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tether import track
from tether.errors import (
    ActionMaskError,
    CheckpointError,
    ConfigError,
    GraphLeakError,
    LifecycleError,
    StaleStateError,
    StateMismatchError,
    TetherError,
    context,
    format_rows,
)
from tether.sequence import unroll
from tether.state import RecurrentState


@pytest.mark.parametrize(("kind", "builtin"), [
    (StaleStateError, RuntimeError), (GraphLeakError, RuntimeError), (StateMismatchError, ValueError),
    (ConfigError, ValueError), (CheckpointError, ValueError), (ActionMaskError, ValueError),
])
def test_every_error_has_one_root_and_its_builtin(kind: type[Exception], builtin: type[Exception]) -> None:
    """Each error kind is a TetherError and also the builtin code written before tether catches."""
    assert issubclass(kind, TetherError)
    assert issubclass(kind, builtin)
    assert not issubclass(LifecycleError, ValueError)


def test_context_adds_the_public_call_once() -> None:
    """The outer layer names the call; nesting the same call twice does not repeat it."""
    with (pytest.raises(StateMismatchError, match=r"^evaluate_actions: unroll: expected batch 4") as info,
          context("evaluate_actions"), context("unroll"), context("unroll")):
        raise StateMismatchError("expected batch 4, got 3", fix="pass the whole batch")
    assert info.value.where == ("evaluate_actions", "unroll")
    assert info.value.fix == "pass the whole batch"
    assert str(info.value).endswith("fix: pass the whole batch")


def test_context_leaves_other_errors_alone() -> None:
    """A library bug (not a TetherError) passes through unchanged, traceback and all."""
    with pytest.raises(KeyError) as info, context("unroll"):
        raise KeyError("bug")
    assert info.value.args == ("bug",)


def test_unroll_names_itself_before_the_inner_check() -> None:
    """A state that does not fit the core: the inner check says what, unroll says where."""
    core = track(torch.nn.LSTM(3, 4))
    bad = RecurrentState.zeros(2, 2, 4)
    with pytest.raises(StateMismatchError, match=r"^unroll: tracked LSTM: expected a \(h, c\) state shaped"):
        unroll(core, torch.zeros(5, 2, 3), np.zeros((5, 2), dtype=bool), bad)


def test_format_rows_shows_eight_then_counts() -> None:
    """Rows (ints or (t, b) pairs) show the first eight, then how many more."""
    assert format_rows(np.arange(3)) == "[0, 1, 2]"
    assert format_rows(range(11)) == "[0, 1, 2, 3, 4, 5, 6, 7, and 3 more]"
    assert format_rows([(0, 1), (np.int64(2), 3)]) == "[(0, 1), (2, 3)]"
