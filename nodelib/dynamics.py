"""Vector fields ``f(z, t, θ)`` for the book's ODEs (the ``f`` of every chapter).

``MLPField`` is the free-form field of Parts I and II: a multilayer perceptron on the state with
the time appended to its input, ``f(z, t) = MLP([z, t])`` (chapter "From residual networks to
ODEs"). Fields follow torchdiffeq's calling convention ``field(t, z)``.
"""
from __future__ import annotations

from typing import Sequence, Type

import torch
from torch import Tensor, nn

__all__ = ["MLPField"]


class MLPField(nn.Module):
    """``f(z, t) = MLP([z, t])`` on states of shape ``(..., dim)``.

    Args:
        dim: dimension ``n`` of the state ``z``.
        hidden: widths of the hidden layers.
        activation: the nonlinearity between layers (a module class, default ``nn.Tanh``).
        time_dependent: append ``t`` to the input (``False`` gives an autonomous field ``f(z)``).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), *, activation: Type[nn.Module] = nn.Tanh,
                 time_dependent: bool = True):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}.")
        self.dim = dim
        self.time_dependent = time_dependent
        widths = [dim + int(time_dependent), *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), activation()]
        layers.append(nn.Linear(widths[-1], dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if z.shape[-1] != self.dim:
            raise ValueError(f"z must have last dimension {self.dim}, got shape {tuple(z.shape)}.")
        if self.time_dependent:
            z = torch.cat([z, t.to(z).expand(*z.shape[:-1], 1)], dim=-1)
        return self.net(z)
