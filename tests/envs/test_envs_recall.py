"""Tests for tether.envs.recall: the cue-delay-query task."""

from __future__ import annotations

from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import tether.envs  # noqa: F401  (registers the tether/ ids)
from tether.envs import RecallEnv
from tether.errors import ConfigError

# Observations for num_cues=3: three cue features, then the query flag.
CUE_1 = [0.0, 1.0, 0.0, 0.0]
BLANK = [0.0, 0.0, 0.0, 0.0]
QUERY = [0.0, 0.0, 0.0, 1.0]


def _play(env: RecallEnv, actions: list[int]) -> list[tuple[list[float], float, bool, bool, dict[str, Any]]]:
    return [
        (obs.tolist(), reward, terminated, truncated, info)
        for obs, reward, terminated, truncated, info in (env.step(a) for a in actions)
    ]


def test_hand_checked_episode_with_a_right_answer() -> None:
    """delay=2, cue 1: cue, two blanks, the query; answering 1 pays 1 and ends the episode."""
    env = RecallEnv(delay=2, num_cues=3)
    obs, info = env.reset(seed=0, options={"cue": 1})
    assert (obs.tolist(), info) == (CUE_1, {})
    assert obs.dtype == np.float32
    assert _play(env, [2, 0, 1, 1]) == [
        (BLANK, 0.0, False, False, {}),
        (BLANK, 0.0, False, False, {}),
        (QUERY, 0.0, False, False, {}),
        (BLANK, 1.0, True, False, {"is_success": True}),
    ]


def test_hand_checked_episode_with_a_wrong_answer() -> None:
    """A wrong answer at the query pays 0, ends the episode and reports is_success False."""
    env = RecallEnv(delay=2, num_cues=3)
    env.reset(seed=0, options={"cue": 1})
    assert _play(env, [1, 1, 1, 2])[-1] == (BLANK, 0.0, True, False, {"is_success": False})


def test_zero_delay_puts_the_query_right_after_the_cue() -> None:
    """With delay=0 the episode is two steps: the cue, then the query."""
    env = RecallEnv(delay=0, num_cues=3)
    obs, _ = env.reset(seed=0, options={"cue": 1})
    assert obs.tolist() == CUE_1
    assert _play(env, [0, 1]) == [
        (QUERY, 0.0, False, False, {}),
        (BLANK, 1.0, True, False, {"is_success": True}),
    ]


@settings(max_examples=30, deadline=None)
@given(
    delay=st.integers(0, 12),
    num_cues=st.integers(2, 6),
    filler=st.lists(st.integers(0, 5), min_size=13, max_size=13),
)
def test_only_the_query_action_is_scored(delay: int, num_cues: int, filler: list[int]) -> None:
    """Actions before the query pay 0 whatever they are; the episode lasts delay + 2 steps."""
    env = RecallEnv(delay=delay, num_cues=num_cues)
    for cue in range(num_cues):
        env.reset(options={"cue": cue})
        steps = _play(env, [a % num_cues for a in filler[: delay + 1]] + [cue])
        assert len(steps) == env.episode_length == delay + 2
        assert [s[1] for s in steps] == [0.0] * (delay + 1) + [1.0]
        assert [s[2] for s in steps] == [False] * (delay + 1) + [True]
        assert not any(s[3] for s in steps)


@settings(max_examples=30, deadline=None)
@given(delay=st.integers(0, 10), num_cues=st.integers(2, 8))
def test_memoryless_policies_score_chance_and_memory_scores_one(delay: int, num_cues: int) -> None:
    """After the cue, observations do not depend on the cue: a memoryless policy gets 1/num_cues exactly."""
    env = RecallEnv(delay=delay, num_cues=num_cues)
    after_cue: list[list[list[float]]] = []
    for cue in range(num_cues):
        first, _ = env.reset(options={"cue": cue})
        assert int(np.argmax(first[:num_cues])) == cue
        after_cue.append([step[0] for step in _play(env, [0] * (delay + 2))])
    assert all(seq == after_cue[0] for seq in after_cue)

    # A memoryless deterministic policy answers the same fixed action k at the (cue-independent)
    # query; averaged over the uniform cue it is right 1/num_cues of the time, whatever k is.
    for k in range(num_cues):
        returns = []
        for cue in range(num_cues):
            env.reset(options={"cue": cue})
            returns.append(sum(step[1] for step in _play(env, [k] * (delay + 2))))
        assert np.mean(returns) == pytest.approx(env.chance_return) == pytest.approx(1 / num_cues)

    # Remembering the first observation's cue is always right.
    for cue in range(num_cues):
        first, _ = env.reset(options={"cue": cue})
        remembered = int(np.argmax(first[:num_cues]))
        assert sum(step[1] for step in _play(env, [remembered] * (delay + 2))) == env.optimal_return == 1.0


def test_same_seed_same_cues_and_forced_cues_do_not_shift_them() -> None:
    """reset(seed=s) fixes the cue sequence of later episodes; forcing a cue leaves the others unchanged."""

    def cues(env: RecallEnv, seed: int, force_second: bool) -> list[int]:
        out = [int(np.argmax(env.reset(seed=seed)[0][:-1]))]
        for episode in range(1, 20):
            options = {"cue": 0} if force_second and episode == 1 else None
            out.append(int(np.argmax(env.reset(options=options)[0][:-1])))
        return out

    first = cues(RecallEnv(num_cues=5), seed=123, force_second=False)
    assert cues(RecallEnv(num_cues=5), seed=123, force_second=False) == first
    forced = cues(RecallEnv(num_cues=5), seed=123, force_second=True)
    assert forced[1] == 0
    assert forced[:1] + forced[2:] == first[:1] + first[2:]
    assert cues(RecallEnv(num_cues=5), seed=124, force_second=False) != first


def test_cues_are_uniform_over_seeds() -> None:
    """Over 2 000 seeds every cue appears, each about a quarter of the time for num_cues=4."""
    env = RecallEnv(num_cues=4)
    counts = Counter(int(np.argmax(env.reset(seed=seed)[0][:4])) for seed in range(2000))
    assert sorted(counts) == [0, 1, 2, 3]
    # Binomial(2000, 1/4): standard deviation ~19, so 60 is a > 3-sigma band.
    assert all(abs(n - 500) < 60 for n in counts.values())


def test_properties_describe_the_episode() -> None:
    """query_step, episode_length, chance_return and optimal_return follow delay and num_cues."""
    env = RecallEnv(delay=5, num_cues=4)
    assert (env.query_step, env.episode_length) == (6, 7)
    assert (env.chance_return, env.optimal_return) == (0.25, 1.0)
    assert env.observation_space.shape == (5,)
    assert env.action_space == gym.spaces.Discrete(4)
    assert RecallEnv().delay == 8
    assert RecallEnv().num_cues == 4


def test_check_env_passes_without_any_warning() -> None:
    """check_env (render and close checks included) passes with warnings as errors."""
    check_env(gym.make("tether/Recall-v0").unwrapped)
    check_env(gym.make("tether/Recall-v0", delay=0, num_cues=2).unwrapped)


def test_ansi_render_describes_each_step() -> None:
    """render_mode='ansi' gives one line per step, ending with the verdict."""
    env = RecallEnv(delay=1, num_cues=3, render_mode="ansi")
    assert env.render() == "RecallEnv: not reset yet"
    env.reset(seed=0, options={"cue": 2})
    lines = [env.render()]
    for action in (0, 0, 1):
        env.step(action)
        lines.append(env.render())
    assert lines == [
        "step 0 of 3: cue 2 of 3",
        "step 1 of 3: blank, keep the cue in memory",
        "step 2 of 3: query, answer with the cue's index",
        "episode over: answered 1, cue was 2 (wrong)",
    ]
    assert RecallEnv().render() is None


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"delay": -1}, ValueError, r"delay expects an int >= 0 \(0 puts the query right after the cue\), got -1"),
    ({"num_cues": 1}, ValueError, r"num_cues expects an int >= 2 \(a single cue leaves nothing to remember\)"),
    ({"num_cues": 0}, ValueError, r"num_cues expects an int >= 2 .*, got 0"),
    ({"delay": 2.5}, TypeError, r"delay expects an int >= 0, got 2.5 \(float\)"),
    ({"num_cues": True}, TypeError, r"num_cues expects an int >= 2, got True \(bool\)"),
])
def test_bad_parameters_raise_saying_what_was_expected(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad constructor arguments raise at construction, through gymnasium.make too."""
    with pytest.raises(error, match=message):
        RecallEnv(**kwargs)
    with pytest.raises(error, match=message):
        gym.make("tether/Recall-v0", **kwargs)


def test_out_of_range_parameters_are_tether_config_errors() -> None:
    """A value out of range is a ConfigError (so the CLI prints one line), still a ValueError."""
    with pytest.raises(ConfigError, match=r"RecallEnv: delay expects an int >= 0 .*, got -3") as err:
        RecallEnv(delay=-3)
    assert isinstance(err.value, ValueError)


def test_unsupported_render_mode_raises() -> None:
    """Only None and 'ansi' are render modes; anything else raises ValueError listing them."""
    with pytest.raises(ValueError, match=r"render_mode expects None or one of \['ansi'\], got 'human'"):
        RecallEnv(render_mode="human")


def test_numpy_integer_parameters_are_accepted() -> None:
    """numpy integers work as delay and num_cues and are stored as Python ints."""
    env = RecallEnv(delay=np.int64(3), num_cues=np.int32(5))  # type: ignore[arg-type]
    assert (type(env.delay), type(env.num_cues)) == (int, int)
    assert (env.delay, env.num_cues) == (3, 5)


@pytest.mark.parametrize(("options", "message"), [
    ({"cue": 4}, r"options\['cue'\] expects an int in \[0, 3\], got 4"),
    ({"cue": -1}, r"options\['cue'\] expects an int in \[0, 3\], got -1"),
    ({"cue": 1.0}, r"options\['cue'\] expects an int in \[0, 3\], got 1.0"),
    ({"que": 1}, r"unknown option\(s\) \['que'\]; the only option is 'cue'"),
])
def test_bad_reset_options_raise(options: dict[str, Any], message: str) -> None:
    """A forced cue out of range or an unknown option raises ValueError."""
    with pytest.raises(ValueError, match=message):
        RecallEnv().reset(seed=0, options=options)


def test_out_of_order_steps_and_bad_actions_raise() -> None:
    """Stepping before reset or after the query, or with an action outside the space, raises."""
    env = RecallEnv(delay=0, num_cues=3)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\); call env.reset\(\)"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expects an action in Discrete\(3\) \(an int in \[0, 2\]\), got 3"):
        env.step(3)
    env.step(0)
    env.step(0)
    with pytest.raises(RuntimeError, match=r"after the episode terminated at the query; call env\.reset"):
        env.step(0)
    env.reset()
    env.step(np.int64(2))  # numpy integers from action_space.sample() are valid


def _train_query_policy(memory: bool, updates: int = 150, num_envs: int = 64) -> float:
    """REINFORCE on the query action of Recall-v0 (delay 8, 4 cues); returns greedy success rate."""
    envs = gym.make_vec("tether/Recall-v0", num_envs=num_envs, vectorization_mode="sync")
    size = 5  # num_cues + 1 features
    core: torch.nn.Module = (
        torch.nn.GRU(size, 32) if memory else torch.nn.Sequential(torch.nn.Linear(size, 32), torch.nn.Tanh())
    )
    head = torch.nn.Linear(32, 4)
    optimizer = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=1e-2)

    def query_logits(seed: int | None) -> torch.Tensor:
        observations = [envs.reset(seed=seed)[0]]
        for _ in range(9):  # the cue step and the 8 blank steps; any action pays 0 there
            observations.append(envs.step(np.zeros(num_envs, dtype=np.int64))[0])
        x = torch.as_tensor(np.stack(observations))  # (T=10, B, F)
        features = core(x)[0] if memory else core(x)  # (T, B, 32)
        return head(features[-1])  # the query step: (B, 4)

    for update in range(updates):
        dist = torch.distributions.Categorical(logits=query_logits(seed=0 if update == 0 else None))
        action = dist.sample()
        reward = torch.as_tensor(envs.step(action.numpy())[1], dtype=torch.float32)
        loss = -((reward - reward.mean()) * dist.log_prob(action)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        greedy = query_logits(seed=None).argmax(-1)
    return float(envs.step(greedy.numpy())[1].mean())


@pytest.mark.slow
def test_a_recurrent_policy_learns_recall_and_a_feed_forward_one_cannot() -> None:
    """A GRU policy trained by REINFORCE nears 1.0 success; the same recipe without memory stays near 1/4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and the run is reproducible
    try:
        recurrent, feed_forward = _train_query_policy(memory=True), _train_query_policy(memory=False)
    finally:
        torch.set_num_threads(threads)
    assert recurrent >= 0.9
    # Chance is 0.25; 64 greedy answers have a standard deviation of ~0.05.
    assert feed_forward <= 0.45
