"""Unnormalised 2D target densities ``p̃(z) = exp(-U(z))``: the test energies of Rezende and Mohamed.

The four energies of :cite:`rezende2015variational` (their Table 1), the standard targets for fitting
a flow ``q`` to a density known only up to its normalising constant by minimising ``KL(q‖p)``
(chapters "Normalizing flows" and "CNF against NF"). With ``σ(x) = 1/(1 + e^{-x})``,

* ``w1(z) = sin(2π z1 / 4)``, ``w2(z) = 3 exp(-½((z1 - 1)/0.6)²)``, ``w3(z) = 3 σ((z1 - 1)/0.3)``;
* ``U1(z) = ½((‖z‖ - 2)/0.4)² - log(exp(-½((z1 - 2)/0.6)²) + exp(-½((z1 + 2)/0.6)²))``, a ring cut
  into two lobes;
* ``U2(z) = ½((z2 - w1)/0.4)²``, a sine-shaped band;
* ``U3(z) = -log(exp(-½((z2 - w1)/0.35)²) + exp(-½((z2 - w1 + w2)/0.35)²))``, the band split in two
  around ``z1 = 1``;
* ``U4(z) = -log(exp(-½((z2 - w1)/0.4)²) + exp(-½((z2 - w1 + w3)/0.35)²))``, the band split in two
  for ``z1 > 1``.

``U2``, ``U3`` and ``U4`` do not grow with ``|z1|``, so ``exp(-U)`` has infinite mass and
``KL(q‖p)`` would have no minimum. Here they carry one more term, a soft wall
``½(max(|z1| - 4, 0)/0.5)²``: inside the square ``[-4, 4]²`` where Rezende and Mohamed drew them the
densities are theirs, and beyond ``|z1| = 4`` they fall off like a normal density of standard
deviation 0.5. Their normalising constants then have closed forms (:func:`log_normaliser`); ``U1``
is normalisable as it is, and its constant comes from quadrature.
"""
from __future__ import annotations

import math
from typing import Callable, Dict

import torch
from torch import Tensor

__all__ = ["NAMES", "WALL", "WALL_WIDTH", "energy", "unnormalised_log_density", "log_normaliser"]

#: Names of the energies, in the order of Rezende and Mohamed's Table 1.
NAMES = ("u1", "u2", "u3", "u4")
#: Where the soft wall of ``U2``-``U4`` starts (``|z1| = WALL``) and how fast it rises.
WALL, WALL_WIDTH = 4.0, 0.5


def _w1(z: Tensor) -> Tensor:
    return torch.sin(0.5 * math.pi * z[..., 0])


def _wall(z: Tensor) -> Tensor:
    return 0.5 * (torch.relu(z[..., 0].abs() - WALL) / WALL_WIDTH) ** 2


def _gauss(x: Tensor, scale: float) -> Tensor:
    """``-½(x/scale)²``, the exponent of an unnormalised normal density."""
    return -0.5 * (x / scale) ** 2


def _u1(z: Tensor) -> Tensor:
    ring = -_gauss(z.norm(dim=-1) - 2.0, 0.4)
    return ring - torch.logaddexp(_gauss(z[..., 0] - 2.0, 0.6), _gauss(z[..., 0] + 2.0, 0.6))


def _u2(z: Tensor) -> Tensor:
    return -_gauss(z[..., 1] - _w1(z), 0.4) + _wall(z)


def _u3(z: Tensor) -> Tensor:
    band = z[..., 1] - _w1(z)
    w2 = 3.0 * torch.exp(_gauss(z[..., 0] - 1.0, 0.6))
    return -torch.logaddexp(_gauss(band, 0.35), _gauss(band + w2, 0.35)) + _wall(z)


def _u4(z: Tensor) -> Tensor:
    band = z[..., 1] - _w1(z)
    w3 = 3.0 * torch.sigmoid((z[..., 0] - 1.0) / 0.3)
    return -torch.logaddexp(_gauss(band, 0.4), _gauss(band + w3, 0.35)) + _wall(z)


_ENERGIES: Dict[str, Callable[[Tensor], Tensor]] = {"u1": _u1, "u2": _u2, "u3": _u3, "u4": _u4}


def _check(name: str, z: Tensor) -> None:
    if name not in NAMES:
        raise ValueError(f"name={name!r} is not an energy here; expected one of {NAMES}.")
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != 2 or not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor of shape (..., 2), got "
                         f"{tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}.")


def energy(name: str, z: Tensor) -> Tensor:
    """``U(z)`` of the energy ``name`` (one of :data:`NAMES`) at points ``z`` of shape ``(..., 2)``."""
    _check(name, z)
    return _ENERGIES[name](z)


def unnormalised_log_density(name: str, z: Tensor) -> Tensor:
    """``log p̃(z) = -U(z)``, shape ``z.shape[:-1]``; differentiable in ``z``."""
    return -energy(name, z)


def log_normaliser(name: str, *, resolution: int = 1000) -> float:
    """``log Z = log ∫ exp(-U(z)) dz``, so that ``p = p̃ / Z`` is a density and
    ``KL(q‖p) = E_q[log q - log p̃] + log Z``.

    For ``U2``-``U4`` the inner integral over ``z2`` is a sum of normal integrals whatever ``z1``, and
    the integral over ``z1`` of the wall factor is ``2 WALL + sqrt(2π) WALL_WIDTH``, which gives closed
    forms. For ``U1`` the integral is taken in polar coordinates by the midpoint rule with
    ``resolution`` nodes in the radius (on ``[0, 6]``) and in the angle (exponentially accurate for the
    periodic angle; the radial error is below 1e-7 at the default resolution).
    """
    if name not in NAMES:
        raise ValueError(f"name={name!r} is not an energy here; expected one of {NAMES}.")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 10:
        raise ValueError(f"resolution must be an int >= 10, got {resolution!r}.")
    length = 2 * WALL + math.sqrt(2 * math.pi) * WALL_WIDTH   # ∫ exp(-wall(z1)) dz1
    root = math.sqrt(2 * math.pi)
    if name == "u2":
        return math.log(root * 0.4 * length)
    if name == "u3":
        return math.log(2 * root * 0.35 * length)
    if name == "u4":
        return math.log(root * (0.4 + 0.35) * length)
    r_max = 6.0
    r = (torch.arange(resolution, dtype=torch.float64) + 0.5) * (r_max / resolution)
    angle = (torch.arange(resolution, dtype=torch.float64) + 0.5) * (2 * math.pi / resolution)
    rr, aa = torch.meshgrid(r, angle, indexing="ij")
    z = torch.stack([rr * torch.cos(aa), rr * torch.sin(aa)], -1)
    integrand = torch.exp(-_u1(z)) * rr
    return math.log(float(integrand.sum()) * (r_max / resolution) * (2 * math.pi / resolution))
