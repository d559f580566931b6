"""Bi-directional spirals, the time series of the paper's latent ODE experiment (:cite:`chen2018neural`, §5.1).

Chen et al. generate 1,000 two-dimensional spirals, each starting at a different point and sampled at
100 equally spaced times, half clockwise and half counter-clockwise, with Gaussian observation noise;
they do not give the spirals' shape. Their public example code (torchdiffeq's ``latent_ode.py``)
cuts every series from one of two long spirals, starting at a random point of it. This module does
the same with its own curves (chapter "Latent ODEs for irregular time series", eq. :eq:`spiral`):
one Archimedean spiral, traced at unit angular speed, and its mirror image,

``r(t) = r_min + v (s_0 + t)``, ``φ(t) = ±(s_0 + t)``, ``x(t) = r(t) (cos φ(t), sin φ(t))``,

with the start ``s_0 ~ U(0, max_start)``, the sign ``+`` (counter-clockwise) for even series and
``-`` (the mirror image, clockwise) for odd ones, and a grid of ``n_window + n_future`` times
``t_k = k h``. All series of one direction lie on one curve, so the part of a spiral to be predicted
is where other series were observed. The first ``n_window`` times are the window from which
observations are drawn; the next ``n_future`` are the extrapolation window on which predictions are
scored.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import torch
from torch import Tensor

from .._validate import positive_float, positive_ints

__all__ = ["Spirals", "spirals", "irregular_observations"]


@dataclasses.dataclass
class Spirals:
    """A data set of spirals: ``times`` ``(T,)``, the common grid ``t_k = k h`` with
    ``T = n_window + n_future``; ``clean`` ``(N, T, 2)``, the noiseless spirals; ``observed``
    ``(N, T, 2)``, ``clean`` plus Gaussian noise of standard deviation ``noise``; ``counter_clockwise``
    ``(N,)``, the direction of each spiral; ``n_window``, the number of leading grid times that can be
    observed.
    """

    times: Tensor
    clean: Tensor
    observed: Tensor
    counter_clockwise: Tensor
    n_window: int
    noise: float

    @property
    def future_times(self) -> Tensor:
        """``(n_future,)`` the grid times after the window."""
        return self.times[self.n_window:]

    def split(self, n_train: int) -> Tuple["Spirals", "Spirals"]:
        """The first ``n_train`` spirals and the others (both directions in each: they alternate)."""
        if isinstance(n_train, bool) or not isinstance(n_train, int) or not 0 < n_train < len(self.clean):
            raise ValueError(f"n_train must be an int in [1, {len(self.clean) - 1}], got {n_train!r}.")

        def part(rows: slice) -> "Spirals":
            return dataclasses.replace(self, clean=self.clean[rows], observed=self.observed[rows],
                                       counter_clockwise=self.counter_clockwise[rows])
        return part(slice(0, n_train)), part(slice(n_train, None))


def spirals(n_series: int = 1000, *, n_window: int = 100, n_future: int = 100, step: float = 0.05,
            speed: float = 0.15, r_min: float = 0.5, max_start: float = 20.0, noise: float = 0.1, seed: int = 0,
            dtype: torch.dtype = torch.float32) -> Spirals:
    """Draw ``n_series`` spirals of eq. :eq:`spiral` from a generator seeded with ``seed``.

    Args:
        n_series: the number of spirals (half of them, rounded up, counter-clockwise).
        n_window: grid times in the observation window.
        n_future: grid times after it.
        step: the grid's spacing ``h``.
        speed: the radial speed ``v``.
        r_min: the radius at ``s = 0``, where both curves begin.
        max_start: the largest start ``s_0`` (in radians along the curve).
        noise: the observation noise's standard deviation (0 for none).
        seed: the seed of the draws (starts and noise).
        dtype: the dtype of the tensors.

    Example:
        >>> from nodelib.data.spirals import spirals
        >>> data = spirals(4, noise=0.0)
        >>> tuple(data.observed.shape), data.counter_clockwise.tolist()
        ((4, 200, 2), [True, False, True, False])
        >>> radius = data.clean.norm(dim=-1)          # r(t) = r_min + v (s_0 + t)
        >>> bool(((radius[:, 1:] - radius[:, :-1]) - 0.15 * 0.05).abs().max() < 1e-5)
        True
    """
    positive_ints(n_series=n_series, n_window=n_window, n_future=n_future)
    for name, value in (("step", step), ("speed", speed), ("r_min", r_min), ("max_start", max_start)):
        positive_float(name, value)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a non-negative float, got {noise!r}.")
    generator = torch.Generator().manual_seed(seed)
    times = torch.arange(n_window + n_future, dtype=torch.float64) * step
    along = max_start * torch.rand(n_series, 1, generator=generator, dtype=torch.float64) + times
    counter_clockwise = torch.arange(n_series) % 2 == 0
    sign = torch.where(counter_clockwise, 1.0, -1.0).to(torch.float64)[:, None]
    radius = r_min + speed * along
    clean = torch.stack([radius * torch.cos(along), sign * radius * torch.sin(along)], dim=-1)
    observed = clean + noise * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return Spirals(times.to(dtype), clean.to(dtype), observed.to(dtype), counter_clockwise, n_window, float(noise))


def irregular_observations(data: Spirals, n_obs: int, *, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """For each spiral, ``n_obs`` (the chapter's :math:`N`) of the window's ``n_window`` grid times
    drawn without replacement, sorted.

    Returns:
        ``(times, values)`` of shapes ``(B, N)`` and ``(B, N, 2)`` for ``B`` spirals: the drawn
        times and the noisy observations there (a batch of series for :mod:`nodelib.latent`,
        without padding).

    Example:
        >>> from nodelib.data.spirals import spirals, irregular_observations
        >>> times, values = irregular_observations(spirals(3), 30)
        >>> tuple(times.shape), tuple(values.shape), bool((times[:, 1:] > times[:, :-1]).all())
        ((3, 30), (3, 30, 2), True)
    """
    if isinstance(n_obs, bool) or not isinstance(n_obs, int) or not 1 <= n_obs <= data.n_window:
        raise ValueError(f"n_obs must be an int in [1, n_window = {data.n_window}], got {n_obs!r}.")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.stack([torch.randperm(data.n_window, generator=generator)[:n_obs] for _ in range(len(data.clean))])
    picks = picks.sort(dim=1).values
    return data.times[picks], torch.gather(data.observed, 1, picks[..., None].expand(-1, -1, 2))
