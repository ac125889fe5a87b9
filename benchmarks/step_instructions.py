"""Per-step overhead of a tracked LSTM step in CPU instructions (callgrind), which load does not move.

Wall-clock ratios on a shared machine swing by 3x when other work runs; an instruction count is
exact and repeatable. For each variant (the raw ``nn.LSTM`` loop, and the tracked loop in strict,
warn and off mode; see ``benchmarks/_step.py``) it runs ``step_overhead.py --only VARIANT`` under
``valgrind --tool=callgrind`` with ``--steps`` LONG and SHORT and divides the difference by
``LONG - SHORT``: the instructions of one loop step, start-up subtracted.

Run: ``python benchmarks/step_instructions.py [--tree DIR] [--out results.json]``; ``--tree``
measures another checkout of tether (its ``src`` and its own benchmark script), so two commits can
be compared with the same interpreter and torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("raw", "strict", "warn", "off")


def instructions(tree: Path, variant: str, steps: int) -> int:
    """Instructions callgrind counts for one run of ``--steps`` steps of ``variant``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               str(tree / "benchmarks" / "step_overhead.py"), "--only", variant, "--steps", str(steps)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total for {variant}:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def _commit(tree: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main() -> None:
    """Count, print a markdown table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the tether checkout to measure")
    parser.add_argument("--long", type=int, default=1100)
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    args = parser.parse_args()
    tree = args.tree.resolve()
    per_step = {}
    for variant in args.variants:
        diff = instructions(tree, variant, args.long) - instructions(tree, variant, args.short)
        per_step[variant] = diff / (args.long - args.short)
    import torch  # noqa: PLC0415 (only for the version string)

    result = {
        "benchmark": "step_instructions", "commit": _commit(tree), "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "steps": [args.short, args.long], "instructions_per_step": per_step,
        "ratio_to_raw": {v: n / per_step["raw"] for v, n in per_step.items()} if "raw" in per_step else {},
    }
    print(f"commit {result['commit'][:12]}, torch {result['torch']}, instructions per loop step")
    print("| variant | instructions / step | ratio to raw |\n|---|---|---|")
    for variant, count in per_step.items():
        ratio = result["ratio_to_raw"].get(variant)
        print(f"| {variant} | {count:,.0f} | {'' if ratio is None else f'{ratio:.3f}'} |")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
