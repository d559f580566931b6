"""Poisson process likelihoods driven by a latent ODE (chapter "Latent ODEs for irregular time series";
Chen et al. 2018, §5).

Events arrive at the times of an inhomogeneous Poisson process whose intensity ``λ(t) = intensity(z(t))``
depends on a latent state solving ``dz/dt = f(t, z)``. The log-likelihood of events ``t_1 < ... < t_N`` in
``[t_start, t_end]``, eq. :eq:`poisson-loglik`, needs ``z`` at the events and the integral of ``λ``: both come
from one solve of the augmented state ``[z, Λ]`` with ``dΛ/dt = λ(z(t))``, ``Λ(t_start) = 0``, on the union
of a batch's event times (:func:`nodelib.series.union_grid`).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .adjoint import odeint_adjoint
from .series import check_series, gather_times, union_grid
from .solve import odeint

__all__ = ["poisson_log_likelihood", "PoissonAugmented", "sample_events"]


def _rate(intensity: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """``intensity(z)``, checked to be one value per row of ``z``."""
    rate = intensity(z)
    if not isinstance(rate, Tensor) or rate.shape != z.shape[:1]:
        raise ValueError(f"intensity must map latent states of shape (B, d) = {tuple(z.shape)} to shape (B,) = "
                         f"{tuple(z.shape[:1])}, got {tuple(rate.shape) if isinstance(rate, Tensor) else type(rate)}.")
    return rate


class PoissonAugmented(nn.Module):
    """The field of the augmented state ``s = [z, Λ]`` of shape ``(B, d + 1)``: ``ds/dt = [f(t, z), λ(z)]``.

    Its ``parameters()`` are those of ``func`` and ``intensity`` (each once, when they are modules), which
    :func:`nodelib.odeint_adjoint` differentiates by default.

    Example:
        >>> import torch
        >>> from nodelib.poisson import PoissonAugmented
        >>> field = PoissonAugmented(lambda t, z: -z, lambda z: z.exp().sum(-1))
        >>> field(torch.tensor(0.0), torch.zeros(2, 3)).tolist()  # [f(z), λ(z)] at z = 0
        [[-0.0, -0.0, 2.0], [-0.0, -0.0, 2.0]]
    """

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], intensity: Callable[[Tensor], Tensor]):
        super().__init__()
        self.func, self.intensity = func, intensity

    def forward(self, t: Tensor, s: Tensor) -> Tensor:
        z = s[:, :-1]
        return torch.cat([self.func(t, z), _rate(self.intensity, z)[:, None]], -1)


def poisson_log_likelihood(intensity: Callable[[Tensor], Tensor], func: Callable[[Tensor, Tensor], Tensor],
                           z0: Tensor, times: Tensor, t_start: Union[float, Tensor], t_end: Union[float, Tensor], *,
                           mask: Optional[Tensor] = None, adjoint: bool = True, rtol: float = 1e-6,
                           atol: float = 1e-8, method: Optional[str] = None, options: Optional[dict] = None) -> Tensor:
    """Log-likelihood of each series' events, eq. :eq:`poisson-loglik` (:cite:`chen2018neural`, §5):
    ``Σ_i log λ(z(t_i)) − ∫_{t_start}^{t_end} λ(z(t)) dt`` with ``λ = intensity(z)``, ``dz/dt = func(t, z)``.

    One solve of ``[z, Λ]`` (see :class:`PoissonAugmented`) over the sorted union of all event times, ``t_start``
    and ``t_end`` gives both terms for the whole batch. Every series needs at least one event (an all-``False``
    row of ``mask`` is refused, as by :func:`nodelib.series.check_series`). The times are data: no gradient
    flows to ``times``, ``t_start`` or ``t_end``.

    Args:
        intensity: maps latent states ``(M, d)`` row by row to positive rates ``(M,)`` (an ``nn.Module`` if it
            has parameters to train).
        func: the latent field ``f(t, z)``, ``z`` of shape ``(B, d)``.
        z0: ``(B, d)`` latent states at ``t_start``.
        times: ``(B, N)`` event times, strictly increasing within each series, in ``[t_start, t_end]``.
        t_start: the start of the observation window (a float or a 0-d tensor).
        t_end: its end, finite, ``t_end > t_start``.
        mask: ``(B, N)`` booleans, ``True`` on events and ``False`` on the padding after them.
        adjoint: differentiate by :func:`nodelib.odeint_adjoint` (constant memory) rather than by direct
            backpropagation through :func:`nodelib.odeint`.
        rtol: the relative tolerance of the solve (see :func:`nodelib.odeint`).
        atol: its absolute tolerance.
        method: its method (default dopri5).
        options: its options.

    Returns:
        ``(B,)`` log-likelihoods, one per series.

    Raises:
        ValueError: naming the argument: malformed ``times`` or ``mask``, events outside
            ``[t_start, t_end]``, ``t_start >= t_end``, ``z0`` not ``(B, d)``, ``intensity`` of the wrong
            shape or not positive at an event.

    Example:
        >>> import math, torch
        >>> from nodelib.poisson import poisson_log_likelihood
        >>> rate = lambda z: z[:, 0].exp()   # λ = exp(z) = 2 for a constant z = log 2
        >>> still = lambda t, z: torch.zeros_like(z)
        >>> ll = poisson_log_likelihood(rate, still, torch.tensor([[math.log(2.0)]]),
        ...                             torch.tensor([[0.5, 1.0, 2.0, 2.5]]), 0.0, 3.0)
        >>> round(ll.item(), 4), round(4 * math.log(2.0) - 2.0 * 3.0, 4)   # N log λ − λT
        (-3.2274, -3.2274)
    """
    mask = check_series(times, mask=mask)
    start, end = (torch.as_tensor(t, dtype=times.dtype, device=times.device).detach() for t in (t_start, t_end))
    if start.dim() or end.dim() or not (torch.isfinite(start) & torch.isfinite(end) & (start < end)):
        raise ValueError(f"t_start and t_end must be finite scalars with t_start < t_end, got t_start={t_start}, "
                         f"t_end={t_end}.")
    events = times.detach()[mask]
    if ((events < start) | (events > end)).any():
        raise ValueError(f"times must lie in [t_start, t_end] = [{float(start):g}, {float(end):g}], got events from "
                         f"{float(events.min()):g} to {float(events.max()):g}.")
    batch = times.shape[0]
    if not isinstance(z0, Tensor) or z0.dim() != 2 or z0.shape[0] != batch:
        raise ValueError(f"z0 must have shape (B, d) with B = {batch} series as in times, got "
                         f"{tuple(z0.shape) if isinstance(z0, Tensor) else type(z0).__name__}.")
    grid, index = union_grid(times, mask, start, end)
    solve = odeint_adjoint if adjoint else odeint
    grid = grid.to(torch.promote_types(grid.dtype, z0.dtype))  # (float32 times for a float64 z0)
    states = solve(PoissonAugmented(func, intensity), torch.cat([z0, z0.new_zeros(batch, 1)], -1), grid,
                   rtol=rtol, atol=atol, method=method, options=options)
    rate = _rate(intensity, gather_times(states[..., :-1], index)[mask])
    if not (rate.detach() > 0).all():
        raise ValueError(f"intensity must be positive; e.g. wrap it in softplus or exp. It is "
                         f"{float(rate.detach().min()):g} at an event.")
    log_rates = rate.new_zeros(batch).index_add(0, mask.nonzero()[:, 0], rate.log())
    return log_rates - states[-1, :, -1]


def sample_events(rate: Callable[[Tensor], Tensor], t_start: float, t_end: float, bound: float, n_series: int, *,
                  generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Draw ``n_series`` independent realisations of a Poisson process with intensity ``rate(t)`` on
    ``[t_start, t_end]`` by thinning (Lewis and Shedler): candidates from a homogeneous process of rate
    ``bound``, each kept with probability ``rate(t) / bound``.

    Args:
        rate: maps times ``(M,)`` to intensities ``(M,)`` in ``[0, bound]``.
        t_start: the start of the window.
        t_end: its end.
        bound: an upper bound of ``rate`` on the window (checked at the candidates).
        n_series: the number of realisations.
        generator: the random generator (default: PyTorch's global one).

    Returns:
        ``(times, mask)`` padded as in :mod:`nodelib.series`: ``(n_series, n_max)`` increasing event
        times and the mask of real events. A realisation with no event is refused (it could not be
        scored by :func:`poisson_log_likelihood`): choose a longer window or draw again.

    Example:
        >>> import torch
        >>> from nodelib.poisson import sample_events
        >>> rate = lambda t: torch.full_like(t, 2.0)
        >>> times, mask = sample_events(rate, 0.0, 500.0, 2.0, 1,
        ...                             generator=torch.Generator().manual_seed(0))
        >>> abs(int(mask.sum()) - 1000) < 4 * 1000 ** 0.5   # a mean of 2 x 500 events
        True
    """
    if not 0 < bound < float("inf"):
        raise ValueError(f"bound must be a positive finite number, got {bound!r}.")
    if not t_start < t_end:
        raise ValueError(f"t_start must be below t_end, got {t_start!r} and {t_end!r}.")
    rows = []
    for _ in range(n_series):
        count = int(torch.poisson(torch.tensor(float(bound * (t_end - t_start))), generator=generator))
        candidates = t_start + (t_end - t_start) * torch.rand(count, generator=generator, dtype=torch.float64)
        candidates = candidates.sort().values
        values = rate(candidates) if count else candidates
        if (values > bound * (1 + 1e-12)).any() or (values < 0).any():
            raise ValueError(f"rate must lie in [0, bound = {bound}] on the window; it reaches "
                             f"{float(values.max()):g}. Pass a larger bound.")
        keep = torch.rand(count, generator=generator, dtype=torch.float64) * bound < values
        if not keep.any():
            raise ValueError("a realisation has no event; lengthen the window or raise the rate.")
        rows.append(candidates[keep])
    width = max(len(r) for r in rows)
    times = torch.zeros(n_series, width, dtype=torch.float64)
    mask = torch.zeros(n_series, width, dtype=torch.bool)
    for i, r in enumerate(rows):
        times[i, :len(r)], mask[i, :len(r)] = r, True
    return times, mask
