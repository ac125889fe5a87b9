"""Tests for tether.envs.recall's non-Box observations: Recall as one Discrete, and as a Dict."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import tether.envs  # noqa: F401  (registers the tether/ ids)
from tether.envs import RecallEnv
from tether.ppo import PPOConfig, RecurrentPPO


def _as_box(obs: Any, num_cues: int) -> list[float]:
    """The Box observation carrying the same information as a Discrete / Dict one (the class table)."""
    box = [0.0] * (num_cues + 1)
    if isinstance(obs, dict):
        cue, query = int(obs["cue"]), int(obs["phase"]) == 2
    else:
        cue, query = int(obs), int(obs) == num_cues + 1
    if cue < num_cues:
        box[cue] = 1.0
    if query:
        box[num_cues] = 1.0
    return box


def test_hand_checked_discrete_episode() -> None:
    """delay=1, 3 cues, cue 2: observations 2 (cue), 3 (blank), 4 (query), then 3 after the answer."""
    env = RecallEnv(delay=1, num_cues=3, observation="discrete")
    assert env.observation_space == spaces.Discrete(5)
    obs, _ = env.reset(seed=0, options={"cue": 2})
    steps = [env.step(a) for a in (0, 0, 2)]
    assert [int(obs)] + [int(s[0]) for s in steps] == [2, 3, 4, 3]
    assert [s[1:4] for s in steps] == [(0.0, False, False), (0.0, False, False), (1.0, True, False)]
    assert isinstance(obs, np.int64)
    assert env.observation_space.contains(obs)


def test_hand_checked_dict_episode() -> None:
    """delay=1, 3 cues, cue 0: the cue shows only at phase 0; phase 1 blank, phase 2 the query."""
    env = RecallEnv(delay=1, num_cues=3, observation="dict")
    assert env.observation_space == spaces.Dict({"cue": spaces.Discrete(4), "phase": spaces.Discrete(3)})
    obs, _ = env.reset(seed=0, options={"cue": 0})
    steps = [env.step(a) for a in (1, 1, 1)]
    seen = [obs] + [s[0] for s in steps]
    assert [(int(o["cue"]), int(o["phase"])) for o in seen] == [(0, 0), (3, 1), (3, 2), (3, 1)]
    assert steps[-1][1:] == (0.0, True, False, {"is_success": False})
    assert all(env.observation_space.contains(o) for o in seen)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 6), st.integers(2, 5), st.integers(0, 2**16),
       st.lists(st.integers(0, 4), min_size=8, max_size=8))
def test_every_observation_kind_carries_the_same_information(delay: int, num_cues: int, seed: int,
                                                             actions: list[int]) -> None:
    """Same seed and actions: the Discrete and Dict episodes map onto the Box episode step by step."""
    runs: dict[str, tuple[list[Any], list[float]]] = {}
    for kind in ("box", "discrete", "dict"):
        env = RecallEnv(delay=delay, num_cues=num_cues, observation=kind)  # type: ignore[arg-type]
        obs, _ = env.reset(seed=seed)
        seen, rewards = [obs], []
        for a in actions[: env.episode_length]:
            obs, reward, *_ = env.step(a % num_cues)
            seen.append(obs)
            rewards.append(reward)
        runs[kind] = (seen, rewards)
    box = [o.tolist() for o in runs["box"][0]]
    for kind in ("discrete", "dict"):
        assert [_as_box(o, num_cues) for o in runs[kind][0]] == box
        assert runs[kind][1] == runs["box"][1]


@pytest.mark.parametrize("env_id", ["tether/RecallDiscrete-v0", "tether/RecallDict-v0"])
def test_check_env_passes_and_make_vec_batches(env_id: str) -> None:
    """gymnasium's checker passes; a sync vector env batches the observations as int64 arrays."""
    check_env(gym.make(env_id).unwrapped)
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    leaves = list(obs.values()) if isinstance(obs, dict) else [obs]
    assert [(leaf.shape, leaf.dtype) for leaf in leaves] == [((3,), np.int64)] * len(leaves)
    envs.close()


def test_registered_ids_pass_their_kwargs() -> None:
    """The two ids build RecallEnv with observation= set, and keep delay / num_cues settable."""
    env = gym.make("tether/RecallDict-v0", delay=3, num_cues=5).unwrapped
    assert isinstance(env, RecallEnv)
    assert (env.observation, env.delay, env.num_cues) == ("dict", 3, 5)
    assert gym.make("tether/RecallDiscrete-v0").unwrapped.observation == "discrete"  # type: ignore[attr-defined]


def test_unknown_observation_kind_raises() -> None:
    """observation= takes one of the three kinds."""
    with pytest.raises(ValueError, match=r"observation expects one of \['box', 'discrete', 'dict'\], got 'image'"):
        RecallEnv(observation="image")  # type: ignore[arg-type]


@pytest.mark.slow
def test_recurrent_ppo_learns_recall_discrete_and_the_memoryless_twin_cannot(tmp_path: Any) -> None:
    """The proposed recall-discrete preset: RecurrentPPO reaches the 0.9 bar, its memoryless twin stays near 1/4."""
    settings = {"env_id": "tether/RecallDiscrete-v0", "total_steps": 50_000, "n_steps": 64, "minibatch_envs": 2,
                "gae_lambda": 0.95, "ent_coef": 0.01, "learning_rate": 1e-3}
    means = {}
    for recurrent in (True, False):
        trainer = RecurrentPPO(PPOConfig(**settings, seed=0, recurrent=recurrent, progress=False,  # type: ignore[arg-type]
                                         run_dir=str(tmp_path / str(recurrent))))
        trainer.train()
        means[recurrent] = trainer.evaluate(20)["mean_return"]
        trainer.close()
    assert means[True] >= 0.9
    # A memoryless policy cannot see the cue at the query: 0.25 in expectation over 20 episodes.
    assert means[False] <= 0.5
