"""RecurrentPPO on 2 gloo ranks: the update equals one process's on the union, resume, refusals.

One 2-rank job (``_dist_job.py``, two processes started with torchrun's variables) runs once per
module; the tests check what it wrote against each other and against a single process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tether import distributed
from tether.errors import ConfigError
from tether.ppo import RecurrentPPO

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load_job_module() -> Any:
    spec = importlib.util.spec_from_file_location("_tether_dist_job", HERE / "_dist_job.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI_FLAGS = ["--num-envs", "2", "--n-steps", "16", "--total-steps", "64", "--n-epochs", "1",
             "--minibatch-envs", "1", "--hidden-size", "8", "--encoder-size", "8", "--no-progress",
             "--no-eval"]


def _python_path() -> str:
    return os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the 2-rank job, and `tether train --nproc 2` beside it, once; what each gave."""
    out = tmp_path_factory.mktemp("dist")
    cli_env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": _python_path()}
    # started first and waited for last: the two launches overlap their start-up
    cli = subprocess.Popen([sys.executable, "-m", "tether", "train", "--nproc", "2", *CLI_FLAGS,
                            "--run-dir", str(out / "cli")], env=cli_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    port = _free_port()
    procs = []
    for rank in range(WORLD):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
               "LOCAL_WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "TETHER_MODE": "strict", "PYTHONPATH": _python_path()}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_dist_job.py"), str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=240)[0] for p in procs]
    failed = [f"rank {r} (exit {p.returncode}):\n{log}" for r, (p, log) in enumerate(zip(procs, logs, strict=True))
              if p.returncode != 0]
    assert not failed, "\n".join(failed)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    cli_out, cli_err = cli.communicate(timeout=240)
    return {"out": out, "ranks": ranks, "cli": (cli.returncode, cli_out, cli_err)}


def test_the_job_ran_on_two_gloo_ranks(job: dict[str, Any]) -> None:
    """Both ranks joined one gloo group of 2."""
    assert [(r["world"], r["backend"]) for r in job["ranks"]] == [(2, "gloo"), (2, "gloo")]


def test_one_update_on_n_ranks_equals_one_process_on_the_union(job: dict[str, Any], tmp_path: Path) -> None:
    """Two minibatch steps on 2 ranks' slices give the gradients and weights (1e-6) of one process
    stepping on the whole minibatches (N × E envs), the ranks' losses weighted by their real steps."""
    dist_job = _load_job_module()
    rank0, rank1 = job["ranks"]
    for a, b in zip(rank0["initial"].values(), rank1["initial"].values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # rank 0's weights were broadcast
    single = RecurrentPPO(dist_job.tiny(tmp_path / "single", num_envs=WORLD * 2))
    single.policy.load_state_dict(rank0["initial"])
    batches = dist_job.shared_minibatches(single, WORLD * 2)
    counts = [[int(mb.loss_mask[:, a:b].sum()) for a, b in dist_job.SLICES] for mb in batches]
    # steps, not sequences or ranks, set the weights: the counts differ from both
    assert any(c[0] != 3 * c[1] and c[0] != c[1] for c in counts), counts
    expected = dist_job.learn(single, batches)
    single.close()
    for step, want in enumerate(expected):
        for rank in job["ranks"]:
            for key in ("grads", "params"):
                for got, ref in zip(rank["steps"][step][key], want[key], strict=True):
                    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


def test_ranks_keep_identical_weights_and_observation_statistics(job: dict[str, Any]) -> None:
    """After training both ranks hold the same weights and the same statistics over all ranks' steps."""
    rank0, rank1 = job["ranks"]
    for a, b in zip(rank0["whole"], rank1["whole"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    s0, s1 = rank0["obs_stats"], rank1["obs_stats"]
    torch.testing.assert_close(s0["mean"], s1["mean"], rtol=0, atol=0)
    torch.testing.assert_close(s0["var"], s1["var"], rtol=0, atol=0)
    # gymnasium counts a reset and every step; 1e-4 is its starting count
    assert s0["count"] == s1["count"] == pytest.approx(1e-4 + WORLD * 2 * (1 + 3 * 16))


def test_resume_on_n_ranks_continues_exactly(job: dict[str, Any]) -> None:
    """A 2-rank run stopped after 2 updates and resumed on 2 ranks ends as the uninterrupted one."""
    for rank in job["ranks"]:
        assert rank["resumed_at"] == (2, 2 * WORLD * 2 * 16)
        for a, b in zip(rank["split"], rank["whole"], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    lines = [(job["out"] / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
             for name in ("split", "whole")]
    records = [[{k: v for k, v in json.loads(x).items() if k not in ("time", "update_seconds")} for x in run]
               for run in lines]
    assert records[0] == records[1]
    assert [r["step"] for r in records[0]] == [64, 128, 192]


def test_rank_zero_alone_writes_one_checkpoint_with_every_ranks_state(job: dict[str, Any]) -> None:
    """The run folder holds one checkpoint (plain data) with rank 1's collector, envs and RNGs."""
    run = job["out"] / "whole"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("tb")) == [".tether.lock",
                                                                                      "checkpoint.pt",
                                                                                      "metrics.jsonl"]
    data = torch.load(run / "checkpoint.pt", weights_only=True)
    assert data["world_size"] == WORLD
    assert len(data["ranks"]) == WORLD - 1
    assert set(data["ranks"][0]) == {"rng", "collector", "envs"}
    assert not torch.equal(data["ranks"][0]["rng"]["torch"], data["rng"]["torch"])


def test_resume_on_another_number_of_ranks_is_refused(job: dict[str, Any]) -> None:
    """A 2-rank run resumed in one process is refused in one line naming both counts and the fix."""
    assert distributed.world_size() == 1
    with pytest.raises(ConfigError, match=r"trained on 2 rank\(s\) and cannot continue on 1; resume it"
                                          r" on 2 \(tether train --resume DIR --nproc 2\)"):
        RecurrentPPO.resume(job["out"] / "split")


# ---- the command line ------------------------------------------------------------------------
def test_tether_train_nproc_launches_torchrun(job: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`tether train --nproc 2` runs torchrun with 2 ranks; resuming on 3 is refused before launching."""
    run = job["out"] / "cli"
    code, stdout, stderr = job["cli"]
    assert code == 0, stdout + stderr
    assert "trained 64 steps in" in stdout
    assert "on 2 ranks); run folder:" in stdout
    assert len((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert torch.load(run / "checkpoint.pt", weights_only=True)["world_size"] == 2

    from tether.cli import main  # noqa: PLC0415

    assert main(["train", "--resume", str(run), "--nproc", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("trained on 2 rank(s) and cannot continue on 3; resume it on 2"
                        " (tether train --resume DIR --nproc 2)")
    assert len(err.splitlines()) == 1
