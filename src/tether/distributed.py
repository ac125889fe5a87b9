"""Data-parallel training on ``torch.distributed`` (torchrun): the run's context and a few helpers.

Every helper is a no-op in a single process (world size 1: it returns its input unchanged, never
touching ``torch.distributed``), so a training loop calls them unconditionally and runs the same
code on one process or many. In a run started by ``torchrun`` (``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set), :func:`init` joins the process group: gloo on CPU, NCCL on CUDA, the GPU of a
rank being ``cuda:LOCAL_RANK``; it returns a :class:`DistContext`.

What a recurrent training loop needs, per rank:

- its own envs and clock: seed torch with :func:`rank_seed` and the envs with :func:`env_seed`
  (rank ``r``'s env ``i`` gets ``seed + r * E + i``: the seeds one process of ``N × E`` envs uses);
- the same weights: :func:`broadcast_module` once after building the network;
- gradients averaged every minibatch: :func:`average_gradients` after ``backward`` (weighted by
  each rank's step count, so the update equals one over the union of the ranks' minibatches);
- shared statistics and decisions, through the context: ``ctx.masked_mean_std`` (advantage
  normalisation over all ranks' minibatches), ``ctx.mean``, ``ctx.any`` (e.g. target-KL early
  stop: all ranks stop together), ``ctx.gather`` / ``ctx.all_gather``, ``ctx.barrier``; and
  :class:`RunningStatsSync` (observation normalisation).

Example (a user's own loop, started with ``torchrun --nproc-per-node 2 train.py``)::

    ctx = tether.distributed.init()
    torch.manual_seed(tether.distributed.rank_seed(seed))
    venv.reset(seed=tether.distributed.env_seed(seed, num_envs))
    tether.distributed.broadcast_module(policy)
    ...
    loss.backward()
    tether.distributed.average_gradients(policy.parameters(), weight=steps_in_my_minibatch)
    optimizer.step()
    if ctx.any(kl > limit): ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import numpy as np
import torch
import torch.distributed as dist

from tether.errors import ConfigError

__all__ = [
    "DistContext",
    "RunningStatsSync",
    "average_gradients",
    "broadcast_module",
    "env_seed",
    "init",
    "is_main_process",
    "rank",
    "rank_seed",
    "shutdown",
    "world_size",
]


@attrs.frozen(kw_only=True)
class DistContext:
    """Where this process stands in the run.

    Attributes:
        rank: this process's rank (0 in a single process).
        world_size: the number of processes (1 in a single process).
        local_rank: the rank on this machine (``LOCAL_RANK``; picks the GPU).
        device: the torch device of this rank.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` in a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes metrics, checkpoints and plots)."""
        return self.rank == 0

    # Collectives: every rank must call each of them (a no-op returning its input in one process).
    def barrier(self) -> None:
        """Wait until every rank gets here."""
        _barrier()

    def mean(self, values: list[float]) -> list[float]:
        """The element-wise mean of a list of numbers over the ranks."""
        return _mean_across_ranks(values)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is True on any rank: one decision every rank takes together."""
        return _any_rank(flag)

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        return _all_gather_objects(value)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` (picklable) on rank 0, in rank order; ``None`` on the others."""
        return _gather_objects(value)

    def masked_mean_std(self, x: torch.Tensor,
                        mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mean, std (population) and count of ``x`` where ``mask``, over every rank's ``x``."""
        return _masked_mean_std(x, mask)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as err:
        raise ConfigError(f"{name}: expected an integer (torchrun sets it), got {text!r}") from err


def available_devices() -> list[str]:
    """The devices torch can use on this machine (``cpu`` first), as a device string names them."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"device: expected a torch device such as {', '.join(available_devices())},"
                          f" got {str(device)!r}") from err


def _check_usable(device: torch.device) -> None:
    """Refuse a device this machine's torch cannot use (``cuda`` on a CPU-only build), in one line."""
    if device.type == "cpu":
        return
    usable = available_devices()
    if str(device) not in usable:
        raise ConfigError(f"device: {str(device)!r} is not available on this machine (torch"
                          f" {torch.__version__}); available: {', '.join(usable)}")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes in the run (1 when ``torch.distributed`` is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when ``torch.distributed`` is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this process is rank 0 (always True in a single process)."""
    return rank() == 0


def init(device: str | torch.device = "cpu") -> DistContext:
    """Join the process group torchrun describes (a no-op without one), and place this rank.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. With ``WORLD_SIZE`` unset or 1 nothing is
    initialised and ``device`` is returned as given. Otherwise the group is joined (once; a group
    the caller already initialised is used as it is) with gloo for a CPU device and NCCL for CUDA;
    a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per rank).

    Args:
        device: the device the run asks for (``"cpu"``, ``"cuda"``).

    Returns:
        A :class:`DistContext`.

    Raises:
        ConfigError: for a device torch cannot use here (naming those it can), a CUDA run with
            more ranks on this machine than GPUs, or malformed torchrun variables.
    """
    wanted = _device(device)
    size = world_size() if dist.is_available() and dist.is_initialized() else _env_int("WORLD_SIZE", 1)
    if size <= 1:
        _check_usable(wanted)
        return DistContext(device=wanted)
    local = _env_int("LOCAL_RANK", 0)
    if wanted.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise ConfigError(f"LOCAL_RANK={local}: this machine has {count} CUDA devices; start at most"
                              f" {count} ranks per node (torchrun --nproc-per-node {max(count, 1)})")
        wanted = torch.device("cuda", local)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                       device=wanted, backend=str(dist.get_backend()))


def shutdown() -> None:
    """Leave the process group (a no-op when none was initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _barrier() -> None:
    """Wait until every rank gets here (a no-op in a single process)."""
    if _active():
        dist.barrier()


def rank_seed(seed: int) -> int:
    """The seed of this rank's torch / numpy / random generators: ``seed + rank``."""
    return seed + rank()


def env_seed(seed: int, num_envs: int) -> int:
    """The ``reset`` seed of this rank's vector env: ``seed + rank * num_envs``.

    gymnasium seeds env ``i`` of a vector env with ``seed + i``, so rank ``r``'s envs get
    ``seed + r * num_envs + i``: disjoint across ranks, and the seeds one process of
    ``world_size × num_envs`` envs would use.

    >>> env_seed(7, 4)  # a single process
    7
    """
    return seed + rank() * num_envs


def _reduce(values: torch.Tensor, op: Any = None) -> torch.Tensor:
    """All-reduce (sum unless ``op``) a tensor on the backend's device; returns a new tensor."""
    out = values.clone()
    if dist.get_backend() == "nccl" and out.device.type != "cuda":
        moved = out.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(moved, op=dist.ReduceOp.SUM if op is None else op)
        return moved.to(values.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM if op is None else op)
    return out


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (in place; a no-op in one process)."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def average_gradients(parameters: Iterable[torch.nn.Parameter], *, weight: float = 1.0) -> float:
    """Replace each ``.grad`` by the weighted mean of the ranks' gradients (one all-reduce).

    Rank ``r``'s gradient counts with ``weight_r / sum(weights)``. With ``weight`` the number of
    steps in the rank's minibatch, and each rank's loss a mean over its own steps, the result is
    the gradient of the mean over the union of the ranks' minibatches: the gradient one process
    would compute on all of them. A parameter without a gradient counts as zeros (and gets one).

    Args:
        parameters: the parameters (e.g. ``policy.parameters()``).
        weight: this rank's weight (``1.0``: a plain mean).

    Returns:
        The sum of the weights over all ranks (``weight`` in a single process).
    """
    if not _active():
        return weight
    params = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    # One buffer: the weighted gradients and, last, the weight (so one all-reduce gives both).
    flat = torch.cat([g.detach().reshape(-1) * weight for g in grads]
                     + [torch.full((1,), float(weight), device=grads[0].device if grads else None)])
    total = _reduce(flat)
    norm = float(total[-1])
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = (total[offset:offset + n] / norm).view_as(g).to(g.dtype)
        offset += n
    return norm


def _sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over the ranks (``values`` itself in a single process)."""
    return _reduce(values) if _active() else values


def _mean_across_ranks(values: list[float]) -> list[float]:
    """The element-wise mean of a list of numbers over the ranks (the list itself in one process)."""
    if not _active() or not values:
        return values
    total = _reduce(torch.tensor(values, dtype=torch.float64))
    return [float(v) / dist.get_world_size() for v in total]


def _any_rank(flag: bool) -> bool:
    """Whether ``flag`` is True on any rank: every rank gets the same answer (``flag`` in one process).

    Use it for a decision all ranks must take together (stopping an update's epochs on target KL),
    so no rank waits forever in a collective the others skipped.
    """
    if not _active():
        return flag
    return bool(_reduce(torch.tensor([1.0 if flag else 0.0]), op=dist.ReduceOp.MAX)[0] > 0)


def _all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order (``[value]`` in a single process)."""
    if not _active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def _gather_objects(value: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's ``value`` (picklable) on rank ``dst``, in rank order; ``None`` on the others.

    Call it on every rank (it is a collective). ``[value]`` in a single process.
    """
    if not _active():
        return [value]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(value, out, dst=dst)
    return out


def _masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean, std (population) and count of ``x`` where ``mask``, over every rank's ``x``.

    One all-reduce of three float64 sums; in a single process the same formula without it.

    Returns:
        ``(mean, std, count)``, scalar tensors in ``x``'s dtype (``count`` float64).
    """
    m = mask.to(torch.float64)
    v = x.detach().to(torch.float64)
    sums = torch.stack([(v * m).sum(), (v * v * m).sum(), m.sum()])
    sums = _sum_across_ranks(sums)
    count = sums[2].clamp(min=1.0)
    mean = sums[0] / count
    var = (sums[1] / count - mean * mean).clamp(min=0.0)
    return mean.to(x.dtype), var.sqrt().to(x.dtype), sums[2]


def _combine_moments(mean: np.ndarray, var: np.ndarray, count: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The mean, variance and count over all ranks' data, from each rank's own (disjoint) statistics.

    Exact (Chan et al.'s parallel formula, shifted by the global mean for stability), in float64.
    In a single process the inputs come back unchanged.

    Args:
        mean / var: this rank's per-feature mean and (population) variance.
        count: how many samples they are over.

    Returns:
        ``(mean, var, count)`` of the union.
    """
    if not _active():
        return mean, var, count
    m = torch.as_tensor(np.asarray(mean, dtype=np.float64)).reshape(-1)
    v = torch.as_tensor(np.asarray(var, dtype=np.float64)).reshape(-1)
    first = _reduce(torch.cat([m * count, torch.tensor([float(count)], dtype=torch.float64)]))
    total = float(first[-1])
    if total <= 0:
        return mean, var, count
    shared = first[:-1] / total
    spread = _reduce(count * (v + (m - shared) ** 2))
    shape = np.shape(mean)
    return shared.numpy().reshape(shape), (spread / total).numpy().reshape(shape), total


class _RunningStats(Protocol):
    """Running statistics with ``mean``, ``var`` and ``count`` (gymnasium's ``RunningMeanStd``)."""

    mean: Any
    var: Any
    count: Any


class RunningStatsSync:
    """Keep running statistics identical on every rank: each :meth:`sync` adds every rank's new data.

    Between syncs each rank updates its own copy with its own samples (e.g. gymnasium's
    ``NormalizeObservation`` at every env step). :meth:`sync` works out what each rank added since
    the last sync (its samples' count, mean and variance, by inverting Chan's merge), combines
    those over the ranks with ``combine_moments``, and merges the result into the shared
    statistics, so every rank then holds the statistics of all ranks' samples. A no-op in one process.

    Args:
        stats: the running statistics to keep in step (changed in place by :meth:`sync`).
    """

    def __init__(self, stats: _RunningStats) -> None:
        self.stats = stats
        self._base = self._read()

    def _read(self) -> tuple[np.ndarray, np.ndarray, float]:
        s = self.stats
        return (np.array(s.mean, dtype=np.float64), np.array(s.var, dtype=np.float64), float(s.count))

    def rebase(self) -> None:
        """Take the current statistics as the shared ones (after restoring them from a checkpoint)."""
        self._base = self._read()

    def sync(self) -> None:
        """Merge every rank's samples since the last sync into the statistics of every rank."""
        if not _active():
            return
        base_mean, base_var, base_n = self._base
        mean, var, n = self._read()
        dn = n - base_n
        if dn > 0:
            d_mean = (n * mean - base_n * base_mean) / dn
            m2 = var * n - base_var * base_n - (d_mean - base_mean) ** 2 * base_n * dn / n
            d_var = np.maximum(m2 / dn, 0.0)
        else:
            d_mean, d_var, dn = np.zeros_like(mean), np.zeros_like(var), 0.0
        g_mean, g_var, g_n = _combine_moments(d_mean, d_var, dn)
        if g_n > 0:
            total = base_n + g_n
            delta = g_mean - base_mean
            new_mean = base_mean + delta * g_n / total
            m2 = base_var * base_n + g_var * g_n + delta**2 * base_n * g_n / total
            dtype = np.asarray(self.stats.mean).dtype
            self.stats.mean = new_mean.astype(dtype)
            self.stats.var = (m2 / total).astype(dtype)
            self.stats.count = total
        self._base = self._read()

