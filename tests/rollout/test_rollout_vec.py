"""Tests for tether.rollout.vec.TrackedVectorEnv: every autoreset mode against hand-worked tables."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from tether import EpisodeClock, StaleStateError, TetherError
from tether.errors import NonFiniteError
from tether.rollout import TrackedVectorEnv

from .helpers import TWO_ENVS, CounterPolicy, CountingEnv, DictCountingEnv, counter_value, make_vec

F, T = False, True
N = None
# One row per step t: (obs returned, reward, terminated, truncated, episode_starts, valid, final_obs
# of done rows). Env 0 runs episodes of 2 steps ending by truncation, env 1 of 3 steps ending by
# termination; an observation is (episode, step) and the reward reaching step s of episode e is 10e+s.
SAME_STEP_TABLE = [
    (((0, 1), (0, 1)), (1, 1), (F, F), (F, F), (F, F), (T, T), (N, N)),
    (((1, 0), (0, 2)), (2, 2), (F, F), (T, F), (T, F), (T, T), ((0, 2), N)),
    (((1, 1), (1, 0)), (11, 3), (F, T), (F, F), (F, T), (T, T), (N, (0, 3))),
    (((2, 0), (1, 1)), (12, 11), (F, F), (T, F), (T, F), (T, T), ((1, 2), N)),
    (((2, 1), (1, 2)), (21, 12), (F, F), (F, F), (F, F), (T, T), (N, N)),
    (((3, 0), (2, 0)), (22, 13), (F, T), (T, F), (T, T), (T, T), ((2, 2), (1, 3))),
]
# NEXT_STEP: a done row returns its final observation; its next step ignores the action, resets
# (reward 0, invalid) and that is where the new episode starts.
NEXT_STEP_TABLE = [
    (((0, 1), (0, 1)), (1, 1), (F, F), (F, F), (F, F), (T, T), (N, N)),
    (((0, 2), (0, 2)), (2, 2), (F, F), (T, F), (F, F), (T, T), ((0, 2), N)),
    (((1, 0), (0, 3)), (0, 3), (F, T), (F, F), (T, F), (F, T), (N, (0, 3))),
    (((1, 1), (1, 0)), (11, 0), (F, F), (F, F), (F, T), (T, F), (N, N)),
    (((1, 2), (1, 1)), (12, 11), (F, F), (T, F), (F, F), (T, T), ((1, 2), N)),
    (((2, 0), (1, 2)), (0, 12), (F, F), (F, F), (T, F), (F, T), (N, N)),
]
TABLES = {
    AutoresetMode.SAME_STEP: (SAME_STEP_TABLE, [5, 6]),
    AutoresetMode.DISABLED: (SAME_STEP_TABLE, [5, 6]),  # the wrapper resets done rows itself
    AutoresetMode.NEXT_STEP: (NEXT_STEP_TABLE, [4, 3]),
}
LENGTHS = (2, 3)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode", list(TABLES), ids=lambda m: m.name)
def test_custom_loop_matches_hand_table(kind: str, mode: AutoresetMode) -> None:
    """A hand-written loop with the wrapper sees exactly the hand-worked steps, in strict mode."""
    table, final_ids = TABLES[mode]
    policy = CounterPolicy()
    with TrackedVectorEnv(make_vec(kind, mode, TWO_ENVS)) as venv:
        obs, _ = venv.reset(seed=0)
        state = policy.initial_state(2, venv.clock)
        for t, (next_obs, reward, term, trunc, starts, valid, final) in enumerate(table):
            obs_t = torch.as_tensor(obs)
            # The state has counted exactly the steps of the episode it is fed (reset on time).
            assert state.h[0, :, 0].tolist() == obs_t[:, 1].tolist(), f"step {t}"
            result = policy.act(obs_t, state)
            step = venv.step(policy.env_actions(result.actions))
            assert step.obs.tolist() == [list(o) for o in next_obs], f"step {t}"
            assert step.reward.tolist() == list(reward), f"step {t}"
            assert step.terminated.tolist() == list(term), f"step {t}"
            assert step.truncated.tolist() == list(trunc), f"step {t}"
            assert step.done.tolist() == [a or b for a, b in zip(term, trunc, strict=True)]
            assert step.episode_starts.tolist() == list(starts), f"step {t}"
            assert step.valid.tolist() == list(valid), f"step {t}"
            for row, fin in enumerate(final):
                if fin is not None:
                    assert step.final_obs[row].tolist() == list(fin), f"step {t} row {row}"
            if step.truncated.any():
                # The bootstrap reads the ending episode's own state, before its reset.
                boot = policy.value(torch.as_tensor(step.final_obs), result.state, bootstrap=True)
                for row in np.flatnonzero(step.truncated):
                    ep, k = final[row]
                    assert boot[row].item() == counter_value(ep, k, LENGTHS[row] + 1)
            state = result.state.reset(step.episode_starts)
            obs = step.obs
        assert venv.clock.tick == len(table)
        assert venv.clock.episode_ids.tolist() == final_ids


@pytest.mark.parametrize(("mode", "first_start"), [(AutoresetMode.SAME_STEP, 2),
                                                   (AutoresetMode.DISABLED, 2),
                                                   (AutoresetMode.NEXT_STEP, 3)], ids=str)
def test_forgetting_the_reset_is_caught(mode: AutoresetMode, first_start: int) -> None:
    """The wrapper advanced the clock, so feeding env 0's new episode an unreset state raises."""
    policy = CounterPolicy()
    with TrackedVectorEnv(make_vec("sync", mode, TWO_ENVS)) as venv:
        obs, _ = venv.reset(seed=0)
        state = policy.initial_state(2, venv.clock)
        for _ in range(first_start):
            result = policy.act(torch.as_tensor(obs), state)
            step = venv.step(policy.env_actions(result.actions))
            state, obs = result.state, step.obs  # no state.reset(step.episode_starts)
        with pytest.raises(StaleStateError, match=r"rows \[0\] .* not reset"):
            policy.act(torch.as_tensor(obs), state)


def test_next_step_reset_on_done_instead_of_starts_is_caught() -> None:
    """NEXT_STEP: resetting on `done` (one step early) leaves the new episode unreset: caught."""
    policy = CounterPolicy()
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        obs, _ = venv.reset(seed=0)
        state = policy.initial_state(2, venv.clock)
        for _ in range(3):
            result = policy.act(torch.as_tensor(obs), state)
            step = venv.step(policy.env_actions(result.actions))
            state, obs = result.state.reset(step.done), step.obs  # wrong mask
        with pytest.raises(StaleStateError, match=r"rows \[0\] .* not reset"):
            policy.act(torch.as_tensor(obs), state)


def test_next_step_ignored_action_is_marked_invalid() -> None:
    """The env really ignores the action on the step marked invalid (it is never trained on)."""
    env = make_vec("sync", AutoresetMode.NEXT_STEP, [{"length": 1}])
    with TrackedVectorEnv(env) as venv:
        venv.reset(seed=0)
        valid = [bool(venv.step(np.array([a])).valid[0]) for a in (1, 0, 1, 0)]
        assert valid == [True, False, True, False]
        assert env.envs[0].actions == [1, 1]  # the actions of the invalid steps never arrived


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED], ids=lambda m: m.name)
def test_dict_observations_and_reused_output_arrays(mode: AutoresetMode) -> None:
    """final_obs is right for Dict spaces, even when the env reuses its output arrays (copy=False)."""
    fns = [functools.partial(DictCountingEnv, length=1)] * 2
    with TrackedVectorEnv(SyncVectorEnv(fns, autoreset_mode=mode, copy=False)) as venv:
        venv.reset(seed=0)
        step = venv.step(np.zeros(2, dtype=np.int64))
        assert step.final_obs["pos"].tolist() == [[0, 1], [0, 1]]
        assert step.final_obs["flag"].tolist() == [[0], [0]]
        assert step.obs["pos"].tolist() == [[1, 0], [1, 0]]
        assert step.obs["flag"].tolist() == [[1], [1]]


def test_disabled_mode_merges_reset_info() -> None:
    """DISABLED: info describes the returned (reset) observation; final_info the ending step."""
    specs = [{"length": 1, "masks": True}, {"length": 3, "masks": True}]
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.DISABLED, specs)) as venv:
        venv.reset(seed=0)
        step = venv.step(np.zeros(2, dtype=np.int64))
        # Row 0 was reset (step 0: action 0 legal); row 1 is at step 1 (action 1 legal).
        assert step.info["action_mask"].tolist() == [[True, False], [False, True]]
        assert step.info["_action_mask"].tolist() == [True, True]
        assert step.final_info is not None
        assert step.final_info["action_mask"][0].tolist() == [False, True]


def test_reset_after_steps_renews_every_episode() -> None:
    """A reset mid-run ends every episode: the old state is stale, a fresh one works."""
    policy = CounterPolicy()
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        obs, _ = venv.reset(seed=0)
        state = policy.initial_state(2, venv.clock)
        result = policy.act(torch.as_tensor(obs), state)
        venv.step(policy.env_actions(result.actions))
        obs, _ = venv.reset()
        assert venv.clock.tick == 2
        assert venv.clock.episode_ids.tolist() == [2, 3]
        with pytest.raises(StaleStateError):
            policy.act(torch.as_tensor(obs), result.state)
        fresh = policy.initial_state(2, venv.clock)
        policy.act(torch.as_tensor(obs), fresh)


def test_rejects_a_single_env() -> None:
    """A plain gymnasium.Env gets a TypeError that says how to wrap it."""
    with pytest.raises(TypeError, match=r"expected a gymnasium\.vector\.VectorEnv, got CountingEnv.*"
                                        r"SyncVectorEnv"):
        TrackedVectorEnv(CountingEnv())  # type: ignore[arg-type]


def test_wrong_action_shape_says_expected_and_got_and_steps_nothing() -> None:
    """An action of the wrong shape raises before the env or the clock moves."""
    with TrackedVectorEnv(make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)) as venv:
        venv.reset(seed=0)
        with pytest.raises(ValueError, match=r"expected actions shaped \(2,\) .* got shape \(2, 1\)"):
            venv.step(np.zeros((2, 1), dtype=np.int64))
        assert venv.clock.tick == 0
        step = venv.step(torch.zeros(2, dtype=torch.int64))  # tensors are accepted
        assert step.obs.tolist() == [[0, 1], [0, 1]]


def test_autoreset_mode_must_be_known() -> None:
    """Without metadata the mode must be passed; a contradicting one is refused."""
    env = make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS)
    with pytest.raises(ValueError, match="drop the argument"):
        TrackedVectorEnv(env, autoreset_mode=AutoresetMode.NEXT_STEP)
    del env.metadata["autoreset_mode"]
    with pytest.raises(ValueError, match=r"no 'autoreset_mode'.*pass"):
        TrackedVectorEnv(env)
    venv = TrackedVectorEnv(env, autoreset_mode="SameStep")
    assert venv.autoreset_mode is AutoresetMode.SAME_STEP
    venv.close()


def test_step_before_reset_and_clock_rows() -> None:
    """step() before reset() and a clock of the wrong size are clear errors."""
    env = make_vec("sync", AutoresetMode.NEXT_STEP, TWO_ENVS)
    with pytest.raises(ValueError, match="expected a clock of 2 rows"):
        TrackedVectorEnv(env, clock=EpisodeClock(3))
    with TrackedVectorEnv(env) as venv, pytest.raises(RuntimeError, match=r"call reset\(\)"):
        venv.step(np.zeros(2, dtype=np.int64))


class _RewardEnv(gym.Env[np.ndarray, np.int64]):
    """Reward ``rewards[t]`` at step ``t`` (0-based); episodes never end."""

    def __init__(self, rewards: list[float]) -> None:
        self.rewards = rewards
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return np.zeros(1, np.float32), self.rewards[self._t - 1], False, False, {}


def test_non_finite_rewards_are_named_by_rows_and_tick() -> None:
    """NaN / inf rewards raise NonFiniteError naming the rows and the tick; finite ones pass."""
    nan, inf = float("nan"), float("inf")
    rows = [[0.0, 1.0, 2.0], [0.0, -1e300, nan], [0.0, 5.0, -inf]]
    env = SyncVectorEnv([functools.partial(_RewardEnv, r) for r in rows])
    with TrackedVectorEnv(env) as venv:
        venv.reset(seed=0)
        for _ in range(2):
            step = venv.step(np.zeros(3, dtype=np.int64))
        torch.testing.assert_close(step.reward, np.array([1.0, -1e300, 5.0]))
        with pytest.raises(NonFiniteError, match=r"the rewards of env rows \[1, 2\] are NaN or inf \(at tick 3\)"
                                                 r".*Fix the env's rewards") as err:
            venv.step(np.zeros(3, dtype=np.int64))
        assert (err.value.quantity, err.value.rows, err.value.tick) == ("reward", [1, 2], 3)
        assert isinstance(err.value, TetherError)


def test_works_through_vector_wrappers() -> None:
    """Gymnasium's own vector wrappers keep the metadata the wrapper reads."""
    env = gym.wrappers.vector.RecordEpisodeStatistics(make_vec("sync", AutoresetMode.SAME_STEP, TWO_ENVS))
    with TrackedVectorEnv(env) as venv:
        venv.reset(seed=0)
        steps = [venv.step(np.zeros(2, dtype=np.int64)) for _ in range(2)]
        assert steps[1].episode_starts.tolist() == [True, False]
        assert "episode" in steps[1].info
