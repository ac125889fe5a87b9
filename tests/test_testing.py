"""Tests for tether.testing: the assertions and the pytest plugin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tether import EpisodeClock, get_mode, track
from tether.testing import assert_memory_flat, assert_no_graph_leak, graph_size, rss_bytes


def test_graph_size_counts_nodes() -> None:
    """graph_size grows with the graph and is 0 once detached."""
    w = torch.ones(3, requires_grad=True)
    small = w * 2
    big = small
    for _ in range(10):
        big = big * 2
    assert graph_size(big) > graph_size(small) > 0
    assert graph_size([big, small]) == graph_size(big)  # the union: small's graph is inside big's
    assert graph_size(big.detach()) == 0


def test_assert_no_graph_leak_names_the_path() -> None:
    """A buffer holding a live state is caught, with the path to the tensor."""
    tracked = track(nn.LSTM(3, 4))
    state = tracked.initial_state(2, EpisodeClock(2))
    _, live = tracked(torch.randn(1, 2, 3), state)

    class Buffer:
        def __init__(self) -> None:
            self.states = [state, live]

    with pytest.raises(AssertionError, match=r"2 tensor\(s\) still carry an autograd graph: buffer.states\[1\].h"):
        assert_no_graph_leak(Buffer(), name="buffer")
    assert_no_graph_leak({"states": [state, live.snapshot()], "params": list(tracked.parameters())})


def test_assert_memory_flat_passes_and_fails() -> None:
    """assert_memory_flat passes a flat loop and fails one that keeps growing."""
    kept: list[np.ndarray] = []
    baseline, final = assert_memory_flat(lambda: np.zeros(100), iterations=50, warmup=5)
    assert final <= baseline * 1.05
    with pytest.raises(AssertionError, match=r"memory grew .* more than the allowed 5\.0 %"):
        assert_memory_flat(lambda: kept.append(np.ones(2**18)), iterations=200, warmup=5)
    assert rss_bytes() > 0


def test_session_mode_from_ini() -> None:
    """tether's own suite runs in strict mode through the plugin's ini option."""
    assert get_mode() == "strict"


def test_plugin_option_fixture_and_marker(pytester: pytest.Pytester) -> None:
    """--tether-mode, the tether_strict fixture and the tether_mode marker all set the mode."""
    pytester.makepyfile(
        """
        import pytest
        import tether

        def test_session():
            assert tether.get_mode() == "off"

        def test_fixture(tether_strict):
            assert tether.get_mode() == "strict"

        @pytest.mark.tether_mode("warn")
        def test_marker():
            assert tether.get_mode() == "warn"
        """
    )
    result = pytester.runpytest_subprocess("--tether-mode=off", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
