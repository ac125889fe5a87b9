"""The checks one collected step passes before a sequence replay writes it, and its stored form."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tether.replay.storage import StepStreams, step_layout
from tether.replay.table import SequenceTable
from tether.rollout._obs import batch_rows, tree_map
from tether.state import RecurrentState

__all__ = ["WriteCheck"]

_WHERE = "SequenceReplay.write"
_FLAGS = ("terminated", "truncated", "valid", "episode_starts")


class WriteCheck:
    """Converts one :class:`~tether.rollout.Transition` to what the streams store, refusing misfits."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.num_envs, self.device = num_envs, device

    def _rows(self, name: str, value: Any) -> None:
        rows = batch_rows(value)
        if rows != self.num_envs:
            raise ValueError(f"{_WHERE}: expected {name} with {self.num_envs} rows (num_envs), got {rows}")

    def _per_env(self, name: str, value: Any, dtype: type) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.shape != (self.num_envs,):
            raise ValueError(f"{_WHERE}: expected {name} shaped [{self.num_envs}] (one per env), got"
                             f" {list(array.shape)}")
        return array.astype(dtype)

    def step(self, step: Any) -> dict[str, Any]:
        """The step's stored fields: device tensors, host arrays, the episode ids and the tick.

        Raises:
            ValueError: for a field that is not one per env, or a state without its clock stamps.
        """
        state = step.state
        if not isinstance(state, RecurrentState) or state.batch_size != self.num_envs:
            got = state.batch_size if isinstance(state, RecurrentState) else type(state).__name__
            raise ValueError(f"{_WHERE}: expected step.state a RecurrentState of batch {self.num_envs}"
                             f" (one row per env), got {got}")
        if state.tick is None or state.episode_ids is None:
            raise ValueError(f"{_WHERE}: expected step.state bound to the env clock (its tick and episode"
                             " ids stamp the step); build it with policy.initial_state(num_envs, clock)")
        obs = tree_map(lambda x: torch.as_tensor(x).to(self.device), step.obs)
        self._rows("obs", obs)
        final = obs if step.final_obs is None else step.final_obs
        final_obs = tree_map(lambda x, o: torch.as_tensor(x).to(self.device, o.dtype), final, obs)
        self._rows("final_obs", final_obs)
        actions = torch.as_tensor(step.actions).to(self.device)
        self._rows("actions", actions)
        masks = None
        if step.action_masks is not None:
            masks = torch.as_tensor(step.action_masks).to(self.device, torch.bool)
            self._rows("action_masks", masks)
        data: dict[str, Any] = {"obs": obs, "final_obs": final_obs, "actions": actions, "action_masks": masks,
                                "rewards": self._per_env("rewards", step.rewards, np.float32),
                                "episode_ids": np.asarray(state.episode_ids, dtype=np.int64),
                                "tick": int(state.tick)}
        for name in _FLAGS:
            data[name] = self._per_env(name, getattr(step, name), bool)
        return data

    @staticmethod
    def state_tensors(state: RecurrentState) -> tuple[torch.Tensor, ...]:
        """The tensors whose layout the stored states take."""
        return state.tensors

    @staticmethod
    def layout(streams: StepStreams, table: SequenceTable, data: dict[str, Any],
               state: RecurrentState) -> None:
        """Refuse a step laid out otherwise than the first one (shapes, dtypes, masks, state).

        Raises:
            ValueError: naming what was expected and what came.
        """
        got = step_layout(data)
        if got != streams.layout:
            raise ValueError(f"{_WHERE}: expected every step laid out as the first one, {streams.layout}"
                             f" (shape and dtype per env of obs / actions / action_masks), got {got}")
        L, _, H = state.tensors[0].shape
        state_layout = (len(state.tensors), int(L), int(H), state.dtype)
        if state_layout != table.state_layout:
            raise ValueError(f"{_WHERE}: expected states of (tensors, layers, hidden, dtype)"
                             f" {table.state_layout}, got {state_layout}")
