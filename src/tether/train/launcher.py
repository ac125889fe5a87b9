"""The ``--nproc`` launcher: torchrun as a child that never outlives tether, nor do its workers.

``tether train --nproc N ...`` runs ``torchrun --standalone --nproc-per-node N -m tether train ...``
through :func:`launch`, which keeps three promises:

- **Signals reach the workers.** SIGINT and SIGTERM sent to the launcher end torchrun (with
  SIGTERM, so no worker prints a ``KeyboardInterrupt`` traceback), and torchrun ends its workers;
  past a grace period the launcher kills torchrun outright. The launcher then exits with
  ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).
- **A killed launcher leaves nothing running.** torchrun starts in its own process group with a
  parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a watchdog thread): when
  the launcher dies, even by SIGKILL, torchrun gets SIGTERM and ends its workers.
- **A dead torchrun leaves no worker.** torchrun starts each worker in a session of its own, out of
  reach of a signal to its group, so each worker arms its own parent-death signal (SIGKILL) at
  start (:func:`arm_worker`) when it sees it was launched by tether (:data:`AGENT_PID` set).

Runs started with ``torchrun`` directly (a cluster's launcher) are left as torchrun makes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

__all__ = ["AGENT_PID", "LAUNCHER_PID", "arm_worker", "launch", "torchrun_command"]

#: Set by :func:`launch` for torchrun: the launcher's pid (torchrun dies with it).
LAUNCHER_PID = "TETHER_LAUNCHER_PID"
#: Set by the torchrun this module starts, for its workers: torchrun's pid (they die with it).
AGENT_PID = "TETHER_AGENT_PID"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``tether <argv>`` on ``nproc`` local processes through torchrun.

    >>> torchrun_command(2, ["train"])[2:]
    ['tether.train.launcher', '--standalone', '--nproc-per-node=2', '-m', 'tether', 'train']
    """
    return [sys.executable, "-m", "tether.train.launcher", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tether", *argv]


def launch(command: Sequence[str], *, grace: float = 10.0) -> int:
    """Run ``command`` (from :func:`torchrun_command`) until it ends; forward SIGINT / SIGTERM.

    Must be called from the main thread (it installs signal handlers, restored on return).

    Args:
        command: the torchrun command.
        grace: seconds torchrun gets to end its workers after a signal, before it is killed.

    Returns:
        torchrun's exit status, or ``128 + signal`` when a signal ended the run.
    """
    env = {**os.environ, LAUNCHER_PID: str(os.getpid())}
    proc = subprocess.Popen(list(command), env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        deadline: float | None = None
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + grace
                if deadline is not None and time.monotonic() > deadline:
                    _kill_group(proc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # an exception in the launcher itself: take torchrun along
            _kill_group(proc)
            proc.wait()
    return 128 + received[0] if received else code


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL torchrun's process group (its workers, in sessions of their own, follow by PDEATHSIG)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _die_with_parent(sig: int, parent: int) -> None:
    """Get ``sig`` when the process ``parent`` (this one's parent) ends."""
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    if not armed:
        threading.Thread(target=_watch_parent, args=(sig, parent), name="tether-parent-watch",
                         daemon=True).start()
    if os.getppid() != parent and not _alive(parent):  # it ended before the signal was armed
        os.kill(os.getpid(), sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _watch_parent(sig: int, parent: int) -> None:
    while _alive(parent):
        time.sleep(0.5)
    os.kill(os.getpid(), sig)


def arm_worker() -> None:
    """In a worker that tether's launcher started: die (SIGKILL) when torchrun dies; else nothing."""
    agent = os.environ.get(AGENT_PID, "")
    if agent.isdigit():
        _die_with_parent(signal.SIGKILL, int(agent))


def _torchrun(argv: Sequence[str]) -> int:
    """torchrun, ended by SIGTERM when the launcher ends; quiet when a signal ends it."""
    launcher = os.environ.get(LAUNCHER_PID, "")
    if launcher.isdigit():
        _die_with_parent(signal.SIGTERM, int(launcher))
    os.environ[AGENT_PID] = str(os.getpid())
    from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: PLC0415
    from torch.distributed.run import main  # noqa: PLC0415

    try:
        main(list(argv))
    except SignalException as err:  # torchrun has ended its workers
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    raise SystemExit(_torchrun(sys.argv[1:]))
