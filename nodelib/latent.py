"""The latent ODE for irregularly sampled time series (:cite:`chen2018neural`, §5; chapter "Latent ODEs
for irregular time series").

Generative model, eq. :eq:`latent-generative`: ``z_0 ~ N(0, I_n)``; ``z(t)`` solves
``dz/dt = f(z)`` from ``z(t_0) = z_0``; ``x_i ~ N(D_ψ(z(t_i)), σ² I_d)`` with a decoder ``D_ψ``.
Recognition network: a GRU reads the observations ``(x_i, t_i - t_0)`` backwards in time, from the
last to the first, and maps its final state to the mean ``μ`` and log standard deviation
``log σ_q`` of a Gaussian ``q_φ(z_0 | x)``. Training maximises the evidence lower bound,
eq. :eq:`elbo`,

``ELBO = E_q[Σ_i log N(x_i; D_ψ(z(t_i)), σ² I_d)] - KL(q_φ(z_0 | x) ‖ N(0, I_n))``,

estimated with one reparameterised sample, the KL term in closed form, eq. :eq:`kl-gaussians`.

A batch of series with their own times (:mod:`nodelib.series`) is solved once, on the union of its
times, by :func:`nodelib.odeint_adjoint` (or :func:`nodelib.odeint`, ``adjoint=False``).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ._validate import positive_float, positive_ints
from .adjoint import odeint_adjoint
from .series import check_series, gather_times, union_grid
from .solve import SolveStats, odeint

__all__ = ["LatentODE", "ELBO", "gaussian_kl", "gaussian_log_likelihood", "LatentField"]


def gaussian_kl(mean: Tensor, log_std: Tensor) -> Tensor:
    """``KL(N(μ, diag σ_q²) ‖ N(0, I))`` over the last dimension, with ``μ = mean`` and
    ``σ_q = exp(log_std)``, eq. :eq:`kl-gaussians`: ``½ Σ_j (μ_j² + σ_{q,j}² - 1 - 2 log σ_{q,j})``.

    Example:
        >>> import torch
        >>> from nodelib.latent import gaussian_kl
        >>> gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item()   # q = p
        0.0
        >>> kl = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[0.0]]))   # ½ μ²
        >>> round(kl.item(), 6)
        0.5
    """
    return 0.5 * (mean.pow(2) + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(-1)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float, mask: Tensor) -> Tensor:
    """``Σ_i log N(x_i; mean_i, std² I)`` over the observed places of each series: ``x``, ``mean`` of
    shape ``(B, N, d)``, ``mask`` ``(B, N)``; returns ``(B,)``.

    Example:
        >>> import math, torch
        >>> from nodelib.latent import gaussian_log_likelihood
        >>> value = gaussian_log_likelihood(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), 1.0,
        ...                                 torch.tensor([[True, False]]))
        >>> math.isclose(value.item(), -0.5 * math.log(2 * math.pi), rel_tol=1e-6)
        True
    """
    per_point = -0.5 * ((x - mean) / std).pow(2).sum(-1) - x.shape[-1] * (math.log(std) + 0.5 * math.log(2 * math.pi))
    return (per_point * mask).sum(-1)


class LatentField(nn.Module):
    """The latent dynamics ``f(z)``: an MLP with ``layers`` hidden layers of ``hidden`` units, each
    followed by ``activation`` (``"tanh"`` or ``"elu"``), autonomous (the time is not an input), called
    as ``field(t, z)``. The paper states one hidden layer of 20 units; the authors' example code uses
    two, with ELU.

    Example:
        >>> import torch
        >>> from nodelib.latent import LatentField
        >>> tuple(LatentField(4, 20)(torch.tensor(0.0), torch.zeros(3, 4)).shape)
        (3, 4)
        >>> LatentField(4, 20, layers=2, activation="elu").net
        Sequential(
          (0): Linear(in_features=4, out_features=20, bias=True)
          (1): ELU(alpha=1.0)
          (2): Linear(in_features=20, out_features=20, bias=True)
          (3): ELU(alpha=1.0)
          (4): Linear(in_features=20, out_features=4, bias=True)
        )
    """

    ACTIVATIONS = {"tanh": nn.Tanh, "elu": nn.ELU}

    def __init__(self, dim: int, hidden: int, layers: int = 1, activation: str = "tanh"):
        super().__init__()
        positive_ints(dim=dim, hidden=hidden, layers=layers)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(self.ACTIVATIONS)}, got {activation!r}.")
        widths = [dim] + [hidden] * layers
        modules = []
        for width_in, width_out in zip(widths, widths[1:]):
            modules += [nn.Linear(width_in, width_out), self.ACTIVATIONS[activation]()]
        self.net = nn.Sequential(*modules, nn.Linear(hidden, dim))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(z)


class ELBO(NamedTuple):
    """Per-series parts of eq. :eq:`elbo`, each of shape ``(B,)``: ``elbo = log_likelihood - kl``."""

    elbo: Tensor
    log_likelihood: Tensor
    kl: Tensor


class LatentODE(nn.Module):
    """The latent ODE of :cite:`chen2018neural`, §5: GRU recognition network, ODE, decoder.

    Args:
        obs_dim: the dimension ``d`` of an observation.
        latent_dim: the dimension of ``z`` (the paper: 4).
        rnn_hidden: the recognition GRU's units (the paper's RNN: 25).
        ode_hidden: the hidden units of ``f`` per layer (the paper: 20).
        ode_layers: the hidden layers of ``f`` (the paper: 1).
        ode_activation: their activation, ``"tanh"`` or ``"elu"`` (:class:`LatentField`).
        decoder_hidden: the hidden units of the decoder ``D_ψ`` (the paper: 20; ReLU).
        obs_std: the observation noise ``σ`` of the likelihood.
        t0: the time ``t_0`` of the latent initial state ``z_0``.
        rtol: the relative tolerance of the ODE solves.
        atol: their absolute tolerance.
        method: their method (default dopri5).
        adjoint: differentiate the solves by the adjoint method (Theorem 1); else by direct
            backpropagation.

    Example:
        >>> import torch, nodelib
        >>> from nodelib.latent import LatentODE
        >>> _ = torch.manual_seed(0)
        >>> model = LatentODE(obs_dim=2)
        >>> times = torch.tensor([[0.1, 0.4, 0.9], [0.2, 0.3, 0.0]])          # two series
        >>> mask = torch.tensor([[True, True, True], [True, True, False]])  # 3, 2 points
        >>> parts = model.elbo(times, torch.randn(2, 3, 2), mask)
        >>> parts.elbo.shape, torch.allclose(parts.elbo, parts.log_likelihood - parts.kl)
        (torch.Size([2]), True)
    """

    def __init__(self, obs_dim: int, latent_dim: int = 4, *, rnn_hidden: int = 25, ode_hidden: int = 20,
                 ode_layers: int = 1, ode_activation: str = "tanh", decoder_hidden: int = 20,
                 obs_std: float = 0.1, t0: float = 0.0, rtol: float = 1e-3, atol: float = 1e-4,
                 method: Optional[str] = None, adjoint: bool = True):
        super().__init__()
        positive_ints(obs_dim=obs_dim, latent_dim=latent_dim, rnn_hidden=rnn_hidden, decoder_hidden=decoder_hidden)
        positive_float("obs_std", obs_std)
        positive_float("rtol", rtol)
        positive_float("atol", atol)
        self.obs_dim, self.latent_dim, self.obs_std, self.t0 = obs_dim, latent_dim, float(obs_std), float(t0)
        self.solver = dict(rtol=rtol, atol=atol, method=method)
        self.adjoint = bool(adjoint)
        self.encoder = nn.GRUCell(obs_dim + 1, rnn_hidden)
        self.to_posterior = nn.Linear(rnn_hidden, 2 * latent_dim)
        self.field = LatentField(latent_dim, ode_hidden, ode_layers, ode_activation)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, decoder_hidden), nn.ReLU(),
                                     nn.Linear(decoder_hidden, obs_dim))

    def encode(self, times: Tensor, values: Tensor, mask: Optional[Tensor] = None):
        """The mean ``μ`` and ``log σ_q`` of ``q_φ(z_0 | x)``, each ``(B, latent_dim)``.

        The GRU reads ``(x_i, t_i - t_0)`` from the last observation of each series to its first;
        on a series' padding it keeps its state."""
        mask = check_series(times, values, mask, dim=self.obs_dim)
        if (times.detach()[mask] < self.t0).any():
            raise ValueError(f"times must be at or after t0 = {self.t0}, the time of the latent initial state.")
        h = values.new_zeros(times.shape[0], self.encoder.hidden_size)
        for i in reversed(range(times.shape[1])):
            step = self.encoder(torch.cat([values[:, i], (times[:, i] - self.t0)[:, None]], dim=-1), h)
            h = torch.where(mask[:, i, None], step, h)
        mean, log_std = self.to_posterior(h).chunk(2, dim=-1)
        return mean, log_std

    def trajectory(self, z0: Tensor, t: Tensor, stats: Optional[SolveStats] = None) -> Tensor:
        """``z`` at the increasing times ``t`` (``t[0] = t_0``), shape ``(len(t), B, latent_dim)``."""
        solve = odeint_adjoint if self.adjoint else odeint
        return solve(self.field, z0, t, stats=stats, **self.solver)

    def _states_at(self, z0: Tensor, times: Tensor, mask: Tensor, stats: Optional[SolveStats]) -> Tensor:
        """Each series' ``z`` at its own times, ``(B, N, latent_dim)``, from one solve on the union grid."""
        grid, index = union_grid(times, mask, times.new_tensor([self.t0]))
        if grid[0] != self.t0:
            raise ValueError(f"times must be at or after t0 = {self.t0}, the time of the latent initial state.")
        if grid.numel() == 1:   # every observation at t0
            return z0[:, None].expand(-1, times.shape[1], -1)
        return gather_times(self.trajectory(z0, grid, stats), index)

    def elbo(self, times: Tensor, values: Tensor, mask: Optional[Tensor] = None, *,
             generator: Optional[torch.Generator] = None, stats: Optional[SolveStats] = None) -> ELBO:
        """The per-series ELBO of eq. :eq:`elbo` with one reparameterised sample of ``z_0``.

        Args:
            times: ``(B, N)`` observation times (strictly increasing in each series, at or after ``t0``).
            values: ``(B, N, obs_dim)`` the observations.
            mask: ``(B, N)`` ``True`` on observations, ``False`` on padding (after a series' last point).
            generator: the generator of the sample's noise (default: PyTorch's global one).
            stats: a :class:`~nodelib.SolveStats` to which the solve's counts are added.
        """
        mask = check_series(times, values, mask, dim=self.obs_dim)
        mean, log_std = self.encode(times, values, mask)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        z0 = mean + torch.exp(log_std) * noise
        decoded = self.decoder(self._states_at(z0, times, mask, stats))
        log_likelihood = gaussian_log_likelihood(values, decoded, self.obs_std, mask)
        kl = gaussian_kl(mean, log_std)
        return ELBO(log_likelihood - kl, log_likelihood, kl)

    def predict(self, times: Tensor, values: Tensor, query: Tensor, mask: Optional[Tensor] = None, *,
                stats: Optional[SolveStats] = None) -> Tensor:
        """Decoded means at the times ``query`` (1-D, increasing, after ``t0``) from the posterior mean
        of ``z_0`` given each series' observations: shape ``(B, len(query), obs_dim)``."""
        if not isinstance(query, Tensor) or query.dim() != 1 or query.numel() < 1:
            raise ValueError(f"query must be a 1-D tensor of times, got "
                             f"{tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__}.")
        mean, _ = self.encode(times, values, mask)
        grid = query.new_tensor([self.t0])
        grid = torch.cat([grid, query]) if query[0] > self.t0 else query
        if not (grid[1:] > grid[:-1]).all():
            raise ValueError(f"query must be strictly increasing and at or after t0 = {self.t0}.")
        states = self.trajectory(mean, grid, stats) if grid.numel() > 1 else mean[None]
        return self.decoder(states[-query.numel():]).transpose(0, 1)
