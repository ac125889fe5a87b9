"""Tests for `tether export` and `tether eval RUN --policy FILE` on a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.cli import main
from tether.export import read_metadata
from tether.export.exporters import file_sha256
from tether.ppo import PPOConfig, RecurrentPPO

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _train(run: Path, **settings: object) -> Path:
    base: dict[str, object] = {"total_steps": 256, "num_envs": 2, "n_steps": 64, "hidden_size": 8,
                               "encoder_size": 16, "run_dir": str(run), "progress": False}
    config = PPOConfig(**{**base, **settings})  # type: ignore[arg-type]
    trainer = RecurrentPPO(config)
    try:
        trainer.train()
    finally:
        trainer.close()
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on CartPole without velocities, with observation normalisation (statistics in the checkpoint)."""
    return _train(tmp_path_factory.mktemp("runs") / "run", normalize_obs=True)


def test_export_check_and_eval_give_the_runs_returns(run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`tether export --check` passes; `tether eval RUN --policy FILE` gives `tether eval RUN`'s returns."""
    out_file = tmp_path / "policy.onnx"
    assert main(["export", str(run), "--out", str(out_file), "--check", "--check-steps", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"exported {run} (checkpoint sha256 ")
    assert "onnx via torch.onnx dynamo, dynamic batch, deterministic actions, observation normalisation inside" \
        in lines[0]
    assert lines[1] == ("inputs: obs [batch, 4] float32, h [2, batch, 8] float32, c [2, batch, 8] float32,"
                        " episode_start [batch] bool")
    assert "parity over 200 steps x 4 envs" in "\n".join(lines)
    assert lines[-1].startswith("parity: ok")
    meta = read_metadata(out_file)
    assert meta["checkpoint_sha256"] == file_sha256(run / "checkpoint.pt")
    assert meta["env_id"] == "tether/CartPole-NoVel-v0"
    assert meta["observation_space"]["low"][0] == pytest.approx(-4.8)  # the env's own space, not the normaliser's
    assert main(["eval", str(run), "--episodes", "6", "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--episodes", "6", "--json", "--policy", str(out_file)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported == eager


def test_a_fixed_batch_pt2_export(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format pt2 --batch 3 records the batch in the state shapes; --check runs at that batch."""
    out_file = tmp_path / "policy.pt2"
    assert main(["export", str(run), "--format", "pt2", "--out", str(out_file), "--batch", "3", "--check",
                 "--check-steps", "200"]) == 0
    out = capsys.readouterr().out
    assert "pt2 via torch.export, batch 3" in out
    assert "parity over 200 steps x 3 envs" in out
    assert read_metadata(out_file)["state_shapes"]["h"] == [2, 3, 8]


@pytest.mark.parametrize(("args", "message"), [
    (["export", "{missing}", "--out", "{tmp}/p.onnx"], "no checkpoint at"),
    (["export", "{run}", "--out", "{tmp}/p.onnx", "--batch", "0"], "--batch: expected 1 or more rows, got 0"),
    (["export", "{run}", "--out", "{tmp}/p.txt"], "expected a .onnx or .pt2 file name"),
    (["export", "{run}", "--out", "{tmp}/p.onnx", "--batch", "2", "--check", "--check-envs", "3"],
     "expected at least 1 step and 2 envs, got 500 steps and 3 envs"),
    (["export", "{forged}", "--out", "{tmp}/p.onnx"], "is not a readable tether checkpoint"),
    (["eval", "{run}", "--policy", "{forged}"], "is not a readable ONNX model"),
    (["eval", "{run}", "--policy", "{tmp}/none.pt2"], "no exported policy at"),
])
def test_bad_input_is_one_line_and_exit_2(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], message: str) -> None:
    """Each mistake prints one line to stderr, exits 2 and writes nothing."""
    forged = tmp_path / "forged.onnx"
    forged.write_bytes(b"\x00garbage")
    names = {"missing": str(tmp_path / "nothing"), "tmp": str(tmp_path), "run": str(run), "forged": str(forged)}
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "p.onnx").exists()


def test_a_memoryless_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run trained with recurrent=False has no state to export: refused in one line naming the part."""
    run = _train(tmp_path / "ff", recurrent=False, total_steps=128)
    assert main(["export", str(run), "--out", str(tmp_path / "p.pt2")]) == 2
    err = capsys.readouterr().err
    assert "the policy cannot be exported: MemorylessPolicy (a memoryless run: recurrent=False)" in err
