"""Continuous normalizing flows (Theorem 2; chapter "Generative modelling with continuous normalizing flows").

A CNF carries a base density ``p_{t0}`` (standard normal by default) along ``dz/dt = f(z, t, θ)``
from ``t0`` to ``t1``. By the instantaneous change of variables (eq. :eq:`inst-change`),
``d log p_t(z(t))/dt = -tr ∇_z f(z(t), t, θ)``, so the density of a data point ``x`` follows from
one solve of the augmented system :eq:`cnf-augmented` backwards in time, from ``t1`` to ``t0``,

    d/dt [z, Δ] = [f(z, t, θ), -tr ∇_z f(z, t, θ)],     [z, Δ](t1) = [x, 0],

where ``Δ(t) = log p_t(z(t)) - log p_{t1}(x)``; then ``log p_{t1}(x) = log p_{t0}(z(t0)) - Δ(t0)``
(eq. :eq:`cnf-logp`). Sampling is the forward solve of ``dz/dt = f`` from ``z(t0) ~ p_{t0}``.

:func:`log_prob_gradients` computes ``∇_x log p_{t1}(x)`` and ``∇_θ log p_{t1}(x)`` with one ODE
solved forwards in time (eq. :eq:`logp-gradient-ode`, derived in the same chapter), with the
trace terms that the note's version of it omits.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .adjoint import odeint_adjoint
from .flows import standard_normal_log_prob
from .solve import SolveStats, check_solver, odeint
from .trace import check_noise_type, check_trace_method, draw_noise, trace_exact, trace_hutchinson

__all__ = ["CNF", "StandardNormal", "log_prob_gradients", "GRADIENT_FORMULAS"]

#: Variants of the forward-time ODE for ``∇ log p`` that :func:`log_prob_gradients` integrates:
#: ``"derived"`` is eq. :eq:`logp-gradient-ode`; ``"note"`` is the note's version (opposite sign, no
#: trace terms) and ``"without_trace"`` the derived one without its trace terms: both are wrong, and
#: are kept only so that the book can show them failing their check.
GRADIENT_FORMULAS = ("derived", "note", "without_trace")


class StandardNormal:
    """The standard normal density on ``Rⁿ``, the default base density ``p_{t0}`` of a :class:`CNF`.

    Example:
        >>> import math, torch, nodelib
        >>> base = nodelib.StandardNormal(2)
        >>> log_p = base.log_prob(torch.zeros(1, 2)).item()
        >>> round(log_p, 6) == round(-math.log(2 * math.pi), 6)
        True
    """

    def __init__(self, dim: int):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}.")
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` for ``z`` of shape ``(..., n)``; returns shape ``z.shape[:-1]``."""
        return standard_normal_log_prob(z)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None,
               dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None) -> Tensor:
        """``n`` independent draws, shape ``(n, d)``."""
        return torch.randn(n, self.dim, generator=generator, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"StandardNormal(dim={self.dim})"


class _AugmentedField:
    """The right-hand side of eq. :eq:`cnf-augmented` on a state ``[z, Δ]`` of shape ``(B, d + 1)``.

    ``noise`` is Hutchinson's probe, drawn once per solve. The trace keeps its graph whenever
    gradients are being recorded (direct backprop, or the adjoint's backward pass, which
    differentiates this function with respect to ``z`` and ``θ``).
    """

    def __init__(self, cnf: "CNF", noise: Optional[Tensor]):
        self.cnf = cnf
        self.noise = noise

    def __call__(self, t: Tensor, state: Tensor) -> Tensor:
        z = state[:, :-1]
        f_z, div = self.cnf.field_and_divergence(t, z, noise=self.noise)
        return torch.cat([f_z, -div.unsqueeze(-1)], dim=-1)


class CNF(nn.Module):
    """A continuous normalizing flow ``dz/dt = f(z, t, θ)`` on ``Rⁿ``, from ``t0`` (base) to ``t1`` (data).

    Args:
        field: the vector field ``f``, called as ``field(t, z)`` on ``z`` of shape ``(B, n)`` (e.g.
            :class:`nodelib.MLPField`). Its parameters are the CNF's ``θ``.
        dim: the dimension ``n``; defaults to ``field.dim``.
        t0, t1: the times of the base density and of the data.
        trace: how ``tr ∇_z f`` is obtained: ``"exact"`` (:func:`nodelib.trace_exact`),
            ``"hutchinson"`` (:func:`nodelib.trace_hutchinson`, one probe per solve) or
            ``"closed_form"`` (the field's own ``divergence(t, z)`` method, e.g. gated planar
            dynamics).
        noise: Hutchinson's probe distribution, ``"rademacher"`` or ``"gaussian"``.
        base: the base density ``p_{t0}``: any object with ``log_prob(z) -> (B,)`` and
            ``sample(n) -> (n, d)`` (a ``torch.distributions`` distribution with event shape
            ``(d,)`` works); default :class:`StandardNormal`.
        adjoint: differentiate solves with :func:`nodelib.odeint_adjoint` (constant memory) rather
            than by direct backpropagation through :func:`nodelib.odeint`.
        rtol, atol, method, options: solver settings of every solve (see :func:`nodelib.odeint`).

    Example:
        >>> import torch, nodelib
        >>> cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), rtol=1e-7, atol=1e-7)
        >>> x = torch.randn(4, 2)
        >>> cnf.log_prob(x).shape
        torch.Size([4])
        >>> z0, _ = cnf.reverse(x)      # x carried back to t0, and forward again
        >>> torch.allclose(cnf.transform(z0), x, atol=1e-5)
        True
    """

    def __init__(self, field: nn.Module, *, dim: Optional[int] = None, t0: float = 0.0, t1: float = 1.0,
                 trace: str = "exact", noise: str = "rademacher", base: Any = None, adjoint: bool = True,
                 rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5", options: Optional[dict] = None):
        super().__init__()
        if not isinstance(field, nn.Module):
            raise TypeError(f"field must be an nn.Module called as field(t, z), got {type(field).__name__}.")
        dim = getattr(field, "dim", None) if dim is None else dim
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int (default field.dim), got {dim!r}; pass dim=d for a "
                             f"field without a .dim attribute.")
        for name, value in (("t0", t0), ("t1", t1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float, got {value!r}.")
        if t0 == t1:
            raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}.")
        self.trace = check_trace_method(trace)
        self.noise = check_noise_type(noise)
        if trace == "closed_form" and not callable(getattr(field, "divergence", None)):
            raise ValueError(f"trace='closed_form' needs a field with a divergence(t, z) method returning "
                             f"tr ∇_z f of shape (B,); {type(field).__name__} has none. Use trace='exact' or "
                             f"trace='hutchinson'.")
        base = StandardNormal(dim) if base is None else base
        if not (callable(getattr(base, "log_prob", None)) and callable(getattr(base, "sample", None))):
            raise TypeError(f"base must have log_prob(z) and sample(n) methods, got {type(base).__name__}.")
        self.field = field
        self.dim = dim
        self.t0, self.t1 = float(t0), float(t1)
        self.base = base
        self.adjoint = bool(adjoint)
        check_solver(method, rtol, atol, options)  # fail at construction, not at the first solve
        self.solver = dict(rtol=rtol, atol=atol, method=method, options=options)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, t0={self.t0}, t1={self.t1}, trace={self.trace!r}, noise={self.noise!r}, "
                f"adjoint={self.adjoint}, base={self.base!r}")

    # -- pieces --------------------------------------------------------------------------------
    def field_and_divergence(self, t: Tensor, z: Tensor, *, noise: Optional[Tensor] = None,
                             create_graph: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
        """``f(t, z)`` and ``tr ∇_z f(z, t)`` (or Hutchinson's estimate with probe ``noise``).

        ``create_graph`` defaults to ``torch.is_grad_enabled()``: the trace is then differentiable
        with respect to ``z`` and ``θ``.
        """
        if create_graph is None:
            create_graph = torch.is_grad_enabled()
        if self.trace == "closed_form":
            with torch.set_grad_enabled(create_graph):
                both = getattr(self.field, "forward_and_divergence", None)  # one pass for both, if offered
                return both(t, z) if callable(both) else (self.field(t, z), self.field.divergence(t, z))
        if self.trace == "hutchinson" and noise is None:
            raise ValueError("trace='hutchinson' needs a probe: pass noise=nodelib.draw_noise(z, ...).")
        if not (torch.is_grad_enabled() and z.requires_grad):  # (a view made under no_grad may claim requires_grad)
            z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            f_z = self.field(t, z)
            if self.trace == "exact":
                div = trace_exact(f_z, z, create_graph=create_graph)
            else:
                div = trace_hutchinson(f_z, z, noise, create_graph=create_graph)
        if not create_graph:
            f_z, div = f_z.detach(), div.detach()
        return f_z, div

    def _check_data(self, x: Any, name: str = "x") -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, {self.dim}), got {type(x).__name__}.")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (B, {self.dim}) (a batch of points of dimension "
                             f"{self.dim}), got shape {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} must be finite, got NaN or infinite entries.")
        param = next(iter(self.field.parameters()), None)
        if param is not None and (x.dtype != param.dtype or x.device != param.device):
            dtype, device = param.dtype, param.device
            raise ValueError(f"{name} has dtype {x.dtype} on {x.device} but the field's parameters have dtype "
                             f"{dtype} on {device}; convert one of them, e.g. {name}.to({dtype}).")

    def _base_log_prob(self, z: Tensor) -> Tensor:
        logp = self.base.log_prob(z)
        if not isinstance(logp, Tensor) or logp.shape != z.shape[:1]:
            raise ValueError(f"base.log_prob(z) must return shape ({z.shape[0]},) for z of shape "
                             f"{tuple(z.shape)}, got {getattr(logp, 'shape', type(logp).__name__)}; for a "
                             f"torch.distributions base use one with event shape ({self.dim},), e.g. "
                             f"Independent(Normal(...), 1) or MultivariateNormal.")
        return logp

    def _dtype_device(self) -> Tuple[torch.dtype, torch.device]:
        for p in self.field.parameters():
            return p.dtype, p.device
        return torch.get_default_dtype(), torch.device("cpu")

    def _solve(self, func: Callable, y0: Tensor, t: Tensor, stats: Optional[SolveStats]) -> Tensor:
        if self.adjoint:
            return odeint_adjoint(func, y0, t, adjoint_params=tuple(self.field.parameters()), stats=stats,
                                  **self.solver)
        return odeint(func, y0, t, stats=stats, **self.solver)

    # -- the model -----------------------------------------------------------------------------
    def log_prob(self, x: Tensor, *, generator: Optional[torch.Generator] = None,
                 stats: Optional[SolveStats] = None) -> Tensor:
        """``log p_{t1}(x)`` for a batch ``x`` of shape ``(B, n)``; returns shape ``(B,)``.

        Solves eq. :eq:`cnf-augmented` from ``t1`` to ``t0`` starting at ``[x, 0]`` and applies
        eq. :eq:`cnf-logp`. With ``trace="hutchinson"`` one probe per point is drawn (from
        ``generator`` if given) and held fixed over the solve; the result is then an unbiased
        estimate of ``log p_{t1}(x)``. Differentiable with respect to ``x`` and ``θ``.
        """
        z0, delta = self.reverse(x, generator=generator, stats=stats)
        return self._base_log_prob(z0) - delta

    def reverse(self, x: Tensor, *, generator: Optional[torch.Generator] = None,
                stats: Optional[SolveStats] = None) -> Tuple[Tensor, Tensor]:
        """``(z(t0), Δ(t0))`` of eq. :eq:`cnf-augmented` started from ``[x, 0]`` at ``t1``."""
        self._check_data(x)
        noise = draw_noise(x, self.noise, generator=generator) if self.trace == "hutchinson" else None
        state = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=-1)
        t = torch.tensor([self.t1, self.t0], dtype=x.dtype, device=x.device)
        end = self._solve(_AugmentedField(self, noise), state, t, stats)[-1]
        return end[:, :-1], end[:, -1]

    def transform(self, z0: Tensor, *, stats: Optional[SolveStats] = None) -> Tensor:
        """The solve map from ``t0`` to ``t1``: ``z(t1)`` for ``z(t0) = z0`` of shape ``(B, n)``."""
        self._check_data(z0, "z0")
        t = torch.tensor([self.t0, self.t1], dtype=z0.dtype, device=z0.device)
        return self._solve(self.field, z0, t, stats)[-1]

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None, grad: bool = False,
               stats: Optional[SolveStats] = None) -> Tensor:
        """``n`` samples of ``p_{t1}``: ``z(t0)`` from the base density, carried forwards to ``t1``.

        Args:
            n: the number of samples.
            generator: a ``torch.Generator`` for reproducible samples.
            grad: record a graph (for losses on samples); by default the solve runs under ``no_grad``.
            stats: a :class:`nodelib.SolveStats` for the evaluation counts.

        Returns:
            A tensor of shape ``(n, d)``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        dtype, device = self._dtype_device()
        z0 = self._sample_base(n, generator, dtype, device)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.transform(z0, stats=stats)

    def sample_with_log_prob(self, n: int, *, generator: Optional[torch.Generator] = None,
                             stats: Optional[SolveStats] = None) -> Tuple[Tensor, Tensor]:
        """``n`` samples ``x`` of ``p_{t1}`` with their log-densities ``log p_{t1}(x)``, from one forward solve.

        Solves eq. :eq:`cnf-augmented` from ``t0`` to ``t1`` starting at ``[z0, 0]``, ``z0`` drawn
        from the base density: then ``Δ(t1) = log p_{t1}(x) - log p_{t0}(z0)``, so
        ``log p_{t1}(x) = log p_{t0}(z0) + Δ(t1)`` with ``x = z(t1)``. This is what fitting an
        unnormalised target by ``KL(q‖p)`` needs (chapter "CNF against NF"). Both outputs are
        differentiable with respect to ``θ`` when gradients are enabled. With ``trace="hutchinson"``
        the log-densities are unbiased estimates.

        Returns:
            ``(x, log_p)`` of shapes ``(n, d)`` and ``(n,)``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        dtype, device = self._dtype_device()
        z0 = self._sample_base(n, generator, dtype, device)
        noise = draw_noise(z0, self.noise, generator=generator) if self.trace == "hutchinson" else None
        state = torch.cat([z0, z0.new_zeros(n, 1)], dim=-1)
        t = torch.tensor([self.t0, self.t1], dtype=dtype, device=device)
        end = self._solve(_AugmentedField(self, noise), state, t, stats)[-1]
        return end[:, :-1], self._base_log_prob(z0) + end[:, -1]

    def _sample_base(self, n: int, generator: Optional[torch.Generator], dtype: torch.dtype,
                     device: torch.device) -> Tensor:
        if isinstance(self.base, StandardNormal):
            z0 = self.base.sample(n, generator=generator, dtype=dtype, device=device)
        else:
            with torch.random.fork_rng(devices=[]):
                if generator is not None:  # a base without generator support draws from a seed taken from it
                    torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
                z0 = self.base.sample((n,)) if isinstance(self.base, torch.distributions.Distribution) \
                    else self.base.sample(n)
            z0 = z0.to(dtype=dtype, device=device)
        if z0.shape != (n, self.dim):
            raise ValueError(f"base.sample({n}) must return shape ({n}, {self.dim}), got {tuple(z0.shape)}.")
        return z0


class _GradientODE:
    """The right-hand side of eq. :eq:`logp-gradient-ode` on a flat state ``[z, γ_z, γ_θ]``.

    ``z`` has shape ``(B, n)``, ``γ_z = ∇_z log p_t(z(t))`` shape ``(B, n)``, and ``γ_θ`` is the sum over
    the batch of ``∇_θ log p_t(z(t))`` (``z(t)`` held fixed), flattened over the parameters.
    """

    def __init__(self, cnf: CNF, params: Tuple[Tensor, ...], shape: torch.Size, formula: str,
                 noise: Optional[Tensor]):
        self.cnf, self.params, self.shape, self.formula, self.noise = cnf, params, shape, formula, noise
        self.n = shape.numel()

    def __call__(self, t: Tensor, state: Tensor) -> Tensor:
        n = self.n
        z, g = state[:n].view(self.shape), state[n:2 * n].view(self.shape)
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f_z, div = self.cnf.field_and_divergence(t, z, noise=self.noise, create_graph=True)
            if self.formula == "derived":  # d[γ_z, γ_θ]/dt = -(γ_z ∇_z f + ∇_z tr, γ_z ∇_θ f + ∇_θ tr)
                scalar = -((g * f_z).sum() + div.sum())
            elif self.formula == "note":  # d[γ_z, γ_θ]/dt = +(γ_z ∇_z f, γ_z ∇_θ f)
                scalar = (g * f_z).sum()
            else:  # d[γ_z, γ_θ]/dt = -(γ_z ∇_z f, γ_z ∇_θ f)
                scalar = -(g * f_z).sum()
            grads = torch.autograd.grad(scalar, (z,) + self.params, allow_unused=True)
        grads = [torch.zeros_like(x) if gr is None else gr for gr, x in zip(grads, (z,) + self.params)]
        return torch.cat([f_z.detach().reshape(-1)] + [gr.reshape(-1) for gr in grads])


def log_prob_gradients(cnf: CNF, x: Tensor, *, formula: str = "derived", generator: Optional[torch.Generator] = None,
                       rtol: Optional[float] = None, atol: Optional[float] = None,
                       stats: Optional[SolveStats] = None) -> Tuple[Tensor, List[Tensor]]:
    """``∇_x log p_{t1}(x)`` and ``∇_θ Σ_b log p_{t1}(x_b)`` by one ODE solved forwards in time.

    First ``z(t0)`` is found by the reverse solve of ``dz/dt = f``. Then, with
    ``γ_z(t) = ∇_z log p*(z(t), t, θ)`` and ``γ_θ(t) = ∇_θ log p*(z(t), t, θ)`` along the trajectory
    (eq. :eq:`logp-gradient-ode`, chapter "Generative modelling with continuous normalizing flows"),

        dz/dt = f,   dγ_z/dt = -γ_z ∇_z f - ∇_z tr ∇_z f,   dγ_θ/dt = -γ_z ∇_θ f - ∇_θ tr ∇_z f,

    from ``(z(t0), ∇ log p_{t0}(z(t0)), 0)`` to ``t1``; ``g(t1)`` and ``h(t1)`` are the gradients.
    The base density is taken to be independent of ``θ`` (``h(t0) = 0``); ``x`` need not require grad.

    Args:
        cnf: the flow; its ``trace`` setting gives the divergence and its gradients (``"exact"`` or
            ``"closed_form"`` give exact gradients; ``"hutchinson"`` the gradients of an estimate).
        x: data points, shape ``(B, n)``.
        formula: ``"derived"`` (above); ``"note"``, the note's ``dγ_z/dt = +γ_z ∇_z f``,
            ``dγ_θ/dt = +γ_z ∇_θ f``; or ``"without_trace"``, the derived ODE without its trace terms.
            The last two are wrong; they are here so that the book can show them failing.
        generator: for Hutchinson's probe.
        rtol, atol: tolerances of both solves (default: the CNF's).
        stats: a :class:`nodelib.SolveStats` for the evaluation counts.

    Returns:
        ``(grad_x, grad_theta)``: a tensor of shape ``(B, n)`` and a list with one tensor per
        parameter of ``cnf.field`` (zeros for parameters that do not require grad).

    Example:
        >>> import torch, nodelib
        >>> cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), rtol=1e-7, atol=1e-7)
        >>> x = torch.randn(3, 2, requires_grad=True)
        >>> grad_x, _ = nodelib.log_prob_gradients(cnf, x.detach())
        >>> (autograd,) = torch.autograd.grad(cnf.log_prob(x).sum(), x)
        >>> torch.allclose(grad_x, autograd, atol=1e-4)
        True
    """
    if formula not in GRADIENT_FORMULAS:
        raise ValueError(f"formula={formula!r} is not known; expected one of {GRADIENT_FORMULAS}.")
    cnf._check_data(x)
    solver = dict(cnf.solver)
    solver["rtol"] = solver["rtol"] if rtol is None else rtol
    solver["atol"] = solver["atol"] if atol is None else atol
    all_params = tuple(cnf.field.parameters())
    params = tuple(p for p in all_params if p.requires_grad)
    noise = draw_noise(x, cnf.noise, generator=generator) if cnf.trace == "hutchinson" else None
    with torch.no_grad():
        t_back = torch.tensor([cnf.t1, cnf.t0], dtype=x.dtype, device=x.device)
        z0 = odeint(cnf.field, x.detach(), t_back, stats=stats, **solver)[-1]
    with torch.enable_grad():
        z0_leaf = z0.detach().requires_grad_(True)
        (g0,) = torch.autograd.grad(cnf._base_log_prob(z0_leaf).sum(), z0_leaf)
    h0 = x.new_zeros(sum(p.numel() for p in params))
    dynamics = _GradientODE(cnf, params, x.shape, formula, noise)
    t_fwd = torch.tensor([cnf.t0, cnf.t1], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        end = odeint(dynamics, torch.cat([z0.reshape(-1), g0.reshape(-1), h0]), t_fwd, stats=stats, **solver)[-1]
    n = x.numel()
    grad_x = end[n:2 * n].view_as(x)
    flat, grad_theta, offset = end[2 * n:], [], 0
    trainable = {id(p) for p in params}
    for p in all_params:
        if id(p) in trainable:
            grad_theta.append(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        else:
            grad_theta.append(torch.zeros_like(p))
    return grad_x, grad_theta
