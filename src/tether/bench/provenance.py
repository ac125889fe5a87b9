"""Where a number came from: the tether sources' hash, the git commit, versions and hardware.

Every results file the harness or a ``benchmarks/`` script writes carries :func:`collect`'s record,
so a table can be traced to the code that made it (:func:`measured_on`, the line under each table)
and reported as stale when that code has changed since (``tether bench check``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tether

__all__ = ["collect", "commit_of", "git_state", "hardware", "measured_on", "source_hash", "tether_sources",
           "versions"]

_PACKAGES = ("torch", "numpy", "gymnasium")
_SHORT = 10  # characters of a commit hash shown in tables and reports
_SHOWN_COMMITS = 3


def tether_sources() -> Path:
    """The folder of the ``tether`` package that is imported (``src/tether`` in a checkout)."""
    return Path(tether.__file__).resolve().parent


def source_hash(root: str | Path | None = None) -> str:
    """The sha256 over every ``*.py`` file under ``root`` (default: the imported tether package).

    Files are taken in sorted order of their path relative to ``root``, and each contributes its
    relative path and its bytes, so an edit, a new file, a removal and a rename all change the hash.

    Returns:
        ``"sha256:<hex>"``.
    """
    base = Path(root) if root is not None else tether_sources()
    digest = hashlib.sha256()
    for path in sorted(base.rglob("*.py"), key=lambda p: p.relative_to(base).as_posix()):
        digest.update(path.relative_to(base).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def git_state(where: str | Path | None = None) -> dict[str, Any]:
    """The commit checked out at ``where`` (default: the tether sources) and whether the tree is dirty.

    Returns:
        ``{"commit": str | None, "dirty": bool | None}``: ``None`` outside a git checkout.
    """
    cwd = Path(where) if where is not None else tether_sources()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=cwd,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def versions() -> dict[str, str | None]:
    """Versions of Python, tether and the packages a run depends on (``None``: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version(), "tether": tether.__version__}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """The CPU (model, logical cores), the OS and the CUDA devices torch sees."""
    import torch  # noqa: PLC0415 (only where a record is made)

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "machine": platform.machine(),
            "system": platform.system(), "gpus": gpus}


def collect() -> dict[str, Any]:
    """The whole record: ``source_hash``, ``git`` (commit, dirty), ``versions`` and ``hardware``."""
    return {"source_hash": source_hash(), "git": git_state(), "versions": versions(),
            "hardware": hardware()}


def commit_of(record: Mapping[str, Any] | None) -> str:
    """The commit(s) a results file's provenance names, short, as a table shows them.

    Reads a record of :func:`collect` (``git.commit`` and ``git.dirty``) or of a grid summary
    (``commits`` and ``dirty``, several when its cells ran on several commits).

    Returns:
        ``"commit 0123456789"``, ``"commits 0123456789, abcdef0123"``, with ``" with uncommitted
        changes"`` when the tree was dirty, or ``"unknown commit"`` when none is recorded.
    """
    prov = record or {}
    git = prov.get("git") or {}
    found = [str(c) for c in prov.get("commits") or [git.get("commit")] if c and c != "None"]
    if not found:
        return "unknown commit"
    shown = ", ".join(c[:_SHORT] for c in found[:_SHOWN_COMMITS])
    more = f" and {len(found) - _SHOWN_COMMITS} more" if len(found) > _SHOWN_COMMITS else ""
    dirty = prov.get("dirty", git.get("dirty"))
    return (f"commit{'s' if len(found) > 1 else ''} {shown}{more}"
            + (" with uncommitted changes" if dirty else ""))


def measured_on(record: Mapping[str, Any] | None) -> str:
    """The line under a table that says what it was measured on, from a results file's provenance.

    >>> measured_on({"git": {"commit": "0123456789abcdef", "dirty": False},
    ...              "versions": {"tether": "0.1.0", "torch": "2.13.0", "python": "3.11.7"},
    ...              "hardware": {"cpu": "AMD EPYC", "logical_cpus": 2}})
    'Measured on commit 0123456789 (tether 0.1.0, torch 2.13.0, Python 3.11.7, AMD EPYC, 2 logical CPUs).'
    >>> measured_on({"commits": ["0123456789abcdef", "fedcba9876543210"], "dirty": True})
    'Measured on commits 0123456789, fedcba9876 with uncommitted changes.'
    >>> measured_on(None)
    'Measured on unknown commit (no provenance recorded).'
    """
    if not record:
        return "Measured on unknown commit (no provenance recorded)."
    v, hw = record.get("versions") or {}, record.get("hardware") or {}
    named = (("tether", "tether"), ("torch", "torch"), ("Python", "python"))
    parts = [f"{name} {v[key]}" for name, key in named if v.get(key)]
    parts += [str(hw["cpu"])] if hw.get("cpu") else []
    parts += [f"{hw['logical_cpus']} logical CPUs"] if hw.get("logical_cpus") else []
    return f"Measured on {commit_of(record)}" + (f" ({', '.join(parts)})." if parts else ".")
