"""Batches of irregularly sampled time series (chapter "Latent ODEs for irregular time series").

Each series of a batch has its own observation times. A batch is stored padded: ``times`` of shape
``(B, N)``, ``values`` of shape ``(B, N, d)`` and a boolean ``mask`` of shape ``(B, N)`` that is
``True`` on the observations and ``False`` on the padding, which comes last in each row (a series of
``N_b < N`` observations fills the first ``N_b`` places of its row). Within a series the times must
increase strictly; across series they are arbitrary.

A latent ODE solves the whole batch at once on the **union** of the batch's times
(:func:`union_grid`): one solve of the ``(B, latent)`` state over the sorted distinct times, from
which each series gathers the states at its own times: one solve per batch instead of one per series.
The other series' times are only extra output points (an adaptive solver interpolates there and keeps
its steps), but the steps are chosen for the whole batch, whose error estimate is one norm over all
series: a series' states agree with those of a solve of it alone to the solver's tolerance, and
exactly on a fixed grid (tests/test_latent.py).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["check_series", "union_grid", "gather_times", "random_subsets"]


def check_series(times: Tensor, values: Optional[Tensor] = None, mask: Optional[Tensor] = None, *,
                 dim: Optional[int] = None) -> Tensor:
    """Check a padded batch of series and return its mask (all ``True`` if ``mask`` is ``None``).

    Args:
        times: ``(B, N)`` floating-point observation times, strictly increasing along each row over
            its observed entries.
        values: ``(B, N, d)`` observations (optional), finite where observed.
        mask: ``(B, N)`` booleans, ``True`` for an observation; each row holds at least one, and its
            padding comes after its observations.
        dim: the expected ``d`` of ``values``, if any.

    Raises:
        ValueError: naming the argument and what was expected.

    Example:
        >>> import torch
        >>> from nodelib.series import check_series
        >>> times = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.7, 0.0]])
        >>> mask = torch.tensor([[True, True, True], [True, True, False]])
        >>> check_series(times, mask=mask).sum().item()
        5
    """
    if not isinstance(times, Tensor) or times.dim() != 2 or times.shape[0] < 1 or times.shape[1] < 1:
        raise ValueError(f"times must be a tensor of shape (B, N) with B, N >= 1, got "
                         f"{tuple(times.shape) if isinstance(times, Tensor) else type(times).__name__}.")
    if not times.is_floating_point():
        raise ValueError(f"times must be a floating-point tensor, got dtype {times.dtype}.")
    if mask is None:
        mask = torch.ones(times.shape, dtype=torch.bool, device=times.device)
    elif not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != times.shape:
        raise ValueError(f"mask must be a bool tensor shaped like times {tuple(times.shape)}, got "
                         f"{(mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask).__name__}.")
    if not mask[:, 0].all():
        rows = torch.nonzero(~mask[:, 0]).flatten()[:5].tolist()
        raise ValueError(f"every series needs at least one observation, placed first in its row; rows {rows} "
                         f"of mask start with padding.")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("mask must put each series' padding after its observations (True ... True False ... "
                         "False along a row).")
    t = times.detach()
    if not torch.isfinite(t[mask]).all():
        raise ValueError("times must be finite where mask is True, got NaN or infinite times.")
    both = mask[:, 1:]   # (an observation and the one before it)
    steps = t[:, 1:] - t[:, :-1]
    if (both & ~(steps > 0)).any():
        row = int(torch.nonzero((both & ~(steps > 0)).any(1)).flatten()[0])
        shown = t[row][mask[row]].tolist()[:8]
        raise ValueError(f"times must increase strictly within each series; series {row} has times {shown}"
                         f"{' ...' if int(mask[row].sum()) > 8 else ''}. Sort each series by time (and its "
                         f"values with it) and merge repeated times.")
    if values is not None:
        expected = (*times.shape, dim if dim is not None else (values.shape[-1] if values.dim() == 3 else -1))
        if not isinstance(values, Tensor) or values.dim() != 3 or tuple(values.shape) != expected:
            raise ValueError(f"values must have shape (B, N, d) = {expected} to match times"
                             f"{'' if dim is None else f' and the model dimension d = {dim}'}, got "
                             f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}.")
        if not torch.isfinite(values.detach()[mask]).all():
            raise ValueError("values must be finite where mask is True, got NaN or infinite observations; "
                             "mark missing observations with mask=False instead.")
    return mask


def union_grid(times: Tensor, mask: Tensor, *extra: Tensor) -> Tuple[Tensor, Tensor]:
    """The sorted distinct times of a batch (and of ``extra`` 1-D tensors), and where each lies.

    Returns:
        ``(grid, index)``: ``grid`` of shape ``(T,)``, strictly increasing, holding every observed time
        and every time in ``extra``; ``index`` of shape ``(B, N)`` with ``grid[index] == times`` where
        ``mask`` is ``True`` (0 on the padding).

    Example:
        >>> import torch
        >>> from nodelib.series import union_grid
        >>> grid, index = union_grid(torch.tensor([[0.5, 1.0], [0.25, 0.5]]),
        ...                          torch.ones(2, 2, dtype=torch.bool), torch.tensor([0.0]))
        >>> grid.tolist(), index.tolist()
        ([0.0, 0.25, 0.5, 1.0], [[2, 3], [1, 2]])
    """
    observed = times.detach()[mask]
    grid = torch.unique(torch.cat([observed, *[e.detach().reshape(-1).to(times) for e in extra]]))
    index = torch.searchsorted(grid, times.detach().contiguous()).clamp(max=grid.numel() - 1)
    return grid, torch.where(mask, index, torch.zeros_like(index))


def gather_times(states: Tensor, index: Tensor) -> Tensor:
    """Each series' states at its own times: ``states`` ``(T, B, k)`` from a solve on the union grid,
    ``index`` ``(B, N)`` from :func:`union_grid`; returns ``(B, N, k)``.

    Example:
        >>> import torch
        >>> from nodelib.series import gather_times
        >>> states = torch.arange(6.0).reshape(3, 2, 1)          # T = 3 times, B = 2 series
        >>> gather_times(states, torch.tensor([[0, 2], [1, 2]])).squeeze(-1).tolist()
        [[0.0, 4.0], [3.0, 5.0]]
    """
    batch = torch.arange(index.shape[0], device=index.device)
    return states[index, batch[:, None]]


def random_subsets(times: Tensor, values: Tensor, size: int, *, generator: Optional[torch.Generator] = None
                   ) -> Tuple[Tensor, Tensor]:
    """A random sub-series of each series: ``size`` of its observations drawn without replacement,
    each subset equally likely, kept in time order.

    Args:
        times: ``(B, N)`` observation times of a batch without padding.
        values: ``(B, N, d)`` the observations.
        size: how many observations to keep per series, ``1 <= size <= N``.
        generator: the generator of the draws (default: PyTorch's global one).

    Returns:
        ``(times, values)`` of shapes ``(B, size)`` and ``(B, size, d)``.

    Example:
        >>> import torch
        >>> from nodelib.series import random_subsets
        >>> times = torch.linspace(0, 1, 5).expand(3, 5)
        >>> sub_times, sub_values = random_subsets(times, times[..., None], 2,
        ...                                        generator=torch.Generator().manual_seed(0))
        >>> tuple(sub_values.shape), bool((sub_times[:, 1:] > sub_times[:, :-1]).all())
        ((3, 2, 1), True)
    """
    check_series(times, values)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= times.shape[1]:
        raise ValueError(f"size must be an int in [1, N = {times.shape[1]}], got {size!r}.")
    keys = torch.rand(times.shape, generator=generator).to(times.device)
    keep = keys.argsort(dim=1)[:, :size].sort(dim=1).values
    return times.gather(1, keep), values.gather(1, keep[..., None].expand(-1, -1, values.shape[-1]))
