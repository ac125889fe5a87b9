"""make_vector_env: a vector env of any registered gymnasium id, and its live state as plain data.

An id is what ``gymnasium.make`` takes: ``"CartPole-v1"``, ``"tether/Recall-v0"``, or
``"some_pkg.module:Their/Task-v0"`` (the module is imported first, which registers the id). Modules
named in ``env_imports`` are imported before the id is looked up, and ``env_kwargs`` go to the env.

Every env this factory makes is wrapped (outermost) in a small recorder that notes how its current
episode began (the seed, or the RNG state before an autoreset) and the actions taken since. That
record is plain data: :func:`env_state` reads it, and :func:`load_env_state` rebuilds the same live
episodes in fresh envs by replaying it, so a checkpoint never pickles an env, a wrapper or a
callable. The replay is exact for any env whose episode is determined by its ``np_random`` and the
actions (every gymnasium-conforming env); it is checked against a digest of every observation of
the episode so far, and rows whose replay differs are named in a warning (a difference no
observation has shown yet goes unnoticed).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from tether.errors import CheckpointError, ConfigError, TetherError, format_rows

__all__ = ["check_import_consent", "env_state", "import_env_modules", "load_env_state", "make_vector_env",
           "obs_normalizer"]

_OWN_PACKAGES = ("tether", "gymnasium")  # importing their modules runs no code a file could choose


def import_env_modules(modules: Sequence[str]) -> None:
    """Import each module (it registers its env ids with gymnasium on import).

    Raises:
        ConfigError: when a module cannot be found or imported.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f"env_imports: cannot import {name!r} ({err}); install the package that registers"
                " the env, or fix the module name"
            ) from err


def check_import_consent(env_id: str, env_imports: Sequence[str], *, allowed: Sequence[str],
                         source: str | os.PathLike[str]) -> None:
    """Refuse a saved run whose env would import a module nobody allowed (a checkpoint runs no code).

    Making ``env_id`` imports the modules in ``env_imports`` and the ``module`` of a
    ``"module:Id"``. Those that only a file names are imported only when the user allows them
    (``allowed``, the CLI's ``--env-import NAME``): tether's and gymnasium's own modules, and
    modules this process has already imported, need no consent.

    Args:
        env_id / env_imports: what the saved run names.
        allowed: modules the user allows.
        source: the file that names them (for the message).

    Raises:
        CheckpointError: naming the first module nobody allowed and how to allow it.
    """
    module, sep, _ = env_id.rpartition(":")
    wanted = [*env_imports, *([module] if sep else [])]
    for name in wanted:
        own = name.partition(".")[0] in _OWN_PACKAGES or name in sys.modules
        if not own and name not in allowed:
            raise CheckpointError(
                f"{source} asks to import the module {name!r} (to make its env {env_id!r}); tether imports"
                f" nothing only a file names: if you trust it, allow it with --env-import {name}"
                f" (Python: allow_imports=[{name!r}])")


def _check_env_id(env_id: str, env_imports: Sequence[str] = ()) -> None:
    """Import ``env_imports`` (and the ``module:`` part of ``env_id``) and check the id is registered.

    Raises:
        ConfigError: for a module that cannot be imported or an id gymnasium does not know.
    """
    from tether.envs import ENV_IDS  # noqa: PLC0415 (importing it registers the tether/ tasks)

    import_env_modules(env_imports)
    module, sep, name = env_id.rpartition(":")
    if sep:
        import_env_modules([module])
    try:
        gym.spec(name)
    except gym.error.Error as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"unknown env id {env_id!r} ({reason}). If a package registers it, import it first:"
            f" --env-import PKG (TOML: env_imports = [\"PKG\"]) or write the id as 'PKG:{name}';"
            f" tether's own tasks: {', '.join(ENV_IDS)}"
        ) from err


class _Replayable(gym.Wrapper[Any, Any, Any, Any]):
    """Record how the current episode began and its actions, so fresh envs can replay it."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self._start: dict[str, Any] = {"seed": None, "rng": None, "options": None}
        self._actions: list[Any] = []
        self._digest = hashlib.blake2b(digest_size=16)  # of every observation of the episode
        self._autoreset_next = False
        self.tether_restore: dict[str, Any] | None = None  # set per env by load_env_state

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        rng = None if seed is not None else self.env.unwrapped.np_random.bit_generator.state
        self._start = {"seed": seed, "rng": rng, "options": options}
        self._actions = []
        self._autoreset_next = False
        obs, info = self.env.reset(seed=seed, options=options)
        self._digest = _digest([obs])
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        if self._autoreset_next:
            # The interrupted run's vector env would reset this row now (next-step autoreset):
            # do what it would have done, with what it would have returned.
            obs, info = self.reset()
            return obs, 0.0, False, False, info
        self._actions.append(_copy_tree(action))  # a copy: the caller may reuse its array
        obs, reward, terminated, truncated, info = self.env.step(action)
        _update(self._digest, obs)
        return obs, reward, terminated, truncated, info

    def tether_record(self) -> dict[str, Any]:
        """The episode so far as plain data (numpy arrays and Python values)."""
        actions: Any = list(self._actions)
        if actions and all(isinstance(a, np.ndarray) for a in actions):
            actions = np.stack(actions)
        return {"start": dict(self._start), "actions": actions, "digest": self._digest.hexdigest()}

    def tether_replay(self) -> bool:
        """Replay the record in ``tether_restore``; True when it gives the recorded observations."""
        record, self.tether_restore = self.tether_restore, None
        if record is None:
            raise RuntimeError("tether_replay: no record was set")  # a bug in load_env_state
        start, actions = record["start"], record["actions"]
        if start["rng"] is not None:
            generator = np.random.Generator(getattr(np.random, start["rng"]["bit_generator"])())
            generator.bit_generator.state = start["rng"]
            self.env.unwrapped.np_random = generator
        obs, _ = self.env.reset(seed=start["seed"], options=start["options"])
        digest = _digest([obs])
        for action in actions:
            obs, *_ = self.env.step(action)
            _update(digest, obs)
        self._start = dict(start)
        self._actions = [_copy_tree(a) for a in actions]
        self._digest = digest
        self._autoreset_next = bool(record["autoreset_next"])
        return bool(digest.hexdigest() == record["digest"])


def _copy_tree(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_copy_tree(v) for v in tree)
    return np.array(tree, copy=True)


def _update(digest: Any, tree: Any) -> None:
    if isinstance(tree, dict):
        for key in sorted(tree):
            _update(digest, tree[key])
    elif isinstance(tree, tuple | list):
        for value in tree:
            _update(digest, value)
    else:
        digest.update(np.ascontiguousarray(tree).tobytes())


def _digest(trees: list[Any]) -> Any:
    digest = hashlib.blake2b(digest_size=16)
    for tree in trees:
        _update(digest, tree)
    return digest


class _MakeEnv:
    """A picklable env factory (async workers unpickle it); it holds only plain data."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], imports: Sequence[str]) -> None:
        self.env_id, self.kwargs, self.imports = env_id, dict(kwargs), tuple(imports)

    def __call__(self) -> gym.Env[Any, Any]:
        import_env_modules(self.imports)
        try:
            env = gym.make(self.env_id, **self.kwargs)
        except (TypeError, ValueError) as err:
            # An env's own refusal of its kwargs (a TetherError, or a plain TypeError / ValueError
            # naming one of them) is the user's input: one line. Anything else is a bug in the env.
            named = any(key in str(err) for key in self.kwargs)
            if not self.kwargs or not (named or isinstance(err, TetherError)):
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"env_kwargs: {self.env_id} refused {sorted(self.kwargs)} ({reason})") from err
        return _Replayable(env)


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    vector: Literal["sync", "async"] = "sync",
    normalize_obs: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    env_imports: Sequence[str] = (),
) -> gym.vector.VectorEnv[Any, Any, Any]:
    """Make a gymnasium vector env of ``num_envs`` copies of ``env_id``.

    Args:
        env_id: any id ``gymnasium.make`` takes, ``"module:Id"`` included.
        num_envs: copies.
        vector: ``"sync"`` (one process) or ``"async"`` (one process per env).
        normalize_obs: wrap in gymnasium's running-mean/std observation normaliser.
        env_kwargs: keyword arguments for each env.
        env_imports: modules imported first (they register their ids).

    Returns:
        The vector env (next-step autoreset, gymnasium's default).

    Raises:
        ConfigError: for an unknown id (saying which package may need importing, and how), a
            module that cannot be imported, or kwargs the env does not take.

    Example:
        >>> venv = make_vector_env("tether.envs:tether/Recall-v0", 2, env_kwargs={"delay": 3})
        >>> venv.num_envs, venv.single_action_space
        (2, Discrete(4))
        >>> venv.close()
    """
    _check_env_id(env_id, env_imports)
    fns = [_MakeEnv(env_id, env_kwargs or {}, env_imports) for _ in range(num_envs)]
    if vector == "async":  # a worker's error would arrive as a traceback: fail here, in one line
        fns[0]().close()
    venv: gym.vector.VectorEnv[Any, Any, Any] = (
        gym.vector.AsyncVectorEnv(fns) if vector == "async" else gym.vector.SyncVectorEnv(fns))
    if normalize_obs:
        space = venv.single_observation_space
        if not isinstance(space, gym.spaces.Box):
            venv.close()
            raise ConfigError(
                f"normalize_obs: gymnasium's observation normaliser takes Box observations, but"
                f" {env_id} observes {space}; drop --normalize-obs for this task")
        venv = gym.wrappers.vector.NormalizeObservation(venv)
    return venv


def obs_normalizer(venv: Any) -> gym.wrappers.vector.NormalizeObservation | None:
    """The observation normaliser wrapping ``venv`` (or its inner envs), or ``None``."""
    while venv is not None:
        if isinstance(venv, gym.wrappers.vector.NormalizeObservation):
            return venv
        venv = getattr(venv, "env", None)
    return None


def env_state(venv: gym.vector.VectorEnv[Any, Any, Any], pending: np.ndarray) -> dict[str, Any]:
    """The live state of a vector env from :func:`make_vector_env`, as plain data.

    Args:
        venv: the vector env.
        pending: bool ``[E]``: rows whose next step is a next-step autoreset.

    Returns:
        ``{"episodes": [per-env record], "obs_rms": {"mean", "var", "count"} or None}``.
    """
    base: Any = venv.unwrapped  # Sync / AsyncVectorEnv: call() reaches each env's recorder
    episodes = base.call("tether_record")
    records = [dict(r, autoreset_next=bool(p)) for r, p in zip(episodes, pending, strict=True)]
    norm = obs_normalizer(venv)
    rms = None if norm is None else {"mean": np.array(norm.obs_rms.mean), "var": np.array(norm.obs_rms.var),
                                     "count": float(norm.obs_rms.count)}
    return {"episodes": records, "obs_rms": rms}


def load_env_state(venv: gym.vector.VectorEnv[Any, Any, Any], state: dict[str, Any]) -> None:
    """Rebuild the live episodes saved by :func:`env_state` in a fresh (reset) vector env.

    Each env replays its episode from the recorded start; the observation normaliser gets the saved
    statistics. Warns (``RuntimeWarning``) naming the rows whose replay gave other observations (an
    env whose episodes are not determined by its seed and actions): those rows continue from the
    replayed state.

    Raises:
        ValueError: when the saved state is for another number of envs.
    """
    episodes = state["episodes"]
    if len(episodes) != venv.num_envs:
        raise ValueError(f"load_env_state: expected {venv.num_envs} env records, got {len(episodes)}")
    base: Any = venv.unwrapped
    base.set_attr("tether_restore", list(episodes))
    same = np.asarray(base.call("tether_replay"), dtype=np.bool_)
    if not same.all():
        warnings.warn(
            f"restoring the envs: rows {format_rows(np.flatnonzero(~same))} did not replay to the saved"
            " observations (the env is not determined by its seed and actions); they continue from"
            " the replayed state, so the resumed run is not bit-identical", RuntimeWarning, stacklevel=2)
    norm = obs_normalizer(venv)
    rms = state["obs_rms"]
    if norm is not None and rms is not None:
        norm.obs_rms.mean = np.array(rms["mean"])
        norm.obs_rms.var = np.array(rms["var"])
        norm.obs_rms.count = float(rms["count"])
