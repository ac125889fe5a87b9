"""Assertions for users' own test suites.

tether's pytest plugin (:mod:`tether._pytest_plugin`, registered through the ``pytest11`` entry
point) adds ``--tether-mode``, the ``tether_mode`` ini option, the ``tether_strict`` fixture and
the ``tether_mode`` marker; see its docstring.

The assertions: :func:`assert_no_graph_leak` (nothing in a container still holds an autograd
graph) and :func:`assert_memory_flat` (a step function does not grow process memory).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from tether.state import RecurrentState

__all__ = ["assert_memory_flat", "assert_no_graph_leak", "graph_size", "rss_bytes"]

_MAX_DEPTH = 6


def graph_size(tensor: torch.Tensor | Iterable[torch.Tensor], limit: int = 1_000_000) -> int:
    """Count the autograd nodes reachable from ``tensor.grad_fn`` (0 for a detached tensor).

    Args:
        tensor: any tensor, or several (their graphs' union is counted, e.g. a state's ``h, c``).
        limit: stop counting past this many nodes.

    >>> x = torch.ones(2, requires_grad=True)
    >>> graph_size((x * 2).sum()) >= 2
    True
    >>> graph_size(x.detach())
    0
    """
    tensors = [tensor] if isinstance(tensor, torch.Tensor) else list(tensor)
    seen: set[int] = set()
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack and len(seen) < limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(fn for fn, _ in node.next_functions if fn is not None)
    return len(seen)


def _walk(obj: Any, path: str, depth: int) -> Iterator[tuple[str, torch.Tensor]]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, RecurrentState):
        names = ("h", "c")
        for i, t in enumerate(obj.tensors):
            yield f"{path}.{names[i]}", t
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _walk(value, f"{path}[{key!r}]", depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{path}[{i}]", depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module | type):
        for key, value in vars(obj).items():
            yield from _walk(value, f"{path}.{key}", depth + 1)


def assert_no_graph_leak(obj: Any, *, name: str = "obj") -> None:
    """Assert that no tensor in ``obj`` still carries an autograd graph.

    Walks states, tensors, lists, tuples, dicts and plain objects' attributes (a rollout buffer,
    say) a few levels deep. Leaf parameters (``requires_grad`` without ``grad_fn``) are fine.

    Args:
        obj: what to inspect.
        name: how to call it in the message.

    Raises:
        AssertionError: naming each path that holds a graph and the graph's size in nodes.

    >>> assert_no_graph_leak({"h": torch.zeros(2)})
    """
    leaks = [(path, graph_size(t)) for path, t in _walk(obj, name, 0) if t.grad_fn is not None]
    if leaks:
        listed = ", ".join(f"{path} ({nodes} autograd nodes)" for path, nodes in leaks[:8])
        more = f", and {len(leaks) - 8} more" if len(leaks) > 8 else ""
        raise AssertionError(
            f"{len(leaks)} tensor(s) still carry an autograd graph: {listed}{more};"
            " store `state.snapshot()` / `tensor.detach()` instead"
        )


def rss_bytes() -> int:
    """The resident memory of this process in bytes (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource  # noqa: PLC0415 (only where /proc is missing)

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def assert_memory_flat(
    step: Callable[[], Any],
    *,
    iterations: int = 1000,
    warmup: int = 100,
    max_growth: float = 0.05,
    measure: Callable[[], float] = rss_bytes,
) -> tuple[float, float]:
    """Assert that calling ``step`` many times does not grow memory by more than ``max_growth``.

    Memory is measured after ``warmup`` calls (allocators and caches settle) and again at the end;
    a leaked autograd graph grows it with every call.

    Args:
        step: one iteration of the loop under test (e.g. one collector step).
        iterations: calls after warm-up.
        warmup: calls before the baseline is taken.
        max_growth: allowed relative growth (0.05 is 5 %).
        measure: the memory measure, process RSS by default.

    Returns:
        ``(baseline, final)`` as measured.

    Raises:
        AssertionError: when ``final > baseline * (1 + max_growth)``.
    """
    for _ in range(warmup):
        step()
    gc.collect()
    baseline = float(measure())
    for _ in range(iterations):
        step()
    gc.collect()
    final = float(measure())
    if final > baseline * (1 + max_growth):
        raise AssertionError(
            f"memory grew {100 * (final / baseline - 1):.1f} % over {iterations} steps"
            f" ({baseline / 2**20:.1f} MiB -> {final / 2**20:.1f} MiB), more than the allowed"
            f" {100 * max_growth:.1f} %: something keeps each step's graph or tensors alive"
        )
    return baseline, final
