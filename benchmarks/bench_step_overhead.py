"""pytest-benchmark: one tracked LSTM step vs the raw nn.LSTM step (CPU, batch 8, in 64, hidden 128).

Run: ``make bench`` or ``pytest benchmarks/bench_step_overhead.py --benchmark-only``.
For the ratios measured in one interleaved run, use ``python benchmarks/step_overhead.py``.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks._step import make_steps
from tether import mode

torch.set_num_threads(1)
STEPS = make_steps()


@pytest.mark.parametrize("variant", ["raw", "strict", "warn", "off"])
def test_lstm_step(benchmark, variant: str) -> None:  # type: ignore[no-untyped-def]
    """Median time of one step, per variant."""
    benchmark.group = "lstm-step-b8-in64-h128"
    benchmark.extra_info["torch"] = torch.__version__
    check_mode, step = STEPS[variant]
    with mode(check_mode):  # type: ignore[arg-type]
        benchmark.pedantic(step, rounds=2000, iterations=5, warmup_rounds=200)
