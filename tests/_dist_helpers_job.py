"""One rank of the 2-rank job behind tests/test_distributed.py (run as a script, one per rank).

Each rank draws its own data from ``seed + rank``, runs every helper of ``tether.distributed`` (and each collective of its context) on
it, and writes inputs and outputs to ``OUT/rank<r>.pt`` for the tests to check against numpy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd

from tether import distributed

SIZES = (5, 11)  # samples per rank: unequal, so a plain mean of the ranks' means would be wrong


def main() -> None:
    out = Path(sys.argv[1])
    ctx = distributed.init("cpu")
    r = ctx.rank
    rng = np.random.default_rng(100 + r)
    x = rng.normal(loc=3.0 * r, scale=1.0 + r, size=(SIZES[r], 3))
    result: dict[str, object] = {"rank": r, "world": ctx.world_size, "x": x}
    # running statistics: the same start, each rank its own batches, then a sync (twice)
    stats = RunningMeanStd(shape=(3,))
    sync = distributed.RunningStatsSync(stats)
    batches = [rng.normal(size=(4, 3)) + r, rng.normal(size=(6, 3)) - r]
    rounds = []
    for batch in batches:
        stats.update(batch)
        sync.sync()
        rounds.append((stats.mean.copy(), stats.var.copy(), float(stats.count)))
    result["batches"], result["rounds"] = batches, rounds
    values = torch.tensor(x[:, 0], dtype=torch.float32)
    mask = torch.tensor(rng.random(len(x)) < 0.7)
    result["masked"] = (values, mask, ctx.masked_mean_std(values, mask))
    result["any"] = (ctx.any(r == 1), ctx.any(False))
    layer = torch.nn.Linear(3, 2)  # a different init per rank (the global seed is not shared)
    torch.nn.init.normal_(layer.weight, mean=float(r))
    distributed.broadcast_module(layer)
    result["broadcast"] = [p.detach().clone() for p in layer.parameters()]
    grads = [torch.full_like(p, float(r + 1)) * (i + 1) for i, p in enumerate(layer.parameters())]
    for p, g in zip(layer.parameters(), grads, strict=True):
        p.grad = g.clone()
    weight = float(SIZES[r])
    total = distributed.average_gradients(layer.parameters(), weight=weight)
    result["grads"] = (grads, weight, total, [p.grad.detach().clone() for p in layer.parameters()])
    result["gathered"] = (ctx.all_gather({"r": r}), ctx.gather(r * 10))
    result["mean"] = ctx.mean([float(r), 2.0 * r])
    result["seeds"] = (distributed.rank_seed(7), distributed.env_seed(7, 4), distributed.is_main_process())
    torch.save(result, out / f"rank{r}.pt")
    ctx.barrier()
    distributed.shutdown()


if __name__ == "__main__":
    main()
