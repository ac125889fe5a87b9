"""Parity of exported files with the eager policy over 500 vector-env steps with episode ends and forced resets.

Four cases cover the matrix's axes between them (LSTM / GRU, 1-2 layers, shared / separate critic,
every action and observation kind, fixed and dynamic batch, deterministic and stochastic outputs,
both formats and both ONNX exporters); the slow test runs the full product.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tether.export import ExportedPolicy, ExportError, check_parity, export_policy
from tether.export import exporters as exporters_module
from tether.export.runtime import torch_runner
from tether.nets import ObservationNorm

from .helpers import env_id, make_policy

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

NORM = ObservationNorm(np.array([0.5, -0.25, 0.0]), np.array([0.5, 2.0, 1.0]))


def _run_case(tmp: Path, obs: str, action: str, core: str, layers: int, shared: bool, fmt: str,
              batch: int | None, stochastic: bool, masks: bool, norm: ObservationNorm | None = None,
              exporter: Any = "auto", steps: int = 500) -> tuple[Any, Any]:
    policy = make_policy(obs, action, core, layers, shared)
    result = export_policy(policy, tmp / f"policy.{fmt}", batch=batch, deterministic=not stochastic,
                           action_masks=masks, obs_norm=norm, exporter=exporter)
    meta = result.metadata
    sides = {"torch.export": ExportedPolicy(meta, torch_runner(result.program.module(), meta)),
             fmt: ExportedPolicy.load(result.path, threads=1)}
    report = check_parity(policy, sides, env_id=env_id(obs, action, masks), num_envs=batch or 4, steps=steps,
                          obs_norm=norm, seed=3)
    return result, report


def _assert_parity(report: Any) -> None:
    assert report.ok, "\n".join(report.lines())
    assert report.episodes > 20
    assert report.forced_resets > 10
    for side in report.sides:
        assert side.action_mismatches == 0
        assert max(side.value, side.state, side.action, side.params or 0.0) < 1e-4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_lstm_two_layers_separate_critic_box_obs_normalised_onnx_dynamic_batch(tmp_path: Path) -> None:
    """ONNX (dynamo), dynamic batch: equal over 500 steps at 4 envs, then at 1 env from the same file."""
    result, report = _run_case(tmp_path, "box", "discrete", "lstm", 2, False, "onnx", None, False, False, NORM)
    assert result.exporter == "torch.onnx dynamo"
    assert result.notes == []
    _assert_parity(report)
    assert {s.name for s in report.sides} == {"torch.export", "onnx"}
    assert all(s.params is None for s in report.sides)  # a deterministic file has no distribution outputs
    policy = make_policy("box", "discrete", "lstm", 2, False)
    single = check_parity(policy, {"onnx": ExportedPolicy.load(result.path)}, env_id=env_id("box", "discrete"),
                          num_envs=1, steps=150, obs_norm=NORM)
    assert single.ok, "\n".join(single.lines())


def test_gru_shared_dict_obs_dict_actions_masked_stochastic_onnx_fixed_batch(tmp_path: Path) -> None:
    """Dict observations and actions with masks, distribution parameters out, batch fixed at 3."""
    result, report = _run_case(tmp_path, "dict", "dict", "gru", 1, True, "onnx", 3, True, True)
    _assert_parity(report)
    assert all(s.params is not None for s in report.sides)
    assert result.metadata["inputs"]["obs"] == ["obs.cue", "obs.nest.0", "obs.pos"]
    assert result.metadata["outputs"]["distribution"] == ["mean.aim", "log_std.aim", "log_probs.move"]


def test_the_torchscript_fallback_when_dynamo_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where dynamo fails the TorchScript exporter writes the file, the result says so, and parity holds."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dynamo cannot take this RNN\nmore detail")

    monkeypatch.setattr(exporters_module, "_onnx_dynamo", broken)
    result, report = _run_case(tmp_path, "discrete", "multi_discrete", "gru", 2, False, "onnx", 2, False, True)
    assert result.exporter == "torch.onnx torchscript"
    assert len(result.notes) == 1
    assert "dynamo exporter failed (RuntimeError: dynamo cannot take this RNN)" in result.notes[0]
    assert "TorchScript exporter (dynamo=False) wrote the file instead" in result.notes[0]
    _assert_parity(report)
    with pytest.raises(ExportError, match="dynamo exporter cannot take this policy's step"):
        export_policy(make_policy("box", "discrete"), tmp_path / "x.onnx", exporter="dynamo")


def test_lstm_box_actions_stochastic_pt2_dynamic_batch(tmp_path: Path) -> None:
    """A .pt2 program with Box actions (mean, log_std out) and a dynamic batch."""
    result, report = _run_case(tmp_path, "box", "box", "lstm", 1, True, "pt2", None, True, False)
    assert result.exporter == "torch.export"
    _assert_parity(report)


@pytest.mark.slow
@pytest.mark.parametrize(("obs", "action"), list(itertools.product(["box", "discrete", "dict"],
                                                                 ["discrete", "multi_discrete", "box", "dict"])))
def test_the_full_case_matrix(tmp_path: Path, obs: str, action: str) -> None:
    """Every observation x action kind, through LSTM / GRU, 1-2 layers, shared / separate, fixed / dynamic."""
    for i, (core, layers, shared) in enumerate(itertools.product(["lstm", "gru"], [1, 2], [True, False])):
        batch = None if i % 2 else 2
        masks = action != "box" and i % 3 == 0
        fmt = "onnx" if i % 4 in (0, 3) else "pt2"
        _, report = _run_case(tmp_path / str(i), obs, action, core, layers, shared, fmt, batch,
                              stochastic=i % 4 == 1, masks=masks, norm=NORM if obs == "box" else None)
        _assert_parity(report)
