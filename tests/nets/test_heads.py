"""Tests for tether.nets.heads: per-factor heads and their factored sum."""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch.distributions import Categorical, Normal

from tether.nets.factors import ActionLayout
from tether.nets.heads import CategoricalHead, FactoredHeads, GaussianHead, value_head

LAYOUT = ActionLayout(spaces.Tuple((spaces.Discrete(3), spaces.MultiDiscrete([2, 4]), spaces.Box(-1, 1, (2,)))))


def test_factored_log_prob_and_entropy_are_sums_over_heads() -> None:
    """The factored log-prob / entropy equal the sum of independent torch distributions."""
    torch.manual_seed(0)
    heads = FactoredHeads(LAYOUT, 5, log_std_init=-0.5)
    with torch.no_grad():
        for head in heads.heads:
            head.linear.weight.normal_()  # type: ignore[union-attr, operator]
    features = torch.randn(4, 5)
    actions, log_prob, entropy = heads(features)
    assert actions.shape == (4, 5)
    assert actions.dtype == torch.float32
    with torch.no_grad():
        discrete, multi, box = heads.heads
        logits = discrete.linear(features)  # type: ignore[operator]
        multi_logits = multi.linear(features).split([2, 4], -1)  # type: ignore[operator]
        mean = box.linear(features)  # type: ignore[operator]
    dists = [Categorical(logits=logits), Categorical(logits=multi_logits[0]), Categorical(logits=multi_logits[1])]
    columns = [actions[:, 0].long(), actions[:, 1].long(), actions[:, 2].long()]
    normal = Normal(mean, torch.full((2,), -0.5).exp())
    want_lp = sum(d.log_prob(a) for d, a in zip(dists, columns, strict=True)) + normal.log_prob(actions[:, 3:]).sum(-1)
    want_ent = sum(d.entropy() for d in dists) + normal.entropy().sum(-1)
    torch.testing.assert_close(log_prob, want_lp)
    torch.testing.assert_close(entropy, want_ent)
    _, scored, _ = heads(features, None, actions)
    torch.testing.assert_close(scored, log_prob)


def test_deterministic_takes_each_mode() -> None:
    """Deterministic actions are the argmax of each categorical and the Gaussian mean."""
    torch.manual_seed(1)
    heads = FactoredHeads(LAYOUT, 5)
    features = torch.randn(3, 5)
    actions, _, _ = heads(features, deterministic=True)
    with torch.no_grad():
        discrete, multi, box = heads.heads
        torch.testing.assert_close(actions[:, 0], discrete.linear(features).argmax(-1).float())  # type: ignore[operator]
        multi_logits = multi.linear(features)  # type: ignore[operator]
        torch.testing.assert_close(actions[:, 1], multi_logits[:, :2].argmax(-1).float())
        torch.testing.assert_close(actions[:, 2], multi_logits[:, 2:].argmax(-1).float())
        torch.testing.assert_close(actions[:, 3:], box.linear(features))  # type: ignore[operator]


def test_single_heads_keep_their_native_action_dtypes() -> None:
    """A lone Discrete head gives int64 [N]; MultiDiscrete int64 [N, k]; a Gaussian [N, d]."""
    features = torch.randn(2, 4)
    assert CategoricalHead(4, (3,), multi=False)(features, None, None)[0].shape == (2,)
    multi = CategoricalHead(4, (3, 2), multi=True)(features, None, None)[0]
    assert (multi.shape, multi.dtype) == ((2, 2), torch.int64)
    gaussian = GaussianHead(4, 3)(features, None, None)
    assert gaussian[0].shape == (2, 3)
    torch.testing.assert_close(gaussian[2], torch.full((2,), 3 * (0.5 + 0.5 * torch.log(torch.tensor(2 * torch.pi)).item())))


def test_masks_are_sliced_per_head() -> None:
    """The concatenated mask reaches each discrete head at its offset."""
    heads = FactoredHeads(LAYOUT, 5)
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[:, 2] = True  # Discrete(3): action 2
    mask[:, 3] = True  # MultiDiscrete first component: action 0
    mask[:, 8] = True  # MultiDiscrete second component: action 3
    actions, log_prob, _ = heads(torch.randn(6, 5), mask)
    torch.testing.assert_close(actions[:, :3], torch.tensor([[2.0, 0.0, 3.0]]).expand(6, 3))
    assert torch.isfinite(log_prob).all()


def test_value_head_outputs_one_number() -> None:
    """The value head maps [N, H] to [N, 1] with a zero bias."""
    head = value_head(6)
    assert head(torch.randn(2, 6)).shape == (2, 1)
    assert not head.bias.detach().any()
