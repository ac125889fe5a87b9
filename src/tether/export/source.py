"""What an export starts from: a trained run (its folder or checkpoint file) read back as plain parts.

The policy comes back through the trainer's own loader (the same network, weights and rebuilt envs
that ``tether eval`` uses); the observation statistics come from the checkpoint's env state, frozen
as the evaluation freezes them. Env modules that only the checkpoint names are imported only with
the user's consent (``allow_imports`` / ``--env-import``), as everywhere in tether.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tether.envs.factory import check_import_consent, obs_normalizer
from tether.errors import CheckpointError
from tether.export.exporters import file_sha256
from tether.nets import ObservationNorm

__all__ = ["RunSource", "load_run", "run_settings"]


class RunSource(NamedTuple):
    """A trained run, ready to export.

    Attributes:
        policy: the trained policy (on the CPU, in eval mode).
        obs_norm: the frozen observation statistics, or ``None`` for a run without normalisation.
        observation_space: the env's own (raw) observation space: what the exported graph takes.
        settings: the run's settings (its algorithm's config, e.g. a ``PPOConfig``).
        checkpoint: the checkpoint file.
        sha256: its sha256 (hex).
    """

    policy: Any
    obs_norm: ObservationNorm | None
    observation_space: Any
    settings: Any
    checkpoint: Path
    sha256: str


def run_settings(path: str | Path, *, allow_imports: Sequence[str] = ()) -> tuple[Any, Path]:
    """The settings a run's checkpoint records (its algorithm's config), and the checkpoint file.

    Raises:
        FileNotFoundError: when there is no checkpoint.
        CheckpointError: for a foreign or corrupt file, or env imports nobody allowed.
        ConfigError: for settings that are not valid.
    """
    # the trainer's side, on demand
    from tether.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: PLC0415

    source = checkpoint_path(path)
    data = load_checkpoint(source, required=("config",))
    if not isinstance(data["config"], dict):
        raise CheckpointError(f"{source}: the payload is corrupt (its config is not a table)")
    from tether.cli import algorithm_of  # noqa: PLC0415 (the registry of trainers, on demand)

    config_class = algorithm_of(data, source).config
    settings = config_class.from_dict({**data["config"], "run_dir": str(source.parent)}, source=str(source))
    check_import_consent(settings.env_id, settings.env_imports, source=source, allowed=list(allow_imports))
    return settings, source


def load_run(path: str | Path, *, allow_imports: Sequence[str] = ()) -> RunSource:
    """Read a run back for export: its policy, observation statistics, settings and checkpoint hash.

    The run is loaded by the trainer its checkpoint's ``algo`` names (as ``tether eval`` loads it).

    Args:
        path: a run folder or a checkpoint file.
        allow_imports: modules the checkpoint's env may import (see ``tether eval --env-import``).

    Raises:
        FileNotFoundError: when there is no checkpoint.
        CheckpointError / ConfigError: as ``tether eval`` raises them for the same run.
    """
    from tether.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: PLC0415

    source = checkpoint_path(path)
    from tether.cli import algorithm_of  # noqa: PLC0415

    trainer_class = algorithm_of(load_checkpoint(source), source).trainer_class()
    trainer = trainer_class.load(source, progress=False, allow_imports=allow_imports)
    try:
        wrapper = obs_normalizer(trainer.run.venv)
        norm = None if wrapper is None else ObservationNorm.from_wrapper(wrapper)
        # the normaliser reports an unbounded space; the graph takes the env's own observations
        raw = (trainer.run.venv if wrapper is None else wrapper.env).single_observation_space
        policy = trainer.policy.cpu().eval()
        settings = trainer.config
    finally:
        trainer.close()
    return RunSource(policy, norm, raw, settings, source, file_sha256(source))
