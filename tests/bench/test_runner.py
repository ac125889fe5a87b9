"""The runner: one process per cell, resumable, and what each cell records."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tether.bench import provenance
from tether.bench.grid import Grid, parse_grid
from tether.bench.runner import default_command, read_cell, run_grid, write_toml
from tether.errors import ConfigError, TetherError

from .conftest import small_grid_data, stub_command

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _launches(out: Path) -> list[str]:
    path = out / "launches.txt"
    return path.read_text(encoding="utf-8").split() if path.is_file() else []


def test_every_cell_runs_once_and_records_its_result(tmp_path: Path, small_grid: Grid) -> None:
    """Each cell runs in its own process and leaves a result.json with its evaluation and curve."""
    outcomes = run_grid(small_grid, tmp_path, jobs=3, command=stub_command, echo=None)
    assert [o.status for o in outcomes] == ["done"] * 12
    assert sorted(_launches(tmp_path)) == sorted(c.dirname for c in small_grid.cells())
    record = read_cell(tmp_path / "recall__lstm__seed2")
    assert record is not None
    assert record["cell"] == {"task": "recall", "variant": "lstm", "seed": 2, "baseline": None,
                              "algo": "ppo", "fingerprint": small_grid.cells()[10].fingerprint()}
    assert record["score"] == 102.0
    assert record["at_bar"] is True
    assert record["steps"] == 400
    assert record["steps_per_second"] == pytest.approx(200.0)
    assert [p["ep_return"] for p in record["curve"]] == [25.5, 51.0, 76.5, 102.0]
    assert record["settings"] == {"total_steps": 400, "env_id": "tether/Recall-v0", "seed": 2}
    # the trainer ran in the cell's folder: no machine path in what the cell records
    assert record["command"][2:] == ["--config", "cell.toml", "--run-dir", "run"]


def test_jobs_run_cells_at_the_same_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With jobs=3, three cells are running at once (each waits until it sees the other two)."""
    monkeypatch.setenv("STUB_WAIT_FOR", "3")
    data = small_grid_data()
    data["seeds"], data["tasks"] = [0, 1, 2], {"recall": data["tasks"]["recall"]}
    data["variants"] = {"lstm": {}}
    outcomes = run_grid(parse_grid(data), tmp_path, jobs=3, command=stub_command, echo=None)
    assert [o.status for o in outcomes] == ["done"] * 3
    assert [(tmp_path / f"recall__lstm__seed{k}" / "run" / "peers.txt").read_text() for k in range(3)] == [
        "3", "3", "3"]


def test_cell_toml_holds_settings_run_dir_and_no_progress(tmp_path: Path, small_grid: Grid) -> None:
    """The trainer gets the preset's settings then the cell's in TOML, its run folder, and no progress bar."""
    from tether.ppo import PRESETS  # noqa: PLC0415

    run_grid(small_grid, tmp_path, jobs=1, command=stub_command, echo=None)
    cell_dir = tmp_path / "cartpole__gru__seed1"
    written = tomllib.loads((cell_dir / "cell.toml").read_text(encoding="utf-8"))
    assert written == {**PRESETS["cartpole"], "total_steps": 400, "core": "gru", "seed": 1, "run_dir": "run",
                       "progress": False}


def test_done_cells_are_skipped(tmp_path: Path, small_grid: Grid) -> None:
    """A second run of the same grid launches nothing and returns the stored records."""
    first = run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    second = run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    assert len(_launches(tmp_path)) == 12
    assert [o.status for o in second] == ["skipped"] * 12
    assert [o.record for o in second] == [o.record for o in first]


def test_half_done_cell_is_rerun_from_scratch(tmp_path: Path, small_grid: Grid) -> None:
    """A cell folder without result.json (a killed run) is wiped and run again; others are skipped."""
    run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    cell_dir = tmp_path / "cartpole__lstm__seed1"
    (cell_dir / "result.json").unlink()
    (cell_dir / "run" / "leftover.txt").write_text("from the killed run", encoding="utf-8")
    outcomes = run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    assert {o.cell.key: o.status for o in outcomes if o.status != "skipped"} == {"cartpole/lstm/seed1": "done"}
    assert _launches(tmp_path).count("cartpole__lstm__seed1") == 2
    assert not (cell_dir / "run" / "leftover.txt").exists()
    assert read_cell(cell_dir) is not None


def test_changed_settings_rerun_only_those_cells(tmp_path: Path, small_grid: Grid) -> None:
    """Editing a variant's settings reruns that variant's cells and keeps the rest."""
    run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    data = small_grid_data()
    data["variants"]["gru"]["settings"] = {"core": "gru", "n_epochs": 3}
    outcomes = run_grid(parse_grid(data), tmp_path, jobs=2, command=stub_command, echo=None)
    assert sorted(o.cell.key for o in outcomes if o.status == "done") == sorted(
        c.key for c in small_grid.cells() if c.variant.name == "gru")


def test_failed_cell_is_reported_and_rerun_next_time(tmp_path: Path, small_grid: Grid,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell whose trainer exits non-zero is 'failed' with its last log line, and is not marked done."""
    monkeypatch.setenv("STUB_FAIL_SEED", "2")
    outcomes = run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    failed = [o for o in outcomes if o.status == "failed"]
    assert [o.cell.seed for o in failed] == [2, 2, 2, 2]
    assert "exit 1: stub: seed 2 told to fail" in failed[0].error
    monkeypatch.delenv("STUB_FAIL_SEED")
    again = run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    assert sorted(o.cell.key for o in again if o.status == "done") == sorted(o.cell.key for o in failed)


def test_provenance_fields(tmp_path: Path, small_grid: Grid) -> None:
    """Each record carries the source hash, git commit and dirtiness, versions, hardware and jobs."""
    run_grid(small_grid, tmp_path, jobs=2, command=stub_command, echo=None)
    record = read_cell(tmp_path / "cartpole__lstm__seed0")
    assert record is not None
    prov = record["provenance"]
    assert prov["source_hash"] == provenance.source_hash()
    assert set(prov["git"]) == {"commit", "dirty"}
    assert set(prov["versions"]) == {"python", "tether", "torch", "numpy", "gymnasium"}
    assert all(prov["versions"].values())
    assert prov["hardware"]["logical_cpus"] == os.cpu_count()
    assert isinstance(prov["hardware"]["gpus"], list)
    assert prov["jobs"] == 2


def test_source_hash_follows_content_and_names(tmp_path: Path) -> None:
    """The hash changes with a file's bytes, a new file and a rename, and not with other files."""
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n", encoding="utf-8")
    first = provenance.source_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("not code", encoding="utf-8")
    assert provenance.source_hash(tmp_path) == first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    renamed = provenance.source_hash(tmp_path)
    assert renamed != first
    (tmp_path / "a.py").write_text("x = 2\n", encoding="utf-8")
    assert provenance.source_hash(tmp_path) not in (first, renamed)
    assert first.startswith("sha256:")


def test_git_state_outside_a_checkout(tmp_path: Path) -> None:
    """Outside a git checkout the commit and dirtiness are None, not an error."""
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_default_command_runs_the_tether_cli(tmp_path: Path, small_grid: Grid) -> None:
    """The default command is ``python -m tether.cli train --config cell.toml --run-dir ...``, no preset flag."""
    cartpole = small_grid.cells()[0]
    argv = default_command(cartpole, tmp_path / "cell.toml", tmp_path / "run")
    assert argv == [sys.executable, "-m", "tether.cli", "train", "--config", str(tmp_path / "cell.toml"),
                    "--run-dir", str(tmp_path / "run")]


def test_a_cells_settings_win_over_its_preset(tmp_path: Path) -> None:
    """cell.toml holds the preset's settings and then the grid's, so a variant that changes a preset
    value trains with its own, through the real command line; only such cells change fingerprints."""
    from tether.bench.grid import parse_grid  # noqa: PLC0415
    from tether.cli import ALGORITHMS, _build_parser, _overrides, _settings  # noqa: PLC0415

    data = {"seeds": [0], "tasks": {"cartpole": {"preset": "cartpole", "bar": 1}},
            "variants": {"same": {}, "lr": {"settings": {"learning_rate": 0.0123}}}}
    cells = {c.variant.name: c for c in parse_grid(data).cells()}
    same, changed = cells["same"], cells["lr"]
    assert same.resolved_settings()["learning_rate"] == 2e-3  # the preset's
    assert changed.resolved_settings()["learning_rate"] == 0.0123
    assert changed.resolved_settings()["reward_scale"] == 0.01  # the rest of the preset stays
    path = tmp_path / "cell.toml"
    write_toml(path, {**changed.resolved_settings(), "run_dir": "run", "progress": False})
    args = _build_parser("ppo").parse_args(default_command(changed, path, tmp_path / "run")[3:])
    config = _settings(ALGORITHMS["ppo"], args, _overrides(args))
    assert (config.learning_rate, config.reward_scale, config.env_id) == (0.0123, 0.01, "tether/CartPole-NoVel-v0")
    # a fingerprint hashes the preset values a cell overrides: such cells' old results were wrong
    plain = {"preset": "cartpole", "settings": changed.settings(), "baseline": None}
    import hashlib  # noqa: PLC0415
    import json as json_  # noqa: PLC0415

    old = hashlib.sha256(json_.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
    assert changed.fingerprint() != old
    plain_same = {"preset": "cartpole", "settings": same.settings(), "baseline": None}
    assert same.fingerprint() == hashlib.sha256(json_.dumps(plain_same, sort_keys=True).encode()).hexdigest()[:16]


def test_sb3_variant_refused_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid with an sb3-contrib variant and no sb3-contrib installed fails at once, in one line."""
    monkeypatch.setattr("tether.bench.runner.has_module", lambda name: False)
    data = small_grid_data()
    data["variants"]["sb3"] = {"baseline": "sb3-contrib"}
    with pytest.raises(TetherError, match=r"^variant 'sb3' needs sb3-contrib, which is not installed;"
                                          r" pip install 'tether-rl\[compare\]'") as caught:
        run_grid(parse_grid(data), tmp_path, echo=None)
    assert isinstance(caught.value, ImportError)
    assert not list(tmp_path.iterdir())


def test_a_command_that_cannot_start_fails_its_cell(tmp_path: Path, small_grid: Grid) -> None:
    """A trainer command that does not exist fails each cell with the reason; the run goes on."""
    outcomes = run_grid(small_grid, tmp_path, jobs=2, command=lambda c, t, r: ["no-such-trainer-here"],
                        echo=None)
    assert {o.status for o in outcomes} == {"failed"}
    assert "could not start 'no-such-trainer-here'" in outcomes[0].error


def test_jobs_must_be_positive(tmp_path: Path, small_grid: Grid) -> None:
    """``jobs=0`` is refused."""
    with pytest.raises(ConfigError, match="jobs: expected at least 1, got 0"):
        run_grid(small_grid, tmp_path, jobs=0, command=stub_command, echo=None)


def test_write_toml_refuses_a_list(tmp_path: Path) -> None:
    """Settings are flat scalars; anything else is named."""
    with pytest.raises(ConfigError, match=r"setting 'x': expected a string, number or bool"):
        write_toml(tmp_path / "c.toml", {"x": [1, 2]})
    write_toml(tmp_path / "c.toml", {"a": 'quote " and \\', "b": 1e-5, "c": True, "d": 3})
    assert tomllib.loads((tmp_path / "c.toml").read_text(encoding="utf-8")) == {
        "a": 'quote " and \\', "b": 1e-5, "c": True, "d": 3}


def test_real_tether_cell_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny real ``tether train`` cell runs through the default command and is summarised."""
    grid = parse_grid({"seeds": [0], "settings": {"num_envs": 2, "n_steps": 16, "total_steps": 32,
                                                  "eval_episodes": 2, "hidden_size": 8, "encoder_size": 8},
                       "tasks": {"recall": {"env_id": "tether/Recall-v0", "bar": 0.9}},
                       "variants": {"gru": {"settings": {"core": "gru"}}}})
    # the cell's process imports the same tether as this one
    monkeypatch.setenv("PYTHONPATH", str(provenance.tether_sources().parent))
    [outcome] = run_grid(grid, tmp_path, jobs=1, echo=None)
    assert outcome.status == "done", outcome.error
    record = outcome.record
    assert record is not None
    assert record["steps"] == 32
    assert record["eval"]["episodes"] == 2
    assert 0.0 <= record["score"] <= 1.0
    assert json.loads((tmp_path / "recall__gru__seed0" / "run" / "eval.json").read_text())["mean_return"] \
        == record["score"]
    assert not (tmp_path / "recall__gru__seed0" / "run" / "checkpoint.pt").exists()
    # the cell ran in its folder: no machine path in its record, its settings or its log
    for name in ("result.json", "cell.toml", "log.txt"):
        assert str(tmp_path) not in (tmp_path / "recall__gru__seed0" / name).read_text(encoding="utf-8")
