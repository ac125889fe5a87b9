"""``tether train --algo r2d2`` from the command line: flags, TOML, presets, eval, plot, resume, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tether.cli import main

TINY = ["--num-envs", "2", "--total-steps", "256", "--collect-steps", "8", "--seq-len", "8", "--burn-in", "4",
        "--capacity", "32", "--batch-size", "4", "--learning-starts", "64", "--hidden-size", "16",
        "--encoder-size", "16", "--log-every", "4", "--no-progress", "--mode", "strict"]


def test_train_then_eval_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run trains, evaluates, draws its curve; eval picks R2D2 from the checkpoint; plot reads it."""
    run = tmp_path / "run"
    assert main(["train", "--algo", "r2d2", *TINY, "--eval-episodes", "2", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "trained 256 steps" in out
    assert "evaluation (2 episodes, deterministic)" in out
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 256
    assert "staleness/age_updates" in records[-1]
    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    assert main(["eval", str(run), "--episodes", "3", "--stochastic"]) == 0
    assert "(3 episodes, stochastic)" in capsys.readouterr().out
    assert main(["plot", str(run), "--keys", "staleness/*", "loss"]) == 0
    assert (run / "keys.png").is_file()
    capsys.readouterr()
    assert main(["export", str(run), "--format", "pt2", "--out", str(tmp_path / "q.pt2")]) == 2
    assert "RecurrentQNetwork has no export_step()" in capsys.readouterr().err
    assert not (tmp_path / "q.pt2").exists()


def test_toml_tables_and_resume_with_the_replay(tmp_path: Path) -> None:
    """An ``[r2d2]`` table (with ``algo = "r2d2"`` picking the trainer) trains; --resume continues it."""
    config = tmp_path / "run.toml"
    config.write_text('algo = "r2d2"\n[env]\nnum_envs = 2\n[run]\ntotal_steps = 128\nprogress = false\n'
                      '[network]\nhidden_size = 16\nencoder_size = 16\n'
                      '[r2d2]\nseq_len = 8\nburn_in = 0\ncapacity = 32\nbatch_size = 4\nlearning_starts = 64\n'
                      'collect_steps = 8\nlog_every = 2\nsave_replay = true\n', encoding="utf-8")
    run = tmp_path / "toml-run"
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--no-eval"]) == 0
    assert main(["train", "--algo", "r2d2", "--resume", str(run), "--total-steps", "192", "--no-eval"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [32, 64, 96, 128, 160, 192]


def _status(argv: list[str]) -> int:
    """``main``'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(str(done.code))


@pytest.mark.parametrize(("argv", "message"), [
    (["--period", "100"], r"period: expected at most burn_in \+ seq_len = 12"),
    (["--env-id", "tether/Pendulum-NoVel-v0"], r"discrete"),
    (["--action-masks"], r"action_masks: R2D2 does not read action masks yet"),
    (["--nproc", "2"], r"--nproc 2: --algo r2d2 trains on one process; drop --nproc"),
    (["--n-step", "0"], r"n_step: expected a positive value, got 0"),
    (["--preset", "pendulum"], r"argument --preset: invalid choice: 'pendulum'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    """Each mistake prints one line to stderr, exits 2, and leaves no run folder behind."""
    run = tmp_path / "bad"
    assert _status(["train", "--algo", "r2d2", *TINY, "--run-dir", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not run.exists()
