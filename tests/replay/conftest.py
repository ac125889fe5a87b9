"""Every replay test runs in strict mode: a correct loop must never trip a check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether import mode


@pytest.fixture(autouse=True)
def _strict() -> Iterator[None]:
    with mode("strict"):
        yield
