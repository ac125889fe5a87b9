"""Deterministic envs and small protocol-following policies for the rollout tests.

``CountingEnv``: episodes of a fixed length; the observation is ``[episode, step]`` and the reward
of the step that reaches step ``s`` of episode ``e`` is ``10 * e + s``, so every stored number can
be worked out by hand.

``CounterPolicy``: its core counts the steps it was fed since the last reset (``h' = h + 1``) and
its value is ``100 * h' + 10 * episode + step`` of the observation it reads. With correct resets
``h`` equals the observation's step, so a value ``V(e, s) = 100 * (s + 1) + 10 * e + s``; a
truncation bootstrap from the pre-reset state of an episode of length ``K`` reads
``100 * (K + 1) + 10 * e + K`` (a reset-first read would give ``100 + 10 * e + K``).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from torch import nn

from tether import EpisodeClock, RecurrentState, StateSpec, track
from tether.policy import ActResult, EvalResult
from tether.sequence import unroll


class CountingEnv(gym.Env[np.ndarray, np.int64]):
    """Fixed-length episodes whose observations and rewards encode (episode, step)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(self, length: int = 3, ending: str = "truncate", n_actions: int = 2,
                 masks: bool = False, nan_at: tuple[int, int] | None = None) -> None:
        self.length = length
        self.ending = ending
        self.masks = masks
        self.nan_at = nan_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.episode = -1
        self.t = 0
        self.actions: list[int] = []

    def _obs(self) -> np.ndarray:
        obs = np.array([self.episode, self.t], dtype=np.float32)
        if self.nan_at == (self.episode, self.t):
            obs[1] = np.nan
        return obs

    def _info(self) -> dict[str, Any]:
        if not self.masks:
            return {}
        # Only action (step % 2) is legal: a masked policy must pick it.
        mask = np.zeros(self.action_space.n, dtype=bool)
        mask[self.t % 2] = True
        return {"action_mask": mask}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.actions.append(int(action))
        self.t += 1
        reward = float(10 * self.episode + self.t)
        ended = self.t == self.length
        terminated = ended and self.ending == "terminate"
        truncated = ended and not terminated
        return self._obs(), reward, terminated, truncated, self._info()


def make_vec(kind: str, mode: AutoresetMode, specs: list[dict[str, Any]]) -> gym.vector.VectorEnv:
    """A sync or async vector env of ``CountingEnv(**spec)`` per row."""
    fns = [functools.partial(CountingEnv, **spec) for spec in specs]
    if kind == "sync":
        return SyncVectorEnv(fns, autoreset_mode=mode)
    return AsyncVectorEnv(fns, autoreset_mode=mode)


#: env 0: episodes of 2 steps ending by truncation; env 1: 3 steps ending by termination.
TWO_ENVS = [{"length": 2, "ending": "truncate"}, {"length": 3, "ending": "terminate"}]


def counter_value(episode: float, step: float, h_after: float) -> float:
    """What CounterPolicy's value reads for observation (episode, step) with ``h' = h_after``."""
    return 100.0 * h_after + 10.0 * episode + step


class _Counter(nn.Module):
    """``(x [T, B, in], h [1, B, 1]) -> (y [T, B, 1], h + T)``: counts the steps fed since a reset."""

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = torch.arange(1, x.shape[0] + 1, dtype=h.dtype).view(-1, 1, 1)
        y = h + steps
        return y, y[-1:].clone()


class CounterPolicy(nn.Module):
    """A deterministic policy (always action 0) whose value exposes the hidden state it used."""

    def __init__(self) -> None:
        super().__init__()
        self.core = track(_Counter(), spec=StateSpec(num_layers=1, hidden_size=1, has_c=False))

    def initial_state(self, batch_size: int, clock: EpisodeClock | None = None) -> RecurrentState:
        return self.core.initial_state(batch_size, clock)

    def _value(self, obs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 100.0 * y + 10.0 * obs[..., 0] + obs[..., 1]

    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> ActResult:
        y, state = self.core(obs.unsqueeze(0), state)
        B = obs.shape[0]
        return ActResult(torch.zeros(B, dtype=torch.int64), torch.zeros(B),
                         self._value(obs, y[0, :, 0]), state)

    def value(self, obs: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        y, _ = self.core(obs.unsqueeze(0), state, bootstrap=bootstrap)
        return self._value(obs, y[0, :, 0])

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        return actions.cpu().numpy()

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, episode_starts: Any,
                         initial_state: RecurrentState, masks: Any = None,
                         return_state: bool = False) -> EvalResult:
        y, final = unroll(self.core, obs, episode_starts, initial_state)
        zeros = torch.zeros(obs.shape[:2])
        return EvalResult(zeros, zeros, self._value(obs, y[..., 0]), final if return_state else None)


class LSTMPolicy(nn.Module):
    """Linear encoder -> tracked nn.LSTM -> categorical policy head and value head (Discrete)."""

    def __init__(self, obs_dim: int = 2, n_actions: int = 2, hidden: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Linear(obs_dim, hidden)
        self.core = track(nn.LSTM(hidden, hidden))
        self.pi = nn.Linear(hidden, n_actions)
        self.v = nn.Linear(hidden, 1)

    def initial_state(self, batch_size: int, clock: EpisodeClock | None = None) -> RecurrentState:
        return self.core.initial_state(batch_size, clock)

    def _heads(self, y: torch.Tensor, masks: Any) -> tuple[torch.distributions.Categorical, torch.Tensor]:
        logits = self.pi(y)
        if masks is not None:
            logits = logits.masked_fill(~masks, -1e9)
        return torch.distributions.Categorical(logits=logits), self.v(y).squeeze(-1)

    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> ActResult:
        y, state = self.core(torch.tanh(self.encoder(obs)).unsqueeze(0), state)
        dist, value = self._heads(y[0], masks)
        actions = dist.probs.argmax(-1) if deterministic else dist.sample()
        return ActResult(actions, dist.log_prob(actions), value, state)

    def value(self, obs: torch.Tensor, state: RecurrentState, *, bootstrap: bool = False) -> torch.Tensor:
        y, _ = self.core(torch.tanh(self.encoder(obs)).unsqueeze(0), state, bootstrap=bootstrap)
        return self.v(y[0]).squeeze(-1)

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        return actions.cpu().numpy()

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, episode_starts: Any,
                         initial_state: RecurrentState, masks: Any = None,
                         return_state: bool = False) -> EvalResult:
        y, final = unroll(self.core, torch.tanh(self.encoder(obs)), episode_starts, initial_state)
        dist, value = self._heads(y, masks)
        return EvalResult(dist.log_prob(actions), dist.entropy(), value, final if return_state else None)


class DictCountingEnv(CountingEnv):
    """CountingEnv with a Dict observation ``{"pos": [episode, step], "flag": [episode % 2]}``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            "flag": gym.spaces.Box(0, 1, (1,), np.int64),
        })

    def _obs(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {"pos": super()._obs(), "flag": np.array([self.episode % 2], dtype=np.int64)}
