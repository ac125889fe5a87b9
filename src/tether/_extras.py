"""Optional dependencies: the layers built on the core say which extra to install when one is missing.

The core (clock, state, tracking, sequence, testing) needs torch, attrs and numpy only, so it
installs beside a script pinned to any gymnasium (or none). The rollout loop, the networks built
from gymnasium spaces, the tasks and the trainer need gymnasium: ``pip install 'tether-rl[rl]'``.
"""

from __future__ import annotations

import importlib

from tether.errors import MissingDependencyError

_EXTRAS = {"gymnasium": "rl", "tqdm": "rl", "matplotlib": "plot", "scipy": "bench"}


def require(module: str, feature: str) -> None:
    """Import ``module`` or raise one clear line naming the extra that installs it.

    Raises:
        MissingDependencyError: when ``module`` cannot be imported.
    """
    try:
        importlib.import_module(module)
    except ImportError as err:
        extra = _EXTRAS.get(module, "rl")
        raise MissingDependencyError(
            f"{feature} needs {module}, which is not installed here: pip install 'tether-rl[{extra}]'"
            " (the core, tether.track / RecurrentState / EpisodeClock / tether.sequence, works without it)"
        ) from err
