"""nodelib.poisson against closed forms, quadrature, per-series solves, direct backpropagation, finite
differences and the homogeneous-process MLE (float64, see conftest.py)."""
import math

import pytest
import torch
from scipy.integrate import quad
from torch import nn

from fields import Linear, TimeMLP, rel
from nodelib.poisson import PoissonAugmented, poisson_log_likelihood

TIGHT = dict(rtol=1e-10, atol=1e-12)


class ExpLinear(nn.Module):
    """λ(z) = exp(w·z + b)."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.as_tensor(w)), nn.Parameter(torch.as_tensor(b))

    def forward(self, z):
        return (z @ self.w + self.b).exp()


class SoftplusMLP(nn.Module):
    """A positive intensity softplus(MLP(z))."""

    def __init__(self, dim=2, hidden=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1), nn.Softplus())

    def forward(self, z):
        return self.net(z)[:, 0]


def still(t, z):
    return torch.zeros_like(z)


def test_linear_field_matches_exact_solution_and_quadrature():
    k, w, b = torch.tensor([0.7, 1.3]), torch.tensor([0.8, -0.5]), -0.2
    t_start, t_end = 0.2, 3.0
    z0 = torch.tensor([[1.0, -0.5], [-0.3, 2.0]])
    times = torch.tensor([[0.3, 1.1, 2.0, 2.7], [0.2, 0.9, 3.0, 0.0]])
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    ll = poisson_log_likelihood(ExpLinear(w, b), Linear(-torch.diag(k)), z0, times, t_start, t_end, mask=mask,
                                **TIGHT)

    def rate(series, t):  # exact z(t) = exp(-k (t - t_start)) z0
        z = torch.exp(-k * (t - t_start)) * z0[series]
        return math.exp(float(z @ w) + b)

    for series in range(2):
        events = times[series][mask[series]].tolist()
        integral = quad(lambda t: rate(series, t), t_start, t_end, epsabs=0, epsrel=1e-13, limit=200)[0]
        exact = sum(math.log(rate(series, t)) for t in events) - integral
        assert rel(ll[series], torch.tensor(exact)) < 1e-8


def test_constant_intensity_is_n_log_rate_minus_rate_times_length():
    rate = 1.7
    intensity = lambda z: torch.full(z.shape[:1], rate)  # noqa: E731
    times = torch.tensor([[-0.5, 0.1, 0.4, 1.9], [0.0, 2.0, 0.0, 0.0]], dtype=torch.float32)  # (z0 is float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    ll = poisson_log_likelihood(intensity, TimeMLP(), torch.randn(2, 2), times, -1.0, 2.0, mask=mask)
    expected = torch.tensor([4, 2]) * math.log(rate) - rate * 3.0
    assert torch.allclose(ll, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method, options, tol", [("rk4", {"step_size": 0.05}, 1e-10), ("dopri5", None, 1e-9)])
def test_batch_with_padding_equals_each_series_alone(method, options, tol):
    """Exact on a fixed grid; adaptive steps follow the error norm of the whole batch, hence tolerance-level."""
    func, intensity = TimeMLP(), SoftplusMLP()
    z0 = torch.randn(3, 2)
    times = torch.tensor([[0.9, 1.4, 2.2, 2.9, 3.5], [0.15, 0.3, 0.0, 0.0, 0.0], [1.0, 2.5, 2.6, 0.0, 0.0]])
    lengths = [5, 2, 3]
    mask = torch.arange(5) < torch.tensor(lengths)[:, None]
    solver = dict(method=method, options=options, rtol=1e-12, atol=1e-14)
    batch = poisson_log_likelihood(intensity, func, z0, times, 0.0, 4.0, mask=mask, **solver)
    for series, n in enumerate(lengths):
        alone = poisson_log_likelihood(intensity, func, z0[series:series + 1], times[series:series + 1, :n],
                                       0.0, 4.0, **solver)
        assert rel(batch[series], alone[0]) < tol


def gradients(adjoint, func, intensity, z0, times, mask):
    z0 = z0.clone().requires_grad_()
    ll = poisson_log_likelihood(intensity, func, z0, times, 0.0, 2.0, mask=mask, adjoint=adjoint, **TIGHT)
    params = [*func.parameters(), *intensity.parameters(), z0]
    return torch.autograd.grad(ll.sum(), params)


def test_adjoint_gradients_equal_direct_backprop_and_finite_differences():
    func, intensity = TimeMLP(), SoftplusMLP()
    z0 = torch.randn(2, 2)
    times = torch.tensor([[0.2, 0.7, 1.8], [0.5, 1.0, 0.0]])
    mask = torch.tensor([[True] * 3, [True, True, False]])
    adjoint = gradients(True, func, intensity, z0, times, mask)
    direct = gradients(False, func, intensity, z0, times, mask)
    for a, d in zip(adjoint, direct):
        assert rel(a, d) < 1e-6
    weight, h = func.net[0].weight, 1e-4  # d/dW[0, 0] by central differences

    def value(shift):
        with torch.no_grad():
            weight[0, 0] += shift
            out = poisson_log_likelihood(intensity, func, z0, times, 0.0, 2.0, mask=mask, **TIGHT).sum()
            weight[0, 0] -= shift
        return out

    finite = (value(h) - value(-h)) / (2 * h)
    assert rel(adjoint[0][0, 0], finite) < 1e-6


def test_constant_rate_mle_is_events_over_length():
    generator = torch.Generator().manual_seed(1)
    true_rate, length = 3.0, 5.0
    n = int(torch.poisson(torch.tensor(true_rate * length), generator=generator))
    events = torch.rand(n, generator=generator).sort().values * length
    mle = n / length
    log_rates = (torch.linspace(0.5, 1.5, 201) * mle).log()[:, None].requires_grad_()  # one series per rate
    ll = poisson_log_likelihood(lambda z: z[:, 0].exp(), still, log_rates, events.expand(201, n), 0.0, length)
    assert n > 0 and int(ll.argmax()) == 100
    (slope,) = torch.autograd.grad(ll.sum(), log_rates)  # d ll / d log λ = N − λ T
    assert torch.allclose(slope[:, 0], n - log_rates.detach()[:, 0].exp() * length, rtol=0, atol=1e-9)
    assert abs(float(slope[100])) < 1e-9


def test_augmented_field_holds_shared_parameters_once():
    func = TimeMLP()
    intensity = nn.Sequential(func.net, nn.Softplus())  # shares func's parameters
    assert len(list(PoissonAugmented(func, intensity).parameters())) == len(list(func.parameters()))


@pytest.mark.parametrize("change, match", [
    (dict(times=torch.tensor([[0.5, 2.5]])), r"times must lie in \[t_start, t_end\] = \[0, 2\]"),
    (dict(times=torch.tensor([[-0.1, 1.0]])), r"times must lie in \[t_start, t_end\]"),
    (dict(times=torch.tensor([[1.0, 0.5]])), "times must increase strictly"),
    (dict(times=torch.tensor([[0.5, float("nan")]])), "times must be finite"),
    (dict(t_start=2.0), "t_start < t_end"),
    (dict(t_end=float("inf")), "t_end"),
    (dict(intensity=lambda z: -z[:, 0].exp()), "intensity must be positive; e.g. wrap it in softplus or exp"),
    (dict(intensity=lambda z: z.exp()), r"intensity must map .* to shape \(B,\)"),
    (dict(z0=torch.zeros(2)), r"z0 must have shape \(B, d\)"),
    (dict(z0=torch.zeros(2, 1)), r"z0 must have shape \(B, d\) with B = 1"),
])
def test_bad_input_raises_value_error_naming_the_argument(change, match):
    args = dict(intensity=lambda z: z[:, 0].exp(), func=still, z0=torch.zeros(1, 1), times=torch.tensor([[0.5, 1.0]]),
                t_start=0.0, t_end=2.0)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        poisson_log_likelihood(**args)


def test_thinning_draws_as_many_events_as_the_integral_of_the_rate_and_where_it_is_high():
    from nodelib.poisson import sample_events
    rate = lambda t: 1.0 + torch.sin(t) ** 2                     # ∫_0^10 = 15 - sin(20)/4
    times, mask = sample_events(rate, 0.0, 10.0, 2.0, 4000, generator=torch.Generator().manual_seed(0))
    counts = mask.sum(1).double()
    expected = 15 - math.sin(20.0) / 4
    assert abs(counts.mean() - expected) < 4 * counts.std() / math.sqrt(4000)
    assert abs(counts.var() - expected) < 0.05 * expected           # Poisson: variance = mean
    early = ((times < 5) & mask).sum() / mask.sum()                 # ∫_0^5 / ∫_0^10
    share = (7.5 - math.sin(10.0) / 4) / expected
    assert abs(float(early) - share) < 4 * math.sqrt(share * (1 - share) / float(mask.sum()))
    assert bool((times[:, 1:] > times[:, :-1])[mask[:, 1:]].all())


def test_thinning_refuses_a_bound_below_the_rate():
    from nodelib.poisson import sample_events
    with pytest.raises(ValueError, match="larger bound"):
        sample_events(lambda t: torch.full_like(t, 3.0), 0.0, 10.0, 2.0, 1, generator=torch.Generator().manual_seed(0))
