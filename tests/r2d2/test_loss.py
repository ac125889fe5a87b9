"""Tests for tether.r2d2.loss: each function against a plain per-step loop and cases computed by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import ConfigError
from tether.r2d2.loss import (
    PRIORITY_FLOOR,
    double_q_values,
    n_step_targets,
    sequence_priorities,
    td_loss,
    value_rescale,
    value_rescale_inverse,
)

INF = float("inf")


# ---------------------------------------------------------------- the per-step references (plain loops)

def _h(x: float, eps: float) -> float:
    return math.copysign(math.sqrt(abs(x) + 1) - 1, x) + eps * x


def _h_inverse(y: float, eps: float) -> float:
    """Invert _h by bisection (no closed form), so the reference shares nothing with the code."""
    lo, hi = -1e12, 1e12
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _h(mid, eps) < y else (lo, mid)
    return (lo + hi) / 2


def reference_targets(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The contract's words, one step at a time."""
    rewards, term, trunc = case["rewards"].double(), case["terminated"], case["truncated"]
    valid, mask = case["valid"], case["mask"]
    boot, cut_boot = case["bootstrap"].double(), case["truncation_bootstrap"].double()
    gamma, n, rescale, eps = case["gamma"], case["n"], case["rescale"], case["eps"]
    T, B, K = boot.shape
    inverse = (lambda v: _h_inverse(v, eps)) if rescale else (lambda v: v)
    squash = (lambda v: _h(v, eps)) if rescale else (lambda v: v)
    targets, has = np.zeros((T, B, K)), np.zeros((T, B), dtype=bool)
    for b in range(B):
        in_mask = [t for t in range(T) if mask[t, b]]
        if not in_mask:
            continue
        last = in_mask[-1]
        for t in range(T):
            if not (valid[t, b] and mask[t, b]):
                continue
            end = next((s for s in range(t, min(t + n, last + 1)) if term[s, b] or trunc[s, b]), None)
            m = end - t + 1 if end is not None else min(n, last - t)
            if end is None and m == 0:
                continue
            ret = sum(gamma**k * float(rewards[t + k, b]) for k in range(m))
            has[t, b] = True
            for head in range(K):
                if end is None:
                    extra = gamma**m * inverse(float(boot[t + m, b, head]))
                elif term[end, b]:
                    extra = 0.0
                else:
                    extra = gamma**m * inverse(float(cut_boot[end, b, head]))
                targets[t, b, head] = squash(ret + extra)
    return targets, has


def random_case(seed: int, shape: tuple[int, int, int], n: int, gamma: float, rescale: bool,
                done_rate: float) -> dict[str, Any]:
    """Per column: a random valid length (padding after it full of junk), NEXT_STEP or SAME_STEP
    autoreset, dones of every kind, and sometimes an invalid first step (a done just before)."""
    T, B, K = shape
    rng = np.random.default_rng(seed)
    term, trunc = np.zeros((T, B), bool), np.zeros((T, B), bool)
    valid, mask = np.ones((T, B), bool), np.zeros((T, B), bool)
    rewards = rng.uniform(-10, 10, (T, B))
    for b in range(B):
        length = int(rng.integers(0, T + 1))
        mask[:length, b] = True
        next_step = bool(rng.random() < 0.7)
        valid[0, b] = not (next_step and rng.random() < 0.3)
        for t in range(length):
            if not valid[t, b]:
                rewards[t, b] = 0.0
            elif rng.random() < done_rate:
                kind = rng.integers(3)
                term[t, b], trunc[t, b] = kind in (0, 2), kind in (1, 2)
                if next_step and t + 1 < T:
                    valid[t + 1, b] = False
        # padding is junk the targets must ignore
        pad = slice(length, T)
        term[pad, b], trunc[pad, b] = rng.random(T - length) < 0.5, rng.random(T - length) < 0.5
        valid[pad, b] = rng.random(T - length) < 0.5
    scale = 5.0 if rescale else 50.0
    return {"rewards": torch.tensor(rewards, dtype=torch.float32), "terminated": torch.from_numpy(term),
            "truncated": torch.from_numpy(trunc), "valid": torch.from_numpy(valid), "mask": torch.from_numpy(mask),
            "bootstrap": torch.tensor(rng.uniform(-scale, scale, (T, B, K)), dtype=torch.float32),
            "truncation_bootstrap": torch.tensor(rng.uniform(-scale, scale, (T, B, K)), dtype=torch.float32),
            "gamma": gamma, "n": n, "rescale": rescale, "eps": 1e-3}


# ---------------------------------------------------------------- value rescaling

wide = st.floats(-1e7, 1e7, allow_nan=False, allow_subnormal=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(wide, min_size=1, max_size=16), st.sampled_from([1e-3, 0.0, 1e-2]))
def test_value_rescale_round_trips_to_float32_precision(values: list[float], eps: float) -> None:
    """h^-1(h(x)) == x and h(h^-1(x)) == x to float32 precision, tiny and huge values alike."""
    x = torch.tensor(values, dtype=torch.float32)
    torch.testing.assert_close(value_rescale_inverse(value_rescale(x, eps), eps), x, rtol=2e-6, atol=1e-30)
    y = x if eps > 0 else x.clamp(-1e5, 1e5)  # eps = 0: h^-1 grows as y^2, keep it in float32's range
    torch.testing.assert_close(value_rescale(value_rescale_inverse(y, eps), eps), y, rtol=2e-6, atol=1e-30)


def test_value_rescale_is_the_papers_formula() -> None:
    """h(x) = sign(x)(sqrt(|x|+1) - 1) + eps x, and the inverse matches a bisection, in float64."""
    x = torch.tensor([-1e4, -3.0, -1e-3, 0.0, 1e-8, 0.5, 3.0, 99.0, 1e6], dtype=torch.float64)
    expected = torch.tensor([_h(float(v), 1e-3) for v in x], dtype=torch.float64)
    torch.testing.assert_close(value_rescale(x), expected)
    torch.testing.assert_close(value_rescale_inverse(expected), x)
    assert value_rescale(x).dtype == torch.float64
    torch.testing.assert_close(value_rescale_inverse(torch.tensor([2.0, -3.0]), eps=0.0), torch.tensor([8.0, -15.0]))


# ---------------------------------------------------------------- double Q

@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 4))
def test_double_q_reads_the_target_at_the_online_argmax(seed: int, heads: int, actions: int) -> None:
    """First-index argmax of the online Q over the non -inf slots, read from the target Q."""
    rng = np.random.default_rng(seed)
    T, B, K, N = 3, 2, heads, actions
    online = rng.integers(-2, 3, (T, B, K, N)).astype(np.float32)  # small ints: many ties
    sizes = rng.integers(1, N + 1, K)  # head k has sizes[k] actions, the rest of its slots are -inf
    for k in range(K):
        online[..., k, sizes[k]:] = -INF
    online[rng.random((T, B, K, N)) < 0.2] = -INF  # masked actions
    online[..., 0][np.isinf(online).all(-1)] = 0.0  # each head keeps at least one action
    target = rng.normal(size=(T, B, K, N)).astype(np.float32)
    target[np.isinf(online)] = -INF
    expected = np.zeros((T, B, K), np.float32)
    for index in np.ndindex(T, B, K):
        best = None
        for a in range(N):
            if online[index][a] > -INF and (best is None or online[index][a] > online[index][best]):
                best = a
        assert best is not None
        expected[index] = target[index][best]
    out = double_q_values(torch.from_numpy(online), torch.from_numpy(target))
    torch.testing.assert_close(out, torch.from_numpy(expected))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- n-step targets

@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31), time=st.integers(1, 12), batch=st.integers(1, 4), heads=st.sampled_from([1, 2]),
       n=st.sampled_from([1, 3, 5]), gamma=st.floats(0.0, 1.0), rescale=st.booleans(),
       done_rate=st.sampled_from([0.0, 0.2, 0.6]))
def test_n_step_targets_match_the_loop(seed: int, time: int, batch: int, heads: int, n: int, gamma: float,
                                       rescale: bool, done_rate: float) -> None:
    """Ends inside windows, truncation, NEXT_STEP invalid steps, padding, K heads: as the plain loop."""
    case = random_case(seed, (time, batch, heads), n, gamma, rescale, done_rate)
    expected, has = reference_targets(case)
    out = n_step_targets(**case)
    np.testing.assert_array_equal(out.target_mask.numpy(), has)
    torch.testing.assert_close(out.targets, torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-4)
    assert not (out.target_mask & ~(case["valid"] & case["mask"])).any()


def test_n_step_targets_at_the_papers_shape_and_in_float64() -> None:
    """T=80 with n=5 and gamma .997, as R2D2 trains, matches the loop; float64 stays float64."""
    case = random_case(7, (80, 8, 2), 5, 0.997, False, 0.05)
    expected, has = reference_targets(case)
    out = n_step_targets(**case)
    np.testing.assert_array_equal(out.target_mask.numpy(), has)
    torch.testing.assert_close(out.targets, torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-4)
    wide_case = case | {key: case[key].double() for key in ("rewards", "bootstrap", "truncation_bootstrap")}
    out64 = n_step_targets(**wide_case)
    assert out64.targets.dtype == torch.float64
    torch.testing.assert_close(out64.targets, torch.from_numpy(expected))

def _flags(length: int, *steps: int) -> torch.Tensor:
    return torch.tensor([[t in steps] for t in range(length)])


def _hand_case(length: int, **overrides: Any) -> dict[str, Any]:
    T = length
    case = {"rewards": torch.arange(1.0, T + 1).unsqueeze(1), "terminated": _flags(T), "truncated": _flags(T),
            "valid": ~_flags(T), "mask": ~_flags(T), "bootstrap": torch.full((T, 1, 1), 100.0),
            "truncation_bootstrap": torch.full((T, 1, 1), 1000.0), "gamma": 0.5, "n": 3, "rescale": False}
    return case | overrides


def test_termination_inside_a_window_stops_it_without_bootstrap() -> None:
    """Rewards 1..5, terminated at step 2 (terminated wins over a truncation at the same step)."""
    out = n_step_targets(**_hand_case(5, terminated=_flags(5, 2), truncated=_flags(5, 2), valid=~_flags(5, 3)))
    # t=0: 1 + .5*2 + .25*3; t=1: 2 + .5*3; t=2: 3; t=3 invalid; t=4 the last step: none
    torch.testing.assert_close(out.targets[:, 0, 0], torch.tensor([2.75, 3.5, 3.0, 0.0, 0.0]))
    assert out.target_mask[:, 0].tolist() == [True, True, True, False, False]


def test_truncation_bootstraps_from_the_final_obs_and_windows_shorten_at_the_end() -> None:
    """Truncated at step 1 (SAME_STEP: step 2 starts the next episode); padding after step 4."""
    out = n_step_targets(**_hand_case(6, truncated=_flags(6, 1), mask=~_flags(6, 5),
                                       rewards=torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [99.0]])))
    # t=0: 1 + .5*2 + .25*1000; t=1: 2 + .5*1000; t=2: 3 + .5*4 + .25*100 (m = last - t = 2);
    # t=3: 4 + .5*100 (m=1); t=4 is the last step: none; t=5 padding: none
    torch.testing.assert_close(out.targets[:, 0, 0], torch.tensor([252.0, 502.0, 30.0, 54.0, 0.0, 0.0]))
    assert out.target_mask[:, 0].tolist() == [True, True, True, True, False, False]


def test_a_done_last_step_has_a_target_and_n_1_is_one_step_q_learning() -> None:
    """n=1: r + gamma q(t+1); the last step has a target when it is a done step."""
    out = n_step_targets(**_hand_case(3, n=1, truncated=_flags(3, 2), gamma=1.0))
    torch.testing.assert_close(out.targets[:, 0, 0], torch.tensor([101.0, 102.0, 1003.0]))
    assert out.target_mask[:, 0].all()


def test_rescaled_targets_squash_the_sum_and_unsquash_the_bootstrap() -> None:
    """h(r + gamma h^-1(q)) with the bootstrap given in rescaled units."""
    q = value_rescale(torch.tensor(8.0))
    out = n_step_targets(**_hand_case(2, n=1, gamma=0.5, bootstrap=q.expand(2, 1, 1).clone(), rescale=True))
    torch.testing.assert_close(out.targets[0, 0, 0], value_rescale(torch.tensor(1.0 + 4.0)))


def test_an_invalid_step_without_a_done_ends_the_run_like_the_sequence_end() -> None:
    """Inconsistent flags still give finite targets: the window bootstraps at the step before the gap."""
    out = n_step_targets(**_hand_case(5, valid=~_flags(5, 2)))
    # t=0: 1 + .5*100 (run 0..1 ends at 1); t=1: the run's last step, none; t=3: 4 + .5*100
    torch.testing.assert_close(out.targets[:, 0, 0], torch.tensor([51.0, 0.0, 0.0, 54.0, 0.0]))
    assert out.target_mask[:, 0].tolist() == [True, False, False, True, False]


def test_gamma_zero_and_empty_sequences() -> None:
    """gamma 0: the reward alone (the last step excepted); a row with no step in the mask: no target."""
    case = _hand_case(3, gamma=0.0, mask=torch.tensor([[True, False]] * 3), rewards=torch.ones(3, 2),
                      terminated=torch.zeros(3, 2, dtype=torch.bool), truncated=torch.zeros(3, 2, dtype=torch.bool),
                      valid=torch.ones(3, 2, dtype=torch.bool), bootstrap=torch.ones(3, 2, 2),
                      truncation_bootstrap=torch.ones(3, 2, 2))
    out = n_step_targets(**case)
    torch.testing.assert_close(out.targets[:, 0], torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
    assert out.target_mask.tolist() == [[True, False], [True, False], [False, False]]


# ---------------------------------------------------------------- TD loss

@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.integers(1, 4), st.sampled_from([1, 2]))
def test_td_loss_matches_the_loop(seed: int, time: int, batch: int, heads: int) -> None:
    """Weighted mean of 0.5 delta^2 over counted steps and heads; td_abs, q_mean, count; the gradient."""
    T, B, K = time, batch, heads
    rng = np.random.default_rng(seed)
    q = torch.tensor(rng.normal(size=(T, B, K)), requires_grad=True)
    targets = torch.tensor(rng.normal(size=(T, B, K)))
    target_mask, loss_mask = torch.from_numpy(rng.random((T, B)) < 0.7), torch.from_numpy(rng.random((T, B)) < 0.7)
    weights = torch.tensor(rng.uniform(0.1, 1.0, B))
    total, q_sum, count = 0.0, 0.0, 0
    td_abs, grad = np.zeros((T, B)), np.zeros((T, B, K))
    values = q.detach()
    for t, b in np.ndindex(T, B):
        if target_mask[t, b] and loss_mask[t, b]:
            count += 1
            deltas = [float(targets[t, b, k] - values[t, b, k]) for k in range(K)]
            total += sum(float(weights[b]) * 0.5 * d * d for d in deltas)
            q_sum += float(values[t, b].sum())
            td_abs[t, b] = sum(abs(d) for d in deltas) / K
            grad[t, b] = [-float(weights[b]) * d for d in deltas]
    denominator = max(count, 1) * K
    out = td_loss(q_taken=q, targets=targets, target_mask=target_mask, loss_mask=loss_mask, weights=weights)
    torch.testing.assert_close(out.loss, torch.tensor(total / denominator, dtype=torch.float64))
    torch.testing.assert_close(out.td_abs, torch.from_numpy(td_abs))
    torch.testing.assert_close(out.q_mean, torch.tensor(q_sum / denominator, dtype=torch.float64))
    assert out.count.item() == count
    assert out.count.dtype == torch.int64
    out.loss.backward()
    assert q.grad is not None
    torch.testing.assert_close(q.grad, torch.from_numpy(grad / denominator))


def test_td_loss_sends_gradients_to_q_taken_only() -> None:
    """Targets and weights are detached; td_abs, q_mean, count carry no graph."""
    q, targets, weights = (torch.ones(2, 1, 1, requires_grad=True), torch.zeros(2, 1, 1, requires_grad=True),
                           torch.ones(1, requires_grad=True))
    everything = torch.ones(2, 1, dtype=torch.bool)
    out = td_loss(q_taken=q, targets=targets, target_mask=everything, loss_mask=everything, weights=weights)
    assert not any(part.requires_grad for part in out[1:])
    out.loss.backward()
    assert targets.grad is None
    assert weights.grad is None
    assert q.grad is not None
    torch.testing.assert_close(q.grad, torch.full((2, 1, 1), 0.5))


def test_td_loss_with_nothing_counted_is_zero_not_nan() -> None:
    """No counted step: loss 0 with a zero gradient, even with non-finite targets outside the count."""
    q = torch.ones(3, 2, 1, requires_grad=True)
    targets = torch.tensor([INF, -INF, float("nan")]).view(3, 1, 1).expand(3, 2, 1)
    nothing = torch.zeros(3, 2, dtype=torch.bool)
    out = td_loss(q_taken=q, targets=targets, target_mask=~nothing, loss_mask=nothing, weights=torch.ones(2))
    assert out.loss.item() == 0.0
    assert out.q_mean.item() == 0.0
    assert out.count.item() == 0
    torch.testing.assert_close(out.td_abs, torch.zeros(3, 2))
    out.loss.backward()
    assert q.grad is not None
    torch.testing.assert_close(q.grad, torch.zeros(3, 2, 1))


# ---------------------------------------------------------------- priorities

@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.integers(1, 4), st.floats(0.0, 1.0))
def test_sequence_priorities_match_the_loop(seed: int, time: int, batch: int, eta: float) -> None:
    """eta max + (1 - eta) mean over the counted steps; the floor for a sequence with none."""
    T, B = time, batch
    rng = np.random.default_rng(seed)
    td_abs = torch.tensor(rng.uniform(0, 3, (T, B)), dtype=torch.float32)
    loss_mask = torch.from_numpy(rng.random((T, B)) < 0.5)
    expected = []
    for b in range(B):
        counted = [float(td_abs[t, b]) for t in range(T) if loss_mask[t, b]]
        priority = eta * max(counted) + (1 - eta) * sum(counted) / len(counted) if counted else 0.0
        expected.append(max(priority, PRIORITY_FLOOR))
    out = sequence_priorities(td_abs, loss_mask, eta)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float32))


def test_priorities_keep_a_floor() -> None:
    """All-zero errors or no counted step still leave a sequence sampleable."""
    out = sequence_priorities(torch.zeros(4, 2), torch.tensor([[True, False]] * 4))
    torch.testing.assert_close(out, torch.full((2,), PRIORITY_FLOOR))
    assert PRIORITY_FLOOR > 0


# ---------------------------------------------------------------- bad input

def _td_args(**overrides: Any) -> dict[str, Any]:
    ok = torch.ones(4, 2, dtype=torch.bool)
    return {"q_taken": torch.zeros(4, 2, 1), "targets": torch.zeros(4, 2, 1), "target_mask": ok, "loss_mask": ok,
            "weights": torch.ones(2)} | overrides


@pytest.mark.parametrize(("overrides", "error", "match"), [
    ({"n": 0}, ConfigError, r"n_step_targets: expected n to be an int >= 1, got 0; n=1 gives one-step targets"),
    ({"n": 2.0}, ConfigError, r"expected n to be an int >= 1, got 2.0"),
    ({"gamma": 1.5}, ConfigError, r"n_step_targets: expected gamma in \[0, 1\], got 1.5"),
    ({"gamma": -0.1}, ConfigError, r"expected gamma in \[0, 1\], got -0.1"),
    ({"gamma": float("nan")}, ConfigError, r"expected gamma in \[0, 1\], got nan"),
    ({"eps": -1.0, "rescale": True}, ConfigError, r"value_rescale_inverse: expected eps >= 0, got -1.0"),
    ({"terminated": _flags(4)}, ValueError,
     r"expected terminated of shape \[T, B\] = \(5, 1\) like rewards, got \(4, 1\)"),
    ({"valid": torch.ones(5, 1)}, ValueError, r"expected valid to be a bool tensor, got torch.float32; pass x.bool\(\)"),
    ({"bootstrap": torch.zeros(5, 1)}, ValueError,
     r"expected bootstrap of shape \[T, B, K\] with \[T, B\] = \(5, 1\) like rewards, got \(5, 1\)"),
    ({"truncation_bootstrap": torch.zeros(5, 1, 2)}, ValueError,
     r"expected bootstrap and truncation_bootstrap of one shape, got \(5, 1, 1\) and \(5, 1, 2\)"),
    ({"rewards": torch.zeros(5)}, ValueError, r"expected rewards of shape \[T, B\], got \(5,\)"),
])
def test_n_step_targets_bad_input(overrides: dict[str, Any], error: type[Exception], match: str) -> None:
    """One line naming what was expected and what came."""
    with pytest.raises(error, match=match) as info:
        n_step_targets(**_hand_case(5, **overrides))
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: td_loss(**_td_args(targets=torch.zeros(4, 2, 2))),
     r"td_loss: expected q_taken and targets of one shape \[T, B, K\], got \(4, 2, 1\) and \(4, 2, 2\)"),
    (lambda: td_loss(**_td_args(loss_mask=torch.ones(4, 2))),
     r"expected loss_mask a bool tensor of shape \[T, B\] = \(4, 2\) like q_taken, got torch.float32 \(4, 2\)"),
    (lambda: td_loss(**_td_args(target_mask=torch.ones(4, 3, dtype=torch.bool))),
     r"expected target_mask a bool tensor of shape \[T, B\] = \(4, 2\) like q_taken, got torch.bool \(4, 3\)"),
    (lambda: td_loss(**_td_args(weights=torch.ones(4, 2))),
     r"expected weights of shape \[B\] = \(2,\) like q_taken, got \(4, 2\)"),
    (lambda: double_q_values(torch.zeros(2, 1, 1, 3), torch.zeros(2, 1, 3)),
     r"double_q_values: expected q_online and q_target of one shape \[T, B, K, N\], got \(2, 1, 1, 3\) and \(2, 1, 3\)"),
    (lambda: sequence_priorities(torch.zeros(4, 2), torch.ones(4, 3, dtype=torch.bool)),
     r"sequence_priorities: expected td_abs \[T, B\] and a bool loss_mask of one shape, got \(4, 2\) and torch.bool \(4, 3\)"),
    (lambda: sequence_priorities(torch.zeros(4, 2), torch.ones(4, 2, dtype=torch.bool), eta=1.1),
     r"sequence_priorities: expected eta in \[0, 1\], got 1.1; the paper uses eta=0.9"),
    (lambda: value_rescale(torch.zeros(2), eps=-0.5), r"value_rescale: expected eps >= 0, got -0.5"),
])
def test_other_bad_input(call: Any, match: str) -> None:
    """Shapes that do not match name both; settings out of range name the range."""
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
