"""Fixtures for the trainer's tests: the toy env package on the import path (here and in children)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOY_PKG = Path(__file__).resolve().parent / "toy_pkg"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``tether_toys`` importable by name, in this process and in subprocesses it starts."""
    monkeypatch.syspath_prepend(str(TOY_PKG))
    paths = [str(TOY_PKG), str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return TOY_PKG
