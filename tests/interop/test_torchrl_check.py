"""Tests for tether.interop.torchrl.LifecycleCheck and check_slices on real TorchRL pipelines.

A recurrent DQN loop in the style of TorchRL's tutorial (Collector, primer, InitTracker,
StepCounter, TrajCounter, a replay buffer of slices, the loss in recurrent mode) runs silent in
strict mode; each known silent failure, injected, is caught with the message naming TorchRL's fix.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torchrl")
pytest.importorskip("gymnasium")

import warnings

import numpy as np
import torch
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq
from torchrl import modules as trl
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer, Unbounded
from torchrl.envs import (
    Compose,
    GymEnv,
    InitTracker,
    SerialEnv,
    StepCounter,
    TensorDictPrimer,
    TrajCounter,
    Transform,
    TransformedEnv,
    step_mdp,
)
from torchrl.objectives import DQNLoss, SoftUpdate

import tether
from tether.errors import LifecycleWarning, StaleStateError, StateMismatchError
from tether.interop.torchrl import LifecycleCheck, LSTMModule, check_slices

with warnings.catch_warnings():  # torchrl's collectors module warns about its own deprecations on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchrl.collectors import Collector

H = 8
PRIMER = r"fix: append the policy's primer to the env, after LifecycleCheck: env.append_transform\(policy_module.make_tensordict_primer\(\)\)"


def _policy(module_cls: Any, base: Any) -> tuple[Any, Any]:
    lstm = module_cls(input_size=4, hidden_size=H, in_key="observation", out_key="embed")
    head = Mod(torch.nn.Linear(H, 2), in_keys=["embed"], out_keys=["action_value"])
    return lstm, Seq(lstm, head, trl.QValueModule(spec=base.action_spec_unbatched))


def _env() -> Any:
    base = SerialEnv(2, lambda: GymEnv("CartPole-v1"))
    base.set_seed(0)
    return base


def _pipeline(module_cls: Any = LSTMModule, *, primer: bool = True, before: tuple[Any, ...] = (),
              after: tuple[Any, ...] = ()) -> tuple[Any, Any, LifecycleCheck]:
    base = _env()
    lstm, policy = _policy(module_cls, base)
    check = LifecycleCheck(policy)
    env = TransformedEnv(base, Compose(StepCounter(max_steps=12), InitTracker(), TrajCounter(), *before, check,
                                       *([lstm.make_tensordict_primer()] if primer else []), *after))
    return env, policy, check


@pytest.mark.parametrize("module_cls", [LSTMModule, trl.LSTMModule], ids=["tether", "torchrl"])
def test_a_recurrent_dqn_loop_runs_silent_in_strict_mode(module_cls: Any) -> None:
    """Collector, primer, InitTracker, StepCounter, slices replayed in recurrent mode: no report, clock kept."""
    env, policy, check = _pipeline(module_cls)
    explore = Seq(policy, trl.EGreedyModule(spec=env.action_spec_unbatched, annealing_num_steps=50, eps_init=0.5))
    collector = Collector(env, explore, frames_per_batch=40, total_frames=120)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(200, ndim=2), batch_size=32,
                                    sampler=SliceSampler(slice_len=8, traj_key=("collector", "traj_ids")))
    loss_fn = DQNLoss(policy, action_space=env.action_spec_unbatched, delay_value=True)
    updater = SoftUpdate(loss_fn, eps=0.9)
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
    with tether.mode("strict"):
        for data in collector:
            check_slices(data)  # a collected batch: each row one env's consecutive steps
            buffer.extend(data)
            sample = buffer.sample().reshape(-1, 8)
            check_slices(sample)
            with trl.set_recurrent_mode(True):
                loss = loss_fn(sample)["loss"]
            loss.backward()
            optim.step()
            optim.zero_grad()
            updater.step()
            collector.update_policy_weights_()
    collector.shutdown()
    assert check.clock is not None
    assert check.clock.tick == 60  # 120 frames over 2 envs
    assert check.clock.renewals > 0  # episodes ended (StepCounter truncates at 12) and were checked


def test_a_missing_primer_is_caught_at_the_first_step() -> None:
    """Without TensorDictPrimer the state is silently not fed (pytorch/rl #2327): caught at step one."""
    env, policy, _ = _pipeline(primer=False)
    with tether.mode("strict"), pytest.raises(StateMismatchError, match=r"not fed its recurrent state .* at tick 0") as err:
        env.rollout(3, policy)
    assert err.value.kind == "missing-primer"
    assert "make_tensordict_primer()" in err.value.fix
    with tether.mode("strict"), pytest.raises(StateMismatchError, match=PRIMER):
        env.rollout(3, policy)


class _ForgetInit(Transform):  # type: ignore[misc]
    """An injected fault: is_init all False (the failure TorchRL's lifecycle guide names)."""

    def _reset(self, tensordict: Any, tensordict_reset: Any) -> Any:
        tensordict_reset.set("is_init", torch.zeros_like(tensordict_reset["is_init"]))
        return tensordict_reset


class _LateInit(Transform):  # type: ignore[misc]
    """An injected fault: is_init set one step after the episode started."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: torch.Tensor | None = None

    def _reset(self, tensordict: Any, tensordict_reset: Any) -> Any:
        self.pending = tensordict_reset["is_init"].clone()
        tensordict_reset.set("is_init", torch.zeros_like(self.pending))
        return tensordict_reset

    def _step(self, tensordict: Any, next_tensordict: Any) -> Any:
        if self.pending is not None:
            next_tensordict.set("is_init", self.pending)
            self.pending = None
        return next_tensordict


@pytest.mark.parametrize("fault", [_ForgetInit, _LateInit], ids=["all-false", "shifted"])
def test_a_wrong_is_init_is_caught(fault: Any) -> None:
    """is_init False where an episode starts: caught at that step, naming InitTracker."""
    env, policy, _ = _pipeline(before=(fault(),))
    with tether.mode("strict"), pytest.raises(StaleStateError, match=(
            r"is_init is False at rows \[0, 1\], where an episode starts \(tick 0\).*\n  fix: let InitTracker\(\) set is_init")):
        env.rollout(3, policy)


class _ExtraInit(Transform):  # type: ignore[misc]
    """An injected fault: is_init set on row 1 at every step, where no episode starts."""

    def _step(self, tensordict: Any, next_tensordict: Any) -> Any:
        flags = next_tensordict["is_init"].clone()
        flags[1] = True
        next_tensordict.set("is_init", flags)
        return next_tensordict


def test_is_init_set_where_no_episode_starts_is_caught() -> None:
    """is_init True mid-episode: caught at that step; warn mode warns once per kind and call site."""
    env, policy, _ = _pipeline(before=(_ExtraInit(),))
    with tether.mode("strict"), pytest.raises(StaleStateError, match=(
            r"is_init is True at rows \[1\], where no episode starts \(tick 1\)")):
        env.rollout(3, policy)
    with tether.mode("warn"), pytest.warns(LifecycleWarning, match=r"where no episode starts") as caught:
        env.rollout(3, policy)
    assert len(caught) == 1


def test_a_state_fed_again_raises_with_rows_and_tick() -> None:
    """The stale-state report names the rows, the tick and the fix."""
    env, policy, _ = _pipeline()
    with tether.mode("strict"):
        td = step_mdp(env.step(policy(env.reset())))
        td = env.step(policy(td))
        nxt = step_mdp(td)
        nxt["recurrent_state_c"] = td["recurrent_state_c"]
        with pytest.raises(StaleStateError, match=(r"rows \[0, 1\] were fed another state at tick 2 than the one the"
                                                   r" policy returned at the step before")) as err:
            env.step(policy(nxt))
    assert err.value.kind == "stale-tick"


def test_a_nonzero_state_at_an_episode_start_is_caught() -> None:
    """A primer that does not zero at reset: the replay would restart from that state; caught at step one."""
    base = _env()
    _, policy = _policy(LSTMModule, base)
    noisy = TensorDictPrimer({k: Unbounded(shape=(1, H)) for k in ("recurrent_state_h", "recurrent_state_c")},
                             random=True, expand_specs=True)
    env = TransformedEnv(base, Compose(InitTracker(), LifecycleCheck(policy), noisy))
    with tether.mode("strict"), pytest.raises(StaleStateError, match=(
            r"rows \[0, 1\] start an episode \(is_init\) but were fed a nonzero state at tick 0.*\n  fix: zero the state at reset")):
        env.rollout(2, policy)


def test_off_mode_checks_and_records_nothing() -> None:
    """Off mode: a broken pipeline runs unreported and the check keeps no clock."""
    env, policy, check = _pipeline(primer=False)
    with tether.mode("off"):
        env.rollout(3, policy)
    assert check.clock is None


def test_the_check_needs_state_keys() -> None:
    """A policy without a recurrent module, or both arguments: one line saying what to pass."""
    with pytest.raises(ValueError, match=r"expected a policy holding an LSTMModule / GRUModule, found none; pass state_keys="):
        LifecycleCheck(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"expected exactly one of policy / state_keys"):
        LifecycleCheck(torch.nn.Linear(2, 2), state_keys=["h"])
    assert LifecycleCheck(state_keys=["h"]).state_keys == ["h"]


# ------------------------------------------------------------------------------------------------
def _rollout() -> Any:
    env, policy, _ = _pipeline()
    with tether.mode("strict"):
        return env.rollout(30, policy, break_when_any_done=False)  # [2, 30]


def test_concatenated_slices_without_is_init_are_caught() -> None:
    """Two mid-episode slices laid end to end with is_init False at the join leak state (pytorch/rl #4474)."""
    data = _rollout()
    row = torch.cat([data[0, 2:7], data[0, 14:19]]).unsqueeze(0)  # steps 2-6, then 14-18 of the same env
    assert not row["is_init"][0, 5].any()
    with tether.mode("strict"), pytest.raises(StaleStateError, match=(
            r"check_slices: a new slice begins without is_init at \(row 0, t 5\).*\n  fix: mark the first step of every slice is_init=True: SliceSampler does by default")):
        check_slices(row)
    row["is_init"][0, 5] = True
    with tether.mode("strict"):
        check_slices(row)  # marked: silent


def test_a_slice_sampler_without_init_marks_is_caught() -> None:
    """SliceSampler(init_key=None) keeps the stored is_init: a flat sample of slices is caught; the default is silent."""
    data = _rollout().reshape(-1)  # env 0's 30 steps, then env 1's
    data["traj"] = data["traj_count"].squeeze(-1)
    for init_key, caught in ((None, True), ("is_init", False)):
        buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100), batch_size=24,
                                        sampler=SliceSampler(slice_len=6, traj_key="traj", init_key=init_key))
        buffer.extend(data)
        torch.manual_seed(3)
        flat = buffer.sample()  # [24]: four slices end to end, as one sequence
        with tether.mode("strict"):
            if caught:
                with pytest.raises(StaleStateError, match="a new slice begins without is_init"):
                    check_slices(flat)
            else:
                check_slices(flat)


def test_padded_steps_are_not_joins() -> None:
    """Steps a mask marks as padding are skipped: no report for a padded row."""
    data = _rollout()[:, :6].clone()
    data["mask"] = torch.ones(2, 6, dtype=torch.bool)
    data["mask"][:, 4:] = False
    data["step_count"][:, 4:] = 0
    with tether.mode("strict"):
        check_slices(data)
    assert np.array_equal(data["mask"].sum(-1).numpy(), [4, 4])
