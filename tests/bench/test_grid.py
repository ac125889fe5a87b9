"""Grid files: what they accept, the order of cells, and the one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether.bench.grid import load_grid, parse_grid
from tether.errors import ConfigError, TetherError

from .conftest import small_grid_data


def _with(**changes: Any) -> dict[str, Any]:
    data = small_grid_data()
    data.update(changes)
    return data


def test_cells_interleave_variants_seed_by_seed() -> None:
    """Cells run seed by seed, and within a seed every task and variant once."""
    grid = parse_grid(small_grid_data())
    keys = [c.key for c in grid.cells()]
    assert keys[:4] == ["cartpole/lstm/seed0", "cartpole/gru/seed0", "recall/lstm/seed0", "recall/gru/seed0"]
    assert len(keys) == 12 == len(set(keys))


def test_settings_layer_grid_task_variant_and_seed() -> None:
    """A cell's settings are the grid's, the task's, the variant's (later wins), then its seed."""
    data = _with(settings={"total_steps": 400, "n_epochs": 3})
    data["tasks"]["recall"]["settings"] = {"n_epochs": 5, "learning_rate": 0.01}
    data["variants"]["gru"]["settings"] = {"core": "gru", "learning_rate": 0.002}
    cell = next(c for c in parse_grid(data).cells() if c.key == "recall/gru/seed2")
    assert cell.settings() == {"total_steps": 400, "n_epochs": 5, "learning_rate": 0.002,
                               "env_id": "tether/Recall-v0", "core": "gru", "seed": 2}


def test_fingerprint_changes_with_settings_only() -> None:
    """A cell's fingerprint follows its settings, so an edited grid reruns the edited cells alone."""
    before = {c.key: c.fingerprint() for c in parse_grid(small_grid_data()).cells()}
    data = small_grid_data()
    data["variants"]["gru"]["settings"] = {"core": "gru", "n_epochs": 2}
    after = {c.key: c.fingerprint() for c in parse_grid(data).cells()}
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == sorted(k for k in before if "/gru/" in k)


def test_a_variant_may_run_its_own_seeds() -> None:
    """A variant's ``seeds`` replace the grid's for it alone; cells stay in seed order."""
    data = small_grid_data()
    data["tasks"] = {"recall": data["tasks"]["recall"]}
    data["variants"]["gru"]["seeds"] = {"start": 2, "count": 3}
    keys = [c.key for c in parse_grid(data).cells()]
    assert keys == ["recall/lstm/seed0", "recall/lstm/seed1", "recall/lstm/seed2", "recall/gru/seed2",
                    "recall/gru/seed3", "recall/gru/seed4"]
    data["variants"]["gru"]["seeds"] = []
    with pytest.raises(ConfigError, match=r"variants.gru.seeds: expected a non-empty list of ints"):
        parse_grid(data)


def test_a_variant_may_name_its_trainer() -> None:
    """A variant's ``algo`` (else the grid's, else ppo) picks the trainer; PPO cells keep their fingerprints."""
    from tether.bench.runner import default_command  # noqa: PLC0415

    before = {c.key: c.fingerprint() for c in parse_grid(small_grid_data()).cells()}
    data = small_grid_data()
    data["variants"]["r2d2"] = {"algo": "r2d2", "settings": {"n_step": 3}}
    cells = {c.key: c for c in parse_grid(data).cells()}
    assert {k: cells[k].fingerprint() for k in before} == before
    assert cells["recall/r2d2/seed1"].algo == "r2d2"
    assert cells["recall/lstm/seed1"].algo == "ppo"
    command = default_command(cells["cartpole/r2d2/seed0"], Path("cell.toml"), Path("run"))
    assert command[-2:] == ["--algo", "r2d2"]
    assert "--algo" not in default_command(cells["cartpole/lstm/seed0"], Path("cell.toml"), Path("run"))
    grid = parse_grid(_with(algo="r2d2", settings={"total_steps": 400, "n_step": 2}))
    assert {c.algo for c in grid.cells()} == {"r2d2"}


def test_seed_range_table() -> None:
    """``seeds = {start, count}`` is a range."""
    assert parse_grid(_with(seeds={"start": 1000, "count": 3})).seeds == (1000, 1001, 1002)


def test_load_grid_reads_toml(tmp_path: Path) -> None:
    """A TOML file parses into the same grid, named by its ``name``."""
    path = tmp_path / "g.toml"
    path.write_text('name = "g"\nseeds = [4]\n[tasks.r]\nenv_id = "tether/Recall-v0"\nbar = 0.9\n'
                    '[variants.memoryless]\nsettings = {recurrent = false}\n', encoding="utf-8")
    grid = load_grid(path)
    assert grid.name == "g"
    assert [c.settings() for c in grid.cells()] == [{"env_id": "tether/Recall-v0", "recurrent": False,
                                                     "seed": 4}]


@pytest.mark.parametrize(("change", "message"), [
    ({"sedes": [0]}, r"grid.toml: unknown key 'sedes'; did you mean 'seeds'\?"),
    ({"seeds": []}, r"seeds: expected a non-empty list of ints"),
    ({"seeds": [1, 1]}, r"seeds: expected distinct seeds, got \[1, 1\]"),
    ({"seeds": {"start": 0, "count": 0}}, r"seeds: expected \{start = INT, count = INT >= 1\}"),
    ({"variants": {}}, r"expected at least one \[variants.NAME\] table"),
    ({"variants": {"a b": {}}}, r"name 'a b' must be letters, digits"),
    ({"variants": {"v": {"settings": {"lerning_rate": 1.0}}}},
     r"variants.v.settings: unknown key 'lerning_rate'; did you mean 'learning_rate'\?"),
    ({"variants": {"v": {"settings": {"seed": 3}}}}, r"'seed' is set by the harness per cell"),
    ({"variants": {"v": {"baseline": "sb4"}}}, r"variants.v.baseline: expected one of \['sb3-contrib'\]"),
    ({"variants": {"v": {"settings": {"n_steps": 100, "seq_len": 33}}}},
     r"cartpole/v: seq_len: expected 0 or a divisor of n_steps=100, got 33"),
    ({"tasks": {"t": {"env_id": "tether/Recall-v0"}}}, r"tasks.t: expected a 'bar'"),
    ({"tasks": {"t": {"bar": 1}}}, r"tasks.t: expected a 'preset' or an 'env_id'"),
    ({"tasks": {"t": {"preset": "cartpole", "bar": "high"}}}, r"tasks.t.bar: expected a number"),
    ({"tasks": {"t": {"preset": "cartpole", "bar": 1, "score_range": [1]}}},
     r"tasks.t.score_range: expected \[random, best\]"),
    ({"tasks": {"t": {"preset": "nope", "bar": 1}}}, r"unknown preset 'nope'"),
    ({"algo": "sac"}, r"algo: expected one of \['ppo', 'r2d2'\], got 'sac'"),
    ({"variants": {"v": {"algo": "dqn"}}}, r"variants.v.algo: expected one of \['ppo', 'r2d2'\]"),
    ({"variants": {"v": {"algo": "r2d2", "baseline": "sb3-contrib"}}},
     r"variants.v: a baseline runs its own trainer; drop 'algo' or 'baseline'"),
    ({"variants": {"v": {"settings": {"n_step": 3}}}}, r"cartpole/v: .*unknown setting 'n_step'"),
    ({"variants": {"v": {"algo": "r2d2", "settings": {"n_epochs": 3}}}},
     r"cartpole/v: .*unknown setting 'n_epochs'"),
])
def test_bad_grids_fail_with_one_line(change: dict[str, Any], message: str) -> None:
    """Each mistake in a grid is one ConfigError line naming the key and what was expected."""
    with pytest.raises(ConfigError, match=message) as caught:
        parse_grid(_with(**change), source="grid.toml")
    assert isinstance(caught.value, TetherError)
    assert str(caught.value).startswith("grid.toml")
    assert "\n" not in str(caught.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    """A missing file and a file that is not TOML each say so."""
    with pytest.raises(FileNotFoundError, match="no grid file at"):
        load_grid(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_grid(bad)


def test_normalise_needs_a_range() -> None:
    """Scores map random -> 0 and best -> 1; a task without a range says how to give one."""
    grid = parse_grid(small_grid_data())
    assert grid.tasks[1].normalise(0.625) == pytest.approx(0.5)
    bare = parse_grid(_with(tasks={"t": {"preset": "cartpole", "bar": 1}})).tasks[0]
    with pytest.raises(ConfigError, match=r"task 't': no score_range = \[random, best\]"):
        bare.normalise(1.0)
