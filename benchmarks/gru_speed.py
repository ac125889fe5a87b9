"""GRU vs LSTM forward + backward on CPU: nn.GRU, nn.LSTM and the fast GRU's candidates, as ratios.

Every variant computes the gradients w.r.t. x, the initial state and every parameter (forward +
backward) at ``(T, B, in, H)``, on CPU with 1 thread. The variants of a shape are interleaved round
by round, in a fresh random order each round (machine noise and allocator state hit all alike),
and the medians compared; ratios are within one run. The
headline is the thread's CPU time (a shared machine preempts long variants more); wall times are
recorded too.

Variants (no starts): ``lstm`` (nn.LSTM, oneDNN), ``gru`` (nn.GRU), ``fast`` (tether's
``gru_unroll`` as shipped), ``fast_mkl`` (the same with every matmul on torch.mm, no oneDNN),
``hoisted`` (candidate a: input projection in one matmul, a per-step loop of addmm + gate ops,
autograd through the loop). With ~2 % episode starts: ``lstm_loop`` / ``gru_loop`` (the per-step
masked loop), ``lstm_unroll`` / ``gru_unroll`` (tether.sequence.unroll, which splices resets into
one fused call) and ``fast`` with the starts. Inference without grad (T = 1, what policy.act
runs, and a few more steps): ``nn.GRU``, ``gru_cell`` (a loop of torch.gru_cell) and ``fast``.

Writes ``benchmarks/results/gru_speed.json`` and ``gru_speed.md``. ``--compile`` measures only
candidate (c), ``torch.compile`` of the loop (compile time and speed at one short shape), into
``gru_compile.json``.
Run: ``python benchmarks/gru_speed.py [--rounds N] [--small] [--compile]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import tether.sequence._gru as fast_gru
from tether import RecurrentState, track
from tether.bench import provenance
from tether.sequence import unroll

#: The sequence table's four shapes, and a short sequence (does a short unroll still win?).
SHAPES = [(130, 2, 64, 64), (128, 8, 64, 128), (32, 64, 64, 64), (128, 32, 128, 256), (8, 8, 64, 64)]
SMALL_SHAPES = [(16, 4, 8, 16)]
#: (T, B, in, H) for inference without grad: the single step policy.act runs, and a few more steps.
STEP_SHAPES = [(1, 8, 64, 64), (1, 64, 64, 128), (4, 8, 64, 64), (16, 8, 64, 64), (32, 8, 64, 64),
               (128, 8, 64, 64)]
#: The shape for candidate (c), torch.compile: short, since dynamo unrolls the loop over T.
COMPILE_SHAPE = (16, 8, 64, 64)
START_RATE = 0.02
RESULTS = Path(__file__).resolve().parent / "results"

Variant = Callable[[], object]


def hoisted_gru(m: nn.GRU, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate (a): one matmul for the input projection, then addmm + gates a step (autograd)."""
    w_ih, w_hh, b_ih, b_hh = m.parameters()
    return hoisted_loop(x, h, w_ih, w_hh, b_ih, b_hh)


def hoisted_loop(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                 b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of :func:`hoisted_gru` on plain tensors (dynamo will not trace an nn.GRU)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    gi = torch.addmm(b_ih, x.reshape(T * B, -1), w_ih.t()).view(T, B, 3 * H)
    w, hs = w_hh.t(), []
    for t in range(T):
        gh = torch.addmm(b_hh, h, w)
        rz = torch.sigmoid(gi[t, :, : 2 * H] + gh[:, : 2 * H])
        n = torch.tanh(torch.addcmul(gi[t, :, 2 * H :], rz[:, :H], gh[:, 2 * H :]))
        h = torch.lerp(n, h, rz[:, H:])
        hs.append(h)
    return torch.stack(hs), h.unsqueeze(0)


def masked_loop(m: nn.RNNBase, x: torch.Tensor, hx: tuple[torch.Tensor, ...], starts: np.ndarray
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The per-step masked reference loop (CleanRL / sb3-contrib)."""
    keep = torch.from_numpy(~starts).to(x.dtype)
    ys = []
    for t in range(x.shape[0]):
        hx = tuple(s * keep[t].view(1, -1, 1) for s in hx)
        y, out = m(x[t : t + 1], hx if len(hx) == 2 else hx[0])
        hx = tuple(out) if len(hx) == 2 else (out,)
        ys.append(y)
    return torch.cat(ys), hx


def _modules_and_inputs(
    shape: tuple[int, int, int, int], seed: int
) -> tuple[nn.LSTM, nn.GRU, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An LSTM and a GRU of the shape, and ``x``, ``h0``, ``c0`` requiring grad (seeded)."""
    T, B, n_in, H = shape
    torch.manual_seed(seed)
    lstm, gru = nn.LSTM(n_in, H), nn.GRU(n_in, H)
    x = torch.randn(T, B, n_in, requires_grad=True)
    h0 = torch.randn(1, B, H, requires_grad=True)
    c0 = torch.randn(1, B, H, requires_grad=True)
    return lstm, gru, x, h0, c0


def _back(wrt: list[torch.Tensor], *outs: torch.Tensor) -> object:
    """The gradients of the outputs' sum with respect to ``wrt`` (the backward every variant times)."""
    return torch.autograd.grad(torch.stack([o.sum() for o in outs]).sum(), wrt)


def make_variants(shape: tuple[int, int, int, int], seed: int = 0) -> dict[str, Variant]:
    """Zero-argument forward + backward functions, one per variant, on one shape."""
    T, B, _, _ = shape
    lstm, gru, x, h0, c0 = _modules_and_inputs(shape, seed)
    starts = np.random.default_rng(seed).random((T, B)) < START_RATE
    lstm_wrt, gru_wrt = [x, h0, c0, *lstm.parameters()], [x, h0, *gru.parameters()]
    lstm_core, gru_core = track(lstm), track(gru)

    def fast(with_starts: bool, onednn: bool = True) -> Variant:
        def run() -> object:
            saved = fast_gru._ONEDNN_FLOPS, fast_gru._ONEDNN_STEP_FLOPS
            if not onednn:
                fast_gru._ONEDNN_FLOPS = fast_gru._ONEDNN_STEP_FLOPS = 1 << 62
            try:
                y, h = fast_gru.gru_unroll(gru, x, h0, starts if with_starts else None)
                return _back(gru_wrt, y, h)
            finally:
                fast_gru._ONEDNN_FLOPS, fast_gru._ONEDNN_STEP_FLOPS = saved
        return run

    def tether_unroll(core: Any, wrt: list[torch.Tensor], tensors: tuple[torch.Tensor, ...]
                      ) -> Variant:
        def run() -> object:
            y, final = unroll(core, x, starts, RecurrentState.from_tensors(tensors))
            return _back(wrt, y, *final.tensors)
        return run

    return {
        "lstm": lambda: _back(lstm_wrt, *_flat(lstm(x, (h0, c0)))),
        "gru": lambda: _back(gru_wrt, *_flat(gru(x, h0))),
        "fast": fast(False),
        "fast_mkl": fast(False, onednn=False),
        "hoisted": lambda: _back(gru_wrt, *hoisted_gru(gru, x, h0[0])),
        "lstm_loop+starts": lambda: _back(lstm_wrt, *_flat(masked_loop(lstm, x, (h0, c0), starts))),
        "lstm_unroll+starts": tether_unroll(lstm_core, lstm_wrt, (h0, c0)),
        "gru_loop+starts": lambda: _back(gru_wrt, *_flat(masked_loop(gru, x, (h0,), starts))),
        "gru_unroll+starts": tether_unroll(gru_core, gru_wrt, (h0,)),
        "fast+starts": fast(True),
    }


def _flat(out: object) -> list[torch.Tensor]:
    """Every tensor in a nested (y, state) result."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for part in out for t in _flat(part)]  # type: ignore[attr-defined]


def step_variants(shape: tuple[int, int, int, int], seed: int = 0) -> dict[str, Variant]:
    """Inference without grad over T steps (T = 1: what policy.act runs)."""
    T, B, n_in, H = shape
    torch.manual_seed(seed)
    gru = nn.GRU(n_in, H)
    x, h = torch.randn(T, B, n_in), torch.randn(1, B, H)
    w = tuple(gru.parameters())

    def nograd(fn: Callable[[], object]) -> Variant:
        def run() -> object:
            with torch.no_grad():
                return fn()
        return run

    def cells() -> object:
        state = h[0]
        for t in range(T):
            state = torch.gru_cell(x[t], state, *w)
        return state

    return {
        "nn.GRU": nograd(lambda: gru(x, h)),
        "gru_cell": nograd(cells),
        "fast": nograd(lambda: fast_gru.gru_unroll(gru, x, h)),
    }


def compile_variants(shape: tuple[int, int, int, int], seed: int = 0
                     ) -> tuple[float, dict[str, Variant]]:
    """Candidate (c): ``torch.compile`` of the hoisted loop (unrolled over T by dynamo).

    Returns the seconds of the first call (compile + run, forward and backward) and the
    variants to time: ``lstm``, ``compiled`` and ``fast``.
    """
    lstm, gru, x, h0, c0 = _modules_and_inputs(shape, seed)
    lstm_wrt, gru_wrt = [x, h0, c0, *lstm.parameters()], [x, h0, *gru.parameters()]
    compiled_loop = torch.compile(hoisted_loop, dynamic=False, fullgraph=True)
    weights = list(gru.parameters())

    def compiled() -> tuple[torch.Tensor, torch.Tensor]:
        return compiled_loop(x, h0[0], *weights)

    def run_compiled() -> object:
        return _back(gru_wrt, *compiled())

    start = time.perf_counter()
    run_compiled()
    first = time.perf_counter() - start
    return first, {
        "lstm": lambda: _back(lstm_wrt, *_flat(lstm(x, (h0, c0)))),
        "compiled": run_compiled,
        "fast": lambda: _back(gru_wrt, *fast_gru.gru_unroll(gru, x, h0)),
    }


def measure(variants: dict[str, Variant], rounds: int, repeat: int
            ) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call of each variant, interleaved round by round: (CPU time, wall time).

    CPU time (this thread's) is the headline: on a shared machine a preempted variant's wall time
    counts other processes' work, and the longer a variant runs the more it is preempted.
    """
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn()
    # A fresh order each round: a variant run right after one that frees a big autograd graph
    # pays for the allocator's fresh pages, so a fixed order would bias whoever comes next.
    order = np.random.default_rng(0)
    names = list(variants)
    for _ in range(rounds):
        for name in order.permutation(names).tolist():
            fn = variants[name]
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(repeat):
                fn()
            cpu[name].append((time.thread_time() - start_cpu) / repeat)
            wall[name].append((time.perf_counter() - start) / repeat)
    return ({k: statistics.median(v) for k, v in cpu.items()},
            {k: statistics.median(v) for k, v in wall.items()})


def environment() -> dict[str, object]:
    """Versions, hardware, threads and the commit the numbers come from (tether.bench.provenance)."""
    git, cpu = provenance.git_state(), provenance.hardware()["cpu"]
    commit = (git["commit"] or "unknown")[:10] + ("+dirty" if git["dirty"] else "")
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu,
            "threads": torch.get_num_threads(), "commit": commit,
            "onednn_flops_threshold": fast_gru._ONEDNN_FLOPS,
            "onednn_step_flops_threshold": fast_gru._ONEDNN_STEP_FLOPS, "start_rate": START_RATE}


def table(results: dict[str, object]) -> str:
    """The markdown report."""
    env = results["environment"]
    assert isinstance(env, dict)
    lines = [
        "# GRU vs LSTM forward + backward (CPU)", "",
        f"torch {env['torch']}, Python {env['python']}, {env['cpu']}, {env['threads']} thread,"
        f" commit {env['commit']}. Medians of this thread's CPU time (ms) over interleaved rounds"
        " (wall times, noisier on a shared machine, are in the json); ratios within this run."
        " Generated by `benchmarks/gru_speed.py`.", "",
        "| T, B, in, H | nn.LSTM | nn.GRU | fast | fast (MKL only) | hoisted (a) | nn.GRU / LSTM |"
        " **fast / LSTM** |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = results["sequences"]
    assert isinstance(rows, list)
    for row in rows:
        ms = row["ms"]
        lines.append(
            f"| {', '.join(map(str, row['shape']))} | {ms['lstm']:.2f} | {ms['gru']:.2f} |"
            f" {ms['fast']:.2f} | {ms['fast_mkl']:.2f} | {ms['hoisted']:.2f} |"
            f" {ms['gru'] / ms['lstm']:.2f} | **{ms['fast'] / ms['lstm']:.2f}** |")
    lines += ["", f"With {START_RATE:.0%} episode starts (ms; ratio against nn.LSTM through"
              " tether.sequence.unroll):", "",
              "| T, B, in, H | LSTM masked loop | LSTM unroll | GRU masked loop | GRU unroll |"
              " fast + starts | **fast+starts / LSTM unroll** |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        ms = row["ms"]
        lines.append(
            f"| {', '.join(map(str, row['shape']))} | {ms['lstm_loop+starts']:.2f} |"
            f" {ms['lstm_unroll+starts']:.2f} | {ms['gru_loop+starts']:.2f} |"
            f" {ms['gru_unroll+starts']:.2f} | {ms['fast+starts']:.2f} |"
            f" **{ms['fast+starts'] / ms['lstm_unroll+starts']:.2f}** |")
    lines += ["", "Inference without grad (T = 1 is what policy.act runs), microseconds:", "",
              "| T, B, in, H | nn.GRU | torch.gru_cell loop | fast | fast / nn.GRU |",
              "|---|---|---|---|---|"]
    steps = results["single_step"]
    assert isinstance(steps, list)
    for row in steps:
        us = row["us"]
        lines.append(f"| {', '.join(map(str, row['shape']))} | {us['nn.GRU']:.1f} |"
                     f" {us['gru_cell']:.1f} | {us['fast']:.1f} | {us['fast'] / us['nn.GRU']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every shape, print the table, write the json and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per shape")
    parser.add_argument("--small", action="store_true", help="one tiny shape (a smoke run)")
    parser.add_argument("--compile", action="store_true",
                        help="only candidate (c): torch.compile of the loop (minutes of compile);"
                             " writes gru_compile.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compile:
        shape = COMPILE_SHAPE
        first, variants = compile_variants(shape)
        cpu, wall = measure(variants, args.rounds, 1)
        record = {"environment": environment(), "shape": list(shape), "first_call_s": first,
                  "ms": {k: v * 1e3 for k, v in cpu.items()},
                  "wall_ms": {k: v * 1e3 for k, v in wall.items()}}
        print(json.dumps(record, indent=2))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gru_compile.json").write_text(json.dumps(record, indent=2) + "\n")
        return
    results: dict[str, object] = {"environment": environment(), "sequences": [], "single_step": [],
                                  "provenance": provenance.collect()}
    for shape in SMALL_SHAPES if args.small else SHAPES:
        cpu, wall = measure(make_variants(shape), args.rounds, 1)
        ms = {k: v * 1e3 for k, v in cpu.items()}
        results["sequences"].append(  # type: ignore[attr-defined]
            {"shape": list(shape), "ms": ms, "wall_ms": {k: v * 1e3 for k, v in wall.items()}})
        print(shape, {k: round(v, 3) for k, v in ms.items()}, flush=True)
    for step in STEP_SHAPES:
        cpu, wall = measure(step_variants(step), args.rounds, max(5, 200 // step[0]))
        us = {k: v * 1e6 for k, v in cpu.items()}
        results["single_step"].append(  # type: ignore[attr-defined]
            {"shape": list(step), "us": us, "wall_us": {k: v * 1e6 for k, v in wall.items()}})
        print(step, {k: round(v, 2) for k, v in us.items()}, flush=True)
    text = table(results)
    print(text)
    if not args.small:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gru_speed.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "gru_speed.md").write_text(text)


if __name__ == "__main__":
    main()
