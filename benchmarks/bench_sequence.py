"""pytest-benchmark: reset-aware unroll vs the per-step loop vs the fused no-reset call (CPU, 1 thread).

Forward + backward of an ``nn.LSTM`` with 2 % random episode starts. Small shape by default;
``TETHER_BENCH_FULL=1`` runs the three full shapes (T, B, in, H) = (128, 8, 64, 128),
(128, 32, 128, 256) and (32, 64, 64, 64).

Run: ``pytest benchmarks/bench_sequence.py --benchmark-only``. For the ratios measured in one
interleaved run, use ``python benchmarks/sequence_table.py``.
"""

from __future__ import annotations

import platform

import pytest
import torch

from benchmarks.sequence_table import make_variants, shapes

torch.set_num_threads(1)


@pytest.mark.parametrize("shape", shapes(), ids=lambda s: "T{}-B{}-in{}-H{}".format(*s))
@pytest.mark.parametrize("variant", ["fused", "unroll", "reference"])
def test_unroll_fwd_bwd(benchmark, shape: tuple[int, int, int, int], variant: str) -> None:  # type: ignore[no-untyped-def]
    """Median time of one forward + backward, per variant and shape."""
    fn = make_variants(shape)[variant]
    benchmark.group = "unroll-T{}-B{}-in{}-H{}".format(*shape)
    benchmark.extra_info.update(torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                                threads=torch.get_num_threads())
    rounds = 5 if variant == "reference" else 20
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)
