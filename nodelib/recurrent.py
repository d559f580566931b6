"""The recurrent baselines of the latent ODE experiment (:cite:`chen2018neural`, §5.1; chapter "Latent
ODEs for irregular time series").

Chen et al. compare the latent ODE with "a recurrent neural net with 25 hidden units trained to
minimize negative Gaussian log-likelihood", and with a second version whose inputs include the time
difference to the next observation. :class:`RNNForecaster` is both: a GRU that reads one observation
at a time and outputs the mean and log standard deviation of a Gaussian over the next observation.
With ``time_input=True`` its input is ``(x_{t_i}, t_{i+1} - t_i)``; without, ``x_{t_i}`` alone, so
that it cannot know how far ahead it is asked to look. It extrapolates by feeding its own predicted
means back as inputs.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ._validate import positive_ints
from .series import check_series

__all__ = ["RNNForecaster"]


class RNNForecaster(nn.Module):
    """A GRU trained to predict each observation of a series from the ones before it.

    Args:
        obs_dim: the dimension of an observation.
        hidden: the GRU's units (the paper: 25).
        time_input: add the time difference to the next observation to the input.

    Example:
        >>> import torch
        >>> from nodelib.recurrent import RNNForecaster
        >>> _ = torch.manual_seed(0)
        >>> rnn = RNNForecaster(2, time_input=True)
        >>> times, values = torch.tensor([[0.0, 0.1, 0.3]]), torch.randn(1, 3, 2)
        >>> rnn.nll(times, values).shape
        torch.Size([1])
        >>> rnn.forecast(times, values, torch.tensor([0.4, 0.5])).shape
        torch.Size([1, 2, 2])
    """

    def __init__(self, obs_dim: int, hidden: int = 25, *, time_input: bool = False):
        super().__init__()
        positive_ints(obs_dim=obs_dim, hidden=hidden)
        self.obs_dim, self.time_input = obs_dim, bool(time_input)
        self.cell = nn.GRUCell(obs_dim + int(self.time_input), hidden)
        self.head = nn.Linear(hidden, 2 * obs_dim)

    def _step(self, x: Tensor, gap: Tensor, h: Tensor) -> Tensor:
        return self.cell(torch.cat([x, gap[:, None]], -1) if self.time_input else x, h)

    def nll(self, times: Tensor, values: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Per-series negative Gaussian log-likelihood of observations 2 to ``n`` given those before:
        ``(B,)``. (Teacher forcing: the GRU reads the true observations.)"""
        mask = check_series(times, values, mask, dim=self.obs_dim)
        h = values.new_zeros(times.shape[0], self.cell.hidden_size)
        total = values.new_zeros(times.shape[0])
        for i in range(times.shape[1] - 1):
            h = torch.where(mask[:, i + 1, None], self._step(values[:, i], times[:, i + 1] - times[:, i], h), h)
            mean, log_std = self.head(h).chunk(2, -1)
            point = (0.5 * ((values[:, i + 1] - mean) / torch.exp(log_std)).pow(2) + log_std).sum(-1)
            total = total + (point + 0.5 * self.obs_dim * math.log(2 * math.pi)) * mask[:, i + 1]
        return total

    def forecast(self, times: Tensor, values: Tensor, query: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Predicted means at the increasing times ``query``, all after each series' last observation:
        ``(B, len(query), obs_dim)``. The GRU reads the observations, then its own predictions."""
        mask = check_series(times, values, mask, dim=self.obs_dim)
        if not isinstance(query, Tensor) or query.dim() != 1 or query.numel() < 1:
            raise ValueError(f"query must be a 1-D tensor of times, got "
                             f"{tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__}.")
        last = times.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)
        if not (query[0] > last).all() or not (query[1:] > query[:-1]).all():
            raise ValueError("query must be strictly increasing and after every series' last observation.")
        h = values.new_zeros(times.shape[0], self.cell.hidden_size)
        for i in range(times.shape[1] - 1):   # every observation but each series' last
            h = torch.where(mask[:, i + 1, None], self._step(values[:, i], times[:, i + 1] - times[:, i], h), h)
        x, t, predictions = values.gather(1, (mask.sum(1) - 1)[:, None, None].expand(-1, 1, self.obs_dim))[:, 0], last, []
        for q in query:
            h = self._step(x, q - t, h)
            x, t = self.head(h)[:, :self.obs_dim], q.expand_as(last)
            predictions.append(x)
        return torch.stack(predictions, 1)
