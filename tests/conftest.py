"""Shared fixtures: every test starts with warn mode's once-per-call-site memory cleared."""


from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tether.modes import reset_warnings

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    reset_warnings()
    yield
    reset_warnings()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
