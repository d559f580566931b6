"""Vector fields with known behaviour, shared by the tests."""
import torch
from torch import nn

from nodelib.checks import relative_error


class TimeMLP(nn.Module):
    """A small non-autonomous field f(z, t) = MLP([z, t]); counts its calls."""

    def __init__(self, dim=2, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.calls = 0

    def forward(self, t, z):
        self.calls += 1
        return self.net(torch.cat([z, t.to(z).expand(*z.shape[:-1], 1)], dim=-1))


class Linear(nn.Module):
    """dz/dt = A z, whose solution z(t) = exp(A (t - t0)) z0 is known in closed form."""

    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A)

    def forward(self, t, z):
        return z @ self.A.T


def rel(a, b):
    """Relative error |a - b| / |b| of two tensors or sequences of tensors."""
    return relative_error(a, b)


def autograd_trace(field, t, z):
    """tr ∇_§1 f from autograd's full Jacobian, point by point."""
    flat = z.reshape(-1, z.shape[-1])
    traces = [torch.autograd.functional.jacobian(lambda v: field(t, v), point).trace() for point in flat]
    return torch.stack(traces).reshape(z.shape[:-1])
