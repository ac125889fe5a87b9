"""Tests for tether.ppo.config.PPOConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.ppo import PPOConfig


def test_defaults_are_the_cartpole_novel_setup() -> None:
    """The defaults train the default task with 8 envs for 50 000 steps."""
    config = PPOConfig()
    assert (config.env_id, config.num_envs, config.total_steps) == ("tether/CartPole-NoVel-v0", 8, 50_000)
    assert set(config.to_dict()) == set(PPOConfig.field_names())


def test_unknown_key_suggests_the_close_one() -> None:
    """An unknown setting is refused with the nearest known name."""
    with pytest.raises(ConfigError, match="unknown setting 'learning_rat'; did you mean 'learning_rate'"):
        PPOConfig.from_dict({"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="unknown setting 'zzz'; known keys: env_id"):
        PPOConfig.from_dict({"zzz": 1})


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"num_envs": 0}, "num_envs: expected a positive value, got 0"),
        ({"gamma": 1.5}, r"gamma: expected a value in \[0, 1\], got 1.5"),
        ({"core": "transformer"}, r"core: expected one of \['lstm', 'gru'\], got 'transformer'"),
        ({"seq_len": 30}, "seq_len: expected 0 or a divisor of n_steps=128, got 30"),
        ({"minibatch_envs": 9}, "expected at most num_envs=8 env-sequences per minibatch"),
        ({"mode": "loud"}, "mode: expected one of"),
        ({"learning_rate": float("nan")}, "learning_rate: expected a finite number, got nan"),
        ({"learning_rate": float("inf")}, "learning_rate: expected a finite number, got inf"),
        ({"learning_rate": 0.0}, "learning_rate: expected a positive value, got 0.0"),
        ({"reward_scale": float("nan")}, "reward_scale: expected a finite number, got nan"),
        ({"gae_lambda": -0.1}, r"gae_lambda: expected a value in \[0, 1\], got -0.1"),
        ({"gamma": float("nan")}, "gamma: expected a finite number, got nan"),
        ({"ent_coef": -1.0}, "ent_coef: expected 0 or more, got -1.0"),
        ({"clip_range_vf": float("-inf")}, "clip_range_vf: expected a finite number, got -inf"),
        ({"max_grad_norm": 0}, "max_grad_norm: expected a positive value, got 0"),
        ({"seed": -1}, "seed: expected 0 or more, got -1"),
        ({"encoder_size": -8}, "encoder_size: expected 0 or more, got -8"),
        ({"device": "banana"}, r"device: expected a torch device such as cpu.*, got 'banana'"),
    ],
)
def test_bad_values_say_what_was_expected(settings: dict, match: str) -> None:
    """Invalid values raise ConfigError naming the setting and what it takes."""
    with pytest.raises(ConfigError, match=match):
        PPOConfig.from_dict(settings)


def test_toml_file_with_overrides(tmp_path: Path) -> None:
    """A TOML file (top level or [train]) sets values; explicit overrides win."""
    path = tmp_path / "run.toml"
    path.write_text('[train]\nn_steps = 64\nlearning_rate = 0.001\ncore = "gru"\n', encoding="utf-8")
    config = PPOConfig.from_toml(path, learning_rate=0.002)
    assert (config.n_steps, config.learning_rate, config.core) == (64, 0.002, "gru")
    bad = tmp_path / "bad.toml"
    bad.write_text("n_step = 64\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown setting 'n_step'; did you mean 'n_steps'"):
        PPOConfig.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("n_steps = = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PPOConfig.from_toml(broken)
    with pytest.raises(FileNotFoundError, match="no config file"):
        PPOConfig.from_toml(tmp_path / "missing.toml")


def test_presets() -> None:
    """Each preset builds a valid config for its task; overrides win; unknown names are refused."""
    from tether.ppo import PRESETS  # noqa: PLC0415

    for name in PRESETS:
        assert PPOConfig.from_preset(name).env_id.startswith("tether/")
    assert PPOConfig.from_preset("recall", seed=7).seed == 7
    with pytest.raises(ConfigError, match=r"unknown preset 'atari'; expected one of \['cartpole'"):
        PPOConfig.from_preset("atari")


def test_choices_are_literal_types() -> None:
    """core, vector and mode are Literal types (the CLI's choices come from them); device stays str."""
    import typing  # noqa: PLC0415

    types = PPOConfig.field_types()
    assert typing.get_args(types["core"]) == ("lstm", "gru")
    assert typing.get_args(types["vector"]) == ("sync", "async")
    assert typing.get_args(types["mode"]) == ("strict", "warn", "off")
    assert types["device"] is str


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"num_envs": "8"}, "num_envs: expected an integer, got '8'"),
        ({"normalize_obs": 1}, "normalize_obs: expected true or false, got 1"),
        ({"learning_rate": "fast"}, "learning_rate: expected a number, got 'fast'"),
        ({"target_kl": "x"}, "target_kl: expected a number, got 'x'"),
        ({"env_imports": "pkg"}, "env_imports: expected a list of strings, got 'pkg'"),
        ({"env_kwargs": {"f": object}}, "env_kwargs: expected a table of plain values"),
        ({"vector": "threads"}, r"vector: expected one of \['sync', 'async'\], got 'threads'"),
    ],
)
def test_wrongly_typed_values_are_refused(settings: dict, match: str) -> None:
    """A value of the wrong type (e.g. from TOML) is refused naming the setting and the type."""
    with pytest.raises(ConfigError, match=match):
        PPOConfig.from_dict(settings)


def test_env_settings_from_toml_merge_with_overrides(tmp_path: Path) -> None:
    """env_kwargs merge key by key and env_imports extend when flags add to a TOML file."""
    path = tmp_path / "run.toml"
    path.write_text('env_id = "pkg:Their/Task-v0"\nenv_imports = ["a"]\n[env_kwargs]\ndelay = 4\nname = "x"\n',
                    encoding="utf-8")
    config = PPOConfig.from_toml(path, env_kwargs={"delay": 8}, env_imports=["b"])
    assert config.env_id == "pkg:Their/Task-v0"
    assert config.env_kwargs == {"delay": 8, "name": "x"}
    assert config.env_imports == ["a", "b"]
    assert PPOConfig.from_dict(config.to_dict()) == config


def test_every_setting_has_one_concern() -> None:
    """Each setting belongs to env, network, run or ppo: its TOML table and its group of flags."""
    sections = PPOConfig.sections()
    assert set(sections) == set(PPOConfig.field_names())
    assert set(sections.values()) == {"env", "network", "run", "ppo"}
    assert (sections["env_id"], sections["hidden_size"], sections["seed"], sections["gamma"]) == (
        "env", "network", "run", "ppo")
    assert sections["shared_core"] == "network"


def test_toml_tables_by_concern_and_flat_keys_read_the_same(tmp_path: Path) -> None:
    """[env] / [network] / [run] / [ppo] tables give the same config as the old flat keys."""
    grouped = tmp_path / "grouped.toml"
    grouped.write_text('algo = "ppo"\n[env]\nenv_id = "tether/Recall-v0"\nnum_envs = 4\n[env.env_kwargs]\n'
                       'delay = 3\n[network]\ncore = "gru"\nhidden_size = 32\n[run]\nseed = 5\n'
                       '[ppo]\nn_steps = 64\nlearning_rate = 0.001\n', encoding="utf-8")
    flat = tmp_path / "flat.toml"
    flat.write_text('env_id = "tether/Recall-v0"\nnum_envs = 4\ncore = "gru"\nhidden_size = 32\nseed = 5\n'
                    'n_steps = 64\nlearning_rate = 0.001\n[env_kwargs]\ndelay = 3\n', encoding="utf-8")
    config = PPOConfig.from_toml(grouped)
    assert config == PPOConfig.from_toml(flat)
    assert (config.env_kwargs, config.core, config.seed, config.n_steps) == ({"delay": 3}, "gru", 5, 64)
    assert PPOConfig.from_toml(grouped, seed=9).seed == 9


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[network]\nlearning_rate = 0.1\n", r"\[network\]: 'learning_rate' is a \[ppo\] setting; move it there"),
        ("[ppo]\nn_step = 64\n", r"\[ppo\]: unknown setting 'n_step'; did you mean 'n_steps'"),
        ("seed = 1\n[run]\nseed = 2\n", "'seed' is given twice; keep one"),
        ('algo = "r2d2"\n', "this file holds settings for algo 'r2d2', not 'ppo'; run it with --algo r2d2"),
    ],
)
def test_toml_tables_refuse_misplaced_keys(tmp_path: Path, text: str, match: str) -> None:
    """A key in another concern's table, a misspelt one, a duplicate or another algo: one line."""
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        PPOConfig.from_toml(path)
