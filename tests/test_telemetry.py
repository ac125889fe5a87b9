"""Tests for tether.telemetry (pure functions) and RecurrentPPO's --telemetry / --sequence-start runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tether.ppo import PPOConfig, RecurrentPPO
from tether.telemetry import first_last, gate_saturation, sequence_gap, state_health


def test_state_health_per_layer() -> None:
    """RMS, max, NaN count and the norm of a state fed at an episode start, per layer."""
    h = torch.zeros(2, 2, 1, 4)
    h[0, 0] = 1.0  # layer 0 at t = 0: all ones
    h[1, 1, 0, 0] = float("nan")
    c = torch.full((2, 2, 1, 4), 2.0)
    out = state_health((h, c), torch.tensor([[True], [False]]))
    torch.testing.assert_close(out.h_rms[0], torch.tensor(0.5 ** 0.5))
    torch.testing.assert_close(out.h_max[0], torch.tensor(1.0))
    torch.testing.assert_close(out.c_rms, torch.tensor([2.0, 2.0]))
    assert out.nonfinite.tolist() == [0, 1]
    # t = 0 starts an episode: layer 0 holds |h|² = 4, |c|² = 16 there; layer 1 only c.
    torch.testing.assert_close(out.reset_norm, torch.tensor([20.0 ** 0.5, 4.0]))


def _manual_lstm_saturation(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> float:
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    sig = torch.sigmoid(torch.cat((i, f, o), -1))
    count = ((sig > 0.99) | (sig < 0.01)).sum() + (torch.tanh(g).abs() > 0.99).sum()
    return float(count) / (sig.numel() + g.numel())


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_gate_saturation_matches_the_module(kind: type[nn.RNNBase]) -> None:
    """Layer 1's input is layer 0's output as the module computes it; layer 0 matches a manual count."""
    torch.manual_seed(0)
    rnn = kind(3, 5, num_layers=2)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(6.0)  # large weights: many gates saturate
    x = torch.randn(64, 3)
    state = tuple(torch.randn(2, 64, 5) for _ in range(2 if kind is nn.LSTM else 1))
    fractions = gate_saturation(rnn, x, state)
    assert fractions.shape == (2,)
    assert bool(((fractions > 0) & (fractions < 1)).all())
    # Layer 1 alone, fed layer 0's output as the module itself computes it: the same fraction.
    lower, upper = kind(3, 5), kind(5, 5)
    weights = rnn.state_dict()
    lower.load_state_dict({k: v for k, v in weights.items() if k.endswith("_l0")})
    upper.load_state_dict({k.replace("_l1", "_l0"): v for k, v in weights.items() if k.endswith("_l1")})
    below = tuple(s[:1] for s in state)
    h0 = lower(x[None], below if kind is nn.LSTM else below[0])[0][0]
    torch.testing.assert_close(fractions[1], gate_saturation(upper, h0, tuple(s[1:] for s in state))[0])
    if kind is nn.LSTM:
        assert float(fractions[0]) == pytest.approx(_manual_lstm_saturation(rnn, x, state[0][0], state[1][0]))


def test_gate_saturation_refuses_other_modules() -> None:
    """Only a plain LSTM / GRU: its gates are known."""
    with pytest.raises(TypeError, match=r"expected a unidirectional nn\.LSTM or nn\.GRU"):
        gate_saturation(nn.RNN(3, 4), torch.zeros(1, 3), (torch.zeros(1, 1, 4),))


def test_sequence_gap_at_the_first_and_last_counted_step() -> None:
    """Padding and uncounted steps are skipped; the KL estimate is (r - 1) - log r."""
    mask = torch.tensor([[False, True], [True, True], [True, False]])
    first, last, has = first_last(mask)
    assert first.tolist() == [1, 0]
    assert last.tolist() == [2, 1]
    assert has.tolist() == [True, True]
    old = torch.zeros(3, 2)
    new = torch.tensor([[9.0, 0.0], [0.5, 0.0], [0.0, 9.0]])
    gap = sequence_gap(log_prob=new, old_log_prob=old, value=new, old_value=old, mask=mask)
    k = torch.tensor(0.5).exp() - 1 - 0.5
    torch.testing.assert_close(gap.kl_first, k / 2)  # env 0 at t = 1 (0.5), env 1 at t = 0 (0)
    torch.testing.assert_close(gap.kl_last, torch.tensor(0.0))  # env 0 at t = 2, env 1 at t = 1
    torch.testing.assert_close(gap.value_first, torch.tensor(0.25))
    assert int(gap.sequences) == 2
    q_only = sequence_gap(log_prob=None, old_log_prob=None, value=new, old_value=old, mask=mask)
    assert float(q_only.kl_first) == 0.0
    assert float(q_only.value_first) == 0.25


def _tiny(tmp_path: Path, name: str, **overrides: object) -> PPOConfig:
    settings = {"num_envs": 2, "n_steps": 16, "seq_len": 4, "total_steps": 64, "n_epochs": 2,
                "minibatch_envs": 2, "hidden_size": 8, "encoder_size": 8, "progress": False,
                "run_dir": str(tmp_path / name), "mode": "strict", **overrides}
    return PPOConfig.from_dict(settings)


@pytest.mark.parametrize("start", ["rollout", "stored", "burn-in:6"])
def test_tiny_runs_train_with_each_start_and_log_telemetry(tmp_path: Path, start: str) -> None:
    """Strict mode stays silent; every state/ key is there; resets leave no state; nothing is NaN."""
    trainer = RecurrentPPO(_tiny(tmp_path, start, sequence_start=start, telemetry=True))
    trainer.train()
    trainer.close()
    records = [json.loads(x) for x in (tmp_path / start / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        for key in ("h_rms", "h_max", "c_rms", "saturation", "nonfinite", "reset_norm", "stale_kl_first",
                    "stale_kl_last", "stale_value_first", "stale_value_last", "h_rms_l1", "stale_kl_last_e1"):
            assert f"state/{key}" in record, key
        assert record["state/reset_norm"] == 0.0
        assert record["state/nonfinite"] == 0.0
        assert record["state/stale_kl_first"] >= 0.0
        assert record["state/h_rms"] > 0.0


def test_telemetry_off_logs_nothing_and_one_chunk_starts_agree(tmp_path: Path) -> None:
    """Off: no state/ key. With one chunk per env the three starts are one computation (same weights)."""
    weights = []
    for start in ("rollout", "stored", "burn-in:8"):
        trainer = RecurrentPPO(_tiny(tmp_path, start, sequence_start=start, seq_len=0, seed=3))
        trainer.train()
        weights.append([p.detach().clone() for p in trainer.policy.parameters()])
        trainer.close()
        assert trainer.buffer.keep_states is False
        record = json.loads((tmp_path / start / "metrics.jsonl").read_text().splitlines()[-1])
        assert not [k for k in record if k.startswith("state/")]
    for other in weights[1:]:
        for a, b in zip(weights[0], other, strict=True):
            torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)


def test_plot_keys_draws_state_metrics(tmp_path: Path) -> None:
    """``tether plot RUN --keys state/...`` writes one PNG; an unknown key is one line and exit 2."""
    from tether.cli import main  # noqa: PLC0415

    trainer = RecurrentPPO(_tiny(tmp_path, "run", telemetry=True))
    trainer.train()
    trainer.close()
    out = tmp_path / "keys.png"
    assert main(["plot", str(tmp_path / "run"), "--keys", "state/h_rms", "state/stale_kl_*t", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert main(["plot", str(tmp_path / "run"), "--keys", "state/nope"]) == 2
