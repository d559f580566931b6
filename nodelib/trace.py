"""The trace of the Jacobian of the dynamics, ``tr ∇_z f`` (the divergence ``∇·f``).

Theorem 2 (chapter "The instantaneous change of variables") says that the log-density of a state
carried by ``dz/dt = f(z, t, θ)`` changes at the rate ``-tr ∇_z f`` (eq. :eq:`inst-change`).
This module computes that trace for a batch of states from an evaluation ``f_z = f(t, z)`` that
autograd can differentiate with respect to ``z``:

* :func:`trace_exact` - one vector-Jacobian product per dimension, ``n`` products in all
  (chapter "Generative modelling with continuous normalizing flows");
* :func:`trace_hutchinson` - Hutchinson's estimator ``ε^T (∇_z f) ε`` with ``E[εε^T] = I``,
  one vector-Jacobian product whatever the dimension (:cite:`hutchinson1990stochastic`; used in
  FFJORD, :cite:`grathwohl2019ffjord`; chapter "Hutchinson's trace estimator",
  eq. :eq:`hutchinson`);
* :func:`draw_noise` - the probe ``ε``, Rademacher or Gaussian. A continuous normalizing flow draws
  it once per solve and holds it fixed over that solve, so that the integrand is a fixed, smooth
  function of time that an adaptive solver can integrate.

Both traces keep the graph (``create_graph=True``) when asked, so that a loss built from them can
be differentiated with respect to the parameters of ``f`` and to ``z``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["TRACE_METHODS", "NOISE_TYPES", "trace_exact", "trace_hutchinson", "draw_noise",
           "check_trace_method", "check_noise_type"]

#: Names of the ways to obtain ``tr ∇_z f`` that :class:`nodelib.CNF` accepts. ``"closed_form"``
#: asks the field itself, through its ``divergence(t, z)`` method.
TRACE_METHODS = ("exact", "hutchinson", "closed_form")
#: Distributions of Hutchinson's probe vector ``ε`` (both have mean 0 and covariance ``I``).
NOISE_TYPES = ("rademacher", "gaussian")


def check_trace_method(trace: str) -> str:
    """Return ``trace`` if it names a method in :data:`TRACE_METHODS`, else raise ``ValueError``."""
    if trace not in TRACE_METHODS:
        raise ValueError(f"trace={trace!r} is not a trace method; expected one of {TRACE_METHODS}.")
    return trace


def check_noise_type(noise: str) -> str:
    """Return ``noise`` if it names a distribution in :data:`NOISE_TYPES`, else raise ``ValueError``."""
    if noise not in NOISE_TYPES:
        raise ValueError(f"noise={noise!r} is not a noise type; expected one of {NOISE_TYPES}.")
    return noise


def _check_pair(f_z: Tensor, z: Tensor) -> None:
    if not isinstance(f_z, Tensor) or not isinstance(z, Tensor):
        raise TypeError(f"f_z and z must be tensors, got {type(f_z).__name__} and {type(z).__name__}.")
    if f_z.shape != z.shape or z.dim() < 1:
        raise ValueError(f"f_z must have the shape of z, (..., n); got f_z {tuple(f_z.shape)} and z "
                         f"{tuple(z.shape)}.")
    if not f_z.requires_grad:
        raise ValueError("f_z does not depend on z through autograd; compute it as f(t, z) under "
                         "torch.enable_grad() from a z with requires_grad=True.")


def trace_exact(f_z: Tensor, z: Tensor, *, create_graph: bool = True) -> Tensor:
    """``tr ∇_z f`` exactly, for every state of a batch: one vector-Jacobian product per dimension.

    Row ``i`` of the Jacobian at every state of the batch is the vector-Jacobian product with the
    ``i``-th unit vector (states of a batch do not interact), and its ``i``-th entry is the
    diagonal term ``∂f_i/∂z_i``; the trace sums ``n`` of them.

    Args:
        f_z: ``f(t, z)``, shape ``(..., n)``, computed by autograd from ``z``.
        z: the states, shape ``(..., n)``, a tensor that requires grad.
        create_graph: keep the graph of the result, for gradients of a loss built from it.

    Returns:
        The traces, shape ``z.shape[:-1]`` (``(B,)`` for a batch of shape ``(B, n)``).

    Example:
        >>> import torch, nodelib
        >>> A = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
        >>> z = torch.randn(3, 2, requires_grad=True)
        >>> nodelib.trace_exact(z @ A.T, z)  # f(z) = A z has tr ∇f = tr A = -3
        tensor([-3., -3., -3.])
    """
    _check_pair(f_z, z)
    d = z.shape[-1]
    diagonal = []
    for i in range(d):
        unit = torch.zeros_like(f_z)
        unit[..., i] = 1.0
        (row,) = torch.autograd.grad(f_z, z, unit, retain_graph=True, create_graph=create_graph)
        diagonal.append(row[..., i])
    return torch.stack(diagonal, dim=-1).sum(dim=-1)


def trace_hutchinson(f_z: Tensor, z: Tensor, noise: Tensor, *, create_graph: bool = True) -> Tensor:
    """Hutchinson's unbiased estimate ``ε^T (∇_z f) ε`` of ``tr ∇_z f`` (eq. :eq:`hutchinson`).

    One vector-Jacobian product ``ε^T ∇_z f``, then a dot product with ``ε``. For any ``ε`` with
    ``E[ε] = 0`` and ``E[εε^T] = I``, ``E[ε^T A ε] = tr(A E[εε^T]) = tr A``.

    Args:
        f_z: ``f(t, z)``, shape ``(..., n)``, computed by autograd from ``z``.
        z: the states, shape ``(..., n)``, a tensor that requires grad.
        noise: the probe ``ε``, shape ``(..., n)`` like ``z`` (see :func:`draw_noise`).
        create_graph: keep the graph of the result, for gradients of a loss built from it.

    Returns:
        The estimates, shape ``z.shape[:-1]``.

    Example:
        >>> import torch, nodelib
        >>> A = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
        >>> z = torch.randn(100_000, 2, requires_grad=True)
        >>> noise = nodelib.draw_noise(z, generator=torch.Generator().manual_seed(0))
        >>> estimate = nodelib.trace_hutchinson(z @ A.T, z, noise).mean()  # tr A = -3
        >>> abs(estimate.item() + 3) < 0.05
        True
    """
    _check_pair(f_z, z)
    if not isinstance(noise, Tensor) or noise.shape != z.shape:
        raise ValueError(f"noise must be a tensor of z's shape {tuple(z.shape)}, got "
                         f"{tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__}.")
    (vjp,) = torch.autograd.grad(f_z, z, noise, retain_graph=True, create_graph=create_graph)
    return (vjp * noise).sum(dim=-1)


def draw_noise(like: Tensor, noise: str = "rademacher", *, generator: Optional[torch.Generator] = None) -> Tensor:
    """A probe ``ε`` of ``like``'s shape, dtype and device, with ``E[ε] = 0`` and ``E[εε^T] = I``.

    Args:
        like: a tensor whose shape, dtype and device the noise takes.
        noise: ``"rademacher"`` (entries ±1 with probability 1/2 each) or ``"gaussian"`` (standard
            normal entries). Rademacher noise has the smaller variance (chapter "Hutchinson's trace
            estimator"): ``2 Σ_{i≠j} S_ij^2`` against ``2 Σ_{i,j} S_ij^2``, with ``S`` the symmetric
            part of the Jacobian.
        generator: a ``torch.Generator`` for reproducible draws (default: the global one).

    Example:
        >>> import torch, nodelib
        >>> noise = nodelib.draw_noise(torch.zeros(1000, 3))
        >>> sorted(noise.unique().tolist())
        [-1.0, 1.0]
    """
    check_noise_type(noise)
    if noise == "gaussian":
        return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
    bits = torch.randint(0, 2, like.shape, device=like.device, generator=generator)
    return (2 * bits - 1).to(like.dtype)
