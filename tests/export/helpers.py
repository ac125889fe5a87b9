"""A witness env of every space the export covers, and tiny policies with decisive heads."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tether.nets import FactoredRecurrentActorCritic

OBS: dict[str, gym.Space[Any]] = {
    "box": gym.spaces.Box(-2.0, 2.0, (3,), np.float32),
    "discrete": gym.spaces.Discrete(4, start=1),
    "dict": gym.spaces.Dict({"cue": gym.spaces.Discrete(3, start=1), "pos": gym.spaces.Box(-1.0, 1.0, (2,)),
                             "nest": gym.spaces.Tuple((gym.spaces.MultiBinary(2),))}),
}
ACTIONS: dict[str, gym.Space[Any]] = {
    "discrete": gym.spaces.Discrete(3, start=2),
    "multi_discrete": gym.spaces.MultiDiscrete([3, 2]),
    "box": gym.spaces.Box(-0.5, 0.5, (2,), np.float32),
    "dict": gym.spaces.Dict({"move": gym.spaces.Discrete(3), "aim": gym.spaces.Box(-1.0, 1.0, (2,))}),
}


class SpacesEnv(gym.Env[Any, Any]):
    """Random observations of the chosen space, episodes of 3 to 12 steps, random legal-action masks.

    Each step's reward is a fixed function of the action, so two policies that act alike earn alike.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(self, obs: str = "box", action: str = "discrete", masks: bool = False) -> None:
        self.observation_space = OBS[obs]
        self.action_space = ACTIONS[action]
        self.masks = masks
        self.left = 0

    def _info(self) -> dict[str, Any]:
        if not self.masks:
            return {}
        parts = []
        space = self.action_space
        sizes = ([int(space["move"].n)] if isinstance(space, gym.spaces.Dict)
                 else [int(space.n)] if isinstance(space, gym.spaces.Discrete) else list(space.nvec))
        for n in sizes:
            allowed = self.np_random.random(n) < 0.6
            allowed[self.np_random.integers(n)] = True
            parts.append(allowed)
        return {"action_mask": np.concatenate(parts)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(1 << 30)))
        self.left = int(self.np_random.integers(3, 13))
        return self.observation_space.sample(), self._info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in
                               (action.values() if isinstance(action, dict) else [action])])
        self.left -= 1
        ended = self.left <= 0
        truncated = ended and bool(self.np_random.random() < 0.5)
        return self.observation_space.sample(), float(np.sum(np.sin(flat))), ended and not truncated, truncated, \
            self._info()


def env_id(obs: str, action: str, masks: bool = False) -> str:
    """The registered id of a SpacesEnv (registered on first use)."""
    name = f"tether-test/Export-{obs}-{action}{'-masked' if masks else ''}-v0"
    if name not in gym.registry:
        gym.register(id=name, entry_point=SpacesEnv, kwargs={"obs": obs, "action": action, "masks": masks})
    return name


def make_policy(obs: str, action: str, core: str = "lstm", layers: int = 1, shared: bool = True,
                obs_space: gym.Space[Any] | None = None) -> FactoredRecurrentActorCritic:
    """A tiny actor-critic whose heads are scaled up, so its argmaxes lie far from ties."""
    torch.manual_seed(7)
    policy = FactoredRecurrentActorCritic(obs_space or OBS[obs], ACTIONS.get(action, action),  # type: ignore[arg-type]
                                          core=core, num_layers=layers, shared_core=shared, core_hidden_size=8,
                                          hidden_sizes=(16,), log_std_init=-0.5)
    with torch.no_grad():
        for param in policy.heads.parameters():
            param.mul_(30.0)
    return policy.eval()
