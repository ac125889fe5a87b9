"""The sb3-contrib cell: the same settings mapped onto sb3-contrib, or refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tether import PPOConfig
from tether.bench.sb3 import main, sb3_kwargs
from tether.errors import ConfigError


def test_settings_map_onto_sb3_contrib() -> None:
    """Each PPO setting lands on its sb3-contrib name; minibatches of whole env-sequences become
    a batch of transitions; the linear decay matches tether's value before each update."""
    config = PPOConfig(num_envs=8, n_steps=128, minibatch_envs=2, total_steps=50_176, anneal_lr=True,
                       learning_rate=1e-3, hidden_size=32, encoder_size=16, shared_core=True, seed=7)
    kwargs = sb3_kwargs(config)
    assert kwargs["batch_size"] == 256
    assert (kwargs["n_steps"], kwargs["n_epochs"], kwargs["seed"]) == (128, 10, 7)
    assert kwargs["policy_kwargs"] == {"lstm_hidden_size": 32, "n_lstm_layers": 1, "shared_lstm": True,
                                       "enable_critic_lstm": False, "net_arch": {"pi": [16], "vf": [16]}}
    schedule = kwargs["learning_rate"]
    updates = 49
    # sb3 asks after rollout u + 1 with progress_remaining = 1 - (u + 1) / N
    assert [schedule(1 - (u + 1) / updates) for u in (0, 10, 48)] == pytest.approx(
        [1e-3 * (1 - u / updates) for u in (0, 10, 48)])
    assert sb3_kwargs(PPOConfig())["learning_rate"] == 7e-4


@pytest.mark.parametrize(("setting", "message"), [
    ({"core": "gru"}, r"core = 'gru' has no sb3-contrib counterpart \(sb3-contrib's RecurrentPPO has only"),
    ({"recurrent": False}, r"recurrent = False has no sb3-contrib counterpart"),
    ({"seq_len": 32}, r"seq_len = 32 has no sb3-contrib counterpart \(sb3-contrib replays whole rollouts"),
    ({"reward_scale": 0.1}, r"reward_scale = 0.1 has no"),
])
def test_settings_sb3_cannot_mirror_are_refused(setting: dict[str, Any], message: str) -> None:
    """A setting with no sb3-contrib counterpart is refused, never silently dropped."""
    with pytest.raises(ConfigError, match=message):
        sb3_kwargs(PPOConfig(**setting))


def test_missing_sb3_contrib_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sb3-contrib the cell exits 2 with one line naming the extra."""
    monkeypatch.setitem(sys.modules, "sb3_contrib", None)
    (tmp_path / "cell.toml").write_text("total_steps = 64\n", encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "cell.toml"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == ("sb3-contrib cell: error: an sb3-contrib variant needs sb3_contrib, which is not"
                   " installed; pip install 'tether-rl[compare]'\n")
