"""Tests for tether.nets.inputs: episode-start and action checks (observations: test_encoders.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tether.nets.factors import ActionLayout
from tether.nets.inputs import as_actions, as_episode_starts


def test_episode_starts_stay_on_the_host() -> None:
    """Numpy starts become a CPU bool tensor (unroll plans on the host); others are refused."""
    starts = as_episode_starts(np.zeros((3, 2), dtype=bool), 3, 2, "evaluate_actions")
    assert (starts.dtype, starts.device.type) == (torch.bool, "cpu")
    with pytest.raises(ValueError, match=r"expected episode_starts as bool \[T=3, B=2\] .*got torch.bool \[2, 3\]"):
        as_episode_starts(np.zeros((2, 3), dtype=bool), 3, 2, "evaluate_actions")
    with pytest.raises(ValueError, match=r"got torch.int64 \[3, 2\]"):
        as_episode_starts(np.zeros((3, 2), dtype=np.int64), 3, 2, "evaluate_actions")


def test_actions_are_flattened_and_range_checked() -> None:
    """[T, B, A] becomes [T * B, A]; a Discrete index outside [0, n) names its head."""
    layout = ActionLayout(spaces.Dict({"d": spaces.Discrete(3), "b": spaces.Box(-1, 1, (1,))}))
    flat = as_actions(torch.zeros(2, 3, 2), layout, 2, 3, torch.device("cpu"), "evaluate_actions")
    assert flat.shape == (6, 2)
    bad = torch.zeros(2, 3, 2)
    bad[1, 2, 1] = 3.0  # column 1 is head 'd' (the Dict sorts 'b' first)
    with pytest.raises(ValueError, match=r"actions of head 'd' fall outside \[0, n\) for sizes \[3\]"):
        as_actions(bad, layout, 2, 3, torch.device("cpu"), "evaluate_actions")
    bad[1, 2, 1] = -1.0
    with pytest.raises(ValueError, match="actions of head 'd'"):
        as_actions(bad, layout, 2, 3, torch.device("cpu"), "evaluate_actions")
