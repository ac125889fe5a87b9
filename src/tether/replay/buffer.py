"""SequenceReplay: R2D2's replay of fixed-length sequences with stored start states, a collector's sink.

Storage: one circular stream of steps per env (:class:`~tether.replay.storage.StepStreams`), in
which overlapping sequences share their steps, and a table of sequences
(:class:`~tether.replay.table.SequenceTable`): env, first step, valid length, policy version, and
the stored start state with its stamps. Sequences start every ``period`` steps of an env's stream
(and, with ``cut_at_episode_end``, at every episode start, the sequence before it being cut
there and padded; a cut sequence's last step is the one before the next episode's first, so in
next-step autoreset mode it ends on the invalid autoreset step). Capacity is in complete
sequences; the ring holds ``S = (ceil(capacity / num_envs) + cut) * period + length`` steps per env
(``cut`` is 1 with ``cut_at_episode_end``, whose sequences complete in bursts), enough for every
sequence in the table when they complete at the uncut rate; a sequence whose first step the ring
overwrites all the same is evicted with it (never sampled).

Memory (allocated once, at the first write; :attr:`SequenceReplay.nbytes` reports it)::

    S * E * (2 * obs_bytes + action_bytes + mask_bytes + 4 + 4 + 8) + 8 * S     step streams
    + C * (state_bytes + 57) + E * ceil(length / period) * (state_bytes + 32) + 8 * E   table
    + 16 * 2 ** ceil(log2(C))                                                   sum tree

with ``state_bytes = tensors * layers * hidden * element size`` (one row of the stored state).
Per step: the observation and the truncation's final observation (``2 * obs_bytes``), the reward
(4), the terminated / truncated / valid / start flags (4), the episode id (8); per position the
tick (8). Per table slot: six int64 stamps, a live flag and the raw priority (57); per open slot
four int64 stamps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tether.clock import EpisodeClock
from tether.errors import CheckpointError, ConfigError
from tether.modes import get_mode
from tether.replay.batch import History, ReplayBatch
from tether.replay.checks import check_host
from tether.replay.history import episode_history
from tether.replay.priorities import Priorities
from tether.replay.sampling import gather_batch
from tether.replay.storage import StepStreams
from tether.replay.table import SequenceTable
from tether.replay.writing import WriteCheck

__all__ = ["SequenceReplay"]


def _int_setting(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"SequenceReplay: expected {name} an int >= {low}, got {value!r}")
    return int(value)


class SequenceReplay:
    """A replay of fixed-length sequences (burn-in + train) with stored start states, R2D2-style.

    It is a :class:`~tether.rollout.RolloutSink`: ``RolloutCollector(venv, policy, T).collect(replay)``
    fills it. Each step keeps the observation, action, reward, flags, the episode id and the tick;
    each sequence's first step also keeps ``step.state.for_buffer()``'s row (a detached snapshot;
    strict mode refuses a state that carries a graph) with its stamps and :attr:`policy_version`.

    Args:
        capacity: complete sequences held ``C``; the oldest go first (with their steps).
        num_envs: env rows ``E`` of the collector writing here.
        seq_len: trained steps per sequence.
        burn_in: steps before them, replayed without loss (the stored length is their sum).
        period: steps between the starts of consecutive sequences of an env (``length / 2`` in
            the paper); ``None``: ``seq_len`` (the trained parts tile the stream).
        cut_at_episode_end: end a sequence at an episode's last step (padded, masked) and start
            the next at the new episode's first (the paper's choice); else sequences run across
            episode ends, which ``episode_starts`` mark.
        prioritized: sample proportionally to ``priority ** priority_exponent`` (a sum tree; new
            sequences get the largest priority seen so far, 1 at first); else uniformly.
        priority_exponent: ``alpha``.
        importance_exponent: ``beta`` of the importance weights; 0 gives weights of 1.
        device: where observations, actions and stored states live.

    Raises:
        ConfigError: for a size out of range (``capacity``, ``seq_len`` or ``num_envs`` < 1,
            ``burn_in`` < 0, ``period`` < 1 or > ``burn_in + seq_len``) or a negative exponent.

    Example:
        >>> import gymnasium as gym
        >>> from tether.nets import FactoredRecurrentActorCritic
        >>> from tether.rollout import RolloutCollector
        >>> envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
        >>> policy = FactoredRecurrentActorCritic(envs.single_observation_space, envs.single_action_space)
        >>> replay = SequenceReplay(100, 2, seq_len=8, burn_in=4, period=6)
        >>> collector = RolloutCollector(envs, policy, num_steps=32, seed=0)
        >>> _ = collector.collect(replay)
        >>> len(replay), replay.length
        (8, 12)
        >>> batch = replay.sample(4, generator=torch.Generator().manual_seed(0))
        >>> batch.obs.shape, batch.initial_state.shape, batch.weights.shape
        (torch.Size([12, 4, 4]), torch.Size([1, 4, 64]), torch.Size([4]))
    """

    def __init__(self, capacity: int, num_envs: int, *, seq_len: int, burn_in: int = 0,
                 period: int | None = None, cut_at_episode_end: bool = False, prioritized: bool = True,
                 priority_exponent: float = 0.9, importance_exponent: float = 0.6,
                 device: torch.device | str = "cpu") -> None:
        self.capacity = _int_setting("capacity", capacity, 1)
        self.num_envs = _int_setting("num_envs", num_envs, 1)
        self.seq_len = _int_setting("seq_len", seq_len, 1)
        self.burn_in = _int_setting("burn_in", burn_in, 0)
        self.length = self.burn_in + self.seq_len
        self.period = self.seq_len if period is None else _int_setting("period", period, 1)
        if self.period > self.length:
            raise ConfigError(f"SequenceReplay: expected period <= burn_in + seq_len = {self.length} (no"
                              f" step left out between sequences), got {period}")
        for name, value in (("priority_exponent", priority_exponent),
                            ("importance_exponent", importance_exponent)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"SequenceReplay: expected {name} a finite number >= 0, got {value!r}")
        self.cut_at_episode_end = bool(cut_at_episode_end)
        self.prioritized = bool(prioritized)
        self.importance_exponent = float(importance_exponent)
        self.device = torch.device(device)
        self.policy_version = 0
        # Cut sequences complete in bursts (at episode ends): one period more keeps them in the ring.
        rounds = math.ceil(self.capacity / self.num_envs) + int(self.cut_at_episode_end)
        self.ring_steps = rounds * self.period + self.length
        self.open_slots = math.ceil(self.length / self.period)
        self.priorities = Priorities(self.capacity, float(priority_exponent), self.prioritized)
        self._clock: EpisodeClock | None = None
        self._streams: StepStreams | None = None
        self._table: SequenceTable | None = None
        self._written = 0  # steps written per env (the absolute step of the next write)
        self._next_tick: int | None = None  # the tick the next write continues the stream with
        self._since = np.zeros(self.num_envs, dtype=np.int64)  # steps since each env's phase began

    # ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Complete sequences that can be sampled now."""
        return 0 if self._table is None else int(self._table.live.sum())

    @property
    def nbytes(self) -> int:
        """Bytes allocated (streams, sequence table, sum tree); 0 before the first write."""
        if self._streams is None or self._table is None:
            return 0
        return self._streams.nbytes + self._table.nbytes + self.priorities.nbytes

    def stats(self) -> dict[str, float]:
        """Cheap numbers for a metrics record, under ``replay/``.

        ``sequences`` (sampleable), ``bytes`` (allocated), ``fill`` (sequences / capacity),
        ``steps`` (written, all envs), ``sequences_added`` and ``sequences_evicted`` (so far),
        ``priority_max`` (the largest priority seen) and ``priority_mean`` (of the live sequences'
        ``priority ** alpha``; 1 when uniform).
        """
        table = self._table
        size = len(self)
        return {"replay/sequences": float(size), "replay/bytes": float(self.nbytes),
                "replay/fill": size / self.capacity, "replay/steps": float(self._written * self.num_envs),
                "replay/sequences_added": float(0 if table is None else table.head),
                "replay/sequences_evicted": float(0 if table is None else table.evicted),
                "replay/priority_max": self.priorities.max_priority,
                "replay/priority_mean": self.priorities.mean_mass(size)}

    # ----------------------------------------------------------------------------------------
    # the RolloutSink side
    def begin(self, num_steps: int, clock: EpisodeClock) -> None:
        """A rollout starts; steps are written against ``clock``.

        Raises:
            ValueError: when the clock has another number of envs than this buffer.
        """
        del num_steps  # any rollout length fits: sequences run on across rollouts
        if clock.num_envs != self.num_envs:
            raise ValueError(f"SequenceReplay: expected a collector of {self.num_envs} envs (num_envs),"
                             f" got one of {clock.num_envs}")
        self._clock = clock

    def write(self, step: Any) -> None:
        """Keep one collected step (a :class:`~tether.rollout.Transition`) of every env.

        Raises:
            ValueError: for fields that are not one per env, or that differ from the first write.
            GraphLeakError: in strict mode, when the state stored at a sequence start carries a graph.
        """
        check = WriteCheck(self.num_envs, self.device)
        data = check.step(step)
        tick, ids = data["tick"], data["episode_ids"]
        # Another stream (a new clock, or a reset one) starts here: no sequence spans the break.
        restart = self._next_tick is not None and tick != self._next_tick
        since = np.zeros_like(self._since) if restart else self._since
        new = np.flatnonzero(since % self.period == 0)
        cut = np.flatnonzero(data["episode_starts"]) if self.cut_at_episode_end else np.zeros(0, np.int64)
        if cut.size:
            new = np.union1d(new, cut)
        if self._streams is not None and self._table is not None:
            check.layout(self._streams, self._table, data, step.state)
        snapshot = step.state.for_buffer() if new.size else None  # refuses a live graph (strict)
        # Nothing has changed up to here: a refused step leaves the buffer as it was.
        if self._streams is None:
            self._allocate(data, check.state_tensors(step.state))
        if restart:
            self._restart_phase()
        assert self._streams is not None
        assert self._table is not None
        n = self._written
        if n >= self.ring_steps:  # position n % S holds step n - S until now
            self.priorities.clear(self._table.evict_older(n - self.ring_steps + 1))
        self._streams.put(n % self.ring_steps, data)
        if cut.size:
            self._close_cut(cut, n)
            self._since[cut] = 0
        if snapshot is not None:
            self._table.open(new, n, tick, ids, self.policy_version, snapshot.tensors)
        starts = self._table.open_starts()
        env, slot = np.nonzero((starts >= 0) & (n - starts + 1 == self.length))
        self._add(env, slot, np.full(env.size, self.length, dtype=np.int64))
        self._since += 1
        self._written += 1
        self._next_tick = tick + 1

    def finish(self, last_value: torch.Tensor) -> None:
        """The rollout ended; open sequences stay open and go on with the next rollout's steps."""
        del last_value

    def _restart_phase(self) -> None:
        if self._table is not None:
            self._table.drop_open()
        self._since[:] = 0

    def _close_cut(self, envs: np.ndarray, n: int) -> None:
        """Close the open sequences of ``envs``, whose episode ended at step ``n - 1``."""
        assert self._table is not None
        starts = self._table.open_starts()
        env, slot = np.nonzero((starts >= 0) & np.isin(np.arange(self.num_envs), envs)[:, None])
        order = np.lexsort((starts[env, slot], env))
        env, slot = env[order], slot[order]
        self._add(env, slot, n - starts[env, slot])

    def _add(self, env: np.ndarray, slot: np.ndarray, lengths: np.ndarray) -> None:
        assert self._table is not None
        if env.size:
            self.priorities.add(self._table.close(env, slot, lengths))

    def _allocate(self, data: dict[str, Any], state: tuple[torch.Tensor, ...]) -> None:
        self._streams = StepStreams(self.ring_steps, self.num_envs, data, self.device)
        self._table = SequenceTable(self.capacity, self.num_envs, self.open_slots, state, self.device)

    # ----------------------------------------------------------------------------------------
    def sample(self, batch_size: int, *, generator: torch.Generator,
               device: torch.device | str | None = None) -> ReplayBatch:
        """Draw ``batch_size`` sequences (with replacement) and check their alignment (mode-aware).

        Prioritised: slot ``i`` with probability ``p_i ** alpha / sum_j p_j ** alpha``; else
        uniformly over the complete sequences. Only ``generator`` is drawn from, so the same
        generator state gives the same batch.

        Args:
            batch_size: ``B`` >= 1.
            generator: the caller's :class:`torch.Generator`.
            device: where the batch's tensors go (the buffer's device when ``None``).

        Returns:
            A :class:`ReplayBatch` of ``B`` sequences of :attr:`length` steps.

        Raises:
            ValueError: for ``batch_size`` < 1, or when no complete sequence is stored yet.
            ReplayAlignmentError: in strict mode, for a batch that does not line up with its stamps.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"SequenceReplay.sample: expected batch_size an int >= 1, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"SequenceReplay.sample: expected generator a torch.Generator, got"
                            f" {type(generator).__name__}")
        if len(self) == 0:
            raise ValueError("SequenceReplay.sample: the buffer holds no complete sequence yet; collect"
                             f" at least {self.length} steps (burn_in + seq_len) first")
        slots = self.priorities.sample(int(batch_size), generator)
        weights = self.priorities.weights(slots, len(self), self.importance_exponent)
        assert self._streams is not None
        assert self._table is not None
        batch, mask = gather_batch(self._streams, self._table, slots, weights, clock=self._clock,
                                   length=self.length, burn_in=self.burn_in,
                                   device=torch.device(device) if device else self.device)
        if get_mode() != "off":
            check_host(batch, mask)
        return batch

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray | torch.Tensor) -> None:
        """Set the priorities of sampled sequences (``batch.indices``), e.g. R2D2's η-mix of |TD|.

        A slot whose sequence was evicted since is left empty (its update is dropped); a repeated
        slot takes its last priority.

        Raises:
            ValueError: for indices that are not table slots, or priorities of another shape, not
                finite or negative.
        """
        live = None if self._table is None else self._table.live
        self.priorities.update(indices, priorities, live)

    def episode_history(self, batch: ReplayBatch, *, max_steps: int,
                        device: torch.device | str | None = None) -> History:
        """The steps from each sampled sequence's true episode start up to its last step (for Δq).

        For batch row ``b`` the episode of its first step is found by scanning the stored episode
        ids back in the env's stream, step by step, from the sequence's first step; the row is
        covered when that episode's first step is still in the buffer and at most ``max_steps``
        steps before the sequence's first. Cost: a host scan of ``max_steps + 1`` stored ids per
        row (vectorised over rows), a gather of ``offset + length`` steps per covered row, and, for
        the caller, an unroll of up to ``max_steps + length`` steps per row from a zero state.
        Call it before more steps are written (rows whose steps were overwritten since the sample
        are left out).

        Args:
            batch: a batch this buffer sampled.
            max_steps: how far back (in steps before the sequence's first) an episode start may be.
            device: where the tensors go (the buffer's device when ``None``).

        Returns:
            A :class:`History` of the covered rows (possibly none: ``rows`` empty).

        Raises:
            ValueError: for a negative ``max_steps`` or an empty buffer.
        """
        if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 0:
            raise ValueError(f"SequenceReplay.episode_history: expected max_steps an int >= 0, got"
                             f" {max_steps!r}")
        if self._streams is None or self._table is None:
            raise ValueError("SequenceReplay.episode_history: the buffer is empty; sample a batch first")
        return episode_history(self._streams, self._table, batch, written=self._written,
                               max_steps=int(max_steps), clock=self._clock,
                               device=torch.device(device) if device else self.device)

    # ----------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "num_envs": self.num_envs, "seq_len": self.seq_len,
                "burn_in": self.burn_in, "period": self.period, "cut_at_episode_end": self.cut_at_episode_end,
                "prioritized": self.prioritized, "priority_exponent": self.priorities.exponent,
                "importance_exponent": self.importance_exponent}

    def state_dict(self) -> dict[str, Any]:
        """Everything stored, as tensors and plain data (loads with ``torch.load(weights_only=True)``).

        The collector's clock is not included (a resumed collector brings its own to ``begin``).
        """
        return {"config": self._config(), "written": self._written, "next_tick": self._next_tick,
                "since": torch.from_numpy(self._since.copy()), "policy_version": self.policy_version,
                "priorities": self.priorities.state_dict(),
                "streams": None if self._streams is None else self._streams.state_dict(),
                "table": None if self._table is None else self._table.state_dict()}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a buffer saved by :meth:`state_dict`, so that sampling continues bit-identically.

        Raises:
            CheckpointError: when the saved buffer was built with other settings or other shapes
                (a ``ValueError``); nothing is changed then.
        """
        try:
            if data["config"] != self._config():
                raise ValueError(f"the buffer was saved with {data['config']}, this one has {self._config()}")
            streams = table = None
            if data["streams"] is not None:
                streams = StepStreams.from_saved(self.ring_steps, self.num_envs, data["streams"], self.device)
                table = SequenceTable.from_saved(self.capacity, self.num_envs, self.open_slots,
                                                 data["table"], self.device)
            self.priorities.load_state_dict(data["priorities"])
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise CheckpointError(
                f"SequenceReplay.load_state_dict: the saved buffer does not fit: {err}") from None
        self._streams, self._table = streams, table
        self._written, self._next_tick = int(data["written"]), data["next_tick"]
        self._since = data["since"].numpy().astype(np.int64, copy=True)
        self.policy_version = int(data["policy_version"])

