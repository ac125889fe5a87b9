"""Run folders: one trainer per folder, a fresh run never appends to an old one, atomic writes.

A trainer *claims* its run folder before it writes anything (:meth:`RunFolder.claim`):

- the path must be a folder (it is created when missing);
- an exclusive lock (``flock`` on ``<run>/.tether.lock``) is held for the trainer's life: a second
  trainer on the same folder is refused in one line. The kernel drops the lock when the process
  ends, however it ends, so a crashed (even SIGKILLed) trainer never blocks the next;
- a fresh run into a folder that holds a run (``checkpoint.pt`` or ``metrics.jsonl``) is refused,
  naming ``--resume`` and ``--overwrite``; with ``overwrite`` the old run's files go first:
  tether's own files only (:data:`RUN_FILES`, TensorBoard's event files under ``tb/``), never
  anything else the folder holds;
- temporary files a killed save left behind (``.checkpoint.pt.*.tmp``) are removed.

Files are written atomically (:func:`atomic_write`: a temporary file beside the target, flushed
and fsynced, then renamed over it) and created with the user's umask. A write the folder refuses
(read-only, full disk, no permission) removes its temporary file, leaves the previous file whole
and raises :class:`~tether.errors.RunFolderError` in one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tether.errors import RunFolderError

if TYPE_CHECKING:
    from tether.distributed import DistContext

if sys.platform != "win32":
    import fcntl

__all__ = ["LOCK_NAME", "RUN_FILES", "RunFolder", "atomic_write", "claim_run_folder", "write_text"]

#: The lock file a trainer holds (``flock``) for its life; it stays in the folder, unlocked, after.
LOCK_NAME = ".tether.lock"
#: What a run leaves in its folder; ``--overwrite`` removes these (and ``tb/``'s event files) only.
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "eval.json", "curves.png")
_MARKS = ("checkpoint.pt", "metrics.jsonl")  # a folder holding one of these holds a run
_TENSORBOARD = ("tb", "events.out.tfevents.*")
_REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
            getattr(errno, "EDQUOT", -1): "disk quota exceeded"}


def _reason(err: OSError) -> str:
    return _REASONS.get(err.errno or 0, err.strerror or type(err).__name__)


def _write_error(target: Path, err: OSError) -> RunFolderError:
    return RunFolderError(
        f"cannot write {target}: {_reason(err)}; the last good file there is kept. Free some space,"
        " or choose a writable run folder (--run-dir)")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it survives a power cut (where the platform allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, whole.

    The bytes go to ``.<name>.<random>.tmp`` beside the target (created with the user's umask),
    are flushed to the disk, then renamed over the target.

    Args:
        path: the file to write; its folder is created when missing.
        data: the file's whole content.

    Returns:
        The path written.

    Raises:
        RunFolderError: when the folder refuses the write (read-only, full disk, no permission);
            the temporary file is removed and any previous file at ``path`` is left whole.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the mode (tempfile.mkstemp would force 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise _write_error(target, err) from err
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise _write_error(target, err) from err
        raise
    _sync_folder(target.parent)
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, text.encode("utf-8"))


class RunFolder:
    """A run's folder, claimed by one trainer: created, locked, checked for an old run, cleaned.

    Build one with :meth:`claim`; :meth:`release` (or leaving a ``with`` block) drops the lock,
    as does the end of the process.

    Args:
        path: the folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, RunFolder.claim(tmp) as folder:
        ...     folder.holds_run(), folder.locked
        (False, True)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @classmethod
    def claim(cls, path: str | os.PathLike[str], *, resume: bool = False,
              overwrite: bool = False) -> RunFolder:
        """Create and lock ``path`` for one trainer, and make it ready for a fresh or resumed run.

        Args:
            path: the run folder (created when missing).
            resume: the run continues the one the folder holds (its files are kept).
            overwrite: a fresh run may replace the run the folder holds (its files are removed).

        Returns:
            The folder, locked until :meth:`release` or the end of the process.

        Raises:
            RunFolderError: when ``path`` is a file, another trainer holds the folder, the folder
                holds a run and neither ``resume`` nor ``overwrite`` is set, or it cannot be written.
        """
        folder = cls(path)
        folder.check(resume=resume, overwrite=overwrite, probe_lock=False)
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(f"cannot create the run folder {folder.path}: {_reason(err)};"
                                 " choose another run folder (--run-dir)") from err
        folder._lock()
        try:
            if not resume and folder.holds_run():
                if not overwrite:
                    raise folder._holds_run_error()
                folder.clear()
            folder.remove_stale_temporaries()
        except BaseException:
            folder.release()
            raise
        return folder

    def check(self, *, resume: bool = False, overwrite: bool = False, probe_lock: bool = True) -> None:
        """Refuse, without changing anything, what :meth:`claim` would refuse.

        Args:
            resume / overwrite: as for :meth:`claim`.
            probe_lock: also refuse a folder another trainer holds (tried and dropped at once).

        Raises:
            RunFolderError: as :meth:`claim` does (except for a write the folder would refuse).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"the run folder {self.path} is a file, not a folder; choose another"
                                 " run folder (--run-dir)")
        if probe_lock and (self.path / LOCK_NAME).is_file():
            with contextlib.suppress(OSError):
                probe = os.open(self.path / LOCK_NAME, os.O_RDONLY)
                try:
                    self._try_lock(probe, keep=False)
                finally:
                    os.close(probe)
        if not resume and not overwrite and self.holds_run():
            raise self._holds_run_error()

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._fd is not None

    def holds_run(self) -> bool:
        """Whether the folder holds a run (a checkpoint or a metrics file)."""
        return any((self.path / name).is_file() for name in _MARKS)

    def run_files(self) -> list[Path]:
        """The files of a run in the folder: :data:`RUN_FILES` and TensorBoard's event files."""
        found = [self.path / name for name in RUN_FILES if (self.path / name).is_file()]
        board = self.path / _TENSORBOARD[0]
        if board.is_dir():
            found += sorted(p for p in board.glob(_TENSORBOARD[1]) if p.is_file())
        return found

    def clear(self) -> list[Path]:
        """Remove the run's files (:meth:`run_files`) and nothing else; return what was removed.

        Raises:
            RunFolderError: when a file cannot be removed.
        """
        removed = self.run_files()
        try:
            for path in removed:
                path.unlink()
            board = self.path / _TENSORBOARD[0]
            if board.is_dir() and not any(board.iterdir()):
                board.rmdir()
        except OSError as err:
            raise RunFolderError(f"cannot remove the old run in {self.path}: {_reason(err)}") from err
        return removed

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove the temporary files of interrupted saves (``.checkpoint.pt.*.tmp``, ...)."""
        removed = []
        for name in RUN_FILES:
            for path in self.path.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        return removed

    def release(self) -> None:
        """Drop the lock (a no-op when not held); the lock file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, locked={self.locked})"

    # ------------------------------------------------------------------------------------------
    def _lock(self) -> None:
        lock = self.path / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise RunFolderError(f"cannot write to the run folder {self.path}: {_reason(err)}; choose a"
                                 " writable run folder (--run-dir)") from err
        try:
            self._try_lock(fd, keep=True)
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it, for the next trainer's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _try_lock(self, fd: int, *, keep: bool) -> None:
        if sys.platform == "win32":  # pragma: no cover - no flock: one trainer per folder is on trust
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"cannot lock the run folder {self.path}: {_reason(err)}") from err
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise RunFolderError(f"the run folder {self.path} is in use by another trainer{who}; wait for"
                                 " it to end, or choose another run folder (--run-dir)") from None
        if not keep:  # a probe (check()) only tries: unlock at once
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _holds_run_error(self) -> RunFolderError:
        found = ", ".join(p.name for p in self.run_files() if p.name in _MARKS)
        return RunFolderError(
            f"the run folder {self.path} holds a run already ({found}); continue it with --resume"
            f" {self.path}, or start over with --overwrite (deletes that run's files)")


def claim_run_folder(path: str | os.PathLike[str], *, resume_from: str | os.PathLike[str] | None = None,
                     overwrite: bool = False, dist: DistContext | None = None) -> RunFolder:
    """Claim ``path`` for a trainer; on several ranks only the main one claims, every rank agrees.

    Args:
        path: the run folder.
        resume_from: the folder of the checkpoint the trainer was loaded from: when it is ``path``
            the run continues there (its files are kept); a loaded run written elsewhere is fresh.
        overwrite: a fresh run may replace the run ``path`` holds.
        dist: the run's place in the job (rank 0 alone locks and writes; every rank learns
            whether it could); ``None`` for one process.

    Returns:
        The folder (locked on the main process; a plain, unlocked handle on the others).

    Raises:
        RunFolderError: on every rank, when the main one cannot claim the folder.
    """
    folder, error = RunFolder(path), None
    main = dist is None or dist.is_main
    resume = resume_from is not None and Path(resume_from).resolve() == Path(path).resolve()
    if main:
        try:
            folder = RunFolder.claim(path, resume=resume, overwrite=overwrite)
        except RunFolderError as err:
            error = err
    if dist.any(error is not None) if dist is not None else error is not None:
        folder.release()
        raise error or RunFolderError(f"rank 0 could not claim the run folder {path} (see its message)")
    return folder
