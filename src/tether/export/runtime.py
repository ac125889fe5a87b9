"""ExportedPolicy: drive an exported policy file from numpy, keeping its hidden state between calls.

It reads only the file (its graph and its tether metadata): no trainer, no network classes. An ONNX
file runs on onnxruntime, a ``.pt2`` file on torch. Each :meth:`~ExportedPolicy.act` feeds the
observation, the episode-start flags and the state the previous call returned, and keeps the new
state; the graph zeroes the rows that start an episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tether.export import metadata as meta_io
from tether.export._deps import load_onnx, ort_session
from tether.export.errors import ExportedFileError, ExportedInputError

__all__ = ["ExportedPolicy"]

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _onnx_runner(path: Path, threads: int | None) -> tuple[dict[str, Any], Runner]:
    model = load_onnx(path)
    meta = meta_io.onnx_metadata(model, str(path))
    session = ort_session(model, path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feeds), strict=True))

    return meta, run


def torch_runner(module: Any, meta: dict[str, Any]) -> Runner:
    """A runner of an (unflattened) ``torch.export`` program module, taking and giving numpy arrays."""
    import torch  # noqa: PLC0415 (the ONNX path needs no torch)

    names_in = [*meta["inputs"]["obs"], *meta["inputs"]["state"], meta["inputs"]["episode_start"],
                *meta["inputs"]["action_mask"]]
    names_out = [*meta["outputs"]["action"], *meta["outputs"]["distribution"], meta["outputs"]["value"],
                 *meta["outputs"]["state"]]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names_in))
        return {n: t.detach().numpy() for n, t in zip(names_out, out, strict=True)}

    return run


def _pt2_runner(path: Path) -> tuple[dict[str, Any], Runner]:
    import torch  # noqa: PLC0415

    meta = meta_io.read_metadata(path)
    try:
        program = torch.export.load(str(path))
    except Exception as err:  # a corrupt archive: torch's own error types
        raise ExportedFileError(f"{path} is not a loadable .pt2 program ({type(err).__name__})",
                                path=str(path)) from None
    return meta, torch_runner(program.module(), meta)


def _leaf(obs: Any, path: list[Any]) -> Any:
    for key in path:
        obs = obs[key]
    return obs


class ExportedPolicy:
    """A policy exported by ``tether export``, run from numpy: ``reset(num_envs)``, then ``act`` each step.

    Args:
        meta: the file's tether metadata.
        runner: one graph call, ``{input name: array} -> {output name: array}``.
        source: where it came from (for messages).
        seed: seeds the sampling of a stochastic file (one exported with ``--stochastic``).

    Example::

        policy = ExportedPolicy.load("policy.onnx")
        policy.reset(num_envs)
        obs, info = env.reset(seed=0)
        done = np.ones(num_envs, dtype=bool)
        while True:
            action = policy.act(obs, done)   # done: True where obs starts a new episode
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated | truncated    # (single env / same-step autoreset: see docs/export.md)
    """

    def __init__(self, meta: dict[str, Any], runner: Runner, *, source: str = "<memory>",
                 seed: int | None = None) -> None:
        self.metadata = meta
        self.source = source
        self._run = runner
        self._rng = np.random.default_rng(seed)
        self._state: dict[str, np.ndarray] | None = None
        self.last: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None, seed: int | None = None) -> ExportedPolicy:
        """Open an exported ``.onnx`` (onnxruntime) or ``.pt2`` (torch) file.

        Args:
            path: the file.
            threads: onnxruntime's intra-op threads (default: its own choice).
            seed: seeds the sampling of a stochastic file.

        Raises:
            ExportedFileError: for a missing, corrupt or foreign file, or one without tether metadata.
            MissingDependencyError: for an ONNX file without onnx / onnxruntime installed.
        """
        source = Path(path)
        meta_io.read_metadata(source)  # refuses a missing / foreign file before any runtime loads it
        if source.suffix == ".onnx":
            meta, run = _onnx_runner(source, threads)
        else:
            meta, run = _pt2_runner(source)
        return cls(meta, run, source=str(source), seed=seed)

    # ------------------------------------------------------------------------------------------
    @property
    def num_envs(self) -> int | None:
        """Rows of the kept state (``None`` before :meth:`reset`)."""
        return None if self._state is None else int(next(iter(self._state.values())).shape[1])

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The kept state tensors ``{name: [L, B, H]}`` (the inputs the next call feeds)."""
        if self._state is None:
            raise RuntimeError("ExportedPolicy: no state yet; call reset(num_envs) first")
        return self._state

    def reset(self, num_envs: int) -> None:
        """Start ``num_envs`` rows from a zero state.

        Raises:
            ExportedInputError: for fewer than 1 row, or another count than a fixed-batch file takes.
        """
        fixed = self.metadata["batch"]
        if num_envs < 1 or fixed not in ("dynamic", num_envs):
            want = "1 or more rows" if fixed == "dynamic" else f"{fixed} rows (the file's fixed batch)"
            raise ExportedInputError(f"ExportedPolicy.reset: expected {want}, got {num_envs}; export with"
                                     " --dynamic-batch to run any batch")
        sig = self.metadata["signature"]
        self._state = {}
        for name in self.metadata["inputs"]["state"]:
            layers, _, hidden = sig[name]["shape"]
            self._state[name] = np.zeros((layers, num_envs, hidden), dtype=sig[name]["dtype"])

    def feeds(self, obs: Any, done: Any = None, action_mask: Any = None) -> dict[str, np.ndarray]:
        """The graph's inputs for one call from the kept state (what :meth:`step` feeds).

        Raises:
            ExportedInputError: for an observation, flags or mask with another number of rows.
        """
        rows, sig, names = self.state["h"].shape[1], self.metadata["signature"], self.metadata["inputs"]
        out: dict[str, np.ndarray] = {}
        for leaf in self.metadata["obs_leaves"]:
            value = np.asarray(_leaf(obs, leaf["path"]), dtype=sig[leaf["name"]]["dtype"])
            if value.ndim == 0 or value.shape[0] != rows:
                raise ExportedInputError(f"ExportedPolicy: expected {leaf['name']} with {rows} rows (one per"
                                         f" env), got the shape {list(value.shape)}")
            out[leaf["name"]] = value.reshape(rows, *sig[leaf["name"]]["shape"][1:])
        start = np.zeros(rows, dtype=bool) if done is None else np.asarray(done, dtype=bool).reshape(-1)
        if start.shape != (rows,):
            raise ExportedInputError(f"ExportedPolicy: expected done flags shaped [{rows}], got"
                                     f" {list(np.shape(done))}")
        out[names["episode_start"]] = start
        out.update(self.state)
        if names["action_mask"]:
            width = sig[names["action_mask"][0]]["shape"][1]
            mask = (np.ones((rows, width), dtype=bool) if action_mask is None
                    else np.asarray(action_mask, dtype=bool))
            if mask.shape != (rows, width):
                raise ExportedInputError(f"ExportedPolicy: expected an action mask shaped [{rows}, {width}],"
                                         f" got {list(mask.shape)}")
            out[names["action_mask"][0]] = mask
        return out

    def step(self, obs: Any, done: Any = None, action_mask: Any = None) -> dict[str, np.ndarray]:
        """One graph call: every output by name (actions or distribution parameters, value, next state).

        The kept state becomes the call's next state. ``done`` is bool ``[B]``: True where ``obs`` is
        the first observation of a new episode (those rows start from zeros); ``None``: no row does.
        """
        if self._state is None:
            first = np.asarray(_leaf(obs, self.metadata["obs_leaves"][0]["path"]))
            self.reset(int(first.shape[0]) if first.ndim else 1)
        out = self._run(self.feeds(obs, done, action_mask))
        names = self.metadata["inputs"]["state"]
        self._state = {n: out[f"next_{n}"] for n in names}
        self.last = out
        return out

    def act(self, obs: Any, done: Any = None, action_mask: Any = None) -> Any:
        """The actions for ``obs`` as the env's ``step`` takes them; keeps the next state.

        Args:
            obs: a batch ``[B, ...]`` (a dict / tuple of batches for a Dict / Tuple space).
            done: bool ``[B]``: True where ``obs`` is the first observation of a new episode (the
                previous step's ``terminated | truncated`` when the env was reset by hand or autoresets
                in the same step; see docs/export.md for gymnasium's next-step autoreset).
            action_mask: bool ``[B, D]`` for a file with masks (``None``: all allowed).

        Returns:
            numpy actions in the action space's dtype and shape (Box clipped to its bounds,
            Discrete / MultiDiscrete with ``start``): a dict for a Dict space, a tuple for a Tuple.
        """
        out = self.step(obs, done, action_mask)
        parts = [self._head_action(head, out) for head in self.metadata["heads"]]
        space = self.metadata.get("action_space") or {}
        if space.get("type") == "Dict":
            return {h["name"]: p for h, p in zip(self.metadata["heads"], parts, strict=True)}
        if space.get("type") == "Tuple":
            return tuple(parts)
        return parts[0]

    def _head_action(self, head: Mapping[str, Any], out: dict[str, np.ndarray]) -> np.ndarray:
        rows = self.state["h"].shape[1]
        if self.metadata["deterministic"]:
            raw = out[head["outputs"][0]]
        elif head["kind"] == "box":
            mean, log_std = (out[n].astype(np.float64) for n in head["outputs"])
            raw = mean + np.exp(log_std) * self._rng.standard_normal(mean.shape)
        else:
            log_probs = out[head["outputs"][0]].astype(np.float64)
            picks = []
            for part in np.split(log_probs, np.cumsum(head["sizes"])[:-1], axis=-1):
                gumbel = -np.log(-np.log(self._rng.uniform(1e-12, 1.0, part.shape)))
                picks.append(np.argmax(part + gumbel, axis=-1))
            raw = np.stack(picks, axis=-1)
        if head["kind"] == "box":
            flat = np.clip(raw.reshape(rows, -1).astype(np.float64), head["low"], head["high"])
            if np.issubdtype(np.dtype(head["dtype"]), np.integer):
                flat = np.rint(flat)
            return flat.astype(head["dtype"]).reshape(rows, *head["shape"])
        index: np.ndarray = raw.astype(np.int64).reshape(rows, -1) + np.asarray(head["start"]).reshape(1, -1)
        shape = (rows,) if head["kind"] == "discrete" else (rows, *head["shape"])
        return np.asarray(index.reshape(shape), dtype=head["dtype"])
