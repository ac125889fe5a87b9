"""Every user mistake with `tether` is one line on stderr and exit status 2; a bug keeps its traceback."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tether.cli import main

TINY = ["--num-envs", "2", "--n-steps", "8", "--total-steps", "16", "--n-epochs", "1", "--minibatch-envs", "1",
        "--hidden-size", "8", "--encoder-size", "8", "--no-progress", "--eval-episodes", "2"]


def _one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tether {command}: error: ")
    return lines[0]


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished tiny run folder."""
    folder = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(folder), "--no-eval"]) == 0
    capsys.readouterr()
    return folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--env-id", "nope/Missing-v0"],
         r"unknown env id 'nope/Missing-v0' .*If a package registers it, import it first: --env-import PKG"),
        (["train", "--env-id", "no_such_pkg:toys/Cue-Box-v0"], r"env_imports: cannot import 'no_such_pkg'"),
        (["train", "--env-import", "no_such_pkg"], r"env_imports: cannot import 'no_such_pkg'"),
        (["train", "--env-id", "tether/Recall-v0", "--env-kwarg", "colour=3"],
         r"env_kwargs: tether/Recall-v0 refused \['colour'\]"),
        (["train", "--resume", "nowhere"], r"no checkpoint at nowhere \(expected a run folder holding checkpoint.pt"),
        (["train", "--resume", "nowhere", "--preset", "recall"], r"--resume continues a run with its own settings"),
        (["eval", "nowhere"], r"no checkpoint at nowhere"),
        (["eval", "missing.pt", "--episodes", "0"], r"--episodes: expected at least 1, got 0"),
        (["plot", "nowhere"], r"no metrics file at nowhere"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each mistake prints `tether <cmd>: error: ...` (one line) and exits 2."""
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *(TINY if argv[0] == "train" and "--resume" not in argv else [])]) == 2
    line = _one_error_line(capsys.readouterr().err, argv[0])
    assert re.search(message, line), line
    assert not list(tmp_path.iterdir())  # nothing written


# Settings a run reads: each refused where it is read, before anything runs or is written.
UNUSABLE_DEVICE = "cuda:99" if torch.cuda.is_available() else "cuda"
BAD_SETTINGS = [
    (["--learning-rate", "nan"], r"learning_rate: expected a finite number, got nan"),
    (["--learning-rate", "inf"], r"learning_rate: expected a finite number, got inf"),
    (["--learning-rate", "-0.001"], r"learning_rate: expected a positive value, got -0.001"),
    (["--reward-scale", "nan"], r"reward_scale: expected a finite number, got nan"),
    (["--gamma", "1.5"], r"gamma: expected a value in \[0, 1\], got 1.5"),
    (["--gae-lambda", "nan"], r"gae_lambda: expected a finite number, got nan"),
    (["--clip-range", "0"], r"clip_range: expected a positive value, got 0"),
    (["--ent-coef=-inf"], r"ent_coef: expected a finite number, got -inf"),
    (["--target-kl", "nan"], r"target_kl: expected a finite number, got nan"),
    (["--max-grad-norm", "-1"], r"max_grad_norm: expected a positive value, got -1"),
    (["--num-envs", "0"], r"num_envs: expected a positive value, got 0"),
    (["--seed", "-1"], r"seed: expected 0 or more, got -1"),
    (["--hidden-size", "0"], r"hidden_size: expected a positive value, got 0"),
    (["--device", "banana"], r"device: expected a torch device such as cpu.*, got 'banana'"),
    (["--device", UNUSABLE_DEVICE], rf"device: '{UNUSABLE_DEVICE}' is not available on this machine .*available: cpu"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_SETTINGS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_settings_are_one_line_and_exit_2(flags: list[str], message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A non-finite or out-of-range number, or a device torch cannot use here: exit 2, one line, no run."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--no-eval", *flags, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, _one_error_line(err, "train")), err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "nowhere", "--seed", "-1"], r"--seed: expected 0 or more \(gymnasium seeds are non-negative\)"),
        (["train", "--algo", "nope"], r"argument --algo: invalid choice: 'nope'"),
    ],
)
def test_bad_command_arguments_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An evaluation seed gymnasium cannot take, or an unknown trainer: exit 2, one line."""
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        status = int(stop.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, _one_error_line(err, argv[0])), err
    assert not list(tmp_path.iterdir())


def test_bad_values_in_flags_and_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed flag, a bad choice or a wrongly typed TOML value: one line, exit 2."""
    for argv in (["train", "--env-kwarg", "novalue"], ["train", "--core", "transformer"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("tether train: error: ")
    config = tmp_path / "run.toml"
    config.write_text('num_envs = "8"\n', encoding="utf-8")
    assert main(["train", "--config", str(config)]) == 2
    assert "num_envs: expected an integer, got '8'" in _one_error_line(capsys.readouterr().err, "train")


def test_foreign_pickle_and_corrupt_payload_are_refused_in_one_line(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another program's torch.save(model) and a tether file with a broken payload are refused."""
    model = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), model)
    assert main(["eval", str(model)]) == 2
    line = _one_error_line(capsys.readouterr().err, "eval")
    assert "is not a tether checkpoint: it holds pickled Python objects (torch.nn.modules.linear.Linear" in line

    data = torch.load(run / "checkpoint.pt", weights_only=True)
    data["collector"] = {"starts": "garbage"}
    broken = tmp_path / "broken" / "checkpoint.pt"
    broken.parent.mkdir()
    torch.save(data, broken)
    assert main(["eval", str(broken)]) == 2
    assert "the payload is corrupt" in _one_error_line(capsys.readouterr().err, "eval")


def test_incompatible_network_layout_is_one_line(run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint whose weights do not fit the network (renamed / reshaped) says how, in one line."""
    data = torch.load(run / "checkpoint.pt", weights_only=True)
    policy = data["policy"]
    first = next(iter(policy))
    policy["old_layout." + first] = policy.pop(first)
    second = next(k for k, v in policy.items() if v.dim() == 2)
    policy[second] = torch.zeros(3, 3)
    old = tmp_path / "old" / "checkpoint.pt"
    old.parent.mkdir()
    torch.save(data, old)
    assert main(["eval", str(old)]) == 2
    line = _one_error_line(capsys.readouterr().err, "eval")
    assert "the saved network does not fit the one its settings build: 1 missing" in line
    assert "1 unexpected (e.g. old_layout." in line
    assert "of another shape" in line


def test_missing_matplotlib_train_exits_0_with_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Without matplotlib, train prints a one-line notice and exits 0; plot says it in one line, exit 2."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    run = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "tether train: note: no learning curve drawn (plotting needs matplotlib: pip install"
        " 'tether-rl[plot]'); the run's results are written"]
    assert "evaluation (2 episodes, deterministic)" in captured.out
    assert {p.name for p in run.iterdir()} >= {"checkpoint.pt", "metrics.jsonl", "eval.json"}
    assert not (run / "curves.png").exists()
    assert main(["plot", str(run)]) == 2
    assert "plotting needs matplotlib" in _one_error_line(capsys.readouterr().err, "plot")


@pytest.mark.parametrize("bug", [ValueError, TypeError, RuntimeError])
def test_a_library_bug_keeps_its_traceback(bug: type[Exception], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain ValueError / TypeError from inside the trainer is not turned into 'bad input'."""
    from tether.ppo import RecurrentPPO  # noqa: PLC0415

    def broken(self: RecurrentPPO, **kwargs: object) -> None:
        raise bug("deep inside")

    monkeypatch.setattr(RecurrentPPO, "train", broken)
    with pytest.raises(bug, match="deep inside"):
        main(["train", *TINY, "--run-dir", str(tmp_path / "run")])


def test_plot_of_unplottable_runs_is_one_line(run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown metric or a malformed metrics file: one line naming it, exit 2."""
    assert main(["plot", str(run), "--metric", "no_such_metric", "--out", str(tmp_path / "x.png")]) == 2
    assert "no run has any 'no_such_metric' records to plot" in _one_error_line(capsys.readouterr().err, "plot")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text('{"step": 1}\nnot json\n', encoding="utf-8")
    assert main(["plot", str(broken)]) == 2
    assert "metrics.jsonl:2: not a JSON record" in _one_error_line(capsys.readouterr().err, "plot")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("algo", "message"), [
    ("r2d3", r"a run of the algorithm 'r2d3', which this tether does not know \(it knows ppo, r2d2\)"),
    (None, None),  # a checkpoint written before the algo key: PPO's
])
def test_eval_picks_the_trainer_of_the_checkpoints_algo(algo: str | None, message: str | None, run: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tether eval` loads the run with the trainer its checkpoint names; an unknown one is one line."""
    data = torch.load(run / "checkpoint.pt", weights_only=True)
    assert data["algo"] == "ppo"
    if algo is None:
        del data["algo"]
    else:
        data["algo"] = algo
    saved = tmp_path / "other" / "checkpoint.pt"
    saved.parent.mkdir()
    torch.save(data, saved)
    code = main(["eval", str(saved), "--episodes", "1"])
    captured = capsys.readouterr()
    if message is None:
        assert code == 0, captured.err
        assert "mean return" in captured.out
    else:
        assert code == 2
        assert re.search(message, _one_error_line(captured.err, "eval"))
