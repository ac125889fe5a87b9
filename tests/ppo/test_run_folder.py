"""Run folders you can trust: one trainer per folder, no appending to an old run, writes that fail whole."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.cli import main
from tether.distributed import DistContext
from tether.errors import RunFolderError
from tether.train.run_folder import LOCK_NAME, RunFolder, atomic_write, claim_run_folder

TINY = ["--num-envs", "2", "--n-steps", "8", "--total-steps", "32", "--n-epochs", "1", "--minibatch-envs", "1",
        "--hidden-size", "8", "--encoder-size", "8", "--no-progress", "--no-eval", "--checkpoint-every", "1"]
SRC = Path(__file__).resolve().parents[2] / "src"


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tether train: error: "), lines[0]
    return lines[0]


def _updates(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["update"] for line in lines]


@pytest.fixture
def umask() -> Iterator[int]:
    """Run the test under umask 022, whatever the caller's."""
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], umask: int) -> Path:
    """A finished tiny run (2 updates, a checkpoint after each)."""
    folder = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(folder)]) == 0
    capsys.readouterr()
    return folder


def test_a_fresh_run_into_a_used_folder_is_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second fresh run into a folder holding a run: one line naming --resume and --overwrite; nothing appended."""
    before = (run / "metrics.jsonl").read_bytes()
    assert main(["train", *TINY, "--run-dir", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"the run folder {run} holds a run already (checkpoint.pt, metrics.jsonl)" in line
    assert f"--resume {run}" in line
    assert "--overwrite" in line
    assert (run / "metrics.jsonl").read_bytes() == before


def test_overwrite_starts_clean_and_leaves_other_files(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--overwrite removes tether's own files only: the new metrics are updates 1, 2 (not appended)."""
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    (run / "eval.json").write_text("{}", encoding="utf-8")
    assert main(["train", *TINY, "--run-dir", str(run), "--overwrite", "--total-steps", "48"]) == 0
    assert _updates(run) == [1, 2, 3]
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (run / "eval.json").exists()  # the old run's evaluation went with it
    assert main(["train", "--resume", str(run), "--overwrite"]) == 2
    assert "drop --config / --preset / --overwrite" in _one_line(capsys.readouterr().err)


def test_resume_continues_in_place(run: Path) -> None:
    """--resume into the folder that holds the run is no fresh run: it continues, one record per update."""
    assert main(["train", "--resume", str(run), "--total-steps", "64"]) == 0
    assert _updates(run) == [1, 2, 3, 4]


def test_a_second_trainer_on_a_locked_folder_is_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """While one trainer holds a folder, another is refused in one line; once released, it trains."""
    folder = tmp_path / "run"
    with RunFolder.claim(folder) as held:
        assert held.locked
        assert main(["train", *TINY, "--run-dir", str(folder)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"the run folder {folder} is in use by another trainer (pid {os.getpid()})" in line
        assert not (folder / "metrics.jsonl").exists()
    assert main(["train", *TINY, "--run-dir", str(folder)]) == 0


def test_a_killed_trainers_lock_does_not_block_the_next(tmp_path: Path) -> None:
    """A process SIGKILLed while holding the lock leaves it free (the kernel drops a flock with the process)."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tether.train.run_folder import RunFolder;"
         " f = RunFolder.claim(sys.argv[1]); print('locked', flush=True); time.sleep(600)", str(folder)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by another trainer \\(pid {holder.pid}\\)"):
            RunFolder.claim(folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    with RunFolder.claim(folder) as folder_now:
        assert folder_now.locked


def test_stale_temporaries_go_and_files_follow_the_umask(run: Path, umask: int) -> None:
    """A killed save's .checkpoint.pt.*.tmp is removed on start; files are 0644 under umask 022, not 0600."""
    stale = run / ".checkpoint.pt.dead1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(run), "--total-steps", "48"]) == 0
    assert not stale.exists()
    for name in ("checkpoint.pt", "metrics.jsonl", LOCK_NAME):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask, name
    os.umask(0o002)
    assert stat.S_IMODE(atomic_write(run / "other.bin", b"x").stat().st_mode) == 0o664


def test_a_full_disk_keeps_the_last_good_checkpoint(run: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC while saving: one line, exit 2, the previous checkpoint whole, no temporary file left."""
    before = (run / "checkpoint.pt").read_bytes()

    real_fsync = os.fsync

    def full(fd: int) -> None:  # the disk fills while a checkpoint is flushed
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", "--resume", str(run), "--total-steps", "64"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"cannot write {run / 'checkpoint.pt'}: no space left on the device; the last good file" in line
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_a_read_only_folder_is_one_line(run: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that refuses writes (EROFS; simulated: the tests may run as root): one line, exit 2."""
    before = (run / "checkpoint.pt").read_bytes()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(run)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert main(["train", "--resume", str(run), "--total-steps", "64"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"cannot write to the run folder {run}: the file system is read-only" in line
    assert (run / "checkpoint.pt").read_bytes() == before
    with pytest.raises(RunFolderError, match="the file system is read-only; the last good file there is kept"):
        atomic_write(run / "checkpoint.pt", b"new")
    assert (run / "checkpoint.pt").read_bytes() == before


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic_write: a failure mid-write removes the temporary file; the target keeps its old bytes."""
    target = atomic_write(tmp_path / "f.bin", b"old")

    def broken(fd: int, data: Any) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(RunFolderError, match=f"cannot write {target}"):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_only_the_main_rank_claims(tmp_path: Path) -> None:
    """On a rank other than 0 nothing is created or locked (rank 0 alone writes)."""
    folder = claim_run_folder(tmp_path / "run", dist=DistContext(rank=1, world_size=2))
    assert not folder.locked
    assert not (tmp_path / "run").exists()
    main_folder = claim_run_folder(tmp_path / "run", dist=DistContext())
    assert main_folder.locked
    main_folder.release()
    assert not main_folder.locked


def test_a_loaded_run_written_elsewhere_is_a_fresh_run(run: Path, tmp_path: Path) -> None:
    """Loading a checkpoint into another folder that holds a run does not append to that run."""
    from tether.ppo import RecurrentPPO  # noqa: PLC0415

    other = tmp_path / "other"
    assert main(["train", *TINY, "--run-dir", str(other)]) == 0
    trainer = RecurrentPPO.load(run, run_dir=str(other), total_steps=64)
    try:
        with pytest.raises(RunFolderError, match="holds a run already"):
            trainer.train()
    finally:
        trainer.close()
    assert _updates(other) == [1, 2]


def test_clear_removes_only_tethers_files(tmp_path: Path) -> None:
    """RunFolder.clear takes the run's files (and TensorBoard events), never the user's."""
    folder = tmp_path / "run"
    (folder / "tb").mkdir(parents=True)
    for name in ("checkpoint.pt", "metrics.jsonl", "curves.png", "tb/events.out.tfevents.1.host", "mine.csv",
                 "tb/mine.txt"):
        (folder / name).write_text("x", encoding="utf-8")
    with RunFolder.claim(folder, overwrite=True) as claimed:
        assert not claimed.holds_run()
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        LOCK_NAME, "mine.csv", "tb/mine.txt"]


def test_the_lock_file_names_the_holder_while_held(tmp_path: Path) -> None:
    """The lock file records the holder's pid; a check() while held is refused, after release it passes."""
    folder = RunFolder.claim(tmp_path / "run")
    started = time.monotonic()
    with pytest.raises(RunFolderError, match=f"pid {os.getpid()}"):
        RunFolder(tmp_path / "run").check()
    assert time.monotonic() - started < 5  # refused at once, never waited for
    folder.release()
    RunFolder(tmp_path / "run").check()


def test_the_launcher_refuses_a_used_or_held_folder_before_starting(run: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`--nproc 2` into a folder holding a run, or held by a trainer, is one line; no process starts."""
    assert main(["train", "--nproc", "2", *TINY, "--run-dir", str(run)]) == 2
    assert "holds a run already" in _one_line(capsys.readouterr().err)
    with RunFolder.claim(tmp_path / "held"):
        assert main(["train", "--nproc", "2", *TINY, "--run-dir", str(tmp_path / "held")]) == 2
        assert "is in use by another trainer" in _one_line(capsys.readouterr().err)
    assert main(["train", "--nproc", "2", "--resume", str(tmp_path / "held")]) == 2
    assert "no checkpoint at" in _one_line(capsys.readouterr().err)
