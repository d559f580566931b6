"""Continuous normalizing flows (Theorem 2; chapter "Generative modelling with continuous normalizing flows").

A CNF carries a base density ``p_{t0}`` (standard normal by default) along ``dz/dt = f(z, t, θ)``
from ``t0`` to ``t1``. By the instantaneous change of variables (eq. :eq:`inst-change`),
``d log p_t(z(t))/dt = -tr ∇_z f(z(t), t, θ)``, so the density of a data point ``x`` follows from
one solve of the augmented system :eq:`cnf-augmented` backwards in time, from ``t1`` to ``t0``,

    d/dt [z, Δ] = [f(z, t, θ), -tr ∇_z f(z, t, θ)],     [z, Δ](t1) = [x, 0],

where ``Δ(t) = log p_t(z(t)) - log p_{t1}(x)``; then ``log p_{t1}(x) = log p_{t0}(z(t0)) - Δ(t0)``
(eq. :eq:`cnf-logp`). Sampling is the forward solve of ``dz/dt = f`` from ``z(t0) ~ p_{t0}``.

Regularised dynamics (:cite:`finlay2020train`; chapter "Regularised dynamics"): a CNF built with
``kinetic_weight > 0`` or ``jacobian_weight > 0`` extends the augmented system with the running
integrals of the kinetic energy ``‖f‖²`` (eq. :eq:`kinetic-energy`) and of the squared Frobenius norm
``‖∇_z f‖_F²`` of the Jacobian (eq. :eq:`jacobian-frobenius`), in the same solve as the state and the
log-density;
:meth:`CNF.log_prob_and_penalties` returns them per sample, and :func:`nodelib.fit_density` adds them,
weighted, to the negative log-likelihood.

:func:`log_prob_gradients` computes ``∇_x log p_{t1}(x)`` and ``∇_θ log p_{t1}(x)`` with one ODE
solved forwards in time (eq. :eq:`logp-gradient-ode`, derived in the same chapter), with the
trace terms that the note's version of it omits.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ._validate import non_negative_float
from .adjoint import odeint_adjoint
from .compiled import check_compiled, check_compiled_flag, odeint_compiled
from .flows import standard_normal_log_prob
from .solve import SolveStats, check_solver, odeint
from .trace import check_noise_type, check_trace_method, draw_noise, trace_exact, trace_hutchinson

__all__ = ["CNF", "StandardNormal", "log_prob_gradients", "GRADIENT_FORMULAS", "PENALTIES"]

#: The regularisers of :class:`CNF` (:cite:`finlay2020train`), in the order of their components in
#: the augmented state: the kinetic energy ``∫ ‖f‖² dt`` and the Jacobian's
#: squared Frobenius norm ``∫ ‖∇_z f‖_F² dt``.
PENALTIES = ("kinetic", "jacobian")

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


def _divergence_and_frobenius(f_z: Tensor, z: Tensor, noise: Optional[Tensor],
                              create_graph: bool) -> Tuple[Tensor, Tensor]:
    """``tr ∇_z f`` and ``‖∇_z f‖_F²`` from the same vector-Jacobian products, per state of a batch.

    Without ``noise``, exactly: the ``n`` rows ``e_iᵀ ∇_z f`` (one product each) give the diagonal
    and the sum of all squared entries. With Hutchinson's probe ``ε = noise``, one product ``εᵀ ∇_z f``
    gives both unbiased estimates, ``(εᵀ ∇_z f) ε`` and ``‖εᵀ ∇_z f‖²``
    (``E‖εᵀ A‖² = tr(A Aᵀ E[εεᵀ]) = ‖A‖_F²`` whenever ``E[εεᵀ] = I``).
    """
    if noise is not None:
        (vjp,) = torch.autograd.grad(f_z, z, noise, retain_graph=True, create_graph=create_graph)
        return (vjp * noise).sum(dim=-1), vjp.pow(2).sum(dim=-1)
    rows = []
    for i in range(z.shape[-1]):
        unit = torch.zeros_like(f_z)
        unit[..., i] = 1.0
        (row,) = torch.autograd.grad(f_z, z, unit, retain_graph=True, create_graph=create_graph)
        rows.append(row)
    return _trace_and_frobenius(rows)


def _functional_field_and_products(field: Callable, t: Tensor, z: Tensor,
                                   noise: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """``f(t, z)`` and the products of :func:`_divergence_and_frobenius`, by ``torch.func.vjp``.

    The same vector-Jacobian products (one per dimension, or one with Hutchinson's probe ``noise``), taken
    by a function transform rather than by ``torch.autograd.grad``, which neither ``torch.compile`` nor the
    compiled adjoint's ``torch.func.vjp`` can see through. Differentiable by autograd and ``torch.func``.
    """
    f_z, pullback = torch.func.vjp(lambda v: field(t, v), z)
    if noise is not None:
        (vjp,) = pullback(noise)
        return f_z, (vjp * noise).sum(dim=-1), vjp.pow(2).sum(dim=-1)
    rows = []
    for i in range(z.shape[-1]):
        unit = torch.zeros_like(f_z)
        unit[..., i] = 1.0
        rows.append(pullback(unit)[0])
    return (f_z, *_trace_and_frobenius(rows))


def _trace_and_frobenius(rows: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """The trace and the squared Frobenius norm of the Jacobian from its ``n`` rows ``e_iᵀ ∇_z f``."""
    jacobian = torch.stack(rows, dim=-2)  # (..., n, n), jacobian[..., i, j] = ∂f_i/∂z_j
    return jacobian.diagonal(dim1=-2, dim2=-1).sum(dim=-1), jacobian.pow(2).sum(dim=(-2, -1))


class _AugmentedField(nn.Module):
    """The right-hand side of eq. :eq:`cnf-augmented` on a state ``[z, Δ, R]`` of shape ``(B, d + 1 + r)``.

    ``R`` holds the running integrals of the CNF's ``r`` active penalties (:attr:`CNF.penalty_weights`,
    none by default), whose rates are ``‖f‖²`` and ``‖∇_z f‖_F²``. ``noise`` is Hutchinson's probe,
    drawn once per solve. The rates keep their graph whenever gradients are being recorded (direct
    backprop, or the adjoint's backward pass, which differentiates this function with respect to
    ``z`` and ``θ``). A module holding the CNF, so that its parameters are this function's: the compiled
    adjoint substitutes them by ``torch.func.functional_call``.
    """

    def __init__(self, cnf: "CNF", noise: Optional[Tensor]):
        super().__init__()
        self.cnf = cnf
        self.noise = noise

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        z = state[:, :self.cnf.dim]
        f_z, div, rates = self.cnf.field_divergence_and_penalties(t, z, noise=self.noise)
        return torch.cat([f_z, -div.unsqueeze(-1)] + [rate.unsqueeze(-1) for rate in rates.values()], dim=-1)


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
        compiled: opt in to nodelib's own stepping for every solve (``odeint_adjoint(...,
            compiled=...)``, or :func:`nodelib.odeint_compiled` with ``adjoint=False``): ``True``
            compiles each step with ``torch.compile``, ``"eager"`` takes the same steps uncompiled. Same
            results and counts as the default, to rounding; ``method`` ``"dopri5"`` or ``"rk4"`` only.
            ``trace="exact"`` and ``"hutchinson"`` then take their vector-Jacobian products by
            ``torch.func.vjp`` (which the compiled adjoint and ``torch.compile`` can trace) instead of
            ``torch.autograd.grad``.
        rtol, atol, method, options: solver settings of every solve (see :func:`nodelib.odeint`).
        kinetic_weight: the weight of the kinetic energy ``K = ∫_{t0}^{t1} ‖f(z(t), t)‖² dt``
            (eq. :eq:`kinetic-energy`) in the regularised objective :eq:`regularised-objective` of
            :func:`nodelib.fit_density` and :func:`nodelib.fit_kl`; a non-negative float.
        jacobian_weight: the weight of ``J = ∫_{t0}^{t1} ‖∇_z f(z(t), t)‖_F² dt``
            (eq. :eq:`jacobian-frobenius`): exact with ``trace="exact"``, and with
            ``trace="hutchinson"`` estimated without bias as ``‖εᵀ ∇_z f‖²`` (eq.
            :eq:`frobenius-estimator`) from the trace's own probe
            ``ε`` and vector-Jacobian product; a non-negative float (0 with ``trace="closed_form"``).

    Each penalty whose weight is > 0 adds one component to the augmented state of
    eq. :eq:`cnf-augmented`, ``[z, Δ, K, J]`` with ``dK/dt = ‖f‖²`` and ``dJ/dt = ‖∇_z f‖_F²`` (in
    that order, :data:`~nodelib.cnf.PENALTIES`; only the active ones), so every density solve
    (:meth:`log_prob`, :meth:`sample_with_log_prob`) integrates them too, directly or by the adjoint.
    With both weights 0 (the default) the state is ``[z, Δ]`` and nothing changes.

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
                 rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5", options: Optional[dict] = None,
                 kinetic_weight: float = 0.0, jacobian_weight: float = 0.0, compiled: Union[bool, str] = False):
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
        config = check_solver(method, rtol, atol, options)  # fail at construction, not at the first solve
        check_compiled_flag(compiled)
        if compiled:
            check_compiled(config, caller="CNF(compiled=...)", instead="compiled=False")
        self.compiled = compiled
        self.solver = dict(rtol=rtol, atol=atol, method=method, options=options)
        non_negative_float("kinetic_weight", kinetic_weight)
        non_negative_float("jacobian_weight", jacobian_weight)
        if jacobian_weight > 0 and trace == "closed_form":
            raise ValueError(f"jacobian_weight={jacobian_weight!r} needs the Jacobian's products, which "
                             f"trace='closed_form' does not compute; use trace='exact' or trace='hutchinson'.")
        self.kinetic_weight, self.jacobian_weight = float(kinetic_weight), float(jacobian_weight)

    @property
    def penalty_weights(self) -> Dict[str, float]:
        """The active penalties' weights, ``{name: weight}`` for the weights > 0, in the order of
        :data:`~nodelib.cnf.PENALTIES` (``{}`` for an unregularised CNF)."""
        weights = dict(zip(PENALTIES, (self.kinetic_weight, self.jacobian_weight)))
        return {name: weight for name, weight in weights.items() if weight > 0}

    def extra_repr(self) -> str:
        penalties = "".join(f", {name}_weight={weight}" for name, weight in self.penalty_weights.items())
        return (f"dim={self.dim}, t0={self.t0}, t1={self.t1}, trace={self.trace!r}, noise={self.noise!r}, "
                f"adjoint={self.adjoint}, base={self.base!r}{penalties}"
                + (f", compiled={self.compiled!r}" if self.compiled else ""))

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
        f_z, div, _ = self._field_and_products(t, z, noise, create_graph, frobenius=False)
        return f_z, div

    def field_divergence_and_penalties(self, t: Tensor, z: Tensor, *, noise: Optional[Tensor] = None,
                                       create_graph: Optional[bool] = None
                                       ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """:meth:`field_and_divergence` and the rates of the active penalties: the integrands of the augmented state.

        The rates, shape ``(B,)`` each, are ``‖f(t, z)‖²`` for ``"kinetic"`` and, for ``"jacobian"``,
        ``‖∇_z f‖_F²`` (``trace="exact"``: from the same ``n`` vector-Jacobian products as the trace)
        or Hutchinson's unbiased estimate ``‖εᵀ ∇_z f‖²`` (``trace="hutchinson"``: from the same probe
        ``ε = noise`` and the same product ``εᵀ ∇_z f`` as the trace estimate
        ``(εᵀ ∇_z f) ε``). Only the penalties whose weight is > 0 are in the dict; without any this is
        :meth:`field_and_divergence` and an empty dict.

        Example:
            >>> import torch, nodelib
            >>> A = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
            >>> class Linear(torch.nn.Module):  # f(z) = A z
            ...     def forward(self, t, z):
            ...         return z @ A.T
            >>> cnf = nodelib.CNF(Linear(), dim=2, kinetic_weight=1.0, jacobian_weight=1.0)
            >>> t, z = torch.tensor(0.0), torch.tensor([[1.0, 0.0]])
            >>> with torch.no_grad():
            ...     f_z, div, rates = cnf.field_divergence_and_penalties(t, z)
            >>> # tr A, ‖A z‖², ‖A‖_F²:
            >>> div.item(), rates["kinetic"].item(), rates["jacobian"].item()
            (-3.0, 10.0, 30.0)
        """
        if create_graph is None:
            create_graph = torch.is_grad_enabled()
        rates = {}
        if self.jacobian_weight > 0:
            f_z, div, rates["jacobian"] = self._field_and_products(t, z, noise, create_graph, frobenius=True)
        else:
            f_z, div = self.field_and_divergence(t, z, noise=noise, create_graph=create_graph)
        if self.kinetic_weight > 0:
            rates = {"kinetic": f_z.pow(2).sum(dim=-1), **rates}
        return f_z, div, rates

    def _field_and_products(self, t: Tensor, z: Tensor, noise: Optional[Tensor], create_graph: bool,
                            frobenius: bool) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """``f(t, z)``, ``tr ∇_z f`` (or Hutchinson's estimate) and, with ``frobenius``, ``‖∇_z f‖_F²`` (else
        ``None``), from vector-Jacobian products: by ``torch.func`` for a compiled CNF, else by autograd."""
        if self.trace == "hutchinson" and noise is None:
            raise ValueError("trace='hutchinson' needs a probe: pass noise=nodelib.draw_noise(z, ...).")
        if self.compiled:
            f_z, div, frob = _functional_field_and_products(self.field, t, z, noise)
        else:
            if not (torch.is_grad_enabled() and z.requires_grad):  # (a view made under no_grad may claim it)
                z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                f_z = self.field(t, z)
                if frobenius:
                    div, frob = _divergence_and_frobenius(f_z, z, noise, create_graph)
                elif self.trace == "exact":
                    div, frob = trace_exact(f_z, z, create_graph=create_graph), None
                else:
                    div, frob = trace_hutchinson(f_z, z, noise, create_graph=create_graph), None
        if not create_graph:
            f_z, div = f_z.detach(), div.detach()
            frob = None if frob is None else frob.detach()
        return f_z, div, frob if frobenius else None

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
                                  compiled=self.compiled, **self.solver)
        if self.compiled:
            return odeint_compiled(func, y0, t, stats=stats, compile_step=self.compiled is True, **self.solver)
        return odeint(func, y0, t, stats=stats, **self.solver)

    def _augmented_solve(self, z_start: Tensor, noise: Optional[Tensor], t_start: float, t_end: float,
                         stats: Optional[SolveStats]) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """``(z, Δ, penalties)`` at ``t_end`` of eq. :eq:`cnf-augmented` from ``[z_start, 0, 0]`` at ``t_start``.

        The penalty components integrate their rates from ``t_start``; a solve backwards in time ends
        at minus the integral over the interval, so the penalties are multiplied by the sign of
        ``t_end - t_start``: they are the integrals over ``[min(t0, t1), max(t0, t1)]``, never negative.
        """
        d, penalties = self.dim, list(self.penalty_weights)
        state = torch.cat([z_start, z_start.new_zeros(z_start.shape[0], 1 + len(penalties))], dim=-1)
        t = torch.tensor([t_start, t_end], dtype=z_start.dtype, device=z_start.device)
        end = self._solve(_AugmentedField(self, noise), state, t, stats)[-1]
        sign = 1.0 if t_end > t_start else -1.0
        return end[:, :d], end[:, d], {name: sign * end[:, d + 1 + i] for i, name in enumerate(penalties)}

    # -- the model -----------------------------------------------------------------------------
    def log_prob(self, x: Tensor, *, generator: Optional[torch.Generator] = None,
                 stats: Optional[SolveStats] = None) -> Tensor:
        """``log p_{t1}(x)`` for a batch ``x`` of shape ``(B, n)``; returns shape ``(B,)``.

        Solves eq. :eq:`cnf-augmented` from ``t1`` to ``t0`` starting at ``[x, 0]`` and applies
        eq. :eq:`cnf-logp`. With ``trace="hutchinson"`` one probe per point is drawn (from
        ``generator`` if given) and held fixed over the solve; the result is then an unbiased
        estimate of ``log p_{t1}(x)``. Differentiable with respect to ``x`` and ``θ``. A regularised
        CNF integrates its penalties in the same solve (see :meth:`log_prob_and_penalties`).
        """
        return self.log_prob_and_penalties(x, generator=generator, stats=stats)[0]

    def log_prob_and_penalties(self, x: Tensor, *, generator: Optional[torch.Generator] = None,
                               stats: Optional[SolveStats] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``log p_{t1}(x)`` and the per-sample penalties of :cite:`finlay2020train`, from one solve.

        The one reverse solve of :meth:`log_prob`, with the augmented state of eq. :eq:`cnf-augmented`
        extended by the running integrals of ``‖f‖²`` and ``‖∇_z f‖_F²`` along the trajectory through
        ``x``: the kinetic energy ``K(x) = ∫_{t0}^{t1} ‖f(z(t), t)‖² dt``
        and ``J(x) = ∫_{t0}^{t1} ‖∇_z f(z(t), t)‖_F² dt`` (with
        ``trace="hutchinson"`` an unbiased estimate from the trace's probe). Both are integrals over
        the whole interval, positive whatever the direction of the solve; both are differentiable
        with respect to ``x`` and ``θ`` (by the adjoint too, as components of its state).

        Args:
            x: data points, shape ``(B, n)``.
            generator: for Hutchinson's probe, as in :meth:`log_prob`.
            stats: a :class:`nodelib.SolveStats` for the evaluation counts.

        Returns:
            ``(log_p, penalties)``: ``log p_{t1}(x)`` of shape ``(B,)`` and a dict with one tensor of
            shape ``(B,)`` per active penalty (weight > 0): ``"kinetic"`` for ``K``, ``"jacobian"`` for
            ``J``; empty for an unregularised CNF.

        Example:
            >>> import torch, nodelib
            >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
            <torch._C.Generator object at 0x...>
            >>> field = nodelib.MLPField(2, hidden=(16,))
            >>> cnf = nodelib.CNF(field, kinetic_weight=0.1, jacobian_weight=0.1)
            >>> log_p, penalties = cnf.log_prob_and_penalties(torch.randn(5, 2))
            >>> log_p.shape, sorted(penalties), penalties["kinetic"].shape
            (torch.Size([5]), ['jacobian', 'kinetic'], torch.Size([5]))
            >>> bool((penalties["kinetic"] > 0).all() and (penalties["jacobian"] > 0).all())
            True
        """
        self._check_data(x)
        noise = draw_noise(x, self.noise, generator=generator) if self.trace == "hutchinson" else None
        z0, delta, penalties = self._augmented_solve(x, noise, self.t1, self.t0, stats)
        return self._base_log_prob(z0) - delta, penalties

    def reverse(self, x: Tensor, *, generator: Optional[torch.Generator] = None,
                stats: Optional[SolveStats] = None) -> Tuple[Tensor, Tensor]:
        """``(z(t0), Δ(t0))`` of eq. :eq:`cnf-augmented` started from ``[x, 0]`` at ``t1``."""
        self._check_data(x)
        noise = draw_noise(x, self.noise, generator=generator) if self.trace == "hutchinson" else None
        z0, delta, _ = self._augmented_solve(x, noise, self.t1, self.t0, stats)
        return z0, delta

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
        x, log_p, _ = self.sample_with_log_prob_and_penalties(n, generator=generator, stats=stats)
        return x, log_p

    def sample_with_log_prob_and_penalties(self, n: int, *, generator: Optional[torch.Generator] = None,
                                           stats: Optional[SolveStats] = None
                                           ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """:meth:`sample_with_log_prob` and, from the same forward solve, the penalties of the samples' trajectories.

        The penalties are those of :meth:`log_prob_and_penalties`, integrated along the trajectories from
        the base draws ``z0`` to the samples ``x``.

        Returns:
            ``(x, log_p, penalties)``: shapes ``(n, d)``, ``(n,)``, and a dict with one tensor of shape
            ``(n,)`` per active penalty (empty for an unregularised CNF).

        Example:
            >>> import torch, nodelib
            >>> cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), kinetic_weight=1.0)
            >>> x, log_p, penalties = cnf.sample_with_log_prob_and_penalties(3)
            >>> x.shape, log_p.shape, list(penalties), penalties["kinetic"].shape
            (torch.Size([3, 2]), torch.Size([3]), ['kinetic'], torch.Size([3]))
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        dtype, device = self._dtype_device()
        z0 = self._sample_base(n, generator, dtype, device)
        noise = draw_noise(z0, self.noise, generator=generator) if self.trace == "hutchinson" else None
        x, delta, penalties = self._augmented_solve(z0, noise, self.t0, self.t1, stats)
        return x, self._base_log_prob(z0) + delta, penalties

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
