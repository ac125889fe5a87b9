"""A stand-in for ``tether train`` that writes a run folder's files at once (for the runner tests).

``python stub_trainer.py --config CELL.toml --run-dir DIR`` writes ``metrics.jsonl`` (4 records, the
return rising to ``100 + seed``; for an ``lstm`` core two staleness keys, one of them once NaN) and ``eval.json`` (mean return ``100 + seed``, or ``1000`` for a
``gru`` core), and appends one line to ``launches.txt`` next to the grid's cell folders. With
``STUB_FAIL_SEED=k`` in the environment the cell of seed k exits 1 with a message; with
``STUB_WAIT_FOR=n`` each cell marks itself running and waits (up to 30 s) until n cells are, then
writes how many it saw to ``run/peers.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def main() -> int:
    """Write the files a finished run leaves."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    settings = tomllib.loads(args.config.read_text(encoding="utf-8"))
    seed = settings["seed"]
    with (args.run_dir.resolve().parents[1] / "launches.txt").open("a", encoding="utf-8") as f:
        f.write(f"{args.run_dir.resolve().parent.name}\n")
    if os.environ.get("STUB_FAIL_SEED") == str(seed):
        print(f"stub: seed {seed} told to fail", file=sys.stderr)
        return 1
    if os.environ.get("STUB_WAIT_FOR"):
        grid_dir = args.run_dir.resolve().parents[1]
        (grid_dir / f"running-{seed}-{settings.get('core', 'lstm')}").touch()
        deadline = time.monotonic() + 30.0
        while len(list(grid_dir.glob("running-*"))) < int(os.environ["STUB_WAIT_FOR"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        (args.run_dir / "peers.txt").write_text(str(len(list(grid_dir.glob("running-*")))))
    final = 1000.0 if settings.get("core") == "gru" else 100.0 + seed
    with (args.run_dir / "metrics.jsonl").open("w", encoding="utf-8") as f:
        for k in range(1, 5):
            record = {"step": 100 * k, "time": 0.5 * k, "ep_return": final * k / 4}
            if settings.get("core") != "gru":  # a reported metric (its mean: seed + 2.5), once not finite
                record["staleness/dq_first"] = seed + k if k < 4 else float("nan")
                record["staleness/dq_last"] = seed + k + 1.0 / 3.0 if k < 4 else seed + 4.0
            f.write(json.dumps(record) + "\n")
    evaluation = {"episodes": 2, "mean_return": final, "std_return": 0.0, "returns": [final, final]}
    (args.run_dir / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
