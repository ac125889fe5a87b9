"""Tests for the `tether` command line: train, eval, plot and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tether.cli import _without_nproc, main
from tether.train import read_metrics

TINY = ["--num-envs", "2", "--n-steps", "16", "--total-steps", "64", "--n-epochs", "1",
        "--minibatch-envs", "1", "--hidden-size", "8", "--encoder-size", "8", "--no-progress",
        "--eval-episodes", "2"]


def test_train_eval_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """train writes metrics, a checkpoint, eval.json and a PNG; eval and plot read them back."""
    run = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "trained 64 steps" in out
    assert "evaluation (2 episodes, deterministic): mean return" in out
    assert f"learning curve: {run / 'curves.png'}" in out
    assert len(read_metrics(run)) == 2
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["eval", str(run / "checkpoint.pt"), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    assert main(["eval", str(run), "--episodes", "3"]) == 0
    assert re.fullmatch(r"evaluation \(3 episodes, deterministic\): mean return \S+ \+- \S+\n",
                        capsys.readouterr().out)

    other = tmp_path / "other"
    assert main(["train", *TINY, "--run-dir", str(other), "--core", "gru", "--no-eval"]) == 0
    capsys.readouterr()
    png = tmp_path / "both.png"
    assert main(["plot", str(run), str(other), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_algo_and_toml_tables_by_concern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--algo ppo (the default) reads a TOML file grouped by concern; the checkpoint names its algo."""
    config = tmp_path / "run.toml"
    run = tmp_path / "run"
    config.write_text(f'algo = "ppo"\n[env]\nnum_envs = 2\n[network]\nhidden_size = 8\nencoder_size = 8\n'
                      f'[run]\ntotal_steps = 32\nrun_dir = "{run}"\nprogress = false\n'
                      '[ppo]\nn_steps = 16\nn_epochs = 1\nminibatch_envs = 1\n', encoding="utf-8")
    assert main(["train", "--algo", "ppo", "--config", str(config), "--no-eval", "--seed", "3"]) == 0
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["algo"] == "ppo"
    assert (saved["config"]["num_envs"], saved["config"]["hidden_size"], saved["config"]["seed"]) == (2, 8, 3)
    capsys.readouterr()


def test_help_groups_the_flags_by_concern(capsys: pytest.CaptureFixture[str]) -> None:
    """`tether train --help` lists --algo and one group of flags per concern, flag names unchanged."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--algo {ppo,r2d2}" in out
    for section, flag in (("env", "--env-id"), ("network", "--hidden-size"), ("run", "--total-steps"),
                          ("ppo", "--learning-rate")):
        head = out.index(f"{section} settings (defaults shown")
        assert out.index(flag, head) > head
    assert out.index("env settings") < out.index("network settings") < out.index("run settings")
    assert out.index("network settings") < out.index("--shared-core", out.index("options:")) < out.index("run settings")


def test_toml_config_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config reads TOML (flags win); --resume continues a stopped run to a larger total."""
    config = tmp_path / "run.toml"
    run = tmp_path / "run"
    config.write_text(f'num_envs = 2\nn_steps = 16\ntotal_steps = 32\nrun_dir = "{run}"\nprogress = false\n'
                      'n_epochs = 1\nminibatch_envs = 1\nhidden_size = 8\n', encoding="utf-8")
    assert main(["train", "--config", str(config), "--no-eval"]) == 0
    assert main(["train", "--resume", str(run), "--total-steps", "64", "--no-eval"]) == 0
    assert [r["step"] for r in read_metrics(run)] == [32, 64]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--env-id", "NoSuchEnv-v9", "--no-progress"], "unknown env id 'NoSuchEnv-v9'"),
        (["train", "--env-id", "tether/Pendulum-NoVel-v0", "--action-masks", "--no-progress"],
         "masks apply to discrete actions"),
        (["eval", "missing.pt"], "no checkpoint at missing.pt"),
        (["plot", "nowhere"], "no metrics file at nowhere"),
    ],
)
def test_errors_exit_2_with_one_clear_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input prints `tether <cmd>: error: ...` to stderr and exits 2."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tether {argv[0]}: error: ")
    assert message in err


def test_foreign_and_corrupt_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """eval refuses a foreign or corrupt file and leaves it untouched."""
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    for path, message in ((foreign, "is not a tether checkpoint"), (corrupt, "corrupt or truncated")):
        before = path.read_bytes()
        assert main(["eval", str(path)]) == 2
        assert message in capsys.readouterr().err
        assert path.read_bytes() == before


def test_unknown_toml_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key in the TOML file is named, with a suggestion."""
    config = tmp_path / "bad.toml"
    config.write_text("gama = 0.9\n", encoding="utf-8")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown setting 'gama'; did you mean 'gamma'" in capsys.readouterr().err


def test_nproc_flag_errors_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--nproc 0, and --nproc disagreeing with the torchrun that started the process, exit 2 in one line."""
    assert _without_nproc(["train", "--nproc", "2", "--seed", "1", "--nproc=4"]) == ["train", "--seed", "1"]
    assert main(["train", "--nproc", "0"]) == 2
    assert capsys.readouterr().err == "tether train: error: --nproc: expected 1 or more processes, got 0\n"
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert main(["train", "--nproc", "2"]) == 2
    assert capsys.readouterr().err == ("tether train: error: --nproc 2: this process is one of 3 started by"
                                       " torchrun; drop --nproc (torchrun --nproc-per-node sets the count)\n")
