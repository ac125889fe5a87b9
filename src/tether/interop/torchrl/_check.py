"""LifecycleCheck: a TorchRL env transform that checks the recurrent state the policy is fed and returns.

It sits in the env's transforms after ``InitTracker`` (and ``StepCounter`` / ``TrajCounter``) and
before the ``TensorDictPrimer``, so at each step it sees the state the policy read (the root
keys) and the state it returned (``("next", key)``, before a primer fills a missing one from the
root). It keeps an :class:`~tether.EpisodeClock` fed by the env's ``done`` flags and the resets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.envs import Transform

from tether.clock import EpisodeClock
from tether.errors import LifecycleError, StaleStateError, StateMismatchError
from tether.modes import get_mode, report

__all__ = ["LifecycleCheck", "check_slices", "state_keys_of"]

_PRIMER_FIX = ("append the policy's primer to the env, after LifecycleCheck:"
               " env.append_transform(policy_module.make_tensordict_primer())"
               " (or torchrl.modules.utils.get_primers_from_module(policy))")
_INIT_FIX = ("let InitTracker() set is_init (place it after the transforms that reset, before LifecycleCheck)"
             " and do not overwrite is_init")
_SHOWN = 8


def state_keys_of(policy: nn.Module) -> list[NestedKey]:
    """The recurrent-state keys a TorchRL policy reads: those of every module in it that makes a primer.

    Works for TorchRL's ``LSTMModule`` / ``GRUModule`` and tether's.

    Raises:
        ValueError: when the policy holds no recurrent module.
    """
    keys: list[NestedKey] = []
    for module in policy.modules():
        if hasattr(module, "make_tensordict_primer") and hasattr(module, "out_keys"):
            given: Any = module
            keys += [k for k in given.in_keys[1 : len(given.out_keys)] if k not in keys]
    if not keys:
        raise ValueError("LifecycleCheck: expected a policy holding an LSTMModule / GRUModule, found none;"
                         " pass state_keys= instead")
    return keys


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN])
    return f"[{shown}{f', and {rows.size - _SHOWN} more' if rows.size > _SHOWN else ''}]"


class LifecycleCheck(Transform):  # type: ignore[misc]
    """Check, at every env step, that a recurrent TorchRL policy is fed the state it returned.

    Per step it checks: the state keys are present in what the policy read (a missing primer is
    caught at the first step) and in what it returned; ``is_init`` is True exactly at the rows
    that (re)started an episode since the last step (and agrees with ``StepCounter``'s
    ``step_count`` and ``TrajCounter``'s ``traj_count`` when present); rows that started were fed
    zeros (what TorchRL's recurrent mode will replay them from); every other row was fed exactly
    the state the policy returned at the step before. Strict mode raises a
    :class:`~tether.LifecycleError` naming TorchRL's fix, warn mode warns, off mode skips (nothing
    is recorded either). On a correct pipeline it is silent.

    Args:
        policy: the policy (any module holding ``LSTMModule`` / ``GRUModule``s) whose state keys to
            check; or give ``state_keys``.
        state_keys: the root keys of the recurrent state (e.g. ``["recurrent_state_h",
            "recurrent_state_c"]``).
        init_key: the key ``InitTracker`` writes.

    Raises:
        ValueError: when neither or both of ``policy`` / ``state_keys`` are given.

    Attributes:
        clock: the :class:`~tether.EpisodeClock` of the env's rows (``None`` before the first reset):
            one tick per step, a new episode id per done (or reset) row.
    """

    def __init__(self, policy: nn.Module | None = None, *, state_keys: Sequence[NestedKey] | None = None,
                 init_key: str = "is_init") -> None:
        super().__init__()
        if (policy is None) == (state_keys is None):
            raise ValueError("LifecycleCheck: expected exactly one of policy / state_keys")
        self.state_keys = list(state_keys) if state_keys is not None else state_keys_of(policy)  # type: ignore[arg-type]
        self.init_key = init_key
        self.clock: EpisodeClock | None = None
        self._expect: np.ndarray = np.zeros(0, dtype=bool)  # rows that (re)started since the last step
        self._last: dict[NestedKey, torch.Tensor] = {}  # the state returned at the last step, [N, -1]
        self._traj: np.ndarray | None = None
        self._done: np.ndarray = np.zeros(0, dtype=bool)  # the rows the last step ended

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Outside an env (a replay buffer's transform) the check has nothing to compare: a no-op."""
        return tensordict

    # ----------------------------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        if get_mode() == "off":
            return tensordict_reset
        n = int(tensordict_reset.numel())
        flags = tensordict.get("_reset", None) if tensordict is not None else None
        reset = np.ones(n, dtype=bool) if flags is None else flags.reshape(n, -1).any(-1).cpu().numpy()
        if self.clock is None or self.clock.num_envs != n:
            self.clock, self._last, self._traj = EpisodeClock(n), {}, None
            self._expect, self._done = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
            return tensordict_reset
        forced = reset & ~self._done
        if forced.any():  # rows reset before their episode ended start a new one too
            self.clock.advance(forced)
        self._expect = self._expect | reset
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if get_mode() == "off" or self.clock is None:
            return next_tensordict
        n = self.clock.num_envs
        errors = self._check(tensordict.reshape(n), next_tensordict.reshape(n))
        done = next_tensordict.get("done", None)
        self._done = np.zeros(n, dtype=bool) if done is None else done.reshape(n, -1).any(-1).cpu().numpy()
        self.clock.advance(self._done)
        self._expect = np.zeros(n, dtype=bool)
        for error in errors:
            report(error)
        return next_tensordict

    def _check(self, root: TensorDictBase, nxt: TensorDictBase) -> list[LifecycleError]:
        """The problems of one step (and the bookkeeping for the next one)."""
        fed = {k: root.get(k, None) for k in self.state_keys}
        missing = [k for k, v in fed.items() if v is None]
        if missing:
            self._last = {}
            return [StateMismatchError(
                f"LifecycleCheck: the policy was not fed its recurrent state {missing} at tick"
                f" {self.clock.tick if self.clock else 0}: without a primer the env does not carry"
                " ('next', state) to the next step, and the policy restarts from zeros every step",
                kind="missing-primer", fix=_PRIMER_FIX, keys=missing)]
        returned = {k: nxt.get(k, None) for k in self.state_keys}
        gone = [k for k, v in returned.items() if v is None]
        if gone:
            self._last = {}
            return [StateMismatchError(
                f"LifecycleCheck: the policy did not return ('next', key) for {gone}: the state would"
                " never advance", kind="missing-next-state",
                fix="give the recurrent module out_keys=[..., ('next', <state key>)] for each state key",
                keys=gone)]
        errors = self._check_init(root)
        errors += self._check_fed(fed)
        self._last = {k: v.detach().reshape(v.shape[0], -1).clone() for k, v in returned.items()}
        return errors

    def _check_init(self, root: TensorDictBase) -> list[LifecycleError]:
        init = root.get(self.init_key, None)
        tick = self.clock.tick if self.clock is not None else 0
        if init is None:
            return [StaleStateError(
                f"LifecycleCheck: no {self.init_key!r} in what the policy read at tick {tick}: the"
                " recurrent module cannot tell where episodes start", kind="missing-is-init",
                fix="add InitTracker() to the env's transforms, before LifecycleCheck")]
        got = init.reshape(init.shape[0], -1).any(-1).cpu().numpy()
        errors: list[LifecycleError] = []
        unset, extra = np.flatnonzero(self._expect & ~got), np.flatnonzero(got & ~self._expect)
        if unset.size or extra.size:
            what = (f"is_init is False at rows {_rows(unset)}, where an episode starts" if unset.size else
                    f"is_init is True at rows {_rows(extra)}, where no episode starts")
            errors.append(StaleStateError(
                f"LifecycleCheck: {what} (tick {tick}): the state of the ended episode leaks into the"
                " new one (TorchRL resets the state only where is_init is True)", kind="is-init",
                fix=_INIT_FIX, rows=unset if unset.size else extra))
        count = root.get("step_count", None)
        if count is not None and not errors:
            zero = (count.reshape(count.shape[0], -1)[:, 0] == 0).cpu().numpy()
            odd = np.flatnonzero(zero != got)
            if odd.size:
                errors.append(StaleStateError(
                    f"LifecycleCheck: is_init disagrees with StepCounter's step_count == 0 at rows"
                    f" {_rows(odd)} (tick {tick})", kind="is-init", fix=_INIT_FIX, rows=odd))
        traj = root.get("traj_count", None)
        if traj is not None:
            ids = traj.reshape(traj.shape[0], -1)[:, 0].cpu().numpy()
            if self._traj is not None and not errors:
                odd = np.flatnonzero((ids != self._traj) != got)
                if odd.size:
                    errors.append(StaleStateError(
                        f"LifecycleCheck: TrajCounter's traj_count changes where is_init is False, or"
                        f" stays where it is True, at rows {_rows(odd)} (tick {tick})", kind="is-init",
                        fix=_INIT_FIX, rows=odd))
            self._traj = ids
        return errors

    def _check_fed(self, fed: dict[NestedKey, Any]) -> list[LifecycleError]:
        tick = self.clock.tick if self.clock is not None else 0
        flat = {k: v.reshape(v.shape[0], -1) for k, v in fed.items()}
        started = torch.from_numpy(self._expect).to(next(iter(flat.values())).device)
        nonzero = torch.zeros_like(started)
        for v in flat.values():
            nonzero |= (v != 0).any(-1) & started
        errors: list[LifecycleError] = []
        rows = np.flatnonzero(nonzero.cpu().numpy())
        if rows.size:
            errors.append(StaleStateError(
                f"LifecycleCheck: rows {_rows(rows)} start an episode (is_init) but were fed a nonzero"
                f" state at tick {tick}: TorchRL's recurrent mode replays them from that stored state",
                kind="stale-episode", fix="zero the state at reset: " + _PRIMER_FIX, rows=rows))
        if not self._last:
            return errors
        changed = torch.zeros_like(started)
        for k, v in flat.items():
            last = self._last[k]
            if last.shape != v.shape:
                changed |= ~started
                continue
            changed |= (v != last.to(v.device)).any(-1) & ~started
        rows = np.flatnonzero(changed.cpu().numpy())
        if rows.size:
            errors.append(StaleStateError(
                f"LifecycleCheck: rows {_rows(rows)} were fed another state at tick {tick} than the one"
                " the policy returned at the step before (a stale, dropped or overwritten state)",
                kind="stale-tick",
                fix="let the env carry ('next', state) to the root: register the state keys with "
                    + _PRIMER_FIX + ", and do not edit the state keys between steps", rows=rows))
        return errors


_SLICE_FIX = ("mark the first step of every slice is_init=True: SliceSampler does by default (init_key="
              "'is_init'); for a hand-built batch set is_init[..., 0, :] = True on each slice")


def _ids(td: TensorDictBase) -> torch.Tensor | None:
    for key in (("collector", "traj_ids"), "traj_count"):
        value = td.get(key, None)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None


def check_slices(data: TensorDictBase, *, init_key: str = "is_init") -> None:
    """Check that a batch of sequences for a recurrent loss marks every slice start with ``is_init``.

    TorchRL's recurrent mode runs each row of ``data [*B, T]`` as one sequence, cut only where
    ``is_init`` is True; slices of different episodes (or distant parts of one) laid end to end in
    a row without ``is_init`` at their joins run as one: the state of one leaks into the next.
    The witnesses are the keys the pipeline stored: ``step_count`` (``StepCounter``) must grow by
    one and the trajectory id (``("collector", "traj_ids")`` or ``TrajCounter``'s ``traj_count``)
    must stay put from one step to the next wherever ``is_init`` is False. Padded steps (a False
    ``("collector", "mask")`` / ``"mask"``) are skipped. Without a witness nothing is checked.

    Args:
        data: a batch laid out ``[*B, T]`` (time last), as a recurrent loss receives it.
        init_key: the key of the start flags.

    Raises:
        StaleStateError: at a join without ``is_init`` (strict mode; warn mode warns; off skips).
    """
    if get_mode() == "off" or data.ndim == 0:
        return
    td = data.unsqueeze(0) if data.ndim == 1 else data if data.ndim == 2 else data.flatten(0, -2)
    init, count, ids = td.get(init_key, None), td.get("step_count", None), _ids(td)
    if init is None or (count is None and ids is None):
        return
    shape = tuple(td.shape)
    mask = td.get(("collector", "mask"), None)
    mask = td.get("mask", None) if mask is None else mask
    joins = ~init.reshape(shape)[:, 1:]
    if mask is not None:
        valid = mask.reshape(shape).bool()
        joins &= valid[:, 1:] & valid[:, :-1]
    broken = torch.zeros_like(joins)
    if count is not None:
        c = count.reshape(shape)
        broken |= c[:, 1:] != c[:, :-1] + 1
    if ids is not None:
        i = ids.reshape(shape)
        broken |= i[:, 1:] != i[:, :-1]
    rows, steps = (broken & joins).nonzero(as_tuple=True)
    if rows.numel():
        where = ", ".join(f"(row {int(r)}, t {int(t) + 1})" for r, t in zip(rows[:_SHOWN], steps[:_SHOWN],
                                                                           strict=True))
        more = f", and {rows.numel() - _SHOWN} more" if rows.numel() > _SHOWN else ""
        report(StaleStateError(
            f"check_slices: a new slice begins without is_init at {where}{more}: the recurrent module"
            " carries the state of the slice before into it", kind="slice-leak", fix=_SLICE_FIX,
            rows=rows.cpu().numpy()))
