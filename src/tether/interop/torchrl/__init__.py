"""tether for TorchRL pipelines: a lifecycle check, drop-in recurrent modules, conversions.

Three lines add the check to a TorchRL pipeline::

    from tether.interop.torchrl import LifecycleCheck
    env = TransformedEnv(base_env, Compose(InitTracker(), StepCounter(), LifecycleCheck(policy),
                                           policy_lstm.make_tensordict_primer()))

and swapping ``torchrl.modules.LSTMModule`` for :class:`LSTMModule` (same arguments, keys and
``state_dict``) runs the policy on tether's engine. See ``docs/torchrl.md``.

Needs ``torchrl`` (``pip install 'tether-rl[torchrl]'``); the core of tether never imports it.
"""

from __future__ import annotations

import importlib

from tether.errors import MissingDependencyError

for _name in ("torchrl", "tensordict"):
    try:
        importlib.import_module(_name)
    except ImportError as _err:
        raise MissingDependencyError(
            f"tether.interop.torchrl needs {_name}, which is not installed here:"
            " pip install 'tether-rl[torchrl]'"
        ) from _err

from tether.interop.torchrl._check import LifecycleCheck, check_slices, state_keys_of  # noqa: E402
from tether.interop.torchrl._convert import (  # noqa: E402
    clock_entries,
    episode_ids_from_traj_count,
    episode_starts_from_is_init,
    is_init_from_episode_starts,
    state_from_tensordict,
    state_to_tensordict,
)
from tether.interop.torchrl._modules import GRUModule, LSTMModule  # noqa: E402

__all__ = [
    "GRUModule",
    "LSTMModule",
    "LifecycleCheck",
    "check_slices",
    "clock_entries",
    "episode_ids_from_traj_count",
    "episode_starts_from_is_init",
    "is_init_from_episode_starts",
    "state_from_tensordict",
    "state_keys_of",
    "state_to_tensordict",
]
