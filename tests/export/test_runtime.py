"""Tests for the metadata inside exported files, the ExportedPolicy runtime, and what is refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from tether.export import (
    ExportedFileError,
    ExportedInputError,
    ExportedPolicy,
    ExportError,
    export_policy,
    read_metadata,
)
from tether.export.metadata import space_to_json
from tether.nets import MemorylessPolicy, ObservationNorm

from .helpers import ACTIONS, OBS, make_policy

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def dict_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A dynamic-batch ONNX file of an LSTM policy with Dict observations and Dict actions, masked."""
    policy = make_policy("dict", "dict", "lstm", 2, False)
    path = tmp_path_factory.mktemp("export") / "dict.onnx"
    export_policy(policy, path, action_masks=True, env_id="tether-test/Export-dict-dict-masked-v0",
                  checkpoint_sha256="ab" * 32)
    return policy, path


def test_the_metadata_drives_the_graph(dict_onnx: tuple[Any, Path]) -> None:
    """metadata_props 'tether' holds the issue's keys; the graph's names and batch dims follow it."""
    _, path = dict_onnx
    model = onnx.load(str(path))
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == "tether"))
    assert meta == read_metadata(path)
    assert meta["inputs"] == {"obs": ["obs.cue", "obs.nest.0", "obs.pos"], "episode_start": "episode_start",
                              "state": ["h", "c"], "action_mask": ["action_mask"]}
    assert meta["outputs"] == {"action": ["action.aim", "action.move"], "distribution": [], "value": "value",
                               "state": ["next_h", "next_c"]}
    assert meta["state_shapes"] == {n: [4, "batch", 8] for n in ("h", "c", "next_h", "next_c")}
    assert meta["observation_space"] == space_to_json(OBS["dict"])
    assert meta["action_space"]["spaces"]["aim"] == {"type": "Box", "shape": [2], "dtype": "float32",
                                                     "low": -1.0, "high": 1.0}
    assert (meta["env_id"], meta["checkpoint_sha256"]) == ("tether-test/Export-dict-dict-masked-v0", "ab" * 32)
    assert meta["tether_version"]
    assert (meta["batch"], meta["deterministic"]) == ("dynamic", True)
    graph_inputs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                    for v in model.graph.input}
    assert graph_inputs == {"obs.cue": ["batch"], "obs.nest.0": ["batch", 2], "obs.pos": ["batch", 2],
                            "h": [4, "batch", 8], "c": [4, "batch", 8], "episode_start": ["batch"],
                            "action_mask": ["batch", 3]}


def test_act_returns_env_actions_and_keeps_the_state(dict_onnx: tuple[Any, Path]) -> None:
    """act equals env_actions(policy.act(...)) step after step, the state fed back, resets by done flags."""
    policy, path = dict_onnx
    runtime = ExportedPolicy.load(path)
    runtime.reset(3)
    state = policy.initial_state(3)
    space = OBS["dict"]
    space.seed(0)
    rng = np.random.default_rng(0)
    for t in range(6):
        samples = [space.sample() for _ in range(3)]
        obs = {"cue": np.array([s["cue"] for s in samples]), "pos": np.stack([s["pos"] for s in samples]),
               "nest": (np.stack([s["nest"][0] for s in samples]),)}
        done = np.array([t == 0, t == 3, False])
        mask = np.ones((3, 3), dtype=bool)
        mask[:, rng.integers(3)] = False
        state = state.reset(done)
        want = policy.act(obs, state, torch.as_tensor(mask), deterministic=True)
        got = runtime.act(obs, done, mask)
        state = want.state
        expected = policy.env_actions(want.actions)
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key].dtype == expected[key].dtype
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5)
        np.testing.assert_allclose(runtime.state["h"], want.state.tensors[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(runtime.last["value"], want.value.numpy(), atol=1e-5)


def test_a_done_row_starts_from_zeros_inside_the_graph(dict_onnx: tuple[Any, Path]) -> None:
    """A row flagged done gives what a fresh runtime gives for it; the other rows keep their memory."""
    _, path = dict_onnx
    warm, fresh = ExportedPolicy.load(path), ExportedPolicy.load(path)
    obs = {"cue": np.array([1, 2]), "pos": np.zeros((2, 2), np.float32), "nest": (np.ones((2, 2), np.int8),)}
    for _ in range(3):
        warm.act(obs, None)
    assert np.abs(warm.state["h"]).sum() > 0
    fresh.reset(2)
    warm.step(obs, np.array([True, False]))
    fresh.step(obs, np.array([True, True]))
    np.testing.assert_allclose(warm.last["next_h"][:, 0], fresh.last["next_h"][:, 0], atol=1e-6)
    assert not np.allclose(warm.last["next_h"][:, 1], fresh.last["next_h"][:, 1])


def test_discrete_starts_and_box_bounds_reach_the_env(tmp_path: Path) -> None:
    """A .pt2 runtime adds a Discrete space's start and clips Box actions to the space's bounds."""
    discrete = ExportedPolicy.load(export_policy(make_policy("box", "discrete"), tmp_path / "d.pt2").path)
    actions = discrete.act(np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32))
    assert actions.dtype == np.int64
    assert set(actions.tolist()) <= {2, 3, 4}
    box = ExportedPolicy.load(export_policy(make_policy("box", "box"), tmp_path / "b.pt2").path)
    actions = box.act(np.full((8, 3), 2.0, np.float32))
    assert (actions.shape, actions.dtype) == ((8, 2), np.float32)
    assert np.abs(actions).max() <= 0.5


def test_inputs_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    """A fixed-batch file refuses another batch; observations and flags must have one row per env."""
    runtime = ExportedPolicy.load(export_policy(make_policy("box", "discrete"), tmp_path / "f.pt2", batch=2).path)
    with pytest.raises(ExportedInputError, match=r"expected 2 rows \(the file's fixed batch\), got 3"):
        runtime.reset(3)
    runtime.reset(2)
    with pytest.raises(ExportedInputError, match=r"expected obs with 2 rows \(one per env\), got the shape \[3, 3\]"):
        runtime.act(np.zeros((3, 3), np.float32))
    with pytest.raises(ExportedInputError, match=r"expected done flags shaped \[2\], got \[3\]"):
        runtime.act(np.zeros((2, 3), np.float32), np.zeros(3, bool))


def _plain_onnx(path: Path) -> None:
    """An ONNX model of another program: one Identity node, no tether metadata."""
    helper, proto = onnx.helper, onnx.TensorProto
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", proto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", proto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))


def test_files_that_are_not_tether_exports_are_refused(tmp_path: Path) -> None:
    """Missing, corrupt, foreign (no tether metadata) and tampered files: one line each."""
    with pytest.raises(ExportedFileError, match=r"no exported policy at .*nope\.onnx"):
        ExportedPolicy.load(tmp_path / "nope.onnx")
    (tmp_path / "forged.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportedFileError, match=r"forged\.onnx is not a readable ONNX model"):
        ExportedPolicy.load(tmp_path / "forged.onnx")
    (tmp_path / "forged.pt2").write_bytes(b"not an archive")
    with pytest.raises(ExportedFileError, match=r"forged.pt2 is not a readable .pt2 archive"):
        ExportedPolicy.load(tmp_path / "forged.pt2")
    _plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(ExportedFileError, match=r"plain\.onnx is an ONNX model without tether metadata"):
        read_metadata(tmp_path / "plain.onnx")
    with zipfile.ZipFile(tmp_path / "plain.pt2", "w") as archive:
        archive.writestr("plain/models/model.json", "{}")
    with pytest.raises(ExportedFileError, match=r"plain.pt2 is a .pt2 archive without tether metadata"):
        ExportedPolicy.load(tmp_path / "plain.pt2")
    model = onnx.load(str(tmp_path / "plain.onnx"))
    entry = model.metadata_props.add()
    entry.key, entry.value = "tether", json.dumps({"format": "tether-export", "format_version": 99})
    onnx.save(model, str(tmp_path / "tampered.onnx"))
    with pytest.raises(ExportedFileError, match="tether export format version 99, this tether reads version 1"):
        ExportedPolicy.load(tmp_path / "tampered.onnx")
    (tmp_path / "policy.txt").write_text("x")
    with pytest.raises(ExportedFileError, match=r"expected a .onnx or .pt2 file .* got the suffix '.txt'"):
        ExportedPolicy.load(tmp_path / "policy.txt")


@pytest.mark.parametrize(("make", "kwargs", "part", "match"), [
    (lambda: MemorylessPolicy(make_policy("box", "discrete")), {}, "policy", "memoryless run"),
    (lambda: torch.nn.Linear(2, 2), {}, "policy", "Linear has no export_step"),
    (lambda: make_policy("dict", "discrete"), {"obs_norm": ObservationNorm(np.zeros(1), np.ones(1))}, "obs_norm",
     "normalises a Box observation"),
    (lambda: make_policy("box", "box"), {"action_masks": True}, "action_mask", "no discrete head"),
    (lambda: make_policy("box", "discrete"), {"batch": 0}, "batch", "expected a batch of 1 or more rows"),
    (lambda: make_policy("box", "discrete"), {"file_format": "tflite"}, "format", "expected the format onnx or pt2"),
    (lambda: make_policy("box", "discrete"), {"file_format": "pt2"}, "format", "does not match the file name"),
])
def test_what_cannot_be_exported_is_refused_naming_the_part(
        tmp_path: Path, make: Any, kwargs: dict[str, Any], part: str, match: str) -> None:
    """Each refusal is one line naming the part; nothing is written."""
    with pytest.raises(ExportError, match=match) as caught:
        export_policy(make(), tmp_path / "policy.onnx", **kwargs)
    assert caught.value.part == part
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "policy.onnx").exists()


def test_space_json_covers_every_space() -> None:
    """Spaces become plain JSON: uniform bounds as a number, infinities as strings; others refused."""
    assert space_to_json(gym.spaces.Box(-np.inf, np.inf, (2,))) == {"type": "Box", "shape": [2], "dtype": "float32",
                                                                   "low": "-inf", "high": "inf"}
    assert space_to_json(gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, np.inf], np.float32)))["high"] == [1.0, "inf"]
    assert space_to_json(ACTIONS["multi_discrete"]) == {"type": "MultiDiscrete", "nvec": [3, 2], "start": [0, 0],
                                                        "dtype": "int64"}
    assert json.loads(json.dumps(space_to_json(OBS["dict"])))["spaces"]["nest"]["spaces"][0] == {
        "type": "MultiBinary", "n": 2}
    with pytest.raises(ExportError, match="has no JSON form"):
        space_to_json(gym.spaces.Text(5))
