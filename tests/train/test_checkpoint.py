"""Tests for tether.train.checkpoint: atomic writes and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tether.errors import CheckpointError
from tether.train.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path: Path) -> None:
    """What is saved is loaded back, tagged."""
    path = save_checkpoint({"w": torch.arange(3), "step": 7}, tmp_path / "sub" / "ckpt.pt")
    data = load_checkpoint(path, required=("w", "step"))
    assert data["step"] == 7
    assert torch.equal(data["w"], torch.arange(3))
    assert data["format"] == "tether-checkpoint"


def test_crash_mid_write_keeps_the_last_good_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing fails half-way, the previous checkpoint is intact and no temp file is left."""
    path = save_checkpoint({"step": 1}, tmp_path / "ckpt.pt")

    def crash(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_corrupt_foreign_newer_and_incomplete_files(tmp_path: Path) -> None:
    """Corrupt, foreign, too-new and incomplete files each raise CheckpointError saying which."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a zip at all")
    with pytest.raises(CheckpointError, match="not a readable tether checkpoint \\(corrupt or truncated\\)"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="is not a tether checkpoint"):
        load_checkpoint(foreign)
    newer = save_checkpoint({"version": 99}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="written by a newer tether"):
        load_checkpoint(newer)
    partial = save_checkpoint({"policy": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"misses the keys \['optimizer'\]"):
        load_checkpoint(partial, required=("policy", "optimizer"))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_numpy_round_trips_and_objects_are_refused(tmp_path: Path) -> None:
    """numpy arrays (any dtype) come back as numpy; a callable or an object is never stored."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(1).bit_generator.state
    payload = {"ids": np.arange(4, dtype=np.uint32), "flags": np.array([True, False]), "rng": rng,
               "tree": ({"a": np.ones((2, 3), np.float32)}, [np.int64(7)])}
    data = load_checkpoint(save_checkpoint(payload, tmp_path / "np.pt"))
    assert data["ids"].dtype == np.uint32
    np.testing.assert_array_equal(data["ids"], np.arange(4))
    np.testing.assert_array_equal(data["flags"], [True, False])
    assert data["rng"] == rng
    np.testing.assert_array_equal(data["tree"][0]["a"], np.ones((2, 3)))
    assert data["tree"][1] == [7]
    with pytest.raises(TypeError, match="cannot store a function"):
        save_checkpoint({"fn": lambda: 0}, tmp_path / "fn.pt")
    assert not (tmp_path / "fn.pt").exists()


def test_old_pickling_checkpoints_are_refused_not_run(tmp_path: Path) -> None:
    """A file holding pickled objects, or a version-1 tether file, is refused in one line."""
    pickled = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects \(torch.nn.modules.linear.Linear;") as err:
        load_checkpoint(pickled)
    assert "\n" not in str(err.value)
    old = tmp_path / "old.pt"
    torch.save({"format": "tether-checkpoint", "version": 1}, old)
    with pytest.raises(CheckpointError, match="is a version-1 tether checkpoint"):
        load_checkpoint(old)
