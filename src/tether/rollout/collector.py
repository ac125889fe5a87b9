"""RolloutCollector: run a recurrent policy in a vector env for ``T`` steps × ``E`` envs, into a sink.

The loop it runs, once per step (the same loop a user can write with :class:`TrackedVectorEnv`)::

    result = policy.act(obs, state, masks)                       # state for the next tick
    step = venv.step(policy.env_actions(result.actions))         # clock.advance(episode_starts)
    boot = policy.value(step.final_obs, result.state, bootstrap=True)  # truncated rows, pre-reset
    sink.write(Transition(obs, ..., state=state, extras=...))    # state fed at this step
    state = result.state.reset(step.episode_starts)              # zeros where a new episode starts

The sink (:class:`~tether.rollout.RolloutSink`) decides what to keep: the on-policy
:class:`~tether.rollout.RecurrentRolloutBuffer` by default, a replay buffer for an off-policy
trainer. The policy's outputs beside its actions and state (``log_prob``, ``value``, ...) reach the
sink by name in :attr:`Transition.extras <tether.rollout.Transition.extras>`: the collector names
no trainer's fields.

Everything runs under ``torch.no_grad()``: no autograd graph is built during collection, even for
a policy whose parameters require grad, so memory stays flat however many episodes pass.

:meth:`RolloutCollector.run_episodes` runs the same step without a sink, for evaluation, and
:meth:`~RolloutCollector.state_dict` / :meth:`~RolloutCollector.load_state_dict` save and restore
the live run (state, clock, last observation, tallies) as plain data, without the envs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

import gymnasium as gym
import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.errors import ObservationError, StateMismatchError, format_rows
from tether.policy import ActResult, RecurrentPolicy
from tether.rollout._obs import Tree, copy_tree, nonfinite_rows, to_tensor
from tether.rollout.buffer import RecurrentRolloutBuffer
from tether.rollout.sink import RolloutSink, Transition
from tether.rollout.vec import TrackedVectorEnv, VecStep
from tether.state import RecurrentState

__all__ = ["RolloutCollector"]

_Sink = TypeVar("_Sink", bound=RolloutSink)
MaskSource = str | Callable[[Any, dict[str, Any]], Any] | None
# What collection calls of a RecurrentPolicy (evaluate_actions is the trainer's, not needed here).
_PROTOCOL = ("initial_state", "act", "value", "env_actions")
_CARRIED = frozenset({"actions", "state"})  # what the collector itself uses of an ActResult


def _placement(policy: Any, device: torch.device | str | None) -> tuple[torch.device, torch.dtype]:
    params = list(policy.parameters()) if isinstance(policy, torch.nn.Module) else []
    floats = [p for p in params if p.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.get_default_dtype()
    if device is not None:
        return torch.device(device), dtype
    return (params[0].device if params else torch.device("cpu")), dtype


class RolloutCollector:
    """Collect rollouts of ``num_steps × num_envs`` with any :class:`~tether.policy.RecurrentPolicy`.

    The live state and the last observation are kept across :meth:`collect` calls (detached), so
    consecutive rollouts continue the same episodes. Finished episodes' returns and lengths (valid
    steps only) are recorded per call in :attr:`episode_returns` / :attr:`episode_lengths`.

    Args:
        env: a gymnasium vector env (wrapped in a :class:`TrackedVectorEnv` here) or a tracked one.
        policy: follows :class:`~tether.policy.RecurrentPolicy` (a user's own module too).
        num_steps: ``T``, steps per rollout.
        seq_len: replay sequence length of the default buffer (``None``: whole rollout per env).
        device: where observations go; the policy's parameter device when ``None``.
        action_mask: the info key holding boolean action masks (used when the env provides it), a
            callable ``(obs, info) -> mask [E, ...]``, or ``None`` for no masks.
        seed: passed to the first ``env.reset``.

    Raises:
        TypeError: when ``env`` is not a vector env or ``policy`` lacks a protocol method.

    Example::

        collector = RolloutCollector(venv, policy, num_steps=128, seq_len=32)
        buffer = collector.collect()               # [128, E] steps, no autograd graph
        buffer.compute_advantages(gamma=0.99, gae_lambda=0.95)
        for mb in buffer.minibatches(4, generator=torch.Generator().manual_seed(0)):
            out = policy.evaluate_actions(mb.obs, mb.actions, mb.episode_starts, mb.initial_state,
                                          mb.action_masks)
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv | TrackedVectorEnv,
        policy: RecurrentPolicy,
        num_steps: int,
        *,
        seq_len: int | None = None,
        device: torch.device | str | None = None,
        action_mask: MaskSource = "action_mask",
        seed: int | None = None,
    ) -> None:
        self.venv = env if isinstance(env, TrackedVectorEnv) else TrackedVectorEnv(env)
        missing = [name for name in _PROTOCOL if not callable(getattr(policy, name, None))]
        if missing:
            raise TypeError(
                f"RolloutCollector: expected a policy following tether.policy.RecurrentPolicy, but"
                f" {type(policy).__name__} has no {', '.join(missing)}"
            )
        self.policy = policy
        self.device, self.float_dtype = _placement(policy, device)
        self.buffer = RecurrentRolloutBuffer(num_steps, self.venv.num_envs, seq_len=seq_len,
                                             device=self.device)
        self.num_steps = num_steps
        self.action_mask = action_mask
        self._seed = seed
        E = self.venv.num_envs
        self.state: RecurrentState | None = None
        self._obs: Tree = None
        self._info: dict[str, Any] = {}
        self._starts = np.ones(E, dtype=bool)
        self._masks_seen = False
        self._ep_return = np.zeros(E, dtype=np.float64)
        self._ep_length = np.zeros(E, dtype=np.int64)
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.num_episodes = 0
        self.total_steps = 0

    @property
    def num_envs(self) -> int:
        """Env rows ``E``."""
        return self.venv.num_envs

    @property
    def clock(self) -> EpisodeClock:
        """The env wrapper's clock."""
        return self.venv.clock

    # ----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Reset the envs and start from a fresh ``policy.initial_state(E, clock)``.

        Raises:
            StateMismatchError: when the policy's initial state is not one row per env.
        """
        self._obs, self._info = self.venv.reset(seed=seed)
        state = self.policy.initial_state(self.num_envs, self.clock)
        self._check_state(state, "policy.initial_state")
        self.state = state
        self._starts = np.ones(self.num_envs, dtype=bool)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0

    @overload
    def collect(self, sink: None = None) -> RecurrentRolloutBuffer: ...

    @overload
    def collect(self, sink: _Sink) -> _Sink: ...

    def collect(self, sink: RolloutSink | None = None) -> RolloutSink:
        """Run ``num_steps`` steps in every env and write each to ``sink`` (no autograd graph).

        Args:
            sink: where the steps go (a :class:`~tether.rollout.RolloutSink`); the collector's own
                (reused) :class:`~tether.rollout.RecurrentRolloutBuffer` when ``None``.

        Returns:
            The sink, finished with ``V(obs_T)`` (a buffer: call ``compute_advantages`` next).

        Raises:
            ValueError: for NaN / inf observations (naming the rows), an action of the wrong shape
                (expected vs got), or policy outputs that are not one per env; or a sink of
                another size. Steps already taken stay written, and the collector's state and
                observation stay consistent.
            StateMismatchError: when the policy returns a state of the wrong batch size.
        """
        target: RolloutSink = self.buffer if sink is None else sink
        if self.state is None:
            self.reset(self._seed)
        target.begin(self.num_steps, self.clock)
        self.episode_returns, self.episode_lengths = [], []
        with torch.no_grad():
            for _ in range(self.num_steps):
                self._step(target)
            obs = self._obs_tensor(self._obs, "observation")
            assert self.state is not None
            last_value = self._checked_value(self.policy.value(obs, self.state), "policy.value")
        target.finish(last_value)
        self.state = self.state.detach()
        return target

    def _step(self, sink: RolloutSink) -> None:
        state = self.state
        assert state is not None
        obs = self._obs_tensor(self._obs, "observation")
        masks = self._masks(self._obs, self._info)
        result = self.policy.act(obs, state, masks)
        extras = self._check_act(result)
        step = self.venv.step(self.policy.env_actions(result.actions))
        # From here the env has moved: commit everything before reporting any problem.
        next_state = result.state
        bootstrap = torch.zeros(self.num_envs, device=self.device)
        if step.truncated.any():
            final = to_tensor(step.final_obs, self.device, self.float_dtype)
            value = self._checked_value(self.policy.value(final, next_state, bootstrap=True),
                                        "policy.value(bootstrap=True)")
            trunc = torch.as_tensor(step.truncated, device=self.device)
            bootstrap = torch.where(trunc, value.to(bootstrap.dtype), bootstrap)
        transition = Transition(obs=obs, actions=result.actions, rewards=step.reward,
                                terminated=step.terminated, truncated=step.truncated,
                                episode_starts=self._starts, valid=step.valid, state=state, extras=extras,
                                bootstrap_values=bootstrap, final_obs=step.final_obs, action_masks=masks)
        self.state = next_state.reset(step.episode_starts)
        self._obs, self._info, self._starts = step.obs, step.info, step.episode_starts
        self.total_steps += self.num_envs
        self._record(step)
        sink.write(transition)  # a sink refusing the step leaves the collector's run consistent
        bad_final = np.intersect1d(nonfinite_rows(step.final_obs, self.num_envs), np.flatnonzero(step.done))
        if bad_final.size:
            raise ObservationError(
                f"RolloutCollector: the final observations of env rows {format_rows(bad_final)} contain"
                f" NaN or inf (at tick {self.clock.tick}); their bootstrap values are not finite."
                " The step is stored; fix the env's observations",
                leaf="final_obs", expected="finite values",
                got=f"NaN or inf in rows {format_rows(bad_final)}")

    def _record(self, step: VecStep) -> list[tuple[int, float]]:
        counted = step.valid
        self._ep_return[counted] += step.reward[counted]
        self._ep_length[counted] += 1
        ended = []
        for row in np.flatnonzero(step.done):
            ended.append((int(row), float(self._ep_return[row])))
            self.episode_returns.append(float(self._ep_return[row]))
            self.episode_lengths.append(int(self._ep_length[row]))
            self._ep_return[row] = 0.0
            self._ep_length[row] = 0
            self.num_episodes += 1
        return ended

    # ----------------------------------------------------------------------------------------
    def run_episodes(self, counts: Sequence[int], *, seed: int | None = None,
                     deterministic: bool = True) -> list[float]:
        """Reset the envs, run whole episodes without storing them, and return their returns.

        Env row ``i`` contributes its first ``counts[i]`` episodes (so short episodes are not
        over-counted); returns are listed in the order the episodes end. The step is the one
        :meth:`collect` takes (same observation conversion, masks and checks), with no buffer.

        Args:
            counts: episodes per env row ``[E]``.
            seed: passed to ``env.reset``.
            deterministic: take the policy's most likely action instead of sampling.

        Raises:
            ValueError: when ``counts`` is not one non-negative count per env row.
        """
        wanted = np.asarray(counts, dtype=np.int64)
        if wanted.shape != (self.num_envs,) or (wanted < 0).any():
            raise ValueError(f"RolloutCollector.run_episodes: expected {self.num_envs} counts >= 0 (one per"
                             f" env row), got {wanted.tolist()}")
        self.reset(seed)
        finished = np.zeros(self.num_envs, dtype=np.int64)
        returns: list[float] = []
        with torch.no_grad():
            while (finished < wanted).any():
                state = self.state
                assert state is not None
                obs = self._obs_tensor(self._obs, "observation")
                result = self.policy.act(obs, state, self._masks(self._obs, self._info), deterministic)
                self._check_act(result)
                step = self.venv.step(self.policy.env_actions(result.actions))
                self.state = result.state.reset(step.episode_starts)
                self._obs, self._info, self._starts = step.obs, step.info, step.episode_starts
                for row, ret in self._record(step):
                    if finished[row] < wanted[row]:
                        returns.append(ret)
                        finished[row] += 1
        self.state = None  # the next collect() starts from a reset
        return returns

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The live run as plain data (numpy arrays, tensors, numbers): no env, no policy.

        Holds the hidden state (``RecurrentState.state_dict``), the clock
        (``EpisodeClock.state_dict``), the last observation and episode starts, the rows whose next
        step is an autoreset, the action-mask entries of the last info, and the episode tallies.
        The envs themselves are the caller's to save (see ``tether.envs.factory.env_state``).
        """
        info: dict[str, Any] = {}
        if isinstance(self.action_mask, str) and self.action_mask in self._info:
            key = self.action_mask
            info = {key: np.asarray(self._info[key]).copy()}
            if f"_{key}" in self._info:
                info[f"_{key}"] = np.asarray(self._info[f"_{key}"]).copy()
        return {
            "state": None if self.state is None else self.state.state_dict(),
            "clock": self.clock.state_dict(),
            "obs": copy_tree(self._obs) if self._obs is not None else None,
            "starts": self._starts.copy(),
            "pending": self.venv.autoreset_pending,
            "info": info,
            "masks_seen": self._masks_seen,
            "ep_return": self._ep_return.copy(),
            "ep_length": self._ep_length.copy(),
            "num_episodes": self.num_episodes,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Continue the run saved by :meth:`state_dict` in this collector's (fresh) envs.

        Resets the envs (so they accept steps), then restores the clock, the hidden state bound to
        it, the last observation and the tallies. Restore the envs' own episodes afterwards (e.g.
        ``tether.envs.factory.load_env_state``); the observation fed next is the saved one.

        Raises:
            ValueError: when ``data`` is for another number of envs.
        """
        if len(data["starts"]) != self.num_envs:
            raise ValueError(f"RolloutCollector.load_state_dict: expected a run of {self.num_envs} envs,"
                             f" got one of {len(data['starts'])}")
        self.venv.reset(seed=self._seed)
        self.clock.load_state_dict(data["clock"])
        # The wrapper reports a start on a pending row's next step; a fresh one knows of none yet.
        self.venv.restore_autoreset_pending(np.asarray(data["pending"], dtype=bool))
        self.state = (None if data["state"] is None else
                      RecurrentState.from_state_dict(data["state"], clock=self.clock, device=self.device))
        self._obs = data["obs"]
        self._info = dict(data["info"])
        self._starts = np.asarray(data["starts"], dtype=bool).copy()
        self._masks_seen = bool(data["masks_seen"])
        self._ep_return = np.asarray(data["ep_return"], dtype=np.float64).copy()
        self._ep_length = np.asarray(data["ep_length"], dtype=np.int64).copy()
        self.num_episodes = int(data["num_episodes"])
        self.total_steps = int(data["total_steps"])

    # ----------------------------------------------------------------------------------------
    def _obs_tensor(self, obs: Tree, what: str) -> Tree:
        bad = nonfinite_rows(obs, self.num_envs)
        if bad.size:
            raise ObservationError(
                f"RolloutCollector: the {what}s of env rows {format_rows(bad)} contain NaN or inf"
                f" (at tick {self.clock.tick}); nothing was fed to the policy. Fix the env (or"
                " wrap it to clean its observations)",
                leaf="obs", expected="finite values", got=f"NaN or inf in rows {format_rows(bad)}")
        return to_tensor(obs, self.device, self.float_dtype)

    def _masks(self, obs: Tree, info: dict[str, Any]) -> torch.Tensor | None:
        source = self.action_mask
        if source is None:
            return None
        if callable(source):
            raw = source(obs, info)
        else:
            if source not in info:
                if self._masks_seen:
                    raise ValueError(f"RolloutCollector: info[{source!r}] was given before but is"
                                     " missing now; return the action mask from reset() and step()")
                return None
            present = np.asarray(info.get(f"_{source}", np.ones(self.num_envs, dtype=bool)))
            # A row whose next step is an autoreset ignores its action: any mask will do.
            lacking = ~present & ~self.venv.autoreset_pending
            if lacking.any():
                raise ValueError(f"RolloutCollector: info[{source!r}] is missing for env rows"
                                 f" {format_rows(np.flatnonzero(lacking))}")
            raw = np.array(info[source], dtype=bool, copy=True)
            raw[~present] = True
        self._masks_seen = True
        masks = torch.as_tensor(np.asarray(raw)).to(self.device, torch.bool)
        if masks.dim() < 2 or masks.shape[0] != self.num_envs:
            raise ValueError(f"RolloutCollector: expected action masks shaped [E={self.num_envs}, ...],"
                             f" got {list(masks.shape)}")
        return masks

    def _check_state(self, state: Any, what: str) -> None:
        if not isinstance(state, RecurrentState):
            raise TypeError(f"RolloutCollector: {what} returned {type(state).__name__}, expected a"
                            " RecurrentState")
        if state.batch_size != self.num_envs:
            raise StateMismatchError(
                f"RolloutCollector: {what} returned a state of batch {state.batch_size}, expected"
                f" {self.num_envs} (one row per env); nothing was stepped",
                fix="return the state the tracked core produced for the whole batch",
                expected=str(self.num_envs), got=str(state.batch_size),
            )

    def _check_act(self, result: ActResult) -> dict[str, torch.Tensor]:
        """Check ``policy.act``'s result; return its outputs beside actions and state, by name."""
        fields = getattr(result, "_fields", ())
        if "actions" not in fields or "state" not in fields:
            raise TypeError(f"RolloutCollector: policy.act must return an ActResult, got"
                            f" {type(result).__name__} without .actions / .state")
        self._check_state(result.state, "policy.act")
        if result.actions.dim() < 1 or result.actions.shape[0] != self.num_envs:
            raise ValueError(f"RolloutCollector: expected policy.act actions shaped [E={self.num_envs},"
                             f" ...], got {list(result.actions.shape)}")
        extras = {}
        for name, value in zip(fields, result, strict=True):
            if name not in _CARRIED:
                extras[name] = self._checked_value(value, f"policy.act {name}")
        return extras

    def _checked_value(self, value: Any, what: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (self.num_envs,):
            got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"RolloutCollector: expected {what} shaped [{self.num_envs}] (one per env),"
                             f" got {got}")
        return value
