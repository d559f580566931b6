"""Two-dimensional densities generated in code, for the chapters on normalizing flows (Part II).

``"two_circles"`` and ``"two_moons"`` are the targets of the CNF figures of
:cite:`chen2018neural`; ``"8gaussians"``, ``"pinwheel"``, ``"checkerboard"`` and ``"2spirals"``
are the harder toy sets of FFJORD :cite:`grathwohl2019ffjord`. Every set is written here from its
description, draws i.i.d. points from a seeded generator, and is scaled to lie mostly in
``[-4, 4]^2``, where a standard normal base density has most of its mass.

:func:`log_density` gives the exact density of the sets whose density has a one-dimensional
integral form (two circles, two moons, 8 gaussians, checkerboard), for entropies and pictures;
:func:`grid_log_density` evaluates any 2D log-density on a grid and integrates it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["NAMES", "sample", "log_density", "entropy", "GridDensity", "grid_log_density"]

#: Names accepted by :func:`sample`.
NAMES = ("two_circles", "two_moons", "8gaussians", "pinwheel", "checkerboard", "2spirals")

# Parameters of the sets, in the units of the returned points.
_CIRCLE_RADII, _CIRCLE_NOISE = (1.0, 0.5), 0.06          # make_circles(factor=0.5, noise=0.06)
_MOON_SCALE, _MOON_SHIFT, _MOON_NOISE = 2.0, (-1.0, -0.2), 0.1   # make_moons(noise=0.1) * 2 + shift
_GAUSS_RADIUS, _GAUSS_STD = 2.0 * math.sqrt(2.0), math.sqrt(2.0) / 4.0


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")


def _check_name(name: str, allowed: Tuple[str, ...] = NAMES) -> None:
    if name not in allowed:
        raise ValueError(f"name={name!r} is not a 2D data set here; expected one of {allowed}.")


def _two_circles(n: int, rng: np.random.Generator) -> np.ndarray:
    radius = np.where(rng.random(n) < 0.5, *_CIRCLE_RADII)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1) + _CIRCLE_NOISE * rng.standard_normal((n, 2))


def _moon_centres(angle: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Points of the two half-circles of scikit-learn's moons, before noise, scaling and shift."""
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    return np.stack([x, y], 1)


def _two_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    # The same density as sklearn.datasets.make_moons(noise=0.1), whose angles are evenly spaced
    # rather than random; here the angle is uniform, so the points are independent draws.
    centres = _moon_centres(rng.uniform(0.0, np.pi, n), rng.random(n) < 0.5)
    points = centres + _MOON_NOISE * rng.standard_normal((n, 2))
    return _MOON_SCALE * points + np.asarray(_MOON_SHIFT)


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.integers(0, 8, n) * (np.pi / 4)
    centres = _GAUSS_RADIUS * np.stack([np.cos(angle), np.sin(angle)], 1)
    return centres + _GAUSS_STD * rng.standard_normal((n, 2))


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    # Five arms: a point at radius ~ N(1, 0.3^2) and tangential offset ~ N(0, 0.1^2) is rotated by its
    # arm's angle plus a twist that grows exponentially with the radius, then scaled by 2.
    arm = rng.integers(0, 5, n)
    radial = 1.0 + 0.3 * rng.standard_normal(n)
    tangential = 0.1 * rng.standard_normal(n)
    angle = 2 * np.pi * arm / 5 + 0.25 * np.exp(radial)
    c, s = np.cos(angle), np.sin(angle)
    return 2.0 * np.stack([c * radial - s * tangential, s * radial + c * tangential], 1)


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # Uniform on the dark squares of a 4 x 4 board of squares of side 2 covering [-4, 4]^2.
    x = rng.uniform(-2.0, 2.0, n)
    y = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.mod(np.floor(x), 2)
    return 2.0 * np.stack([x, y], 1)


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    # Two interleaved arms r = φ (Archimedes' spiral) for φ in [0, 3π], with φ = 3π sqrt(u) so that
    # points spread evenly along the arms; a small uniform jitter, scaled by 1/3, plus Gaussian noise.
    phi = 3 * np.pi * np.sqrt(rng.random(n))
    arm = np.stack([-np.cos(phi) * phi, np.sin(phi) * phi], 1) + 0.5 * rng.random((n, 2))
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    return sign * arm / 3.0 + 0.1 * rng.standard_normal((n, 2))


_SAMPLERS = {"two_circles": _two_circles, "two_moons": _two_moons, "8gaussians": _eight_gaussians,
             "pinwheel": _pinwheel, "checkerboard": _checkerboard, "2spirals": _two_spirals}


def sample(name: str, n: int, *, seed: int = 0, dtype: Optional[torch.dtype] = None) -> Tensor:
    """``n`` independent points of the 2D data set ``name``, shape ``(n, 2)``.

    Args:
        name: one of :data:`NAMES`.
        n: the number of points.
        seed: seed of the ``numpy.random.Generator`` that draws them (different seeds give
            independent sets, e.g. training and test data).
        dtype: a floating dtype (default ``torch.get_default_dtype()``).
    """
    _check_name(name)
    _check_n(n)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}.")
    points = _SAMPLERS[name](n, np.random.default_rng(seed))
    return torch.as_tensor(points, dtype=dtype)


def _blurred_points(x: Tensor, centres: Tensor, std: float, weights: Optional[Tensor] = None) -> Tensor:
    """``log Σ_k w_k N(x; c_k, std^2 I)`` over the rows ``c_k`` of ``centres`` (equal weights by default)."""
    log_w = (torch.full((centres.shape[0],), -math.log(centres.shape[0]), dtype=x.dtype) if weights is None
             else weights.log())
    out = []
    for chunk in x.split(max(1, 2_000_000 // centres.shape[0])):  # bounded memory
        sq = ((chunk[:, None, :] - centres[None]) ** 2).sum(-1)
        out.append(torch.logsumexp(log_w - sq / (2 * std ** 2), dim=1))
    return torch.cat(out) - math.log(2 * math.pi * std ** 2)


def log_density(name: str, x: Tensor, *, n_nodes: int = 200) -> Tensor:
    """The exact log-density of the data set ``name`` at points ``x`` of shape ``(B, 2)``.

    For ``"two_circles"`` and ``"two_moons"`` the density is a Gaussian blur of a uniform density on
    curves: an integral over one angle, computed with ``n_nodes`` nodes per curve (the trapezoidal
    rule on the periodic circles, Gauss-Legendre on the half-circle arcs of the moons; both converge
    exponentially, and 200 nodes are exact to about 1e-10). ``"8gaussians"`` is a mixture of eight
    normals and ``"checkerboard"`` is piecewise constant (``log 0 = -inf`` off the board).
    ``"pinwheel"`` and ``"2spirals"`` have no such form and raise ``ValueError``.
    """
    _check_name(name, ("two_circles", "two_moons", "8gaussians", "checkerboard"))
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be a tensor of shape (B, 2), got {getattr(x, 'shape', type(x).__name__)}.")
    if name == "checkerboard":
        u = x / 2.0
        inside = (u.abs() < 2.0).all(dim=1)
        dark = (torch.floor(u[:, 0]) + torch.floor(u[:, 1])) % 2 == 0
        return torch.where(inside & dark, torch.full_like(u[:, 0], -math.log(32.0)),
                           torch.full_like(u[:, 0], -math.inf))
    if name == "8gaussians":
        angle = torch.arange(8, dtype=x.dtype) * (math.pi / 4)
        centres = _GAUSS_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        return _blurred_points(x, centres, _GAUSS_STD)
    if name == "two_circles":
        angle = 2 * math.pi * torch.arange(n_nodes, dtype=x.dtype) / n_nodes
        ring = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        parts = [_blurred_points(x, r * ring, _CIRCLE_NOISE) for r in _CIRCLE_RADII]
    else:
        nodes, weights = np.polynomial.legendre.leggauss(n_nodes)  # on [-1, 1], weights sum to 2
        angle = torch.as_tensor(np.pi * (nodes + 1) / 2, dtype=x.dtype)
        weights = torch.as_tensor(weights / 2, dtype=x.dtype)
        c, s = torch.cos(angle), torch.sin(angle)
        shift = torch.tensor(_MOON_SHIFT, dtype=x.dtype)
        arcs = (torch.stack([c, s], 1), torch.stack([1.0 - c, 0.5 - s], 1))
        parts = [_blurred_points(x, _MOON_SCALE * arc + shift, _MOON_SCALE * _MOON_NOISE, weights) for arc in arcs]
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(2.0)


def entropy(name: str, *, n: int = 100_000, seed: int = 0) -> Tuple[float, float]:
    """Monte Carlo entropy ``H = -E[log p(x)]`` of a set with :func:`log_density`, in nats.

    Returns ``(estimate, standard_error)`` from ``n`` fresh samples. This is the floor of the
    expected test negative log-likelihood of any density model of the set.
    """
    x = sample(name, n, seed=seed, dtype=torch.float64)
    logp = log_density(name, x)
    return float(-logp.mean()), float(logp.std() / math.sqrt(n))


@dataclasses.dataclass
class GridDensity:
    """A log-density evaluated at the centres of a regular grid of cells.

    ``log_density[i, j]`` is the value at ``(x[j], y[i])`` (rows follow ``y``, as ``imshow`` and
    ``contourf`` expect); ``cell_area`` is the area of one cell.
    """

    x: Tensor
    y: Tensor
    log_density: Tensor
    cell_area: float

    def integral(self) -> float:
        """``∫ p`` over the grid's box by the midpoint rule (close to 1 if the mass lies in the box)."""
        return float(self.log_density.exp().sum() * self.cell_area)

    @property
    def density(self) -> Tensor:
        return self.log_density.exp()

    @property
    def extent(self) -> Tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the box, for ``imshow(..., extent=...)``."""
        hx, hy = float(self.x[1] - self.x[0]) / 2, float(self.y[1] - self.y[0]) / 2
        return (float(self.x[0]) - hx, float(self.x[-1]) + hx, float(self.y[0]) - hy, float(self.y[-1]) + hy)


def grid_log_density(log_prob: Callable[[Tensor], Tensor], *, bounds: Tuple[float, float, float, float] = (-4, 4, -4, 4),
                     resolution: int = 200, batch_size: int = 10_000, dtype: Optional[torch.dtype] = None) -> GridDensity:
    """Evaluate a 2D ``log_prob`` (batch ``(B, 2)`` to ``(B,)``) at the centres of a grid of cells.

    Args:
        log_prob: the log-density, e.g. ``cnf.log_prob`` or ``functools.partial(log_density, name)``.
        bounds: the box ``(xmin, xmax, ymin, ymax)``.
        resolution: the number of cells along each side.
        batch_size: the number of points per call of ``log_prob``.
        dtype: of the grid points (default ``torch.get_default_dtype()``).
    """
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {bounds}.")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}.")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    hx, hy = (xmax - xmin) / resolution, (ymax - ymin) / resolution
    xs = xmin + hx * (torch.arange(resolution, dtype=dtype) + 0.5)
    ys = ymin + hy * (torch.arange(resolution, dtype=dtype) + 0.5)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        values = torch.cat([log_prob(chunk).detach() for chunk in points.split(batch_size)])
    return GridDensity(xs, ys, values.view(resolution, resolution), hx * hy)
