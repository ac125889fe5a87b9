"""Reset-aware unroll vs the per-step loop vs the fused no-reset call, as ratios measured in one run.

Forward + backward (gradients w.r.t. x, the initial state and the parameters) of an ``nn.LSTM``
over ``[T, B, in]`` with 2 % random episode starts, on CPU with 1 thread. The variants are
interleaved round by round (so machine noise hits all of them alike) and the medians compared.
Prints a markdown table with the torch version and the CPU.

``--explore`` also measures every candidate strategy tried while building ``unroll`` (the
library's forced strategies, ``pack_padded_sequence``, per-length buckets, and a loop with the
input projection hoisted out of it).

Run: ``python benchmarks/sequence_table.py [--rounds N] [--explore] [--small]``. A run of the full
shapes also writes ``benchmarks/results/sequence_table.json`` (medians and provenance, which the
README table renders from: ``python -m tether.bench tables``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from tether import RecurrentState, track
from tether.bench.provenance import collect, hardware
from tether.sequence import unroll, unroll_reference

RESULTS = Path(__file__).resolve().parent / "results"

#: (T, B, in, H): the shapes the README's sequence table reports, and a small one for quick runs.
FULL_SHAPES = [(130, 2, 64, 64), (128, 8, 64, 128), (128, 32, 128, 256), (32, 64, 64, 64)]
SMALL_SHAPES = [(32, 8, 32, 64)]
START_RATE = 0.02

Variant = Callable[[], object]


def shapes() -> list[tuple[int, int, int, int]]:
    """The full shapes when ``TETHER_BENCH_FULL=1``, else the small one."""
    return FULL_SHAPES if os.environ.get("TETHER_BENCH_FULL") == "1" else SMALL_SHAPES


def make_variants(
    shape: tuple[int, int, int, int], explore: bool = False, seed: int = 0
) -> dict[str, Variant]:
    """Zero-argument forward + backward functions: ``fused``, ``unroll``, ``reference`` (and more).

    Each returns the gradients w.r.t. x, the initial ``(h, c)`` and the LSTM's parameters.
    """
    T, B, n_in, H = shape
    torch.manual_seed(seed)
    lstm = nn.LSTM(n_in, H)
    core = track(lstm)
    x = torch.randn(T, B, n_in, requires_grad=True)
    h0 = torch.randn(1, B, H, requires_grad=True)
    c0 = torch.randn(1, B, H, requires_grad=True)
    starts = np.random.default_rng(seed).random((T, B)) < START_RATE
    wrt = [x, h0, c0, *lstm.parameters()]

    def grads(y: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> object:
        return torch.autograd.grad(y.sum() + h.sum() + c.sum(), wrt)

    def fused() -> object:
        y, (h, c) = lstm(x, (h0, c0))  # the lower bound: one call, no resets at all
        return grads(y, h, c)

    def run(fn: Callable[..., tuple[torch.Tensor, RecurrentState]], **kw: object) -> Variant:
        def variant() -> object:
            y, final = fn(core, x, starts, RecurrentState.from_tensors((h0, c0)), **kw)
            return grads(y, *final.tensors)

        return variant

    variants = {"fused": fused, "unroll": run(unroll), "reference": run(unroll_reference)}
    if explore:
        for strategy in ("spliced", "padded", "chunked"):
            variants[strategy] = run(unroll, strategy=strategy)
        variants["pack_padded"] = lambda: grads(*_packed(lstm, x, starts, h0, c0, buckets=False))
        variants["bucketed"] = lambda: grads(*_packed(lstm, x, starts, h0, c0, buckets=True))
        variants["hoisted_loop"] = lambda: grads(*_hoisted(lstm, x, starts, h0, c0))
    return variants


def _segments(starts: np.ndarray) -> list[tuple[int, int, int]]:
    """Every episode segment as ``(row, begin, end)``."""
    T, B = starts.shape
    found = []
    for b in range(B):
        cuts = [0, *(np.flatnonzero(starts[1:, b]) + 1).tolist(), T]
        found += [(b, s, e) for s, e in itertools.pairwise(cuts)]
    return found


def _packed(
    lstm: nn.LSTM, x: torch.Tensor, starts: np.ndarray, h0: torch.Tensor, c0: torch.Tensor,
    buckets: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate: segments as packed sequences (one call, or one per power-of-two length bucket)."""
    T, B, _ = x.shape
    keep = torch.from_numpy(~starts[0]).float().view(1, -1, 1)
    h0, c0 = h0 * keep, c0 * keep
    segs = _segments(starts)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for seg in segs:
        groups.setdefault(int(np.ceil(np.log2(seg[2] - seg[1]))) if buckets else 0, []).append(seg)
    y = x.new_zeros(T * B, lstm.hidden_size)
    rows_out, outs, h_fin, c_fin = [], [], [None] * B, [None] * B
    for group in groups.values():
        lengths = torch.tensor([e - s for _, s, e in group])
        longest = int(lengths.max())
        index = torch.tensor([[min(s + i, e - 1) * B + b for i in range(longest)] for b, s, e in group])
        seqs = x.reshape(T * B, -1)[index.t().reshape(-1)].view(longest, len(group), -1)
        first = torch.tensor([s == 0 for _, s, _ in group]).view(1, -1, 1)
        rows = torch.tensor([b for b, _, _ in group])
        hx = (torch.where(first, h0[:, rows], 0.0), torch.where(first, c0[:, rows], 0.0))
        out, (h, c) = lstm(pack_padded_sequence(seqs, lengths, enforce_sorted=False), hx)
        padded, _ = pad_packed_sequence(out, total_length=longest)
        for j, (b, s, e) in enumerate(group):
            rows_out.append(index[j, : e - s])
            outs.append(padded[: e - s, j])
            if e == T:
                h_fin[b], c_fin[b] = h[:, j], c[:, j]
    y = y.index_copy(0, torch.cat(rows_out), torch.cat(outs))
    return y.view(T, B, -1), torch.stack(h_fin, 1), torch.stack(c_fin, 1)  # type: ignore[arg-type]


def _hoisted(
    lstm: nn.LSTM, x: torch.Tensor, starts: np.ndarray, h0: torch.Tensor, c0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate: x @ W_ih for all steps in one matmul, then only the recurrent part per step."""
    T = x.shape[0]
    keep = torch.from_numpy(~starts).to(x.dtype).unsqueeze(-1)
    projected = torch.nn.functional.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    h, c, outputs = h0[0], c0[0], []
    for t in range(T):
        h, c = h * keep[t], c * keep[t]
        i, f, g, o = (projected[t] + h @ lstm.weight_hh_l0.t()).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h.unsqueeze(0), c.unsqueeze(0)


def measure(variants: dict[str, Variant], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and thread-CPU seconds per call, the variants interleaved round by round.

    The CPU time leaves out the time this thread waited for a core (on a shared machine).
    """
    for fn in variants.values():  # warm-up (and the one-off kernel probe)
        fn()
        fn()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return ({n: statistics.median(ts) for n, ts in wall.items()},
            {n: statistics.median(ts) for n, ts in cpu.items()})


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds per shape")
    parser.add_argument("--explore", action="store_true", help="also time every candidate strategy")
    parser.add_argument("--small", action="store_true", help="the small shape only")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default: benchmarks/results/sequence_table.json for the full"
                             " shapes, none for --small)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    todo = SMALL_SHAPES if args.small else FULL_SHAPES
    cpu = hardware()['cpu']
    print(f"torch {torch.__version__}, {cpu}, 1 thread, nn.LSTM fwd+bwd, {START_RATE:.0%} random"
          f" starts, {args.rounds} interleaved rounds, medians (load avg {os.getloadavg()[0]:.1f})")
    rows = [(shape, *measure(make_variants(shape, args.explore), args.rounds)) for shape in todo]
    for title, which in (("wall clock", 1), ("thread CPU time", 2)):
        names = list(rows[0][1])
        print(f"\n{title}, median ms (ratio to fused)\n")
        print("| T, B, in, H | " + " | ".join(names) + " | reference / unroll |")
        print("|---" * (len(names) + 2) + "|")
        for row in rows:
            med = row[which]
            cells = [f"{med[n] * 1e3:.2f} ({med[n] / med['fused']:.2f}×)" for n in names]
            print("| {}, {}, {}, {} | ".format(*row[0]) + " | ".join(cells)
                  + f" | {med['reference'] / med['unroll']:.1f}× |")
    path = args.json or (None if args.small else RESULTS / "sequence_table.json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "rounds": args.rounds, "start_rate": START_RATE, "explore": args.explore,
            "shapes": [{"shape": list(shape), "wall_seconds": wall, "cpu_seconds": cpu}
                       for shape, wall, cpu in rows], "provenance": collect()}, indent=1) + "\n")
        print(f"\nresults: {path.name}")


if __name__ == "__main__":
    main()
