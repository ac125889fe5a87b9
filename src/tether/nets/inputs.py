"""Input checks of the actor-critic: constructor arguments, actions, episode starts.

(Observations are checked by ``encoders.ObservationLayout``, masks by ``masks.py``.) Each function
turns what a caller passes (tensor or array) into what the network takes, or raises an error that
says what was expected and what came, prefixed with the calling method. They run in the lifecycle
layer, outside any compiled region.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tether.nets.factors import ActionLayout

__all__ = ["as_actions", "as_episode_starts", "custom_encoder_features", "positive_int",
           "refuse_orphan_parts"]

_WHO = "FactoredRecurrentActorCritic"


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int, refusing anything but a positive int.

    Raises:
        ValueError: naming the argument and what came.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{_WHO}: expected {name} to be a positive int, got {value!r}")
    return int(value)


def refuse_orphan_parts(**parts: Any) -> None:
    """Refuse the companions of ``encoder=`` (given as keyword arguments) when it was not given.

    Raises:
        ValueError: naming the companions given.
    """
    given = sorted(name for name, value in parts.items() if value is not None)
    if given:
        raise ValueError(f"{_WHO}: {' and '.join(given)} go with encoder=, which was not given; pass"
                         " encoder=your_module too, or drop them")


def custom_encoder_features(encoder: Any, encoder_out: Any, critic_encoder: Any, shared_core: bool,
                            hidden_sizes: Any, activation: Any) -> int:
    """Check a user-supplied encoder and its companions; return its output features.

    Raises:
        TypeError: when ``encoder`` is not an ``nn.Module``.
        ValueError: for a missing ``encoder_out``, built-in encoder options given beside it, or a
            missing / misplaced ``critic_encoder``.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"{_WHO}: expected encoder to be an nn.Module, got {type(encoder).__name__}")
    if hidden_sizes is not None or activation is not None:
        raise ValueError(f"{_WHO}: hidden_sizes and activation shape the built-in encoder; with"
                         " encoder= your module replaces it, so leave them unset")
    if encoder_out is None:
        raise ValueError(f"{_WHO}: expected encoder_out= (the features your encoder returns per row)"
                         " with encoder=")
    out = positive_int("encoder_out", encoder_out)
    if shared_core and critic_encoder is not None:
        raise ValueError(f"{_WHO}: critic_encoder= is for a separate critic; pass shared_core=False,"
                         " or drop critic_encoder")
    if not shared_core and (not isinstance(critic_encoder, nn.Module) or critic_encoder is encoder):
        raise ValueError(
            f"{_WHO}: shared_core=False with encoder= needs critic_encoder=, a second instance of"
            " your encoder (its own parameters, same encoder_out), e.g. build it twice"
        )
    return out


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def as_episode_starts(episode_starts: Any, steps: int, batch: int, where: str) -> torch.Tensor:
    """Episode starts as a bool tensor ``[T, B]``, left where they are.

    :func:`tether.sequence.unroll` plans its calls from the starts on the host, so a numpy array
    or CPU tensor stays on the CPU (moving it to an accelerator would cost a sync there).

    Raises:
        ValueError: when not bool or not shaped ``[T, B]``.
    """
    starts = _tensor(episode_starts)
    if starts.dtype != torch.bool or tuple(starts.shape) != (steps, batch):
        raise ValueError(
            f"{where}: expected episode_starts as bool [T={steps}, B={batch}] (True where obs[t, b]"
            f" starts an episode), got {starts.dtype} {list(starts.shape)}"
        )
    return starts


def as_actions(actions: Any, layout: ActionLayout, steps: int, batch: int, device: torch.device,
               where: str) -> torch.Tensor:
    """Actions ``[T, B, *action_shape]`` checked and flattened to ``[T * B, *action_shape]``.

    ``[T, B, 1]`` is accepted for a single Discrete space, and float indices for an int layout.

    Raises:
        ValueError: for another shape, or a discrete index outside ``[0, n)``.
    """
    tensor = _tensor(actions)
    shape = layout.action_shape
    if shape == () and tensor.dim() == 3 and tensor.shape[2] == 1:
        tensor = tensor.squeeze(2)
    if tuple(tensor.shape) != (steps, batch, *shape):
        raise ValueError(
            f"{where}: expected actions shaped {[steps, batch, *shape]} (as act() returns them) for"
            f" {layout.space!r}, got {list(tensor.shape)}"
        )
    flat = tensor.to(device).reshape(steps * batch, *shape)
    if not layout.is_float and flat.is_floating_point():
        flat = torch.round(flat).long()
    _check_range(flat, layout, where)
    return flat


def _check_range(flat: torch.Tensor, layout: ActionLayout, where: str) -> None:
    if not layout.discrete:
        return
    parts = layout.split(flat)
    checked, bad = [], []
    for factor, part in zip(layout.factors, parts, strict=True):
        if factor.is_discrete:
            checked.append(factor)
            bad.append(((part < 0) | (part >= torch.tensor(factor.sizes, device=flat.device))).any())
    flags = torch.stack(bad).cpu().tolist()  # one host sync for every discrete head
    for factor, flag in zip(checked, flags, strict=True):
        if flag:
            raise ValueError(
                f"{where}: actions of head {factor.name!r} fall outside [0, n) for sizes"
                f" {list(factor.sizes)} (indices are zero-based; env_actions adds the space's start)"
            )
