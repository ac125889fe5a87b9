"""TOML, read one way: the ``tomllib`` of this Python (``tomli`` on 3.10) and settings files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tether.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_toml", "tomllib"]


def read_toml(path: str | Path, what: str) -> tuple[Path, dict[str, Any]]:
    """The file at ``path`` and its parsed contents (``what`` names the kind in messages).

    Raises:
        FileNotFoundError: when the file is missing ("no {what} file at PATH").
        ConfigError: when it is not valid TOML.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no {what} file at {source}")
    try:
        return source, tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from err
