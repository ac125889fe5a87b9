"""The exportable policy step: one step of the actor-critic as a plain ``nn.Module`` of tensors.

:meth:`FactoredRecurrentActorCritic.export_step <tether.nets.FactoredRecurrentActorCritic.export_step>`
hands out a :class:`PolicyStep`: the math of ``act`` without the bookkeeping. Tensors in, tensors
out; the episode reset, the observation encoding (one-hots of discrete leaves) and the observation
normalisation happen inside the graph, so ``torch.export`` / ``torch.onnx`` can take it whole.

Inputs, in order (:attr:`PolicyStep.input_names`):

==================  =========================================================================
``obs``             one tensor for a Box / Discrete / MultiDiscrete / MultiBinary space; for a
                    Dict / Tuple space one tensor per leaf, named ``obs.<key>`` (``obs.0.pos``
                    for nested entries), in :attr:`ObservationLayout.leaves` order (depth first,
                    Dict keys sorted as gymnasium sorts them). Each leaf is ``[B, *leaf_shape]``
                    (a Box may also come flattened ``[B, prod(shape)]``); Discrete leaves hold the
                    env's integer values ``[B]`` (``start`` included), MultiDiscrete ``[B, *nvec
                    shape]``: the one-hot is taken in the graph. Values must lie in the space:
                    the graph does not check them.
``h`` (and ``c``)   the policy state ``[L, B, H]`` as ``initial_state`` lays it out (with a separate
                    critic the actor's layers first, then the critic's: ``L = 2 * num_layers``).
``episode_start``   bool ``[B]``: True where ``obs`` is the first observation of a new episode;
                    those rows of the state are zeroed (``torch.where``) before the step.
``action_mask``     only with ``action_masks=True``: bool ``[B, D]``, True = allowed, the
                    discrete heads' columns concatenated in head order (as ``act`` takes masks).
==================  =========================================================================

Outputs (:attr:`PolicyStep.output_names`): per head, in head order, either the deterministic
action (``deterministic=True``: argmax / mean, as ``act(deterministic=True)`` takes it; int64
``[B]`` for Discrete, int64 ``[B, k]`` for MultiDiscrete, float ``[B, d]`` for Box, unclipped) or
the distribution's parameters (normalised log-probabilities ``[B, sum(sizes)]`` for a categorical
head, ``mean`` and ``log_std`` ``[B, d]`` for a Gaussian one); then ``value [B]``; then the next
state tensors ``next_h`` (and ``next_c``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tether.nets.cores import run_core

if TYPE_CHECKING:
    from tether.nets.actor_critic import FactoredRecurrentActorCritic

__all__ = ["ObservationNorm", "PolicyStep"]


class ObservationNorm(NamedTuple):
    """Running mean / std observation normalisation, built into a :class:`PolicyStep`.

    The step computes ``(obs - mean) / sqrt(var + eps)`` in float64, clips to ``[-clip, clip]`` when
    ``clip`` is given, and casts to float32: gymnasium's ``NormalizeObservation`` (which
    ``make_vector_env(..., normalize_obs=True)`` wraps around the env) with its statistics frozen,
    to the bit.

    Attributes:
        mean: the running mean, shaped like one observation (array or tensor).
        var: the running variance, same shape.
        eps: added to ``var`` under the square root.
        clip: the bound of the normalised values, or ``None`` for none.
    """

    mean: Any
    var: Any
    eps: float = 1e-8
    clip: float | None = None

    @classmethod
    def from_wrapper(cls, wrapper: Any) -> ObservationNorm:
        """The frozen statistics of a gymnasium ``NormalizeObservation`` wrapper (vector or single env).

        Example:
            >>> from tether.envs import make_vector_env
            >>> from tether.envs.factory import obs_normalizer
            >>> venv = make_vector_env("tether/CartPole-NoVel-v0", 2, normalize_obs=True)
            >>> ObservationNorm.from_wrapper(obs_normalizer(venv)).mean.shape
            (4,)
            >>> venv.close()
        """
        rms = wrapper.obs_rms
        return cls(np.array(rms.mean), np.array(rms.var), float(wrapper.epsilon))


def _leaf_name(path: tuple[str | int, ...]) -> str:
    return ".".join(["obs", *map(str, path)])


class PolicyStep(nn.Module):
    """One policy step as a plain module: ``(obs..., state..., episode_start[, action_mask])`` in.

    Built by ``policy.export_step()``; see this module's docstring for the inputs and outputs. It
    shares the policy's parameters (training the policy changes the step; ``copy.deepcopy`` it to
    keep a frozen one). No lifecycle checks run here: the graph resets the rows it is told to, and
    the caller feeds each step the previous step's next state.

    Args:
        policy: the actor-critic.
        deterministic: output each head's deterministic action (else its distribution parameters).
        action_masks: take an ``action_mask`` input (the policy needs a discrete head).
        obs_norm: normalisation built into the graph (a Box observation space only).

    Raises:
        ValueError: for masks without a discrete head, or a normalisation that does not fit the
            observation space.

    Example:
        >>> import gymnasium as gym, torch
        >>> from tether.nets import FactoredRecurrentActorCritic
        >>> policy = FactoredRecurrentActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
        >>> step = policy.export_step()
        >>> step.input_names, step.output_names
        (['obs', 'h', 'c', 'episode_start'], ['action', 'value', 'next_h', 'next_c'])
        >>> action, value, h, c = step(*step.example_inputs(4))
        >>> action.shape, value.shape, h.shape
        (torch.Size([4]), torch.Size([4]), torch.Size([1, 4, 64]))
    """

    obs_mean: torch.Tensor
    obs_var: torch.Tensor

    def __init__(
        self, policy: FactoredRecurrentActorCritic, *, deterministic: bool = True, action_masks: bool = False,
        obs_norm: ObservationNorm | None = None,
    ) -> None:
        super().__init__()
        self.obs_layout = policy.obs_layout
        self.layout = policy.layout
        self.deterministic = bool(deterministic)
        self.action_masks = bool(action_masks)
        self.has_c = policy.core == "lstm"
        self.actor_layers = policy.actor_core.spec.num_layers
        self.state_layers = policy.state_layers
        self.hidden_size = policy.hidden_size
        self.encoder = policy.encoder
        self.critic_encoder = policy.critic_encoder
        self.actor_rnn = policy.actor_core.module
        self.critic_rnn = None if policy.critic_core is None else policy.critic_core.module
        self.heads = policy.heads
        self.value_head = policy.value_head
        if self.action_masks and not self.layout.discrete:
            raise ValueError(
                f"export_step: action_masks=True, but the action space {self.layout.space!r} has no"
                " discrete head; masks apply to Discrete / MultiDiscrete heads only")
        self.normalized = obs_norm is not None
        if obs_norm is not None:
            mean, var = self._norm_stats(obs_norm, policy.observation_space)
            self.register_buffer("obs_mean", mean)
            self.register_buffer("obs_var", var)
            self.obs_eps = float(obs_norm.eps)
            self.obs_clip = None if obs_norm.clip is None else float(obs_norm.clip)

    def _norm_stats(
        self, norm: ObservationNorm, space: spaces.Space[Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(space, spaces.Box):
            raise ValueError(f"export_step: obs_norm normalises a Box observation, but the policy observes"
                             f" {space!r}; drop obs_norm")
        # float64, as gymnasium's wrapper computes it (numpy), so the graph normalises bit for bit alike
        mean, var = (torch.as_tensor(np.asarray(v), dtype=torch.float64).clone()
                     for v in (norm.mean, norm.var))
        if tuple(mean.shape) != space.shape or tuple(var.shape) != space.shape:
            raise ValueError(f"export_step: expected obs_norm mean and var shaped {list(space.shape)} (one"
                             f" observation), got {list(mean.shape)} and {list(var.shape)}")
        return mean.to(self.value_head.weight.device), var.to(self.value_head.weight.device)

    # ------------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """The names of :meth:`forward`'s inputs, in order."""
        leaves = self.obs_layout.leaves
        plain = len(leaves) == 1 and not leaves[0].path
        obs = ["obs"] if plain else [_leaf_name(leaf.path) for leaf in leaves]
        state = ["h", "c"] if self.has_c else ["h"]
        return [*obs, *state, "episode_start", *(["action_mask"] if self.action_masks else [])]

    @property
    def output_names(self) -> list[str]:
        """The names of :meth:`forward`'s outputs, in order."""
        single = self.layout.composite is None
        heads: list[str] = []
        for factor in self.layout.factors:
            suffix = "" if single else f".{factor.name}"
            if self.deterministic:
                heads.append(f"action{suffix}")
            elif factor.is_discrete:
                heads.append(f"log_probs{suffix}")
            else:
                heads += [f"mean{suffix}", f"log_std{suffix}"]
        return [*heads, "value", "next_h", *(["next_c"] if self.has_c else [])]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Valid inputs for ``batch`` rows, each leaf in its space's dtype (as an exported graph takes them).

        Zero observations (discrete leaves at their ``start``), a zero state, every row starting an
        episode, every action allowed.
        """
        weight = self.value_head.weight
        obs = []
        for leaf in self.obs_layout.leaves:
            values = np.zeros((batch, *leaf.shape), dtype=leaf.space.dtype)
            if leaf.kind in ("discrete", "multi_discrete"):
                values += np.asarray(leaf.starts, dtype=values.dtype).reshape(leaf.shape)
            obs.append(torch.from_numpy(values).to(weight.device))
        shape = (self.state_layers, batch, self.hidden_size)
        state = [torch.zeros(shape, dtype=weight.dtype, device=weight.device)
                 for _ in range(2 if self.has_c else 1)]
        start = torch.ones(batch, dtype=torch.bool, device=weight.device)
        mask = ([torch.ones(batch, self.layout.mask_size, dtype=torch.bool, device=weight.device)]
                if self.action_masks else [])
        return (*obs, *state, start, *mask)

    def dynamic_shapes(self, batch: Any) -> tuple[tuple[dict[int, Any], ...]]:
        """The ``dynamic_shapes`` argument of ``torch.export.export`` that leaves the batch dim free.

        Args:
            batch: the batch dim, e.g. ``torch.export.Dim("batch", min=1, max=1024)``: dim 0 of the
                observations, ``episode_start`` and ``action_mask``, dim 1 of the state tensors.
        """
        state = {"h", "c"}
        return (tuple({1: batch} if name in state else {0: batch} for name in self.input_names),)

    # ------------------------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step: the inputs of :attr:`input_names` in, the outputs of :attr:`output_names` out.

        Raises:
            TypeError: for another number of inputs.
        """
        n_obs, n_state = len(self.obs_layout.leaves), 2 if self.has_c else 1
        if len(inputs) != n_obs + n_state + 1 + self.action_masks:
            raise TypeError(f"PolicyStep: expected {len(self.input_names)} inputs {self.input_names},"
                            f" got {len(inputs)}")
        obs, state = list(inputs[:n_obs]), inputs[n_obs : n_obs + n_state]
        start = inputs[n_obs + n_state]
        mask = inputs[n_obs + n_state + 1] if self.action_masks else None
        if self.normalized:
            obs[0] = self._normalize(obs[0])
        weight = self.value_head.weight
        x = self.obs_layout.encode(obs, obs[0].shape[0], weight)
        z = self.encoder(x)
        zv = z if self.critic_encoder is None else self.critic_encoder(x)
        # [B] -> [1, B, 1]: the rows that start an episode are zeroed before the step
        starting = start.reshape(1, -1, 1)
        tensors = tuple(torch.where(starting, torch.zeros_like(t), t) for t in state)
        y, yv, next_state = self._cores(z.unsqueeze(0), zv.unsqueeze(0), tensors)
        if self.deterministic:
            heads = self.heads.modes(y[0], mask)
        else:
            heads = [p for params in self.heads.distributions(y[0], mask) for p in params]
        value = self.value_head(yv[0]).squeeze(-1)
        return (*heads, value, *next_state)

    def _normalize(self, obs: torch.Tensor) -> torch.Tensor:
        mean, var = self.obs_mean, self.obs_var
        x = (obs.to(mean.dtype).reshape(obs.shape[0], *mean.shape) - mean) / torch.sqrt(var + self.obs_eps)
        x = x if self.obs_clip is None else x.clamp(-self.obs_clip, self.obs_clip)
        return x.to(torch.float32)  # the wrapper hands float32 observations to the policy

    def _cores(
        self, z: torch.Tensor, zv: torch.Tensor, tensors: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        if self.critic_rnn is None:
            y, next_state = run_core(self.actor_rnn, z, tensors, has_c=self.has_c, fuse=False)
            return y, y, next_state
        cut = self.actor_layers
        y, pi = run_core(self.actor_rnn, z, tuple(t[:cut] for t in tensors), has_c=self.has_c, fuse=False)
        yv, vf = run_core(self.critic_rnn, zv, tuple(t[cut:] for t in tensors), has_c=self.has_c, fuse=False)
        return y, yv, tuple(torch.cat(pair) for pair in zip(pi, vf, strict=True))
