"""The parity harness: the eager policy and exported graphs side by side on a vector env.

The eager policy (``policy.act`` on its lifecycle-checked state, observations normalised by
gymnasium's own wrapper) drives the env. Every exported side (an :class:`ExportedPolicy` over a
file, or over the in-memory ``torch.export`` program) gets the raw observations and the
episode-start flags and carries its own state from its own outputs, so any drift accumulates over
the run. Besides the env's own episode ends, rows are reset at random mid-batch ("forced
resets"): a reset that the env did not ask for must change the graph exactly as it changes the
eager state. Compared each step: the deterministic actions (equal), the distribution parameters
(logits / log-probs, means, log-stds) of a stochastic file, the value and every state tensor.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from tether.envs.factory import make_vector_env
from tether.export.runtime import ExportedPolicy
from tether.rollout import TrackedVectorEnv
from tether.rollout._obs import to_tensor

__all__ = ["ParityReport", "SideReport", "check_parity", "info_action_mask"]

ATOL = 1e-4  # float32 graphs of the same math; kernels differ (fused LSTM vs cells), never by more


class SideReport(NamedTuple):
    """How one exported side compared with the eager policy over the whole run.

    Attributes:
        name: the side (``"onnxruntime"``, ``"torch.export"``, ``"pt2"``).
        action_mismatches: rows (over all steps) whose discrete action differed.
        action: max abs difference of continuous (Box) actions (0.0 without a Box head).
        params: max abs difference of the distribution parameters (``None``: a deterministic file).
        value: max abs difference of the value.
        state: max abs difference over every state tensor.
    """

    name: str
    action_mismatches: int
    action: float
    params: float | None
    value: float
    state: float

    def ok(self, atol: float = ATOL) -> bool:
        """Whether the actions are equal and every difference is within ``atol``."""
        diffs = [self.action, self.value, self.state, *([] if self.params is None else [self.params])]
        return self.action_mismatches == 0 and max(diffs) <= atol


class ParityReport(NamedTuple):
    """What :func:`check_parity` measured.

    Attributes:
        steps / num_envs: the run's length and batch.
        episodes: episodes the env ended during the run.
        forced_resets: rows reset without an episode end (mid-batch).
        sides: one :class:`SideReport` per exported side.
        atol: the tolerance of :meth:`ok`.
    """

    steps: int
    num_envs: int
    episodes: int
    forced_resets: int
    sides: list[SideReport]
    atol: float = ATOL

    @property
    def ok(self) -> bool:
        """Whether every side matched the eager policy."""
        return all(side.ok(self.atol) for side in self.sides)

    def lines(self) -> list[str]:
        """The report as a markdown table and a verdict line."""
        out = [f"parity over {self.steps} steps x {self.num_envs} envs ({self.episodes} episode ends,"
               f" {self.forced_resets} forced resets mid-batch), max abs difference to the eager policy:",
               "| side | actions differing | Box actions | logits / dist. params | value | state |",
               "|---|---:|---:|---:|---:|---:|"]
        for s in self.sides:
            params = "n/a (deterministic file)" if s.params is None else f"{s.params:.2e}"
            out.append(f"| {s.name} | {s.action_mismatches} | {s.action:.2e} | {params} | {s.value:.2e} |"
                       f" {s.state:.2e} |")
        out.append(f"parity: {'ok' if self.ok else 'FAILED'} (deterministic actions equal, differences"
                   f" <= {self.atol:g})")
        return out


class _Tally:
    def __init__(self) -> None:
        self.mismatches, self.action, self.value, self.state = 0, 0.0, 0.0, 0.0
        self.params: float | None = None

    def diff(self, attr: str, got: np.ndarray, want: torch.Tensor) -> None:
        d = float(np.max(np.abs(got.astype(np.float64) - want.detach().double().numpy()), initial=0.0))
        setattr(self, attr, max(getattr(self, attr) or 0.0, d))


def _leaf(obs: Any, path: Sequence[Any]) -> Any:
    for key in path:
        obs = obs[key]
    return obs


def info_action_mask(info: dict[str, Any], num_envs: int) -> np.ndarray | None:
    """The bool mask ``[E, D]`` in a vector env's ``info["action_mask"]`` (rows without one: all allowed).

    Returns ``None`` when the info holds no mask.
    """
    if "action_mask" not in info:
        return None
    mask = np.array(info["action_mask"], dtype=bool, copy=True).reshape(num_envs, -1)
    present = np.asarray(info.get("_action_mask", np.ones(num_envs, dtype=bool)), dtype=bool)
    mask[~present] = True  # a row whose next step is an autoreset ignores its action
    return mask


def _modes(head: Mapping[str, Any], out: dict[str, np.ndarray]) -> np.ndarray:
    """A stochastic file's deterministic action of one head: argmax per component, or the mean."""
    first = out[head["outputs"][0]]
    if head["kind"] == "box":
        return first
    parts = np.split(first, np.cumsum(head["sizes"])[:-1], axis=-1)
    picks = np.stack([np.argmax(p, axis=-1) for p in parts], axis=-1)
    return picks.reshape(-1) if head["kind"] == "discrete" else picks


def _compare(tally: _Tally, side: ExportedPolicy, out: dict[str, np.ndarray], eager: Any,
             params: tuple[torch.Tensor, ...] | None, wanted: list[torch.Tensor]) -> None:
    meta = side.metadata
    for head, want in zip(meta["heads"], wanted, strict=True):
        got = out[head["outputs"][0]] if meta["deterministic"] else _modes(head, out)
        if head["kind"] == "box":
            tally.diff("action", got, want)
        else:
            equal = (got.reshape(want.shape[0], -1) == want.reshape(want.shape[0], -1).numpy()).all(axis=1)
            tally.mismatches += int((~equal).sum())
    if params is not None:
        names = meta["outputs"]["distribution"]
        for name, want_p in zip(names, params, strict=True):
            tally.diff("params", out[name], want_p)
    tally.diff("value", out[meta["outputs"]["value"]], eager.value)
    for name, want_s in zip(meta["outputs"]["state"], eager.state.tensors, strict=True):
        tally.diff("state", out[name], want_s)


def _eager_observations(venv: Any, obs_norm: Any) -> Any:
    """What the eager policy sees: the raw observations, or gymnasium's wrapper's normalisation of them."""
    if obs_norm is None:
        return lambda obs: obs
    norm = gym.wrappers.vector.NormalizeObservation(venv, epsilon=float(obs_norm.eps))
    norm.obs_rms.mean, norm.obs_rms.var = np.array(obs_norm.mean), np.array(obs_norm.var)
    norm.update_running_mean = False
    if obs_norm.clip is None:
        return norm.observations
    return lambda obs: np.clip(norm.observations(obs), -obs_norm.clip, obs_norm.clip)


def check_parity(
    policy: Any, sides: Mapping[str, ExportedPolicy], *, env_id: str, num_envs: int = 4, steps: int = 500,
    seed: int = 0, env_kwargs: dict[str, Any] | None = None, env_imports: Sequence[str] = (),
    obs_norm: Any = None, reset_rate: float = 0.02, atol: float = ATOL,
) -> ParityReport:
    """Run the eager ``policy`` and every exported side for ``steps`` steps of ``num_envs`` envs.

    Args:
        policy: the eager policy the sides were exported from (a ``FactoredRecurrentActorCritic``).
        sides: name -> :class:`ExportedPolicy` (each is reset here).
        env_id / env_kwargs / env_imports: the env (made without a normaliser: the sides get raw
            observations).
        num_envs: the batch (a fixed-batch side needs its own).
        steps: env steps.
        seed: seeds the env and the forced resets.
        obs_norm: the :class:`~tether.nets.ObservationNorm` the files hold (the eager side
            normalises through gymnasium's own wrapper with these statistics).
        reset_rate: the chance per row and step of a forced reset.
        atol: the tolerance of :attr:`ParityReport.ok`.

    Returns:
        A :class:`ParityReport`.
    """
    rng = np.random.default_rng(seed)
    venv = make_vector_env(env_id, num_envs, env_kwargs=env_kwargs, env_imports=env_imports)
    observe = _eager_observations(venv, obs_norm)
    tracked = TrackedVectorEnv(venv)
    stochastic = any(not s.metadata["deterministic"] for s in sides.values())
    masked = any(s.metadata["inputs"]["action_mask"] for s in sides.values())
    params_step = copy.deepcopy(policy.export_step(deterministic=False, action_masks=masked,
                                                   obs_norm=obs_norm)).eval() if stochastic else None
    tallies = {name: _Tally() for name in sides}
    episodes = forced_total = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny recurrent steps: a second thread only waits (and slows ~10x when busy)
    try:
        obs, info = tracked.reset(seed=seed)
        starts = np.ones(num_envs, dtype=bool)
        state = policy.initial_state(num_envs, tracked.clock)
        for side in sides.values():
            side.reset(num_envs)
        for t in range(steps):
            forced = (rng.random(num_envs) < reset_rate) & ~starts if t else np.zeros(num_envs, dtype=bool)
            flags = starts | forced
            forced_total += int(forced.sum())
            state = state.reset(flags)
            mask = info_action_mask(info, num_envs) if masked else None
            mask_t = None if mask is None else torch.as_tensor(mask)
            with torch.no_grad():
                eager = policy.act(to_tensor(observe(obs), torch.device("cpu"), torch.float32), state, mask_t,
                                   deterministic=True)
                params = None
                if params_step is not None:
                    leaves = [torch.as_tensor(np.asarray(_leaf(obs, leaf.path), dtype=leaf.space.dtype))
                              for leaf in policy.obs_layout.leaves]
                    params = params_step(*leaves, *state.tensors, torch.zeros(num_envs, dtype=torch.bool),
                                         *([] if mask_t is None else [mask_t]))
            wanted = policy.layout.split(eager.actions)
            for name, side in sides.items():
                out = side.step(obs, flags, mask)
                n_params = len(side.metadata["outputs"]["distribution"])
                _compare(tallies[name], side, out, eager,
                         None if params is None or not n_params else params[:n_params], wanted)
            step = tracked.step(policy.env_actions(eager.actions))
            state, obs, info, starts = eager.state, step.obs, step.info, step.episode_starts
            episodes += int(step.done.sum())
    finally:
        tracked.close()
        torch.set_num_threads(threads)
    reports = [SideReport(n, t.mismatches, t.action, t.params, t.value, t.state) for n, t in tallies.items()]
    return ParityReport(steps, num_envs, episodes, forced_total, reports, atol)
