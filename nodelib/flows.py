"""Discrete planar flows (Rezende and Mohamed, 2015): chapter "Normalizing flows".

A planar layer is the map

    g(z) = z + û h(wᵀz + b),   h = tanh,                                   eq. :eq:`planar-map`

whose Jacobian ``I + û ψ(z)ᵀ`` with ``ψ(z) = h'(wᵀz + b) w`` has, by the matrix determinant lemma,

    log |det ∇g(z)| = log |1 + ûᵀψ(z)| = log(1 + h'(wᵀz + b) wᵀû).        eq. :eq:`planar-logdet`

The trainable vector ``u`` is unconstrained; the layer uses ``û = u + (m(wᵀu) - wᵀu) w / ‖w‖²``
with ``m(x) = -1 + softplus(x)``, so that ``wᵀû = m(wᵀu) > -1`` (eq. :eq:`planar-constraint`) and
``g`` is a bijection of ``Rⁿ`` with positive Jacobian determinant everywhere.

``g`` has no closed-form inverse, but it reduces to one scalar equation (eq. :eq:`planar-inverse`):
with ``a = wᵀz + b`` and ``s = wᵀy + b``, ``y = g(z)`` gives ``a + (wᵀû) h(a) = s``, whose left side
is strictly increasing in ``a``; once the root ``a`` is found, ``z = y - û h(a)``. The root lies in
``[s - |wᵀû|, s + |wᵀû|]`` because ``|h| ≤ 1``, and a bracketed Newton iteration finds it.

:class:`PlanarFlow` stacks ``K`` layers between a standard normal base and the data. Its
``direction`` says which way the layers are applied explicitly:

* ``"normalizing"`` (data to base, for maximum likelihood on data): ``log_prob(x)`` is explicit and
  exact, eq. :eq:`stacked-flow-loglik`; sampling inverts the layers one by one with the root finder;
* ``"generative"`` (base to data, Rezende and Mohamed's direction, for fitting an unnormalised target
  by minimising KL(q‖p)): ``sample_with_log_prob(n)`` is explicit; ``log_prob(x)`` uses the root finder.

Every method is differentiable with respect to the parameters and the input in both directions:
the root finder runs without a graph, and one Newton step taken with the graph at the root carries
the exact first derivatives (the implicit function theorem). Higher derivatives through a root
finder are not exact.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import is_real, positive_ints

__all__ = ["PlanarLayer", "PlanarFlow", "standard_normal_log_prob"]

Direction = Literal["normalizing", "generative"]
_DIRECTIONS = ("normalizing", "generative")


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension: shape ``(...,)``."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _check_points(x: Tensor, dim: int, name: str, like: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
    if x.dtype != like.dtype or x.device != like.device:
        raise ValueError(f"{name} has dtype {x.dtype} on {x.device} but the flow's parameters have dtype "
                         f"{like.dtype} on {like.device}; convert one of them, e.g. {name}.to({like.dtype}).")
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf).")


def _solve_monotone(s: Tensor, c: Tensor, *, max_iter: int = 200) -> Tensor:
    """The root ``a`` of ``a + c tanh(a) = s`` (elementwise in ``s``), for a scalar ``c > -1``.

    Newton's method safeguarded by bisection inside the bracket ``[s - |c|, s + |c|]``: a Newton
    step that leaves the bracket, or that is not at least twice as short as the step before the
    last, is replaced by a bisection step (the rule of Numerical Recipes' ``rtsafe``), so the steps
    shrink at least geometrically while Newton's quadratic convergence is kept near the root.
    Runs without building a graph.
    """
    with torch.no_grad():
        lo, hi = s - c.abs(), s + c.abs()
        a = 0.5 * (lo + hi)
        step_before = step = hi - lo
        tol = 4 * torch.finfo(s.dtype).eps * (1 + s.abs() + c.abs())
        for _ in range(max_iter):
            t = torch.tanh(a)
            residual = a + c * t - s
            lo = torch.where(residual < 0, a, lo)
            hi = torch.where(residual > 0, a, hi)
            newton = residual / (1 + c * (1 - t * t))
            bisect = ((a - newton - lo) * (a - newton - hi) > 0) | (2 * newton.abs() > step_before.abs())
            bisect |= ~torch.isfinite(newton)
            step_before = step
            step = torch.where(bisect, a - 0.5 * (lo + hi), newton)
            step = torch.where(residual == 0, torch.zeros_like(step), step)
            a = a - step
            if bool((step.abs() <= tol).all()):
                break
    return a


class PlanarLayer(nn.Module):
    """One planar map ``g(z) = z + û tanh(wᵀz + b)`` on ``Rⁿ`` (eq. :eq:`planar-map`).

    Args:
        dim: the dimension ``n``.
        init_scale: standard deviation of the initial ``u`` and ``w`` (``b`` starts at zero); must be
            positive. (At ``w = 0`` the layer is a shift, but the constrained ``û`` jumps there: as
            ``w → 0``, ``û ≈ (log 2 - 1) w / ‖w‖²`` grows without bound, so a layer started at
            ``w = 0`` could not be trained.)

    The parameters are ``u`` (unconstrained), ``w`` and ``b``; :meth:`u_hat` gives the constrained
    ``û`` the map uses, with ``wᵀû > -1`` (eq. :eq:`planar-constraint`).

    Example:
        >>> import torch, nodelib
        >>> layer = nodelib.PlanarLayer(2)
        >>> z = torch.randn(5, 2)
        >>> y, log_det = layer(z)
        >>> back, log_det_back = layer.inverse(y)
        >>> torch.allclose(back, z, atol=1e-5)
        True
        >>> torch.allclose(log_det + log_det_back, torch.zeros(5), atol=1e-6)
        True
    """

    def __init__(self, dim: int, *, init_scale: float = 0.5):
        super().__init__()
        positive_ints(dim=dim)
        if not is_real(init_scale) or not 0 < init_scale < math.inf:
            raise ValueError(f"init_scale must be a positive float, got {init_scale!r}: at w = 0 the constrained "
                             f"û of eq. (planar-constraint) jumps (û ≈ (log 2 - 1) w/‖w‖² as w → 0), so a layer "
                             f"started at w = 0 could not be trained.")
        self.dim = dim
        self.u = nn.Parameter(init_scale * torch.randn(dim))
        self.w = nn.Parameter(init_scale * torch.randn(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """``û = u + (m(wᵀu) - wᵀu) w / ‖w‖²``, ``m(x) = -1 + softplus(x)``, so that ``wᵀû = m(wᵀu) > -1``
        (``û = u`` at ``w = 0``)."""
        return self._constrained()[0]

    def _constrained(self) -> tuple[Tensor, Tensor]:
        """``(û, 1 + wᵀû)``, the second taken as ``softplus(wᵀu) ≥ 0`` rather than recomputed with rounding.

        At ``w = 0`` the map is the identity plus the shift ``u tanh(b)``: then ``û = u`` and
        ``1 + wᵀû = 1`` (the formula's ``m(0) = log 2 - 1`` would be wrong there, since the
        correction along ``w / ‖w‖²`` vanishes with ``w``)."""
        wu, ww = self.w @ self.u, self.w @ self.w
        nonzero = ww > 0
        slack = torch.where(nonzero, F.softplus(wu), torch.ones_like(wu))
        shift = torch.where(nonzero, (slack - 1 - wu) / ww.clamp_min(torch.finfo(ww.dtype).tiny), torch.zeros_like(wu))
        return self.u + shift * self.w, slack

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(g(z), log|det ∇g(z)|)`` with shapes ``(..., n)`` and ``(...,)`` (eq. :eq:`planar-logdet`)."""
        _check_points(z, self.dim, "z", self.w)
        return self._map(z)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(g⁻¹(y), log|det ∇g⁻¹(y)|)`` by the scalar root finder of eq. :eq:`planar-inverse`."""
        _check_points(y, self.dim, "y", self.w)
        return self._inverse(y)

    def _map(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u, slack = self._constrained()
        t = torch.tanh(z @ self.w + self.b)
        return z + t.unsqueeze(-1) * u, self._logdet(t, slack)

    def _inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        u, slack = self._constrained()
        c = slack - 1  # wᵀû
        s = y @ self.w + self.b
        a = _solve_monotone(s.detach(), c.detach())
        # One Newton step with the graph: same value at the root, exact first derivatives.
        t = torch.tanh(a)
        a = a - (a + c * t - s) / (t * t + (1 - t * t) * slack)
        t = torch.tanh(a)
        return y - t.unsqueeze(-1) * u, -self._logdet(t, slack)

    @staticmethod
    def _logdet(t: Tensor, slack: Tensor) -> Tensor:
        """``log(1 + ûᵀψ) = log(1 + h'(a) wᵀû)`` written as ``log(tanh² a + h'(a) (1 + wᵀû))``.

        Both terms are non-negative, so the determinant stays positive in floating point even when
        ``wᵀû`` rounds to ``-1``; the plain form ``1 + h' wᵀû`` would then reach 0 at ``a = 0``.
        """
        return torch.log(t * t + (1 - t * t) * slack)


class PlanarFlow(nn.Module):
    """``K`` planar layers between a standard normal base density and the data, in ``Rⁿ``.

    Args:
        dim: the dimension ``n``.
        n_layers: the number ``K`` of planar layers.
        direction: ``"normalizing"`` (the layers map data to base: explicit, exact ``log_prob``, for
            maximum likelihood) or ``"generative"`` (the layers map base to data: explicit
            ``sample_with_log_prob``, for fitting an unnormalised target by KL(q‖p)).
        init_scale: passed to every :class:`PlanarLayer`.

    ``layers[0]`` is always applied first in the explicit direction. The model density is
    ``log p(x) = log N(z_0) + log|det ∂z_0/∂x|`` with ``z_0`` the base point of ``x``, eq.
    :eq:`stacked-flow-loglik`.

    Example:
        >>> import torch, nodelib
        >>> flow = nodelib.PlanarFlow(2, 4)
        >>> x = flow.sample(3, generator=torch.Generator().manual_seed(0))
        >>> flow.log_prob(x).shape
        torch.Size([3])
    """

    def __init__(self, dim: int, n_layers: int, *, direction: Direction = "normalizing", init_scale: float = 0.5):
        super().__init__()
        positive_ints(n_layers=n_layers)
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}.")
        self.dim = dim
        self.direction = direction
        self.layers = nn.ModuleList(PlanarLayer(dim, init_scale=init_scale) for _ in range(n_layers))

    def _explicit(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[:-1])
        for layer in self.layers:
            z, ld = layer._map(z)
            logdet = logdet + ld
        return z, logdet

    def _implicit(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[:-1])
        for layer in reversed(self.layers):
            z, ld = layer._inverse(z)
            logdet = logdet + ld
        return z, logdet

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log|det ∂z/∂x|)``: the base point of the data point ``x`` and the log-determinant."""
        _check_points(x, self.dim, "x", self.layers[0].w)
        return self._explicit(x) if self.direction == "normalizing" else self._implicit(x)

    def to_data(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log|det ∂x/∂z|)``: the data point of the base point ``z`` and the log-determinant."""
        _check_points(z, self.dim, "z", self.layers[0].w)
        return self._explicit(z) if self.direction == "generative" else self._implicit(z)

    def path_to_data(self, z: Tensor) -> Tensor:
        """The states from the base point ``z`` to its data point, one per layer: shape ``(K + 1, ..., n)``."""
        _check_points(z, self.dim, "z", self.layers[0].w)
        states = [z]
        layers = self.layers if self.direction == "generative" else reversed(self.layers)
        for layer in layers:
            z = (layer._map(z) if self.direction == "generative" else layer._inverse(z))[0]
            states.append(z)
        return torch.stack(states)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)``, shape ``(...,)``: eq. :eq:`stacked-flow-loglik`."""
        z, logdet = self.to_base(x)
        return standard_normal_log_prob(z) + logdet

    def sample_with_log_prob(self, n: int, *, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """``n`` samples ``x`` of the model and their ``log p(x)``; differentiable in the parameters."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        ref = self.layers[0].w
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        x, logdet = self.to_data(z)
        return x, standard_normal_log_prob(z) - logdet

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` samples of the model, shape ``(n, dim)``."""
        return self.sample_with_log_prob(n, generator=generator)[0]
