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


def test_recurrent_ppo_example_runs_silently_in_strict_mode() -> None:
    """The single-file PPO script trains two updates (rollout, replays, GAE) with warnings as errors."""
    out = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "ppo_lstm_cartpole.py"),
         "--total-timesteps", "256", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "2"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "finished 256 steps in strict mode" in out.stdout
