"""The CUDA path in one run: sync-free steps, bf16 autocast, throughput, unroll vs fused.

A few minutes on a CUDA machine (``--device cuda``); ``--device cpu --quick`` runs
the same code on small sizes as a smoke test (no sync check: that needs CUDA). It measures:

1. **No host-device sync from tether per step.** A batched torch CartPole-NoVel (below: every env
   row a tensor row on the device, reset in place) feeds a ``FactoredRecurrentActorCritic`` in
   strict mode. ``torch.cuda.set_sync_debug_mode("error")`` is on around every tether call of
   1 000 rollout steps (``act``, ``clock.advance``, ``state.reset``). The env's done flags come
   to the host once a step outside those calls: the clock counts on the host by design, so that
   copy is the env's, not tether's. A PPO update (``evaluate_actions`` over the rollout with its
   episode starts, the loss, backward, the gradient clip and Adam) runs under "warn", and its
   syncs per minibatch are counted and named (``evaluate_actions`` checks that discrete actions
   lie in their range: one sync per call, by design).
2. **bf16 autocast** of ``act`` and ``evaluate_actions``: finite outputs, and their distance from
   float32.
3. **Throughput** of collection (``act`` + env step) and of the update at 256 and 2 048 envs.
4. **``unroll`` vs the fused no-reset call** at (T, B, in, H) = (128, 1024, 64, 256), 2 % starts,
   forward + backward, medians of synchronised rounds.

Writes ``benchmarks/results/cuda_check.json`` (``--out``), with the GPU model and provenance.
Run: ``python benchmarks/cuda_check.py [--device cuda] [--quick] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import gymnasium as gym

from tether import EpisodeClock, RecurrentState, mode, track
from tether.bench import provenance
from tether.nets import FactoredRecurrentActorCritic
from tether.sequence import unroll

RESULTS = Path(__file__).resolve().parent / "results"


class BatchedCartPoleNoVel:
    """CartPole-v1's dynamics for ``n`` envs as tensors on one device; the velocities read as 0.

    Same constants and Euler step as gymnasium's CartPole; an episode ends when the cart leaves
    ±2.4 or the pole passes ±12° (terminated) or after 500 steps (truncated). Ended rows reset in
    place in the same step (gymnasium's ``SAME_STEP`` autoreset): the returned observation of such
    a row is the new episode's first. No host round trip anywhere.
    """

    GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    X_LIMIT, THETA_LIMIT, MAX_STEPS = 2.4, 12 * 2 * math.pi / 360, 500

    def __init__(self, n: int, device: torch.device, seed: int = 0) -> None:
        self.n, self.device = n, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.state = self._fresh()
        self.steps = torch.zeros(n, dtype=torch.int64, device=device)

    def _fresh(self) -> torch.Tensor:
        return torch.rand(self.n, 4, generator=self.gen, device=self.device) * 0.1 - 0.05

    def obs(self) -> torch.Tensor:
        """``[n, 4]``: cart position, 0, pole angle, 0."""
        return self.state * torch.tensor([1.0, 0.0, 1.0, 0.0], device=self.device)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Push left (0) or right (1): ``(obs, reward, terminated, truncated)``, all ``[n]`` on the device."""
        x, x_dot, theta, theta_dot = self.state.unbind(1)
        force = (action.to(self.state.dtype) * 2.0 - 1.0) * self.FORCE
        cos, sin = torch.cos(theta), torch.sin(theta)
        total = self.MASS_CART + self.MASS_POLE
        pole_ml = self.MASS_POLE * self.HALF_LENGTH
        temp = (force + pole_ml * theta_dot**2 * sin) / total
        theta_acc = (self.GRAVITY * sin - cos * temp) / (
            self.HALF_LENGTH * (4.0 / 3.0 - self.MASS_POLE * cos**2 / total))
        x_acc = temp - pole_ml * theta_acc * cos / total
        moved = torch.stack([x + self.TAU * x_dot, x_dot + self.TAU * x_acc,
                             theta + self.TAU * theta_dot, theta_dot + self.TAU * theta_acc], dim=1)
        self.steps += 1
        terminated = (moved[:, 0].abs() > self.X_LIMIT) | (moved[:, 2].abs() > self.THETA_LIMIT)
        truncated = (self.steps >= self.MAX_STEPS) & ~terminated
        done = terminated | truncated
        self.state = torch.where(done.unsqueeze(1), self._fresh(), moved)
        self.steps = torch.where(done, torch.zeros_like(self.steps), self.steps)
        return self.obs(), torch.ones(self.n, device=self.device), terminated, truncated


@contextlib.contextmanager
def no_sync(device: torch.device) -> Iterator[None]:
    """Raise on any host-device synchronisation inside (CUDA only; a no-op elsewhere)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@contextlib.contextmanager
def count_syncs(device: torch.device, found: list[str]) -> Iterator[None]:
    """Record every host-device synchronisation inside as a warning message (CUDA only)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        found += [str(w.message).splitlines()[0] for w in caught]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_policy(device: torch.device) -> FactoredRecurrentActorCritic:
    """The CartPole-NoVel policy of the cartpole preset: LSTM 64, a separate critic."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    return FactoredRecurrentActorCritic(space, gym.spaces.Discrete(2), shared_core=False).to(device)


def rollout(policy: FactoredRecurrentActorCritic, env: BatchedCartPoleNoVel, clock: EpisodeClock,
            state: RecurrentState, steps: int, guard: bool) -> dict[str, Any]:
    """``steps`` steps of act + env; tether's calls under :func:`no_sync` when ``guard``."""
    device = env.device
    T, n = steps, env.n
    obs = env.obs()
    buf_obs = torch.empty(T, n, 4, device=device)
    buf_act = torch.empty(T, n, dtype=torch.int64, device=device)
    buf_logp, buf_val, buf_rew = (torch.empty(T, n, device=device) for _ in range(3))
    starts = np.zeros((T, n), dtype=bool)
    snapshot = state.snapshot()
    def guarded() -> contextlib.AbstractContextManager[None]:
        return no_sync(device) if guard else contextlib.nullcontext()

    for t in range(T):
        with guarded():
            res = policy.act(obs, state)
        buf_obs[t], buf_act[t], buf_logp[t], buf_val[t] = obs, res.actions, res.log_prob, res.value
        obs, reward, terminated, truncated = env.step(res.actions)
        buf_rew[t] = reward
        done = (terminated | truncated).cpu().numpy()  # the env's flags to the host: the env's copy
        with guarded():
            clock.advance(done)
            state = res.state.reset(done)
        if t + 1 < T:
            starts[t + 1] = done
    return {"obs": buf_obs, "actions": buf_act, "log_prob": buf_logp, "value": buf_val, "reward": buf_rew,
            "starts": starts, "snapshot": snapshot, "state": state, "next_obs": obs}


def update(policy: FactoredRecurrentActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, Any],
           clock: EpisodeClock, epochs: int, minibatches: int, syncs: list[str] | None = None) -> float:
    """PPO epochs over minibatches of env rows, replayed from the rollout's snapshot; with
    ``syncs``, every host-device sync inside a minibatch step is recorded there."""
    device = batch["obs"].device
    n = batch["actions"].shape[1]
    # One-step advantages on the device (the sync check is about tether, not GAE).
    advantages = batch["reward"] - batch["value"]
    clock.end_window()
    rows = np.arange(n)
    rng = np.random.default_rng(0)
    per = max(1, n // minibatches)
    loss = torch.zeros((), device=device)
    for _ in range(epochs):
        rng.shuffle(rows)
        for start in range(0, n, per):
            mb = rows[start:start + per]
            index = torch.from_numpy(mb).to(device, non_blocking=True)
            with count_syncs(device, syncs) if syncs is not None else contextlib.nullcontext():
                out = policy.evaluate_actions(batch["obs"][:, index], batch["actions"][:, index],
                                              batch["starts"][:, mb], batch["snapshot"].select_rows(mb))
                adv = advantages[:, index]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                ratio = (out.log_prob - batch["log_prob"][:, index]).exp()
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
                v_loss = 0.5 * ((out.value - (batch["value"][:, index] + advantages[:, index])) ** 2).mean()
                loss = pg + 0.5 * v_loss - 0.0 * out.entropy.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), 1.0, foreach=True)
                optimizer.step()
    _sync(device)
    return float(loss.detach().cpu())


def sync_check(device: torch.device, envs: int, steps: int) -> dict[str, Any]:
    """1: tether's calls over ``steps`` rollout steps and one PPO update, with syncs an error."""
    policy = make_policy(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, foreach=True)
    env = BatchedCartPoleNoVel(envs, device)
    clock = EpisodeClock(envs)
    with mode("strict"):
        state = policy.initial_state(envs, clock)
        rollout(policy, env, clock, state, 4, guard=False)  # warm-up: lazy init, allocator
        state = policy.initial_state(envs, clock)
        batch = rollout(policy, env, clock, state, steps, guard=True)
        syncs: list[str] = []
        loss = update(policy, optimizer, batch, clock, epochs=1, minibatches=4, syncs=syncs)
    # The rollout ran under "error": reaching here means no sync in any tether call of a step.
    return {"envs": envs, "steps": steps, "guarded": device.type == "cuda", "passed": True,
            "final_loss": loss, "episodes_ended": int(batch["starts"].sum()),
            "update_minibatches": 4, "update_syncs": len(syncs), "update_sync_kinds": sorted(set(syncs))}


def bf16_check(device: torch.device, envs: int, steps: int) -> dict[str, Any]:
    """2: ``act`` and ``evaluate_actions`` under bf16 autocast against float32."""
    policy = make_policy(device)
    env = BatchedCartPoleNoVel(envs, device)
    clock = EpisodeClock(envs)
    with mode("strict"), torch.no_grad():
        batch = rollout(policy, env, clock, policy.initial_state(envs, clock), steps, guard=False)
        state = batch["snapshot"]
        ref = policy.evaluate_actions(batch["obs"], batch["actions"], batch["starts"], state)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = policy.evaluate_actions(batch["obs"], batch["actions"], batch["starts"], state)
            act = policy.act(batch["obs"][0], state)
    outputs = (low.log_prob, low.entropy, low.value, act.log_prob, act.value)
    finite = all(bool(torch.isfinite(t.float()).all()) for t in outputs)
    return {"finite": finite, "act_log_prob_dtype": str(act.log_prob.dtype),
            "max_abs_log_prob_diff": float((low.log_prob.float() - ref.log_prob).abs().max()),
            "max_abs_value_diff": float((low.value.float() - ref.value).abs().max()),
            "value_scale": float(ref.value.abs().max())}


def throughput(device: torch.device, envs: int, steps: int, rounds: int) -> dict[str, Any]:
    """3: env steps/s of collection and of the update (4 epochs of 4 minibatches) at ``envs``."""
    policy = make_policy(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, foreach=True)
    env = BatchedCartPoleNoVel(envs, device)
    clock = EpisodeClock(envs)
    collect_s, update_s = [], []
    with mode("strict"):
        state = policy.initial_state(envs, clock)
        for r in range(rounds + 1):
            _sync(device)
            start = time.perf_counter()
            batch = rollout(policy, env, clock, state, steps, guard=False)
            _sync(device)
            middle = time.perf_counter()
            update(policy, optimizer, batch, clock, epochs=4, minibatches=4)
            end = time.perf_counter()
            state = batch["state"]
            if r:  # the first round warms up
                collect_s.append(middle - start)
                update_s.append(end - middle)
    c, u = statistics.median(collect_s), statistics.median(update_s)
    total = envs * steps
    return {"envs": envs, "steps_per_rollout": steps, "rounds": rounds, "collect_s": c, "update_s": u,
            "collect_steps_per_s": total / c, "update_steps_per_s": total / u,
            "overall_steps_per_s": total / (c + u)}


def unroll_vs_fused(device: torch.device, shape: tuple[int, int, int, int], rounds: int) -> dict[str, Any]:
    """4: forward + backward of ``unroll`` with 2 % starts against one fused call without resets."""
    T, B, n_in, H = shape
    torch.manual_seed(0)
    lstm = nn.LSTM(n_in, H).to(device)
    core = track(lstm)
    x = torch.randn(T, B, n_in, device=device, requires_grad=True)
    h0, c0 = (torch.randn(1, B, H, device=device, requires_grad=True) for _ in range(2))
    starts = np.random.default_rng(0).random((T, B)) < 0.02
    wrt = [x, h0, c0, *lstm.parameters()]

    def fused() -> None:
        y, (h, c) = lstm(x, (h0, c0))
        torch.autograd.grad(y.sum() + h.sum() + c.sum(), wrt)

    def tethered() -> None:
        y, final = unroll(core, x, starts, RecurrentState.from_tensors((h0, c0)))
        h, c = final.tensors
        torch.autograd.grad(y.sum() + h.sum() + c.sum(), wrt)

    times: dict[str, list[float]] = {"fused": [], "unroll": []}
    variants: dict[str, Callable[[], None]] = {"fused": fused, "unroll": tethered}
    for r in range(rounds + 2):
        for name, fn in variants.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if r >= 2:
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": list(shape), "start_rate": 0.02, "rounds": rounds, "seconds": med,
            "unroll_over_fused": med["unroll"] / med["fused"]}


def main() -> None:
    """Run the four checks, print them, write the results file."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check), or cpu for a smoke run")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: benchmarks/results/cuda_check.json; none with --quick)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("cuda_check: expected a CUDA device, found none; run with --device cpu --quick"
                         " for a smoke run")
    quick = args.quick
    results: dict[str, Any] = {"benchmark": "cuda_check", "device": str(device), "quick": quick}
    steps = 32 if quick else 1_000
    results["sync"] = sync_check(device, 16 if quick else 256, steps)
    print("sync:", results["sync"], flush=True)
    results["bf16"] = bf16_check(device, 8 if quick else 256, 16 if quick else 128)
    print("bf16:", results["bf16"], flush=True)
    results["throughput"] = [throughput(device, n, 16 if quick else 128, 1 if quick else 3)
                             for n in ((16, 32) if quick else (256, 2048))]
    print("throughput:", results["throughput"], flush=True)
    shape = (16, 32, 16, 32) if quick else (128, 1024, 64, 256)
    results["unroll"] = unroll_vs_fused(device, shape, 2 if quick else 10)
    print("unroll:", results["unroll"], flush=True)
    results["provenance"] = provenance.collect()
    out = args.out if args.out is not None else (None if quick else RESULTS / "cuda_check.json")
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
