"""One rank of the 2-rank job behind tests/ppo/test_distributed.py (run as a script, one per rank).

Every rank writes what it saw to ``OUT/rank<r>.pt``; the tests compare the ranks with each other
and with a single process. Started with torchrun's variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) set by the test.

Three parts:
- ``semantics``: two optimiser steps on the rank's slice of a minibatch of ``N × E`` envs (every
  rank collects the same data: a fixed seed and rank 0's weights), with the gradients and weights
  after each step;
- ``whole``: a 3-update run; ``split``: the same run stopped after 2 updates and resumed;
- the observation statistics each rank ends with.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from tether import distributed
from tether.envs.factory import make_vector_env, obs_normalizer
from tether.modes import mode
from tether.ppo import PPOConfig, RecurrentPPO
from tether.rollout import RolloutCollector, SequenceMinibatch

SLICES = ((0, 3), (3, 4))  # rank r replays columns [a, b) of each 4-sequence minibatch


def tiny(run_dir: Path, **overrides: Any) -> Any:
    """The settings the tests share (2 envs per rank, 3 updates of 16 steps on 2 ranks)."""
    settings = {"num_envs": 2, "n_steps": 16, "seq_len": 8, "total_steps": 192, "n_epochs": 2,
                "minibatch_envs": 1, "hidden_size": 16, "encoder_size": 16, "progress": False,
                "normalize_obs": True, "target_kl": 0.05, "run_dir": str(run_dir), "mode": "strict",
                **overrides}
    return PPOConfig.from_dict(settings)


def shared_minibatches(trainer: Any, num_envs: int) -> list[Any]:
    """Two minibatches of a rollout of ``num_envs`` envs, the same in every process that asks."""
    torch.manual_seed(123)
    venv = make_vector_env(trainer.config.env_id, num_envs)
    collector = RolloutCollector(venv, trainer.policy, trainer.config.n_steps, seq_len=8, seed=0)
    trainer.policy.eval()
    buffer = collector.collect()
    buffer.compute_advantages(trainer.config.gamma, trainer.config.gae_lambda)
    trainer.policy.train()
    batches = list(buffer.minibatches(2, generator=torch.Generator().manual_seed(5)))
    venv.close()
    return batches


def take(mb: Any, start: int, stop: int) -> Any:
    """Columns ``[start, stop)`` of a minibatch (its sequences ``start`` .. ``stop - 1``)."""
    cols = list(range(start, stop))
    index = torch.tensor(cols)

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x[:, index]

    return SequenceMinibatch(
        obs=pick(mb.obs), actions=pick(mb.actions), log_probs=pick(mb.log_probs), values=pick(mb.values),
        advantages=pick(mb.advantages), returns=pick(mb.returns),
        episode_starts=mb.episode_starts[:, cols], loss_mask=pick(mb.loss_mask), action_masks=None,
        initial_state=mb.initial_state.select_rows(cols), env_rows=mb.env_rows[index],
        chunk_starts=mb.chunk_starts[index])


def learn(trainer: Any, batches: list[Any]) -> list[dict[str, list[torch.Tensor]]]:
    """Step on each minibatch; the gradients (as averaged and clipped) and weights after each."""
    out = []
    with mode("strict"):
        for mb in batches:
            trainer._learn_minibatch(mb)
            out.append({"grads": [p.grad.detach().clone() for p in trainer.policy.parameters()],
                        "params": [p.detach().clone() for p in trainer.policy.parameters()]})
    return out


def semantics(out: Path, rank: int, world: int) -> dict[str, Any]:
    trainer = RecurrentPPO(tiny(out / "semantics"))
    initial = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    batches = shared_minibatches(trainer, world * trainer.config.num_envs)
    start, stop = SLICES[rank]
    steps = learn(trainer, [take(mb, start, stop) for mb in batches])
    trainer.close()
    return {"initial": initial, "steps": steps}


def training(out: Path) -> dict[str, Any]:
    whole = RecurrentPPO(tiny(out / "whole"))
    whole.train()
    rms = obs_normalizer(whole.venv).obs_rms  # type: ignore[union-attr]
    stats = {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var), "count": float(rms.count)}
    whole_params = [p.detach().clone() for p in whole.policy.parameters()]
    whole.close()
    first = RecurrentPPO(tiny(out / "split"))
    first.train(max_updates=2)
    first.close()
    resumed = RecurrentPPO.resume(out / "split")
    at = (resumed.update, resumed.steps)
    resumed.train()
    split_params = [p.detach().clone() for p in resumed.policy.parameters()]
    resumed.close()
    return {"whole": whole_params, "split": split_params, "resumed_at": at, "obs_stats": stats}


def main() -> None:
    out = Path(sys.argv[1])
    ctx = distributed.init("cpu")
    result = {"world": ctx.world_size, "backend": ctx.backend, **semantics(out, ctx.rank, ctx.world_size),
              **training(out)}
    torch.save(result, out / f"rank{ctx.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main()
