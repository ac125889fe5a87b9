"""The README's custom-loop example runs as written, in strict mode, without a lifecycle error."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_custom_loop_example_runs() -> None:
    """The first python block of the README executes and leaves a valid state behind."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "README has no python example"
    code = blocks[0].replace("range(1000)", "range(100)")
    assert len(code.strip().splitlines()) <= 21
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    state = namespace["state"]
    clock = namespace["clock"]
    assert state.tick == clock.tick == 100  # type: ignore[attr-defined]
    assert clock.window == 3  # type: ignore[attr-defined]
