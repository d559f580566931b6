"""nodelib.CNF against closed forms (linear ODE), the brute-force change of variables through
autograd's Jacobian of the solve map, direct backprop, and autograd through log_prob."""
import math

import pytest
import torch

import nodelib
from fields import Linear, TimeMLP, rel
from nodelib.data import toy2d

TIGHT = dict(rtol=1e-10, atol=1e-10)


def standard_normal_log_prob(z):
    return -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class LinearWithDivergence(Linear):
    """dz/dt = Az with its divergence tr A in closed form (for trace='closed_form')."""

    def divergence(self, t, z):
        return torch.trace(self.A).expand(z.shape[0])


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("trace", ["exact", "closed_form"])
def test_linear_flow_matches_closed_form(adjoint, trace):
    """dz/dt = Az from 0 to T: log p_T(x) = log p_0(exp(-AT) x) - T tr A."""
    A, T = 0.6 * torch.randn(3, 3), 0.8
    cnf = nodelib.CNF(LinearWithDivergence(A.clone()), dim=3, t1=T, trace=trace, adjoint=adjoint, **TIGHT)
    x = torch.randn(7, 3)
    want = standard_normal_log_prob(x @ torch.linalg.matrix_exp(-A * T).T) - T * torch.trace(A)
    assert rel(cnf.log_prob(x), want) < 1e-8


def test_nonlinear_flow_matches_log_det_of_the_solve_map():
    """Change of variables with autograd's Jacobian of z0 -> z(t1) (direct backprop through odeint)."""
    field = TimeMLP(dim=2, hidden=16)
    cnf = nodelib.CNF(field, dim=2, t0=0.0, t1=1.5, adjoint=True, **TIGHT)
    z0 = torch.randn(5, 2)
    t = torch.tensor([0.0, 1.5])
    x = nodelib.odeint(field, z0, t, **TIGHT)[-1].detach()
    log_dets = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
        lambda v: nodelib.odeint(field, v[None], t, **TIGHT)[-1, 0], zb))[1] for zb in z0])
    want = standard_normal_log_prob(z0) - log_dets
    assert rel(cnf.log_prob(x), want) < 1e-7
    assert rel(cnf.reverse(x)[0], z0) < 1e-7  # the reverse solve recovers the base point


def test_adjoint_parameter_gradients_equal_direct_backprop():
    x = torch.randn(16, 2)
    grads = {}
    for adjoint in (False, True):
        torch.manual_seed(0)
        cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), adjoint=adjoint, rtol=1e-9, atol=1e-9)
        xi = x.clone().requires_grad_(True)
        loss = -cnf.log_prob(xi).mean()
        grads[adjoint] = torch.autograd.grad(loss, (xi, *cnf.parameters()))
    assert rel(grads[True], grads[False]) < 1e-7  # measured 1.2e-8


def test_hutchinson_log_prob_is_unbiased():
    """With the probe fixed over a solve, Δ(t0) = ∫ ε^T J ε dt is linear in the estimator, so the
    average over K probes is within a few standard errors of the exact log-density."""
    field = TimeMLP(dim=3, hidden=16)
    K = 4000
    x = torch.randn(2, 3)
    exact = nodelib.CNF(field, dim=3, trace="exact", rtol=1e-7, atol=1e-7).log_prob(x)
    for noise in nodelib.NOISE_TYPES:
        cnf = nodelib.CNF(field, dim=3, trace="hutchinson", noise=noise, rtol=1e-7, atol=1e-7)
        with torch.no_grad():
            est = cnf.log_prob(x.repeat(K, 1), generator=torch.Generator().manual_seed(3)).view(K, 2)
        se = est.std(0) / K ** 0.5
        assert ((est.mean(0) - exact).abs() < 4 * se).all(), (est.mean(0), exact, se)
        assert (est.std(0) > 1e-3).all()  # it is an estimate, not the exact value


def test_sample_is_the_forward_solve_of_a_base_draw():
    A, T = 0.5 * torch.randn(2, 2), 1.0
    cnf = nodelib.CNF(Linear(A.clone()), dim=2, t1=T, **TIGHT)
    samples = cnf.sample(6, generator=torch.Generator().manual_seed(9))
    z0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
    assert rel(samples, z0 @ torch.linalg.matrix_exp(A * T).T) < 1e-8
    assert not samples.requires_grad
    # grad=True: samples differentiable in θ, d/dA Σ sin(x) through the matrix exponential as reference.
    for adjoint in (False, True):
        cnf = nodelib.CNF(Linear(A.clone()), dim=2, t1=T, adjoint=adjoint, **TIGHT)
        got = torch.autograd.grad(cnf.sample(6, generator=torch.Generator().manual_seed(9), grad=True).sin().sum(),
                                  cnf.field.A)[0]
        A_ref = A.clone().requires_grad_(True)
        want = torch.autograd.grad((z0 @ torch.linalg.matrix_exp(A_ref * T).T).sin().sum(), A_ref)[0]
        assert rel(got, want) < 1e-7


@pytest.mark.parametrize("adjoint", [False, True])
def test_sample_with_log_prob_is_the_forward_augmented_solve(adjoint):
    """dz/dt = Az: x = exp(AT) z0 and log q(x) = log N(z0) - T tr A; gradients in A through the
    matrix exponential; for a nonlinear field, log q of the samples equals log_prob's reverse solve."""
    A, T = 0.5 * torch.randn(2, 2), 0.9
    cnf = nodelib.CNF(LinearWithDivergence(A.clone()), dim=2, t1=T, trace="closed_form", adjoint=adjoint, **TIGHT)
    x, log_q = cnf.sample_with_log_prob(5, generator=torch.Generator().manual_seed(4))
    z0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(4))
    assert rel(x, z0 @ torch.linalg.matrix_exp(A * T).T) < 1e-8
    assert rel(log_q, standard_normal_log_prob(z0) - T * torch.trace(A)) < 1e-8
    got = torch.autograd.grad((x.sin().sum() + log_q.sum()), cnf.field.A)[0]
    A_ref = A.clone().requires_grad_(True)
    want = torch.autograd.grad((z0 @ torch.linalg.matrix_exp(A_ref * T).T).sin().sum()
                               + (standard_normal_log_prob(z0) - T * torch.trace(A_ref)).sum(), A_ref)[0]
    assert rel(got, want) < 1e-7
    mlp = nodelib.CNF(TimeMLP(dim=2, hidden=8), dim=2, adjoint=adjoint, **TIGHT)
    x, log_q = mlp.sample_with_log_prob(4, generator=torch.Generator().manual_seed(5))
    assert rel(log_q, mlp.log_prob(x.detach())) < 1e-8
    with pytest.raises(ValueError, match="n must be a positive int"):
        mlp.sample_with_log_prob(0)


def test_torch_distribution_base():
    """A torch.distributions base gives the same log-density as the default standard normal."""
    field = TimeMLP(dim=2, hidden=8)
    x = torch.randn(4, 2)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    a = nodelib.CNF(field, dim=2, **TIGHT).log_prob(x)
    b = nodelib.CNF(field, dim=2, base=mvn, **TIGHT).log_prob(x)
    assert rel(a, b) < 1e-12
    # a base without generator support draws from a seed taken from the generator (CNF.sample's contract)
    cnf = nodelib.CNF(field, dim=2, base=mvn, **TIGHT)
    s = cnf.sample(3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=torch.Generator().manual_seed(0))))
    z0 = mvn.sample((3,))
    assert rel(cnf.reverse(s)[0], z0) < 1e-8
    assert torch.equal(s, cnf.sample(3, generator=torch.Generator().manual_seed(0)))


@pytest.fixture
def small_cnf():
    torch.manual_seed(0)
    field = nodelib.MLPField(2, hidden=(16, 16))
    with torch.no_grad():  # a field strong enough to move the density visibly
        for p in field.parameters():
            p.mul_(2.0)
    return nodelib.CNF(field, t1=1.0, adjoint=False, rtol=1e-10, atol=1e-10)


def test_forward_gradient_ode_matches_autograd(small_cnf):
    """§3.3: g(t1) and h(t1) from the forward-time ODE with trace terms equal autograd through log_prob."""
    x = torch.randn(5, 2)
    xr = x.clone().requires_grad_(True)
    want = torch.autograd.grad(small_cnf.log_prob(xr).sum(), (xr, *small_cnf.field.parameters()))
    grad_x, grad_theta = nodelib.log_prob_gradients(small_cnf, x)
    assert rel(grad_x, want[0]) < 5e-8  # measured 2.9e-9
    assert rel(grad_theta, want[1:]) < 5e-8  # measured 4.4e-9


def test_the_notes_gradient_ode_fails_the_same_check(small_cnf):
    """The note's dg/dt = +g ∇f, dh/dt = +g ∇_θ f (no trace terms) is wrong by a wide margin."""
    x = torch.randn(5, 2)
    xr = x.clone().requires_grad_(True)
    want = torch.autograd.grad(small_cnf.log_prob(xr).sum(), (xr, *small_cnf.field.parameters()))
    grad_x, grad_theta = nodelib.log_prob_gradients(small_cnf, x, formula="note")
    assert rel(grad_x, want[0]) > 0.2
    assert rel(grad_theta, want[1:]) > 1.0
    # The sign alone does not repair it: the trace terms are needed too.
    grad_x, grad_theta = nodelib.log_prob_gradients(small_cnf, x, formula="without_trace")
    assert rel(grad_x, want[0]) > 0.1
    assert rel(grad_theta, want[1:]) > 0.1


def test_trained_density_integrates_to_one():
    """A few steps of maximum likelihood on 8 gaussians lower the NLL; the density stays normalised."""
    torch.manual_seed(0)
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(32, 32)), adjoint=False, rtol=1e-5, atol=1e-5)
    data = toy2d.sample("8gaussians", 128, seed=0) / 2
    opt = torch.optim.Adam(cnf.parameters(), lr=1e-2)
    with torch.no_grad():
        nll_before = -cnf.log_prob(data).mean().item()
    for _ in range(20):
        opt.zero_grad()
        loss = -cnf.log_prob(data).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll_after = -cnf.log_prob(data).mean().item()
    assert nll_after < nll_before - 0.1
    grid = toy2d.grid_log_density(cnf.log_prob, bounds=(-7, 7, -7, 7), resolution=100)
    assert abs(grid.integral() - 1.0) < 1e-2


def test_bad_input_raises_clear_errors():
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        cnf.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        cnf.log_prob(torch.randn(2))
    with pytest.raises(ValueError, match="finite"):
        cnf.log_prob(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="dtype"):
        cnf.log_prob(torch.randn(4, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="hutchinson"):
        nodelib.CNF(nodelib.MLPField(2), trace="stochastic")
    with pytest.raises(ValueError, match="rademacher"):
        nodelib.CNF(nodelib.MLPField(2), trace="hutchinson", noise="uniform")
    with pytest.raises(ValueError, match="divergence"):
        nodelib.CNF(nodelib.MLPField(2), trace="closed_form")
    with pytest.raises(ValueError, match="dim"):
        nodelib.CNF(TimeMLP(2))  # no .dim attribute and no dim=
    with pytest.raises(ValueError, match="method"):
        nodelib.CNF(nodelib.MLPField(2), method="dopri4")
    with pytest.raises(ValueError, match="formula"):
        nodelib.log_prob_gradients(cnf, torch.randn(3, 2), formula="paper")
    with pytest.raises(ValueError, match="n must be"):
        cnf.sample(0)
    with pytest.raises(ValueError, match="event shape"):
        nodelib.CNF(nodelib.MLPField(2), base=torch.distributions.Normal(torch.zeros(2), 1.0)).log_prob(
            torch.randn(3, 2))
