"""The four classifiers of Table 1 of Chen et al. (2018), at any width and image size.

All but the MLP share one design: a *downsampling* stem, a *feature* part, and a *head*
(chapter "ODE-Net on MNIST"):

* stem: a 3x3 convolution without padding from 1 to ``C`` channels, then ``n`` times
  (group norm, ReLU, 4x4 convolution of stride 2): a 28x28 image becomes ``C`` maps of 6x6 for
  ``n = 2``, an 8x8 image ``C`` maps of 3x3 for ``n = 1``;
* features: the part the four models differ in,

  - ``"resnet"``: six residual blocks ``h + K_2(ρ(N(K_1(ρ(N(h))))))`` (3x3 convolutions without bias),
  - ``"rknet"``: one :class:`~nodelib.dynamics.ConvField` ``f`` integrated over ``t ∈ [0, 1]`` by a
    fixed-step Runge-Kutta method, with direct backpropagation through the steps (:func:`nodelib.odeint`),
  - ``"odenet"``: the same field and interval, an adaptive solver, and gradients by the adjoint
    method (:func:`nodelib.odeint_adjoint`): memory independent of the number of steps;
* head: group norm, ReLU, global average pooling, a linear map to 10 classes.

Every normalisation is a group norm with two channels per group (:func:`norm_groups`).

``"mlp"`` is the one-hidden-layer perceptron of Table 1 (300 ReLU units; LeCun et al. 1998).

Parameter counts, with ``k = 3`` and all normalisations per-channel affine:
stem ``10 C + n (16 C² + 3 C)``; residual block ``18 C² + 4 C``; ODE field ``18 C² + 26 C``;
head ``12 C + 10``. At ``C = 64``, ``n = 2``: ResNet 576,778, ODE-Net and RK-Net 208,266 (Table 1:
0.60 M and 0.22 M).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ..adjoint import odeint_adjoint
from ..compiled import check_compiled_flag, odeint_compiled
from ..dynamics import ConvField
from ..solve import SolveStats, odeint

__all__ = ["MODELS", "SolverSettings", "ODEBlock", "ResidualBlock", "build_classifier", "downsampling_steps",
           "norm_groups"]

#: The models of Table 1, in the paper's order.
MODELS = ("mlp", "resnet", "rknet", "odenet")


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """How an :class:`ODEBlock` solves and differentiates.

    Attributes:
        method: a method of :func:`nodelib.odeint`.
        adjoint: gradients by the adjoint method (``True``) or by backpropagation through the steps.
        rtol, atol: tolerances of adaptive methods.
        steps: number of equal steps of a fixed-grid method over ``[0, 1]`` (``None`` for adaptive ones).
        compiled: nodelib's own stepping (``"dopri5"`` or ``"rk4"``), compiled by ``torch.compile``
            (``True``) or not (``"eager"``): :func:`nodelib.odeint_adjoint`'s ``compiled`` with the adjoint,
            :func:`nodelib.odeint_compiled` without; ``False`` (default) steps with torchdiffeq.
    """

    method: str
    adjoint: bool
    rtol: float = 1e-3
    atol: float = 1e-3
    steps: Optional[int] = None
    compiled: Union[bool, str] = False

    def __post_init__(self):
        check_compiled_flag(self.compiled)


def norm_groups(channels: int) -> int:
    """Groups of every group normalisation: two channels per group, at most 32 groups (32 at C = 64)."""
    return max(1, min(32, channels // 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels), channels)


class ResidualBlock(nn.Module):
    """``h + K_2(ρ(N(K_1(ρ(N(h))))))``: a pre-activation residual block of two 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = _norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(torch.relu(self.norm2(self.conv1(torch.relu(self.norm1(h))))))


class ODEBlock(nn.Module):
    """``z(1)`` for ``dz/dt = field(t, z)``, ``z(0)`` the input: a continuous-depth block.

    Evaluation counts of every solve (forward and, for the adjoint, backward) accumulate in ``stats``.
    """

    def __init__(self, field: nn.Module, solver: SolverSettings):
        super().__init__()
        self.field = field
        self.solver = solver
        self.stats = SolveStats()

    def forward(self, z: Tensor) -> Tensor:
        s = self.solver
        t = torch.tensor([0.0, 1.0], dtype=z.dtype, device=z.device)
        options = None if s.steps is None else {"step_size": 1.0 / s.steps}
        if s.adjoint:
            return odeint_adjoint(self.field, z, t, rtol=s.rtol, atol=s.atol, method=s.method, options=options,
                                  stats=self.stats, compiled=s.compiled)[-1]
        solve = odeint_compiled if s.compiled else odeint
        kwargs = {"compile_step": s.compiled is True} if s.compiled else {}
        return solve(self.field, z, t, rtol=s.rtol, atol=s.atol, method=s.method, options=options,
                     stats=self.stats, **kwargs)[-1]


def downsampling_steps(image_size: int) -> int:
    """Stride-2 convolutions in the stem: two for 28x28 images (to 6x6), one for 8x8 (to 3x3)."""
    if not isinstance(image_size, int) or image_size < 5:
        raise ValueError(f"image_size must be an int of at least 5, got {image_size!r}.")
    return 2 if image_size >= 16 else 1


def _stem(channels: int, steps: int) -> list:
    layers: list = [nn.Conv2d(1, channels, 3)]
    for _ in range(steps):
        layers += [_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, 4, stride=2, padding=1)]
    return layers


def _head(channels: int, classes: int) -> list:
    return [_norm(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]


def build_classifier(kind: str, *, image_size: int, channels: int = 64, hidden: int = 300, blocks: int = 6,
                     solver: Optional[SolverSettings] = None, classes: int = 10) -> nn.Sequential:
    """One of the :data:`MODELS` for ``(B, 1, image_size, image_size)`` inputs, returning logits.

    Args:
        kind: ``"mlp"``, ``"resnet"``, ``"rknet"`` or ``"odenet"``.
        image_size: side of the square input images.
        channels: ``C``, the width of the convolutional models (64 in the paper).
        hidden: hidden units of the MLP.
        blocks: residual blocks of the ResNet (6 in the paper).
        solver: the ODE block's solver; default dopri5 with the adjoint (``"odenet"``) or rk4 with
            4 steps and direct backpropagation (``"rknet"``).
        classes: number of output classes.
    """
    if kind not in MODELS:
        raise ValueError(f"kind={kind!r} is not a model of Table 1; expected one of {MODELS}.")
    for name, value in (("channels", channels), ("hidden", hidden), ("blocks", blocks), ("classes", classes)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))
    stem = _stem(channels, downsampling_steps(image_size))
    if kind == "resnet":
        features: list = [ResidualBlock(channels) for _ in range(blocks)]
    else:
        if solver is None:
            solver = (SolverSettings("dopri5", adjoint=True) if kind == "odenet"
                      else SolverSettings("rk4", adjoint=False, steps=4))
        features = [ODEBlock(ConvField(channels, groups=norm_groups(channels)), solver)]
    return nn.Sequential(*stem, *features, *_head(channels, classes))
