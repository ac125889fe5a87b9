"""tether's TorchRL modules against TorchRL's own in recurrent mode: forward + backward on the CPU.

Each variant runs a module in recurrent mode (``torchrl.modules.set_recurrent_mode(True)``) over a
``[B, T]`` tensordict with about 2 % random ``is_init`` (and ``is_init`` at ``t = 0``, as a slice
sampler marks it), the stored states zero where ``is_init`` is set (as the primer writes them) and
random elsewhere, then takes the gradients of the outputs' sum (value and ``("next", state)``) with
respect to the observations and every parameter. The variants of a shape are interleaved round by
round in a fresh random order, and the medians of this thread's CPU time compared; ratios are
within one run, one torch thread.

Variants: ``tether_lstm`` / ``tether_gru`` (:class:`tether.interop.torchrl.LSTMModule` /
``GRUModule``: :func:`tether.sequence.unroll_segments`, restarting from the stored state at every
``is_init``), ``torchrl_lstm_pad`` / ``torchrl_gru_pad`` (TorchRL's modules, ``recurrent_backend=
"pad"``, the default), ``torchrl_lstm_scan`` / ``torchrl_gru_scan`` (``"scan"``), and, for
reference, ``unroll_lstm``: :func:`tether.sequence.unroll` over the same starts from zeros (what a
pipeline that restarts from zeros at each start needs; no stored states are read).

Writes ``benchmarks/results/torchrl_speed.json`` (the README table renders from it:
``tether bench tables``). Run: ``python benchmarks/torchrl_speed.py [--rounds N] [--small]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import tensordict
import torchrl
from tensordict import TensorDict
from torchrl import modules as trl

from benchmarks.gru_speed import measure  # the same interleaved rounds as the GRU table
from tether import track
from tether.bench import provenance
from tether.interop.torchrl import GRUModule, LSTMModule
from tether.sequence import unroll

#: The sequence table's four shapes (T, B, in, H).
SHAPES = [(130, 2, 64, 64), (128, 8, 64, 128), (32, 64, 64, 64), (128, 32, 128, 256)]
SMALL_SHAPES = [(16, 4, 8, 16)]
START_RATE = 0.02
RESULTS = Path(__file__).resolve().parent / "results"

Variant = Callable[[], object]


def make_data(shape: tuple[int, int, int, int], kind: str, seed: int) -> TensorDict:
    """A ``[B, T]`` batch as a recurrent loss receives it (seeded)."""
    T, B, n_in, H = shape
    g = torch.Generator().manual_seed(seed)
    is_init = torch.rand(B, T, 1, generator=g) < START_RATE
    is_init[:, 0] = True
    keep = (~is_init).unsqueeze(-1).float()
    names = ["recurrent_state_h", "recurrent_state_c"] if kind == "lstm" else ["recurrent_state"]
    td = TensorDict({"obs": torch.randn(B, T, n_in, generator=g), "is_init": is_init}, [B, T])
    for name in names:
        td[name] = torch.randn(B, T, 1, H, generator=g) * keep
    return td


def _module_variant(module: Any, data: TensorDict) -> Variant:
    params = list(module.parameters())

    def run() -> object:
        td = data.copy()
        obs = td["obs"].detach().requires_grad_()
        td["obs"] = obs
        with trl.set_recurrent_mode(True):
            out = module(td)
        loss = torch.stack([out[k].sum() for k in module.out_keys]).sum()
        return torch.autograd.grad(loss, [obs, *params])
    return run


def _unroll_variant(module: Any, data: TensorDict) -> Variant:
    """tether.sequence.unroll over the same starts, from zeros (time-major, no stored states)."""
    core = track(torch.nn.LSTM(module.lstm.input_size, module.lstm.hidden_size))
    core.load_state_dict(module.lstm.state_dict())
    starts = data["is_init"].squeeze(-1).t().numpy()
    x = data["obs"].transpose(0, 1).contiguous()
    params = list(core.parameters())

    def run() -> object:
        obs = x.detach().requires_grad_()
        y, final = unroll(core, obs, starts, core.initial_state(x.shape[1]))
        loss = y.sum() + sum(t.sum() for t in final.tensors)
        return torch.autograd.grad(loss, [obs, *params])
    return run


def make_variants(shape: tuple[int, int, int, int], seed: int = 0) -> dict[str, Variant]:
    """Zero-argument forward + backward functions, one per variant, on one shape."""
    _, _, n_in, H = shape
    variants: dict[str, Variant] = {}
    pairs = (("lstm", LSTMModule, trl.LSTMModule), ("gru", GRUModule, trl.GRUModule))
    for kind, ours_cls, theirs_cls in pairs:
        data = make_data(shape, kind, seed)
        torch.manual_seed(seed)
        ours = ours_cls(input_size=n_in, hidden_size=H, in_key="obs", out_key="y")
        variants[f"tether_{kind}"] = _module_variant(ours, data)
        for backend in ("pad", "scan"):
            theirs = theirs_cls(input_size=n_in, hidden_size=H, in_key="obs", out_key="y",
                                recurrent_backend=backend)
            theirs.load_state_dict(ours.state_dict())
            variants[f"torchrl_{kind}_{backend}"] = _module_variant(theirs, data)
        if kind == "lstm":
            variants["unroll_lstm"] = _unroll_variant(ours, data)
    return variants


def environment() -> dict[str, object]:
    """Versions, hardware, threads and the commit the numbers come from (tether.bench.provenance)."""
    git, cpu = provenance.git_state(), provenance.hardware()["cpu"]
    commit = (git["commit"] or "unknown")[:10] + ("+dirty" if git["dirty"] else "")
    return {"torch": torch.__version__, "torchrl": torchrl.__version__, "tensordict": tensordict.__version__,
            "python": platform.python_version(), "cpu": cpu, "threads": torch.get_num_threads(),
            "commit": commit, "start_rate": START_RATE}


def check_equal(shape: tuple[int, int, int, int]) -> float:
    """The largest difference between tether's and TorchRL's (pad) LSTM outputs on the benchmark data."""
    _, _, n_in, H = shape
    data = make_data(shape, "lstm", 0)
    ours = LSTMModule(input_size=n_in, hidden_size=H, in_key="obs", out_key="y")
    theirs = trl.LSTMModule(input_size=n_in, hidden_size=H, in_key="obs", out_key="y")
    theirs.load_state_dict(ours.state_dict())
    with trl.set_recurrent_mode(True), torch.no_grad():
        a, b = ours(data.copy()), theirs(data.copy())
    return max(float((a[k] - b[k]).abs().max()) for k in ours.out_keys)


def main() -> None:
    """Measure every shape, print the ratios, write the json results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per shape")
    parser.add_argument("--small", action="store_true", help="one tiny shape (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "torchrl_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # TorchRL's deprecation notes on import are not results
    rows = []
    for shape in SMALL_SHAPES if args.small else SHAPES:
        cpu, wall = measure(make_variants(shape), args.rounds, 1)
        ms = {k: v * 1e3 for k, v in cpu.items()}
        rows.append({"shape": list(shape), "ms": ms, "wall_ms": {k: v * 1e3 for k, v in wall.items()},
                     "max_abs_diff_vs_pad": check_equal(shape)})
        print(shape, {k: round(v, 3) for k, v in ms.items()},
              {f"{k}/tether": round(v / ms["tether_" + k.split("_")[1]], 2)
               for k, v in ms.items() if k.startswith("torchrl")}, flush=True)
    results = {"environment": environment(), "rounds": args.rounds, "sequences": rows,
               "provenance": provenance.collect()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
