"""Bad input that used to escape: each is one line on stderr, exit status 2, no traceback, nothing lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from tether.cli import main
from tether.errors import CheckpointError, NonFiniteError
from tether.ppo import RecurrentPPO
from tether.train.checkpoint import load_checkpoint

SMALL = ["--total-steps", "256", "--num-envs", "2", "--n-steps", "32", "--n-epochs", "1", "--no-progress",
         "--no-eval", "--hidden-size", "8", "--encoder-size", "8", "--minibatch-envs", "1"]
SRC = Path(__file__).resolve().parents[2] / "src"


class _Faulty(gym.Env[np.ndarray, np.int64]):
    """A 4-step episode of zeros with reward 1, except where ``fault`` says what goes wrong at step 3."""

    def __init__(self, **kwargs: Any) -> None:  # gymnasium's EnvCreator: keyword arguments only
        self.fault = str(kwargs.get("fault", "none"))
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        obs, reward = np.zeros(2, np.float32), 1.0
        if self._t == 3:
            obs[0] = {"nan_obs": np.nan, "inf_obs": np.inf}.get(self.fault, 0.0)
            reward = {"nan_reward": float("nan"), "inf_reward": float("inf"), "huge_reward": 1e39}.get(
                self.fault, 1.0)
        return obs, reward, self._t == 4, False, {}


for _fault in ("nan_reward", "inf_reward", "nan_obs", "inf_obs", "huge_reward"):
    gym.register(f"tether_tests/Faulty-{_fault.replace('_', '-')}-v0", entry_point=_Faulty,
                 kwargs={"fault": _fault})


def _one_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"tether {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished small run on tether/CartPole-NoVel-v0."""
    folder = tmp_path / "done"
    assert main(["train", *SMALL, "--run-dir", str(folder)]) == 0
    capsys.readouterr()
    return folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env-id", "tether_tests/Faulty-nan-reward-v0"],
         r"the rewards of env rows \[0, 1\] are NaN or inf \(at tick 3\)"),
        (["--env-id", "tether_tests/Faulty-inf-reward-v0"],
         r"the rewards of env rows \[0, 1\] are NaN or inf \(at tick 3\)"),
        (["--env-id", "tether_tests/Faulty-nan-obs-v0"],
         r"the observations of env rows \[0, 1\] contain NaN or inf \(at tick 3\)"),
        (["--env-id", "tether_tests/Faulty-inf-obs-v0"],
         r"the observations of env rows \[0, 1\] contain NaN or inf \(at tick 3\)"),
        (["--env-id", "tether_tests/Faulty-huge-reward-v0"],
         r"update 1: the (value_loss|policy_loss|weights \S+) (is|hold) (nan|inf|NaN or inf);"
         r" the run stops unsaved \(the last good checkpoint is kept\)"),
        (["--env-id", "tether/Recall-v0", "--env-kwarg", "delay=-3"],
         r"env_kwargs: tether/Recall-v0 refused \['delay'\] \(RecallEnv: delay expects an int >= 0"),
    ],
)
def test_bad_env_or_kwargs_stop_the_run_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """NaN / inf rewards or observations, a loss that overflows, a refused env kwarg: one line, exit 2."""
    run = tmp_path / "run"
    assert main(["train", *SMALL, *argv, "--run-dir", str(run)]) == 2
    line = _one_line(capsys.readouterr().err, "train")
    assert re.search(message, line), line
    assert not (run / "checkpoint.pt").exists()  # nothing non-finite was ever saved


def test_a_non_finite_update_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Weights that turn NaN in update 3 stop the run there; the checkpoint of update 2 is kept, whole."""
    from tether.ppo import trainer as trainer_module  # noqa: PLC0415

    run = tmp_path / "run"
    real = trainer_module.RecurrentPPO._optimise

    def poisoned(self: Any, buffer: Any) -> dict[str, float]:
        stats = real(self, buffer)
        if self.update == 2:  # the third update (0-based count before it) ends with NaN weights
            with torch.no_grad():
                next(self.policy.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(trainer_module.RecurrentPPO, "_optimise", poisoned)
    assert main(["train", *SMALL, "--checkpoint-every", "1", "--run-dir", str(run)]) == 2
    line = _one_line(capsys.readouterr().err, "train")
    assert re.search(r"update 3: the weights \S+ hold NaN or inf; the run stops unsaved", line), line
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["update"] == 2
    assert all(torch.isfinite(v).all() for v in saved["policy"].values())


def test_the_non_finite_check_names_the_quantity() -> None:
    """check_update_finite names a NaN loss, then a weight; finite ones pass."""
    from tether.train.metrics import check_update_finite  # noqa: PLC0415

    good = torch.nn.Linear(2, 2)
    check_update_finite(4, {"policy_loss": 0.5, "value_loss": 1.0}, good.named_parameters())
    with pytest.raises(NonFiniteError, match=r"update 4: the value_loss is nan") as err:
        check_update_finite(4, {"policy_loss": 0.5, "value_loss": float("nan")}, good.named_parameters())
    assert (err.value.quantity, err.value.update) == ("value_loss", 4)
    with torch.no_grad():
        good.bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match=r"update 5: the weights bias hold NaN or inf") as err:
        check_update_finite(5, {"policy_loss": 0.5}, good.named_parameters())
    assert err.value.quantity == "parameter bias"


def test_eval_with_a_negative_seed_is_one_line(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tether eval RUN --seed -1`: one line, not gymnasium's traceback."""
    assert main(["eval", str(finished_run), "--seed", "-1"]) == 2
    assert "--seed: expected 0 or more" in _one_line(capsys.readouterr().err, "eval")


def test_run_dir_naming_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--run-dir` naming a file: one line, the file untouched."""
    target = tmp_path / "notes.txt"
    target.write_text("mine", encoding="utf-8")
    assert main(["train", *SMALL, "--run-dir", str(target)]) == 2
    assert "is a file, not a folder" in _one_line(capsys.readouterr().err, "train")
    assert target.read_text(encoding="utf-8") == "mine"


# --- a checkpoint decides nothing about imports -------------------------------------------------
PWNMOD = "from pathlib import Path\nPath('MARKER').write_text('imported')\n"


def _forged(run: Path, out: Path, **config: Any) -> Path:
    """A copy of ``run``'s checkpoint (it passes weights_only=True) with settings changed."""
    data = torch.load(run / "checkpoint.pt", weights_only=True)
    data["config"].update(config)
    torch.save(data, out)
    return out


def test_eval_imports_nothing_only_the_checkpoint_names(finished_run: Path, tmp_path: Path) -> None:
    """A forged checkpoint naming env_imports=["pwnmod"] (pwnmod.py in the cwd) is refused; pwnmod never runs.

    `python -m tether` puts the working directory first on the import path: exactly where a
    planted module would be found. With `--env-import pwnmod` the user consents and it is imported.
    """
    work = tmp_path / "work"
    work.mkdir()
    (work / "pwnmod.py").write_text(PWNMOD, encoding="utf-8")
    forged = _forged(finished_run, work / "forged.pt", env_imports=["pwnmod"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tether", "eval", str(forged), "--episodes", "1"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr, "eval")
    assert "asks to import the module 'pwnmod'" in line
    assert "--env-import pwnmod" in line
    assert not (work / "MARKER").exists()
    allowed = subprocess.run([*command, "--env-import", "pwnmod"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert (work / "MARKER").read_text(encoding="utf-8") == "imported"


def test_resume_imports_nothing_only_the_checkpoint_names(finished_run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`--resume` of a run whose checkpoint names a module ('module:Id' too) asks for consent first."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "pwnmod2.py").write_text(PWNMOD, encoding="utf-8")
    _forged(finished_run, finished_run / "checkpoint.pt", env_id="pwnmod2:tether/CartPole-NoVel-v0")
    before = (finished_run / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", str(finished_run), "--total-steps", "512"]) == 2
    line = _one_line(capsys.readouterr().err, "train")
    assert "asks to import the module 'pwnmod2'" in line
    assert "--env-import pwnmod2" in line
    assert not (tmp_path / "MARKER").exists()
    assert (finished_run / "checkpoint.pt").read_bytes() == before
    with pytest.raises(CheckpointError, match=r"allow_imports=\['pwnmod2'\]"):
        RecurrentPPO.load(finished_run)


def test_tether_and_gymnasium_ids_need_no_consent(finished_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint naming tether's own module (or a gymnasium id) evaluates without --env-import."""
    forged = _forged(finished_run, tmp_path / "own.pt", env_imports=["tether.envs"],
                     env_id="tether.envs:tether/CartPole-NoVel-v0")
    assert main(["eval", str(forged), "--episodes", "1"]) == 0
    assert "mean return" in capsys.readouterr().out


def test_a_file_that_holds_code_is_called_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pickled posix.system is refused as code, without torch's advice to turn the safe loader off."""

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return os.system, (f"touch {tmp_path / 'MARKER'}",)

    evil = tmp_path / "evil.pt"
    torch.save({"format": "tether-checkpoint", "version": 2, "config": Payload()}, evil)
    assert main(["eval", str(evil)]) == 2
    line = _one_line(capsys.readouterr().err, "eval")
    assert re.search(r"holds code \(an object the safe loader refuses: (posix|os)\.system\), refused", line), line
    assert "weights_only" not in line
    assert "trusted source" not in line
    assert not (tmp_path / "MARKER").exists()
