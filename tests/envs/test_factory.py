"""Tests for tether.envs.factory: ids as gymnasium.make takes them, and envs rebuilt by replay."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tether.envs import make_vector_env
from tether.envs.factory import check_import_consent, env_state, load_env_state, obs_normalizer
from tether.errors import CheckpointError, ConfigError


def test_module_colon_id_imports_and_kwargs_reach_the_env() -> None:
    """'module:Id' imports the module (as gym.make does) and env_kwargs go to every env."""
    venv = make_vector_env("tether.envs:tether/Recall-v0", 3, env_kwargs={"num_cues": 5})
    assert venv.num_envs == 3
    assert venv.single_action_space == gym.spaces.Discrete(5)
    venv.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env_id": "nope/Missing-v0"}, r"unknown env id 'nope/Missing-v0' \(.*\)\. If a package registers it,"
                                        r" import it first: --env-import PKG \(TOML: env_imports = \[\"PKG\"\]\)"
                                        r" or write the id as 'PKG:nope/Missing-v0'; tether's own tasks:"),
        ({"env_id": "CartPole-v1", "env_imports": ["no.such.module"]}, "env_imports: cannot import 'no.such.module'"),
        ({"env_id": "tether/Recall-v0", "env_kwargs": {"colour": 1}}, r"env_kwargs: tether/Recall-v0 refused"),
        ({"env_id": "tether/Recall-v0", "env_kwargs": {"delay": -3}},
         r"env_kwargs: tether/Recall-v0 refused \['delay'\] \(RecallEnv: delay expects an int >= 0 .*got -3\)$"),
    ],
)
def test_bad_ids_imports_and_kwargs_are_config_errors(kwargs: dict, match: str) -> None:
    """Each says what is wrong and how to fix it, as a ConfigError (a ValueError too)."""
    env_id = kwargs.pop("env_id")
    with pytest.raises(ConfigError, match=match):
        make_vector_env(env_id, 2, **kwargs)


class _Broken(gym.Env[np.ndarray, np.int64]):
    """An env whose constructor has a bug (a ValueError that names no keyword argument)."""

    def __init__(self, **kwargs: object) -> None:
        raise ValueError("math domain error")


gym.register("tether_tests/Broken-v0", entry_point=_Broken)


def test_an_envs_own_bug_keeps_its_traceback() -> None:
    """A ValueError from an env that is not about its kwargs is not dressed up as the user's mistake."""
    with pytest.raises(ValueError, match="math domain error") as err:
        make_vector_env("tether_tests/Broken-v0", 1, env_kwargs={"size": 3})
    assert not isinstance(err.value, ConfigError)


@pytest.mark.parametrize(
    ("env_id", "imports", "allowed", "refused"),
    [
        ("CartPole-v1", ["pwnmod"], [], "pwnmod"),
        ("pwnmod:Their/Task-v0", [], [], "pwnmod"),
        ("pkg.sub:Their/Task-v0", ["pkg"], ["pkg"], "pkg.sub"),
        ("CartPole-v1", ["pwnmod"], ["pwnmod"], None),
        ("tether.envs:tether/Recall-v0", ["tether.envs", "gymnasium.envs.classic_control"], [], None),
        ("CartPole-v1", ["numpy"], [], None),  # already imported here: importing it runs nothing
    ],
)
def test_a_saved_run_imports_only_what_the_user_allows(env_id: str, imports: list[str], allowed: list[str],
                                                       refused: str | None) -> None:
    """Modules only a file names need consent; tether's, gymnasium's and imported ones do not."""
    if refused is None:
        check_import_consent(env_id, imports, allowed=allowed, source="run.pt")
        return
    with pytest.raises(CheckpointError, match=rf"run.pt asks to import the module '{refused}' .*"
                                              rf" allow it with --env-import {refused} "):
        check_import_consent(env_id, imports, allowed=allowed, source="run.pt")


def _step_until_a_row_is_pending(venv: gym.vector.VectorEnv, rng: np.random.Generator) -> np.ndarray:
    """Step (past a first autoreset) until some row has just ended: its next step is an autoreset."""
    steps = 0
    while True:
        _, _, term, trunc, _ = venv.step(rng.integers(2, size=venv.num_envs))
        steps += 1
        if steps > 30 and (term | trunc).any():
            return term | trunc


def test_replay_continues_mid_episode_bit_exactly() -> None:
    """Fresh envs loaded with env_state step exactly as the originals, autoresets of ended rows included."""
    rng = np.random.default_rng(0)
    live = make_vector_env("tether/CartPole-NoVel-v0", 4, normalize_obs=True)
    live.reset(seed=7)
    pending = _step_until_a_row_is_pending(live, rng)
    assert pending.any()
    assert not pending.all()
    saved = env_state(live, pending)
    fresh = make_vector_env("tether/CartPole-NoVel-v0", 4, normalize_obs=True)
    fresh.reset(seed=123)
    load_env_state(fresh, saved)
    norm_live, norm_fresh = obs_normalizer(live), obs_normalizer(fresh)
    assert norm_live is not None
    assert norm_fresh is not None
    np.testing.assert_array_equal(norm_fresh.obs_rms.mean, norm_live.obs_rms.mean)
    for _ in range(60):
        actions = rng.integers(2, size=4)
        a, b = live.step(actions), fresh.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    live.close()
    fresh.close()


def test_replay_of_another_number_of_envs_is_refused() -> None:
    """A saved state of 2 envs does not load into 3."""
    two = make_vector_env("tether/Recall-v0", 2)
    two.reset(seed=0)
    saved = env_state(two, np.zeros(2, dtype=bool))
    three = make_vector_env("tether/Recall-v0", 3)
    three.reset(seed=0)
    with pytest.raises(ValueError, match="load_env_state: expected 3 env records, got 2"):
        load_env_state(three, saved)
    two.close()
    three.close()
