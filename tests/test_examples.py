"""Smoke-run the examples top to bottom with tiny step counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("lifecycle_demo.py", ["--steps", "80"], "in strict mode: no lifecycle error"),
    ],
)
def test_example_runs(script: str, args: list[str], expect: str) -> None:
    """The example exits 0 and prints what it promises."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, check=False, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout


def test_gallery_shows_every_error_kind() -> None:
    """The misuse gallery shows each error kind with its fix line."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "misuse_gallery.py")], capture_output=True, text=True, check=True
    ).stdout
    for kind in ("StaleStateError", "GraphLeakError", "StateMismatchError", "ValueError"):
        assert f"{kind}:" in out
    assert out.count("fix:") >= 7
    assert "## malformed done mask" in out
