"""A plain nn.LSTM driven through a gymnasium vector env, with tether checking every step.

Reads top to bottom: make the envs, wrap the LSTM with ``track``, keep an ``EpisodeClock`` in step
with the envs, reset the rows whose episode ended, detach at each training-window boundary, and
read the ending episode's own state for the truncation bootstrap. Strict mode is on: a single
lifecycle mistake would raise. Run: ``python examples/lifecycle_demo.py [--steps N]``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import tether
from tether import EpisodeClock, track


@dataclass
class Args:
    """Every setting of the demo in one place."""

    num_envs: int = 4  # env rows B
    steps: int = 300  # env steps to run
    window: int = 32  # truncated-BPTT window: a training boundary every `window` steps
    hidden: int = 64  # LSTM hidden size H
    seed: int = 0


def parse() -> Args:
    """Read the command line into Args."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=Args.steps, help="env steps to run")
    parser.add_argument("--num-envs", type=int, default=Args.num_envs, help="parallel envs")
    return Args(steps=parser.parse_args().steps, num_envs=parser.parse_args().num_envs)


def main() -> None:
    """Run the demo loop and print a summary."""
    args = parse()
    tether.set_mode("strict")
    torch.manual_seed(args.seed)

    # SAME_STEP autoreset: the obs returned with done=True is already the new episode's first obs,
    # and the ending episode's last obs is in info["final_obs"]. (tether.rollout handles every mode.)
    # Episodes are capped at 60 steps so that truncations (and their bootstrap reads) happen.
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1", max_episode_steps=60) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_dim = envs.single_observation_space.shape[0]
    n_actions = int(envs.single_action_space.n)

    lstm = track(nn.LSTM(obs_dim, args.hidden))
    actor = nn.Linear(args.hidden, n_actions)
    critic = nn.Linear(args.hidden, 1)

    clock = EpisodeClock(args.num_envs)
    state = lstm.initial_state(args.num_envs, clock)  # [L=1, B, H] zeros, stamped with tick 0
    obs, _ = envs.reset(seed=args.seed)
    returns = np.zeros(args.num_envs)
    finished: list[float] = []
    bootstraps = 0

    for step in range(args.steps):
        x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)  # [B, obs] -> [T=1, B, obs]
        y, state = lstm(x, state)  # checked: right tick, every row in its current episode
        action = torch.distributions.Categorical(logits=actor(y[0])).sample()
        obs, reward, terminated, truncated, info = envs.step(action.numpy())
        returns += reward
        done = terminated | truncated
        clock.advance(done)  # tick += 1; done rows get fresh episode ids

        if truncated.any():
            # Truncation bootstrap V(final_obs) reads the ending episode's own state, before the
            # reset: the one sanctioned read of a just-ended row (resetting first biases GAE).
            final = torch.as_tensor(np.stack(info["final_obs"][truncated]), dtype=torch.float32)
            rows = np.flatnonzero(truncated)
            y_final, _ = lstm(final.unsqueeze(0), state[rows], bootstrap=True)
            value_final = critic(y_final[0]).detach()  # [rows, 1]: V(final_obs), for GAE
            bootstraps += int(value_final.shape[0])

        state = state.reset(done)  # zero the rows whose episode ended, adopt the new ids
        for row in np.flatnonzero(done):
            finished.append(float(returns[row]))
            returns[row] = 0.0

        if (step + 1) % args.window == 0:
            clock.end_window()  # a training boundary (an optimizer step would go here)
            state = state.detach()  # cut the graph, or the next step raises GraphLeakError

    envs.close()
    print(f"ran {args.steps} steps x {args.num_envs} envs in strict mode: no lifecycle error")
    print(f"episodes finished: {len(finished)}, mean return {np.mean(finished):.1f} (random policy)")
    print(f"truncation bootstraps read from pre-reset states: {bootstraps}")
    print(f"final state: {state}")


if __name__ == "__main__":
    main()
