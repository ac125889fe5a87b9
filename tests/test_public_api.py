"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import subprocess
import sys

import pytest

import tether

PUBLIC = {
    "EpisodeClock", "FactoredRecurrentActorCritic", "GraphLeakError", "LifecycleError", "LifecycleWarning",
    "ObservationError",
    "PPOConfig", "R2D2", "R2D2Config", "RecurrentPPO", "RecurrentState", "ReplayAlignmentError", "StaleStateError", "StateMismatchError", "StateSpec",
    "TetherError", "TrackedRNN", "__version__", "get_mode", "mode", "set_mode", "track",
}

PACKAGES = {
    "tether.bench": {"add_parser", "run"},
    "tether.distributed": {"DistContext", "RunningStatsSync", "average_gradients", "broadcast_module", "env_seed",
                           "init", "is_main_process", "rank", "rank_seed", "shutdown", "world_size"},
    "tether.clock": {"EpisodeClock"},
    "tether.envs": {"ENV_IDS", "MaskObservation", "RecallEnv", "make_vector_env"},
    "tether.errors": {"ActionMaskError", "CheckpointError", "ConfigError", "GraphLeakError", "LifecycleError",
                      "LifecycleWarning", "MissingDependencyError", "NonFiniteError", "ObservationError",
                      "ReplayAlignmentError",
                      "RunFolderError", "StaleStateError",
                      "StateMismatchError", "TetherError", "context"},
    "tether.modes": {"Mode", "get_mode", "mode", "set_mode"},
    "tether.nets": {"ActionLayout", "ActionMaskError", "FactoredRecurrentActorCritic", "MemorylessPolicy",
                    "ObservationLayout", "ObservationNorm", "PolicyStep", "QActResult", "QValues",
                    "RecurrentQNetwork"},
    "tether.ppo": {"PPOConfig", "PPOLoss", "PRESETS", "RecurrentPPO", "ppo_loss"},
    "tether.r2d2": {"PRESETS", "R2D2", "R2D2Config"},
    "tether.replay": {"History", "ReplayBatch", "SequenceReplay", "check_sequences"},
    "tether.policy": {"ActResult", "EvalResult", "ExportablePolicy", "RecurrentPolicy"},
    "tether.rollout": {"RecurrentRolloutBuffer", "RolloutCollector", "RolloutSink", "RolloutStorage",
                       "SequenceMinibatch", "TrackedVectorEnv", "Transition", "VecStep", "compute_gae"},
    "tether.sequence": {"Segments", "Strategy", "UnrollPlan", "plan_unroll", "unroll", "unroll_reference",
                        "unroll_segments"},
    "tether.state": {"RecurrentState"},
    "tether.testing": {"assert_memory_flat", "assert_no_graph_leak", "graph_size", "rss_bytes"},
    "tether.train": {"EnvConfig", "EvalSummary", "MetricsLogger", "NetworkConfig", "Run", "RunConfig", "RunFolder",
                     "TrainerSettings",
                     "evaluate_policy", "load_checkpoint", "plot_runs", "read_metrics", "save_checkpoint"},
    "tether.tracking": {"DEFAULT_MAX_GRAPH_STEPS", "GRAPH_BYTES_PER_STATE_BYTE", "StateSpec", "TrackedRNN", "track"},
    "tether.export": {"ExportError", "ExportResult", "ExportedFileError", "ExportedInputError", "ExportedPolicy",
                      "ParityReport", "check_parity", "export_policy", "read_metadata"},
    "tether.interop.torchrl": {"GRUModule", "LSTMModule", "LifecycleCheck", "check_slices", "clock_entries",
                               "episode_ids_from_traj_count", "episode_starts_from_is_init",
                               "is_init_from_episode_starts", "state_from_tensordict", "state_keys_of",
                               "state_to_tensordict"},
}
# The packages of an optional extra, with a module the extra installs (their surface is pinned where it is).
EXTRAS = {"tether.interop.torchrl": "torchrl"}


def _import(package: str) -> object:
    if package in EXTRAS:
        pytest.importorskip(EXTRAS[package])
    return importlib.import_module(package)


def test_public_names_are_pinned() -> None:
    """tether.__all__ is exactly the documented surface, and every name resolves."""
    assert set(tether.__all__) == PUBLIC
    for name in tether.__all__:
        assert getattr(tether, name) is not None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_surfaces_are_pinned(package: str) -> None:
    """Each package's __all__ is pinned, and every name in it resolves."""
    module = _import(package)
    assert set(module.__all__) == PACKAGES[package]
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_public_callables_have_docstrings() -> None:
    """Every public class and function says what it does."""
    for package in ["tether", *(p for p in PACKAGES if p not in EXTRAS or importlib.util.find_spec(EXTRAS[p]))]:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{package}.{name}"
                assert obj.__doc__.strip(), f"{package}.{name}"


def test_track_is_the_function_even_after_its_module_loads() -> None:
    """tether.track stays the function once tether.tracking (a submodule) is imported."""
    importlib.import_module("tether.tracking")
    assert callable(tether.track)
    assert tether.track.__module__ == "tether.tracking"


def test_import_tether_and_its_pytest_plugin_do_not_import_torch() -> None:
    """The pytest11 plugin (loaded in every pytest session of the environment) stays light."""
    code = ("import sys, tether, tether._pytest_plugin; "
            "heavy = sorted(m for m in ('torch', 'numpy', 'gymnasium') if m in sys.modules); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
