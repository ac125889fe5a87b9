"""Tests for tether.nets.inputs: observation, episode-start and action checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tether.nets.factors import ActionLayout
from tether.nets.inputs import as_actions, as_episode_starts, as_obs

SPACE = spaces.Box(0, 255, (2, 3), dtype=np.uint8)
LIKE = torch.zeros(1, dtype=torch.float64)


def test_obs_are_flattened_and_cast_like_the_parameters() -> None:
    """uint8 [B, 2, 3] becomes float64 [B, 6]; [T, B, 6] is accepted as already flat."""
    obs = as_obs(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), SPACE, 6, 1, LIKE, "act")
    assert (obs.shape, obs.dtype) == ((2, 6), torch.float64)
    torch.testing.assert_close(obs[1], torch.arange(6, 12, dtype=torch.float64))
    assert as_obs(torch.zeros(4, 2, 6), SPACE, 6, 2, LIKE, "evaluate_actions").shape == (4, 2, 6)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 2), (2, 5)])
def test_obs_of_other_shapes_raise(shape: tuple[int, ...]) -> None:
    """Missing batch dim, transposed or wrong size: the message shows both forms accepted."""
    with pytest.raises(ValueError, match=r"act: expected obs shaped \[B, 2, 3\] \(or flattened \[B, 6\]\)"):
        as_obs(torch.zeros(shape), SPACE, 6, 1, LIKE, "act")


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
