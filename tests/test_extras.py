"""Tests for tether._extras: the core works without gymnasium; the layers on it name their extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

_NO_GYMNASIUM = "import sys; sys.modules['gymnasium'] = None  # import gymnasium now fails\n"

CORE = _NO_GYMNASIUM + """
import numpy as np, torch
import tether, tether.testing
from tether import EpisodeClock, RecurrentState, track, mode
from tether.sequence import unroll
clock = EpisodeClock(2)
core = track(torch.nn.LSTM(3, 4))
with mode("strict"):
    state = core.initial_state(2, clock)
    y, state = unroll(core, torch.zeros(1, 2, 3), np.array([[False, True]]), state)
    clock.advance(np.array([False, False]))
    y, state = core(torch.zeros(1, 2, 3), state)
tether.testing.assert_no_graph_leak(state.snapshot())
assert isinstance(state, RecurrentState)
print("core ok")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_the_core_runs_without_gymnasium() -> None:
    """EpisodeClock, RecurrentState, track, unroll and tether.testing need no gymnasium."""
    out = _run(CORE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "core ok"


@pytest.mark.parametrize("package", ["tether.rollout", "tether.nets", "tether.envs", "tether.ppo"])
def test_the_layers_on_the_core_name_their_extra(package: str) -> None:
    """Importing a layer that needs gymnasium says which extra installs it, in one line."""
    out = _run(_NO_GYMNASIUM + f"import {package}")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tether.errors.MissingDependencyError:"), last
    assert f"{package} needs gymnasium" in last
    assert "pip install 'tether-rl[rl]'" in last


def test_the_command_says_what_to_install() -> None:
    """`tether train` without gymnasium: one line on stderr and exit status 2, no traceback."""
    out = _run(_NO_GYMNASIUM + "from tether._entry import main; raise SystemExit(main())")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "tether: error: tether.ppo needs gymnasium" in out.stderr


def test_the_core_and_the_trainer_never_import_torchrl() -> None:
    """tether, the sequence engine, the trainer and tether.interop itself import neither torchrl nor tensordict."""
    out = _run("import sys\nimport tether, tether.sequence, tether.testing, tether.ppo, tether.train, tether.interop\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchrl', 'tensordict')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_torchrl_bridge_names_its_extra() -> None:
    """Importing tether.interop.torchrl without torchrl says which extra installs it, in one line."""
    out = _run("import sys; sys.modules['torchrl'] = None\nimport tether.interop.torchrl")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tether.errors.MissingDependencyError:"), last
    assert "tether.interop.torchrl needs torchrl" in last
    assert "pip install 'tether-rl[torchrl]'" in last


_NO_ONNX = "import sys\nfor name in ('onnx', 'onnxruntime', 'onnxscript'):\n    sys.modules[name] = None\n"

NO_ONNX = _NO_ONNX + """
import gymnasium as gym
import tether.export, tether.export.runtime
trainer = sorted(m for m in sys.modules if m.startswith(("tether.train", "tether.ppo")))
assert not trainer, f"the export runtime imports the trainer: {trainer}"
import tether, tether.cli, tether.ppo, tether.export.cli
from tether.export import export_policy
from tether.nets import FactoredRecurrentActorCritic
policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), core_hidden_size=8)
try:
    export_policy(policy, "never-written.onnx")
except tether.errors.MissingDependencyError as err:
    print(err)
"""


def test_the_core_and_the_trainer_import_no_onnx_package() -> None:
    """Without onnx / onnxruntime / onnxscript: tether, the trainer and tether.export import (the export
    runtime without the trainer); ONNX export names its extra."""
    out = _run(NO_ONNX)
    assert out.returncode == 0, out.stderr
    message = out.stdout.strip()
    assert "tether export --format onnx needs onnx, which is not installed here" in message
    assert "pip install 'tether-rl[export]'" in message
