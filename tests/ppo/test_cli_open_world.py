"""The `tether` command with a third-party env package: train, checkpoint, resume elsewhere, eval.

The toy package (tests/ppo/toy_pkg/tether_toys) registers its ids when imported, as a user's
package of tasks would; every id below trains a few tiny updates through the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tether.cli import main
from tether.train import read_metrics

TINY = ["--num-envs", "2", "--n-steps", "8", "--n-epochs", "1", "--minibatch-envs", "1",
        "--hidden-size", "8", "--encoder-size", "8", "--no-progress", "--eval-episodes", "2",
        "--mode", "strict"]

# One line per observation kind the networks take (Box, and a Dict flattened to a Box).
CLI_IDS = [
    ["--env-id", "tether_toys:toys/Cue-Box-v0"],
    ["--env-import", "tether_toys", "--env-id", "toys/Cue-DictFlat-v0", "--env-kwarg", "delay=2"],
    ["--env-id", "tether_toys:toys/Cue-Discrete-v0"],
    ["--env-id", "tether_toys:toys/Cue-MultiDiscrete-v0"],
    ["--env-id", "tether_toys:toys/Cue-Tuple-v0"],
    ["--env-id", "tether_toys:toys/Cue-DictDiscrete-v0"],
]


def _one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tether {command}: error: ")
    return lines[0]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["policy"]


@pytest.mark.parametrize("env_args", CLI_IDS, ids=["module-colon-id", "env-import-flatten-dict", "discrete",
                                                    "multi-discrete", "tuple", "dict-of-discrete"])
def test_train_resume_elsewhere_eval(env_args: list[str], toys: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A run moved to another folder resumes there from another cwd, bit-exact, then evaluates."""
    (tmp_path / "start").mkdir()
    monkeypatch.chdir(tmp_path / "start")
    assert main(["train", *env_args, *TINY, "--total-steps", "64", "--run-dir", "whole", "--no-eval"]) == 0
    assert main(["train", *env_args, *TINY, "--total-steps", "32", "--run-dir", "run", "--no-eval"]) == 0
    shutil.move(tmp_path / "start" / "run", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["train", "--resume", "../moved", "--total-steps", "64"]) == 0
    out = capsys.readouterr().out
    assert "run folder: ../moved" in out
    assert "evaluation (2 episodes, deterministic): mean return" in out
    assert not (tmp_path / "start" / "run").exists()  # nothing written at the recorded old path
    assert [r["update"] for r in read_metrics(tmp_path / "moved")] == [1, 2, 3, 4]
    whole, resumed = _weights(tmp_path / "start" / "whole" / "checkpoint.pt"), _weights(
        tmp_path / "moved" / "checkpoint.pt")
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)
    assert main(["eval", "../moved", "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3


def test_checkpoint_loads_with_weights_only_in_a_torch_only_process(toys: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint of a FlattenObservation env is read by torch.load(weights_only=True) with no tether."""
    run = tmp_path / "run"
    assert main(["train", "--env-id", "tether_toys:toys/Cue-DictFlat-v0", *TINY, "--total-steps", "16",
                 "--run-dir", str(run), "--no-eval"]) == 0
    code = ("import sys, torch\n"
            "data = torch.load(sys.argv[1], weights_only=True)\n"
            "assert data['format'] == 'tether-checkpoint', data['format']\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tether', 'gymnasium', 'tether_toys'))\n"
            "assert not bad, bad\n"
            "print(data['config']['env_id'], data['update'])\n")
    done = subprocess.run([sys.executable, "-c", code, str(run / "checkpoint.pt")], capture_output=True,
                          text=True, check=False, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tether_toys:toys/Cue-DictFlat-v0", "1"]
    capsys.readouterr()


def test_python_dash_m_tether_evaluates(toys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tether eval` rebuilds a third-party env from the run folder in a fresh process."""
    run = tmp_path / "run"
    assert main(["train", "--env-id", "tether_toys:toys/Cue-Box-v0", *TINY, "--total-steps", "16",
                 "--run-dir", str(run), "--no-eval"]) == 0
    capsys.readouterr()
    done = subprocess.run([sys.executable, "-m", "tether", "eval", str(run), "--episodes", "2",
                           "--env-import", "tether_toys"],  # a module only the checkpoint names: consent
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("evaluation (2 episodes, deterministic): mean return ")


def test_a_kill_between_checkpoints_leaves_one_record_per_update(
        toys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Records written after the last checkpoint are replaced on resume: one per update, as uninterrupted."""
    from tether.ppo import RecurrentPPO  # noqa: PLC0415

    args = [*TINY, "--env-id", "tether_toys:toys/Cue-Box-v0", "--total-steps", "64", "--checkpoint-every", "2",
            "--no-eval"]
    assert main(["train", *args, "--run-dir", str(tmp_path / "whole")]) == 0
    real_save, calls = RecurrentPPO.save, []

    def killed_at_second_save(self: RecurrentPPO, path: str | Path) -> Path:
        calls.append(self.update)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after update 4's record, before its checkpoint
        return real_save(self, path)

    monkeypatch.setattr(RecurrentPPO, "save", killed_at_second_save)
    with pytest.raises(KeyboardInterrupt):
        main(["train", *args, "--run-dir", str(tmp_path / "run")])
    monkeypatch.undo()
    assert calls == [2, 4]
    assert len(read_metrics(tmp_path / "run")) == 4
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0

    def plain(run: Path) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k not in ("time", "update_seconds")} for r in read_metrics(run)]

    assert [r["update"] for r in plain(tmp_path / "run")] == [1, 2, 3, 4]
    assert plain(tmp_path / "run") == plain(tmp_path / "whole")
    capsys.readouterr()


def test_unseeded_env_resume_names_the_rows_that_differ(toys: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An env whose episodes its seed does not determine cannot be replayed: resume says which rows."""
    run = tmp_path / "run"
    assert main(["train", "--env-id", "tether_toys:toys/Unseeded-v0", "--env-kwarg", "num_cues=1000",
                 *TINY, "--total-steps", "16", "--run-dir", str(run), "--no-eval"]) == 0
    with pytest.warns(RuntimeWarning, match=r"restoring the envs: rows \[.*\] did not replay to the saved observations"):
        assert main(["train", "--resume", str(run), "--total-steps", "32", "--no-eval"]) == 0
    capsys.readouterr()
