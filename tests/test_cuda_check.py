"""The prepared CUDA run (benchmarks/cuda_check.py) works end to end: a CPU smoke run, and its
batched CartPole-NoVel follows gymnasium's dynamics."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cuda_check.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cuda_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cpu_smoke_run_passes_every_check() -> None:
    """--device cpu --quick runs the sync protocol in strict mode, bf16, throughput and unroll."""
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick"], capture_output=True,
                         text=True, check=False, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "'passed': True" in out.stdout
    assert "'finite': True" in out.stdout
    assert "unroll_over_fused" in out.stdout


def test_the_batched_cartpole_steps_like_gymnasiums() -> None:
    """Same state and action: the same next state, termination and masked observation."""
    env = _script().BatchedCartPoleNoVel(3, torch.device("cpu"))
    ref = gym.make("CartPole-v1").unwrapped
    ref.reset(seed=0)
    start = env.state.clone()
    actions = [1, 0, 1, 1, 0, 1, 1, 1]
    for a in actions:
        ref.state = start[0].double().numpy()
        obs, _, terminated, _, _ = ref.step(a)
        got, reward, term, trunc = env.step(torch.tensor([a, a, a]))
        torch.testing.assert_close(env.state[0].double(), torch.from_numpy(np.asarray(obs, dtype=np.float64)), atol=1e-5,
                                   rtol=1e-5)
        assert bool(term[0]) == bool(terminated)
        assert got[0, 1] == 0
        assert got[0, 3] == 0
        assert reward.tolist() == [1.0, 1.0, 1.0]
        assert not trunc.any()
        start = env.state.clone()
