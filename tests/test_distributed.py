"""Tests for tether.distributed: no-ops in one process, and each helper (and context collective) on 2 gloo
ranks vs numpy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.wrappers.utils import RunningMeanStd

from tether import distributed
from tether.errors import ConfigError

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SIZES = (5, 11)


# ---- one process: every helper returns its input --------------------------------------------
def test_init_without_torchrun_is_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torchrun's variables (or WORLD_SIZE=1) nothing is joined: rank 0 of 1, device as given."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world_size, ctx.device, ctx.backend, ctx.is_main) == (0, 1, torch.device("cpu"),
                                                                                None, True)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init("cpu").world_size == 1
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)


@pytest.mark.parametrize("device", ["banana", "cuda:7", "cpu:x"])
def test_a_device_this_machine_cannot_use_is_one_line(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device torch cannot parse, or one this machine lacks, is refused naming those it has."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"^device: .*(expected a torch device such as|not available on this"
                                          r" machine).* cpu"):
        distributed.init(device)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^device: 'cuda' is not available on this machine .*available: cpu$"):
            distributed.init("cuda")


def test_bad_torchrun_variables_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed WORLD_SIZE, or more CUDA ranks on a machine than GPUs, is one clear line."""
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match=r"WORLD_SIZE: expected an integer \(torchrun sets it\), got 'two'"):
        distributed.init("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    with pytest.raises(ConfigError, match=r"CUDA devices; start at most"):
        distributed.init("cuda")


def test_single_process_helpers_are_no_ops() -> None:
    """In one process the seeds are the run's own and every reduction returns its input unchanged."""
    assert (distributed.rank_seed(7), distributed.env_seed(7, 4)) == (7, 7)
    layer = torch.nn.Linear(3, 2)
    grads = [torch.randn_like(p) for p in layer.parameters()]
    for p, g in zip(layer.parameters(), grads, strict=True):
        p.grad = g.clone()
    before = [p.detach().clone() for p in layer.parameters()]
    distributed.broadcast_module(layer)
    assert distributed.average_gradients(layer.parameters(), weight=3.0) == 3.0
    for p, g, b in zip(layer.parameters(), grads, before, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
        torch.testing.assert_close(p.detach(), b, rtol=0, atol=0)
    ctx = distributed.init("cpu")
    values = [1.0, 2.5]
    assert ctx.mean(values) is values
    assert (ctx.any(True), ctx.any(False)) == (True, False)
    assert ctx.all_gather("x") == ["x"]
    assert ctx.gather("x") == ["x"]
    stats = RunningMeanStd(shape=(2,))
    stats.update(np.array([[1.0, 2.0], [3.0, 5.0]]))
    saved = (stats.mean.copy(), stats.var.copy(), stats.count)
    distributed.RunningStatsSync(stats).sync()
    np.testing.assert_array_equal(stats.mean, saved[0])
    np.testing.assert_array_equal(stats.var, saved[1])
    assert stats.count == saved[2]
    ctx.barrier()


def test_masked_mean_std_in_one_process() -> None:
    """The masked mean / population std / count of one process's values."""
    x = torch.tensor([1.0, 2.0, 10.0, 4.0])
    mask = torch.tensor([True, True, False, True])
    mean, std, count = distributed.init("cpu").masked_mean_std(x, mask)
    torch.testing.assert_close(mean, torch.tensor(7.0 / 3.0))
    torch.testing.assert_close(std, torch.tensor(np.std([1.0, 2.0, 4.0]), dtype=torch.float32))
    assert float(count) == 3.0


# ---- two gloo ranks ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of 2 gloo ranks computed with every helper (one job per module)."""
    out = tmp_path_factory.mktemp("dist_helpers")
    port, world = _free_port(), 2
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_dist_helpers_job.py"), str(out)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=120)[0] for p in procs]
    failed = [f"rank {r}:\n{log}" for r, (p, log) in enumerate(zip(procs, logs, strict=True)) if p.returncode]
    assert not failed, "\n".join(failed)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def test_rank_seeds_are_disjoint(ranks: list[dict[str, Any]]) -> None:
    """Rank r seeds torch with seed + r and its 4 envs from seed + 4r; only rank 0 is the main one."""
    assert [r["seeds"] for r in ranks] == [(7, 7, True), (8, 11, False)]


def test_running_stats_sync_gives_every_rank_all_ranks_samples(ranks: list[dict[str, Any]]) -> None:
    """After each sync every rank holds the running statistics of all ranks' batches so far."""
    for k in range(2):
        reference = RunningMeanStd(shape=(3,))
        for j in range(k + 1):
            reference.update(np.concatenate([r["batches"][j] for r in ranks]))
        for r in ranks:
            mean, var, count = r["rounds"][k]
            np.testing.assert_allclose(mean, reference.mean, rtol=0, atol=1e-10)
            np.testing.assert_allclose(var, reference.var, rtol=0, atol=1e-10)
            assert count == pytest.approx(reference.count, abs=1e-9)


def test_masked_mean_std_is_over_every_ranks_values(ranks: list[dict[str, Any]]) -> None:
    """The masked mean and std are those of the union of the ranks' masked values."""
    union = np.concatenate([r["masked"][0].numpy()[r["masked"][1].numpy()] for r in ranks]).astype(np.float64)
    for r in ranks:
        mean, std, count = r["masked"][2]
        assert float(mean) == pytest.approx(union.mean(), abs=1e-5)
        assert float(std) == pytest.approx(union.std(), abs=1e-5)
        assert float(count) == len(union)


def test_any_rank_is_one_decision(ranks: list[dict[str, Any]]) -> None:
    """A flag raised on rank 1 alone is True on both ranks; none raised is False on both."""
    assert [r["any"] for r in ranks] == [(True, False), (True, False)]


def test_broadcast_and_weighted_gradient_average(ranks: list[dict[str, Any]]) -> None:
    """Both ranks get rank 0's weights, and the gradients sum(w_r g_r) / sum(w_r), w_r their weights."""
    for a, b in zip(ranks[0]["broadcast"], ranks[1]["broadcast"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    weights = [r["grads"][1] for r in ranks]
    assert weights == [float(s) for s in SIZES]
    for i in range(len(ranks[0]["grads"][0])):
        expected = sum(r["grads"][0][i] * r["grads"][1] for r in ranks) / sum(weights)
        for r in ranks:
            assert r["grads"][2] == sum(weights)
            torch.testing.assert_close(r["grads"][3][i], expected)


def test_gathers_and_means(ranks: list[dict[str, Any]]) -> None:
    """all_gather gives every rank all values in rank order; gather gives them to rank 0 alone."""
    assert [r["gathered"] for r in ranks] == [([{"r": 0}, {"r": 1}], [0, 10]), ([{"r": 0}, {"r": 1}], None)]
    assert [r["mean"] for r in ranks] == [[0.5, 1.0], [0.5, 1.0]]
