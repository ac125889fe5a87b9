"""`tether train --nproc 2`, with real processes: a signal to the launcher, or its death, ends every worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
# Many short updates: the run would go on for far longer than the test.
FLAGS = ["--num-envs", "1", "--n-steps", "8", "--total-steps", "10000000", "--n-epochs", "1",
         "--minibatch-envs", "1", "--hidden-size", "8", "--encoder-size", "8", "--no-progress", "--no-eval",
         "--checkpoint-every", "1000000"]


def _children() -> dict[int, list[int]]:
    """Every live (not zombie) process's children, read from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(run: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """Start the launcher; return it and its descendants (torchrun, 2 workers) once metrics flow."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    launcher = subprocess.Popen([sys.executable, "-m", "tether", "train", "--nproc", "2", *FLAGS,
                                 "--run-dir", str(run)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size > 0):
        assert launcher.poll() is None, "the launcher ended before training"
        assert time.monotonic() < deadline, "no metrics within 120 s"
        time.sleep(0.2)
    family = _descendants(launcher.pid)
    assert len(family) >= 3, family  # torchrun and its two workers
    return launcher, family


def _assert_all_end_and_metrics_stop(family: set[int], run: Path) -> None:
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in family):
        assert time.monotonic() < deadline, [pid for pid in family if _alive(pid)]
        time.sleep(0.1)
    size = (run / "metrics.jsonl").stat().st_size
    time.sleep(1.0)
    assert (run / "metrics.jsonl").stat().st_size == size


def test_sigterm_to_the_launcher_ends_torchrun_and_its_workers(tmp_path: Path) -> None:
    """SIGTERM to `tether train --nproc 2` ends torchrun and both workers; it exits 128 + 15."""
    run = tmp_path / "run"
    launcher, family = _start(run)
    try:
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 128 + signal.SIGTERM
        _assert_all_end_and_metrics_stop(family, run)
    finally:
        _kill({launcher.pid, *family}, run)
        launcher.wait()


def test_a_killed_launcher_leaves_no_worker_running(tmp_path: Path) -> None:
    """SIGKILL to the launcher (no handler can run): torchrun and both workers still end."""
    run = tmp_path / "run"
    launcher, family = _start(run)
    try:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
        _assert_all_end_and_metrics_stop(family, run)
    finally:
        _kill(family, run)


CHILD = """
import signal, sys, time
from pathlib import Path
def note(signum, frame):
    Path(sys.argv[1]).write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, note)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_launch_forwards_sigint_and_sigterm_as_sigterm(sig: signal.Signals, tmp_path: Path) -> None:
    """launch() passes SIGINT / SIGTERM on to its child as SIGTERM (no KeyboardInterrupt in workers)."""
    helper = [sys.executable, "-c", "import sys, os, signal, time, subprocess;"
              "from tether.train.launcher import launch;"
              "rc = launch([sys.executable, '-c', sys.argv[1], sys.argv[2]]); print('rc', rc, flush=True)",
              CHILD, str(tmp_path / "got")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(helper, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    assert out.strip() == f"rc {128 + sig}"
    assert (tmp_path / "got").read_text() == "SIGTERM"


def _kill(pids: set[int], run: Path) -> None:
    """Whatever this test started and is still running (only when the test failed)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if str(run) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)
