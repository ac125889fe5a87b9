"""Tests for tether.ppo.loss.ppo_loss against a case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tether.ppo import ppo_loss


def _case(**overrides: object) -> dict[str, object]:
    """Two counted steps (ratios 1.5 and 0.5) and a third, masked one full of nonsense."""
    log_probs = torch.tensor([math.log(1.5), math.log(0.5), 5.0], requires_grad=True)
    return {"log_probs": log_probs, "old_log_probs": torch.zeros(3), "advantages": torch.tensor([2.0, -1.0, 100.0]),
            "values": torch.tensor([1.0, 0.0, 9.0]), "old_values": torch.tensor([0.5, 0.5, 0.0]),
            "returns": torch.tensor([2.0, 0.0, -9.0]), "entropy": torch.tensor([0.3, 0.1, 7.0]),
            "loss_mask": torch.tensor([True, True, False]), "clip_range": 0.2, "vf_coef": 0.5, "ent_coef": 0.01,
            "normalize_advantage": False, **overrides}


def test_hand_computed_parts() -> None:
    """Clipped surrogate, value MSE, entropy, KL and clip fraction over the counted steps only."""
    out = ppo_loss(**_case())  # type: ignore[arg-type]
    # step 0: adv 2, ratio 1.5 -> max(-3, -2.4) = -2.4; step 1: adv -1, ratio 0.5 -> max(0.5, 0.8) = 0.8
    torch.testing.assert_close(out.policy_loss, torch.tensor(-0.8))
    torch.testing.assert_close(out.value_loss, torch.tensor(0.5))  # ((1 - 2)^2 + 0^2) / 2
    torch.testing.assert_close(out.entropy, torch.tensor(0.2))
    torch.testing.assert_close(out.loss, torch.tensor(-0.8 + 0.5 * 0.5 - 0.01 * 0.2))
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    torch.testing.assert_close(out.approx_kl, torch.tensor(kl))
    torch.testing.assert_close(out.clip_fraction, torch.tensor(1.0))


def test_value_clipping_and_advantage_normalisation() -> None:
    """The clipped value loss takes the worse of both; normalised advantages are (1, -1) here."""
    clipped = ppo_loss(**_case(clip_range_vf=0.1))  # type: ignore[arg-type]
    # values clipped to 0.6 and 0.4: max(1, 1.96) and max(0, 0.16)
    torch.testing.assert_close(clipped.value_loss, torch.tensor((1.96 + 0.16) / 2))
    normalised = ppo_loss(**_case(normalize_advantage=True))  # type: ignore[arg-type]
    # advantages (2, -1) -> (1, -1): max(-1.5, -1.2) = -1.2 and max(0.5, 0.8) = 0.8
    torch.testing.assert_close(normalised.policy_loss, torch.tensor(-0.2))


def test_only_the_total_carries_the_graph() -> None:
    """`loss` backpropagates through unclipped counted steps only; the parts are detached."""
    # ratios 1.1 (inside the clip: d(-adv * ratio)/d log_prob = -adv * ratio) and 1.5 (clipped: 0),
    # then a masked step
    log_probs = torch.tensor([math.log(1.1), math.log(1.5), 3.0], requires_grad=True)
    z = torch.zeros(3)
    out = ppo_loss(log_probs=log_probs, old_log_probs=z, advantages=torch.tensor([1.0, 1.0, 5.0]), values=z,
                   old_values=z, returns=z, entropy=z, loss_mask=torch.tensor([True, True, False]),
                   clip_range=0.2, normalize_advantage=False)
    assert all(not part.requires_grad for part in out[1:])
    out.loss.backward()
    assert log_probs.grad is not None
    torch.testing.assert_close(log_probs.grad, torch.tensor([-1.1 / 2, 0.0, 0.0]))


@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_no_counted_step_gives_zeros_not_nan(shape: tuple[int, ...]) -> None:
    """A minibatch with every step masked gives finite zeros (the count is clamped to 1)."""
    z = torch.zeros(shape)
    out = ppo_loss(log_probs=z, old_log_probs=z, advantages=z + 1, values=z, old_values=z, returns=z + 1,
                   entropy=z, loss_mask=torch.zeros(shape, dtype=torch.bool), clip_range=0.2)
    assert all(float(part) == 0.0 for part in out)
