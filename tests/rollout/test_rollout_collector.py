"""Tests for tether.rollout.collector.RolloutCollector: stored values worked out by hand."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from tether import EpisodeClock, RecurrentState, StateMismatchError
from tether.policy import ActResult, RecurrentPolicy
from tether.rollout import RolloutCollector, RolloutSink, TrackedVectorEnv, Transition

from .helpers import TWO_ENVS, CounterPolicy, CountingEnv, LSTMPolicy, make_vec

F, T = False, True


def _env_major(x: torch.Tensor) -> list[list[float]]:
    """[T, E] -> per env, the T stored values (the tables below read env by env)."""
    return x.T.tolist()


def _pairs(obs: torch.Tensor) -> list[list[tuple[int, int]]]:
    return [[(int(e), int(s)) for e, s in row] for row in obs.transpose(0, 1).tolist()]


# What the collector must store over 6 steps with env 0 = 2-step episodes ending by truncation and
# env 1 = 3-step episodes ending by termination (see helpers: obs (episode, step), reward 10e+s,
# value 100*(h+1) + 10e + s with h the steps the state has seen of the episode).
SAME_STEP = {
    "obs": [[(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)],
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]],
    "episode_starts": [[T, F, T, F, T, F], [T, F, F, T, F, F]],
    "rewards": [[1, 2, 11, 12, 21, 22], [1, 2, 3, 11, 12, 13]],
    "terminated": [[F] * 6, [F, F, T, F, F, T]],
    "truncated": [[F, T, F, T, F, T], [F] * 6],
    "valid": [[T] * 6, [T] * 6],
    "values": [[100, 201, 110, 211, 120, 221], [100, 201, 302, 110, 211, 312]],
    # V(final_obs (e, 2)) from the pre-reset state (h = 2, so h' = 3): 300 + 10e + 2.
    "bootstrap_values": [[0, 302, 0, 312, 0, 322], [0] * 6],
    # next obs: env 0 (3, 0) fresh state -> 100 + 30; env 1 (2, 0) -> 100 + 20.
    "last_value": [130, 120],
    "episodes": ([3, 6, 23, 43, 36], [2, 3, 2, 2, 3]),
}
NEXT_STEP = {
    # The step after a done feeds the final observation once more (the env ignores the action).
    "obs": [[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)],
            [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]],
    "episode_starts": [[T, F, F, T, F, F], [T, F, F, F, T, F]],
    "rewards": [[1, 2, 0, 11, 12, 0], [1, 2, 3, 0, 11, 12]],
    "terminated": [[F] * 6, [F, F, T, F, F, F]],
    "truncated": [[F, T, F, F, T, F], [F] * 6],
    "valid": [[T, T, F, T, T, F], [T, T, T, F, T, T]],
    "values": [[100, 201, 302, 110, 211, 312], [100, 201, 302, 403, 110, 211]],
    "bootstrap_values": [[0, 302, 0, 0, 312, 0], [0] * 6],
    # next obs: env 0 (2, 0), a new episode -> 100 + 20; env 1 (1, 2) with h = 2 -> 300 + 10 + 2.
    "last_value": [120, 312],
    "episodes": ([3, 6, 23], [2, 3, 2]),
}
EXPECTED = {AutoresetMode.SAME_STEP: SAME_STEP, AutoresetMode.DISABLED: SAME_STEP,
            AutoresetMode.NEXT_STEP: NEXT_STEP}


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode", list(EXPECTED), ids=lambda m: m.name)
def test_collect_stores_the_hand_worked_rollout(kind: str, mode: AutoresetMode) -> None:
    """Observations, rewards, flags, values and bootstraps are stored exactly as worked out."""
    want = EXPECTED[mode]
    with TrackedVectorEnv(make_vec(kind, mode, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, CounterPolicy(), num_steps=6)
        buf = collector.collect()
        assert _pairs(buf.obs) == want["obs"]
        for name in ("episode_starts", "rewards", "terminated", "truncated", "valid", "values",
                     "bootstrap_values"):
            assert _env_major(getattr(buf, name)) == want[name], name
        assert buf.last_value is not None
        assert buf.last_value.tolist() == want["last_value"]
        assert (collector.episode_returns, collector.episode_lengths) == want["episodes"]
        assert collector.num_episodes == len(want["episodes"][0])


def test_gae_on_collected_next_step_rollout() -> None:
    """γ=0.5, λ=1: returns are discounted sums with the truncation bootstrap, 0 at invalid steps."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        buf = RolloutCollector(venv, CounterPolicy(), num_steps=6).collect()
        _, returns = buf.compute_advantages(gamma=0.5, gae_lambda=1.0)
        # env 0: t4 = 12 + .5*312 (bootstrap) = 168, t3 = 11 + .5*168 = 95; t1 = 2 + .5*302 = 153,
        #        t0 = 1 + .5*153 = 77.5; t2, t5 invalid.
        # env 1: t5 = 12 + .5*312 (last value) = 168, t4 = 11 + 84 = 95; t3 invalid;
        #        t2 = 3 (terminated), t1 = 2 + 1.5 = 3.5, t0 = 1 + 1.75 = 2.75.
        assert _env_major(returns) == [[77.5, 153, 0, 95, 168, 0], [2.75, 3.5, 3, 0, 95, 168]]


def test_state_and_episodes_continue_across_collects() -> None:
    """The live state and the running episode carry over to the next collect() (detached)."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, CounterPolicy(), num_steps=6)
        collector.collect()
        assert collector.state is not None
        assert collector.state.h[0, :, 0].tolist() == [0, 2]  # env 0 just restarted, env 1 at step 2
        buf = collector.collect()
        # Second rollout: env 0 continues at (2, 0) (a start), env 1 at (1, 2) then its junk step.
        assert _pairs(buf.obs)[0][:2] == [(2, 0), (2, 1)]
        assert _pairs(buf.obs)[1][:3] == [(1, 2), (1, 3), (2, 0)]
        assert _env_major(buf.episode_starts)[1][:3] == [F, F, T]
        assert buf.initial_states[0] is not None
        assert buf.initial_states[0].h[0, :, 0].tolist() == [0, 2]
        # Episode 1 of env 1 ended in this rollout: 11 + 12 + 13 over 3 valid steps.
        assert (36.0, 3) in zip(collector.episode_returns, collector.episode_lengths, strict=True)
        assert venv.clock.tick == 12


def test_grad_enabled_policy_stores_no_graph() -> None:
    """A policy whose parameters require grad leaves no autograd graph anywhere after collect()."""
    policy = LSTMPolicy()
    assert all(p.requires_grad for p in policy.parameters())
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, policy, num_steps=8, seq_len=4)
        buf = collector.collect()
        assert collector.state is not None
        assert not collector.state.has_graph
        for name in ("log_probs", "values", "bootstrap_values"):
            assert getattr(buf, name).grad_fn is None
        assert all(s is not None and not s.has_graph and s.is_snapshot for s in buf.initial_states)
        assert buf.obs.dtype == torch.float32


def test_obs_are_converted_to_the_policy_device_and_dtype() -> None:
    """Float observations follow the policy's parameter dtype (float64 here)."""
    policy = LSTMPolicy().double()
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, policy, num_steps=3)
        buf = collector.collect()
        assert buf.obs.dtype == torch.float64
        assert collector.device == torch.device("cpu")


def test_user_policy_without_nn_module_works() -> None:
    """Any object with the protocol's methods is accepted; a missing method is named."""

    class Wrapped:
        def __init__(self) -> None:
            self.inner = CounterPolicy()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    assert isinstance(Wrapped(), RecurrentPolicy)
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)) as venv:
        buf = RolloutCollector(venv, Wrapped(), num_steps=2).collect()  # type: ignore[arg-type]
        assert buf.rewards[:, 0].tolist() == [1, 2]
        with pytest.raises(TypeError, match="object has no initial_state, act, value"):
            RolloutCollector(venv, object(), num_steps=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", list(EXPECTED), ids=lambda m: m.name)
def test_action_masks_from_info(mode: AutoresetMode) -> None:
    """info['action_mask'] reaches the policy, every chosen action is legal, and it is stored."""
    specs: list[dict[str, Any]] = [{"length": 2, "masks": True}, {"length": 3, "masks": True, "ending": "terminate"}]
    env = make_vec("sync", mode, specs)
    with TrackedVectorEnv(env) as venv:
        buf = RolloutCollector(venv, LSTMPolicy(), num_steps=12).collect()
        assert buf.action_masks.shape == (12, 2, 2)
        chosen = buf.action_masks.gather(2, buf.actions.unsqueeze(-1)).squeeze(-1)
        assert bool(chosen[buf.valid].all())
        for sub in env.envs:
            # Every action the env received was the legal one: action (step % 2).
            steps = [t % sub.length for t in range(len(sub.actions))]
            assert sub.actions == [s % 2 for s in steps]


def test_action_masks_from_a_callable() -> None:
    """A callable (obs, info) -> mask is used as the mask source."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)) as venv:
        def only_one(obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
            return np.tile(np.array([False, True]), (obs.shape[0], 1))

        buf = RolloutCollector(venv, LSTMPolicy(), num_steps=5, action_mask=only_one).collect()
        assert bool((buf.actions == 1).all())


def test_nan_observation_names_the_rows_and_loses_nothing() -> None:
    """NaN in env row 1's observation: a ValueError naming the row; what was stored is kept."""
    specs: list[dict[str, Any]] = [{"length": 2}, {"length": 3, "nan_at": (0, 2)}]
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, specs)) as venv:
        collector = RolloutCollector(venv, CounterPolicy(), num_steps=6)
        with pytest.raises(ValueError, match=r"observations of env rows \[1\] contain NaN"):
            collector.collect()
        buf = collector.buffer
        assert buf.pos == 2  # steps 0 and 1 were stored; the NaN obs was never fed
        assert buf.rewards[:2].T.tolist() == [[1, 2], [1, 2]]
        assert collector.state is not None
        assert collector.state.tick == venv.clock.tick == 2


def test_nan_final_observation_is_reported_after_the_step_is_stored() -> None:
    """SAME_STEP: a NaN final observation is reported, with the step committed first."""
    specs: list[dict[str, Any]] = [{"length": 2, "nan_at": (0, 2)}, {"length": 3}]
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, specs)) as venv:
        collector = RolloutCollector(venv, CounterPolicy(), num_steps=6)
        with pytest.raises(ValueError, match=r"final observations of env rows \[0\] contain NaN"):
            collector.collect()
        assert collector.buffer.pos == 2
        assert collector.state is not None
        assert collector.state.tick == venv.clock.tick


class _WrongActions(CounterPolicy):
    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        return actions.cpu().numpy()[:, None]


class _WrongBatch(CounterPolicy):
    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> ActResult:
        result = super().act(obs, state, masks, deterministic)
        return result._replace(state=result.state[[0]])


def test_wrong_action_shape_from_the_policy() -> None:
    """env_actions of the wrong shape: expected vs got, nothing stepped, nothing stored."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, _WrongActions(), num_steps=4)
        with pytest.raises(ValueError, match=r"expected actions shaped \(2,\).*got shape \(2, 1\)"):
            collector.collect()
        assert (collector.buffer.pos, venv.clock.tick) == (0, 0)
        assert collector.state is not None
        assert collector.state.tick == 0


def test_policy_state_of_wrong_batch() -> None:
    """A policy that returns a state of the wrong batch size: a StateMismatchError, nothing stepped."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, _WrongBatch(), num_steps=4)
        with pytest.raises(StateMismatchError, match=r"state of batch 1, expected 2 \(one row per env\)"):
            collector.collect()
        assert venv.clock.tick == 0
        assert collector.state is not None
        assert collector.state.batch_size == 2


def test_collector_wraps_a_raw_vector_env_and_rejects_a_single_env() -> None:
    """A raw vector env is wrapped; a single env gets the wrapping advice."""
    collector = RolloutCollector(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS), CounterPolicy(), 2)
    assert isinstance(collector.venv, TrackedVectorEnv)
    collector.venv.close()
    with pytest.raises(TypeError, match=r"expected a gymnasium\.vector\.VectorEnv.*SyncVectorEnv"):
        RolloutCollector(CountingEnv(), CounterPolicy(), 2)  # type: ignore[arg-type]


# ---- the sink -----------------------------------------------------------------------------------
class _RecordingSink:
    """A sink as a replay buffer would be one: it keeps each step's stamps and extras, no PPO fields."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.steps: list[Transition] = []
        self.stamps: list[tuple[list[int], int | None, list[int]]] = []
        self.clock: EpisodeClock | None = None

    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        self.calls.append(f"begin {num_steps}")
        self.clock = clock

    def write(self, step: Transition) -> None:
        assert self.clock is not None
        self.calls.append("write")
        self.steps.append(step)
        # The state fed at this step carries the rows' episode ids and the tick of step.obs; the
        # clock has moved on by one tick when the sink sees it.
        self.stamps.append((step.state.episode_ids.tolist(), step.state.tick, self.clock.episode_ids.tolist()))

    def finish(self, last_value: torch.Tensor) -> None:
        self.calls.append(f"finish {last_value.tolist()}")


class _VersionedResult(NamedTuple):
    actions: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    state: RecurrentState
    q_max: torch.Tensor


class _ExtraOutputs(CounterPolicy):
    """An act result with one more output than ActResult's: it reaches the sink by name."""

    def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
            deterministic: bool = False) -> Any:
        result = super().act(obs, state, masks, deterministic)
        return _VersionedResult(*result, q_max=result.value + 0.5)


def test_the_collector_writes_each_step_to_any_sink() -> None:
    """begin, one write per step, finish; the transition carries flags, stamps and the policy's extras."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, _ExtraOutputs(), num_steps=6)
        sink = _RecordingSink()
        assert isinstance(sink, RolloutSink)
        assert collector.collect(sink) is sink
        assert sink.calls == ["begin 6", *["write"] * 6, "finish [130.0, 120.0]"]
        steps = sink.steps
        assert [s.episode_starts.tolist() for s in steps] == [list(r) for r in zip(*SAME_STEP["episode_starts"],
                                                                                    strict=True)]
        assert [s.truncated.tolist() for s in steps] == [list(r) for r in zip(*SAME_STEP["truncated"], strict=True)]
        assert [s.bootstrap_values.tolist() for s in steps] == [
            list(r) for r in zip(*SAME_STEP["bootstrap_values"], strict=True)]
        for s in steps:
            assert set(s.extras) == {"log_prob", "value", "q_max"}
            torch.testing.assert_close(s.extras["q_max"], s.extras["value"] + 0.5)
            assert not s.state.has_graph
        # Ticks 0..5; ids renewed at each start (env 0 every 2 steps, env 1 every 3).
        assert [tick for _, tick, _ in sink.stamps] == [0, 1, 2, 3, 4, 5]
        ids = [ids for ids, _, _ in sink.stamps]
        for env in range(2):  # a row's episode id changes exactly where its episode starts
            renewed = [ids[t][env] != ids[t - 1][env] for t in range(1, 6)]
            assert renewed == SAME_STEP["episode_starts"][env][1:], env
        # The stamps are the clock's at that step: equal to what the clock said one step later for
        # the rows that did not end.
        for t in range(5):
            ended = steps[t].terminated | steps[t].truncated
            assert [i for i, e in zip(ids[t], ended, strict=True) if not e] == [
                i for i, e in zip(sink.stamps[t][2], ended, strict=True) if not e]


def test_the_on_policy_buffer_needs_log_prob_and_value() -> None:
    """The buffer reads the extras it stores by name: a policy without them is named in a KeyError."""

    class _NoValue(NamedTuple):
        actions: torch.Tensor
        state: RecurrentState

    class _Bare(CounterPolicy):
        def act(self, obs: torch.Tensor, state: RecurrentState, masks: Any = None,
                deterministic: bool = False) -> Any:
            result = super().act(obs, state, masks, deterministic)
            return _NoValue(result.actions, result.state)

    with TrackedVectorEnv(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)) as venv:
        collector = RolloutCollector(venv, _Bare(), num_steps=2)
        with pytest.raises(KeyError, match="log_prob"):
            collector.collect()
        assert collector.state is not None
        assert collector.state.tick == venv.clock.tick == 1  # the step the buffer refused is committed
        assert len(collector.collect(_RecordingSink()).steps) == 2  # another sink takes the run on
