"""Traces of the Jacobian (nodelib.trace) against autograd's full Jacobian and the closed-form
mean and variance of Hutchinson's estimator."""
import pytest
import torch

import nodelib
from fields import TimeMLP, rel


def jacobians(field, t, z):
    """Autograd's full Jacobian of f(t, .) at every row of z: shape (B, d, d)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: field(t, v), zb) for zb in z])


def field_and_states(dim=5, batch=4, hidden=16):
    field = TimeMLP(dim, hidden)
    z = torch.randn(batch, dim, requires_grad=True)
    t = torch.tensor(0.3)
    return field, t, z


def test_exact_trace_equals_trace_of_autograd_jacobian():
    field, t, z = field_and_states()
    got = nodelib.trace_exact(field(t, z), z)
    want = torch.diagonal(jacobians(field, t, z.detach()), dim1=-2, dim2=-1).sum(-1)
    assert got.shape == (4,)
    assert rel(got, want) < 1e-12


def test_exact_trace_is_differentiable_in_parameters_and_state():
    """d(tr J)/dθ through create_graph equals the gradient of autograd's Jacobian trace."""
    field, t, z = field_and_states(dim=3, batch=2)
    weights = [p for name, p in field.named_parameters() if name != "net.2.bias"]  # tr J ignores that bias
    tr = nodelib.trace_exact(field(t, z), z).sum()
    got = torch.autograd.grad(tr, (z, *weights))

    def reference_trace(z):
        J = [torch.autograd.functional.jacobian(lambda v: field(t, v), zb, create_graph=True) for zb in z]
        return sum(torch.trace(j) for j in J)
    zr = z.detach().clone().requires_grad_(True)
    want = torch.autograd.grad(reference_trace(zr), (zr, *weights))
    assert rel(got, want) < 1e-12


def test_hutchinson_is_exact_in_expectation_over_all_rademacher_vectors():
    """Averaging ε^T J ε over all 2^d sign vectors gives tr J exactly (E[εε^T] = I on that set)."""
    field, t, z = field_and_states(dim=4, batch=3)
    f_z = field(t, z)
    signs = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * 4)  # all 16 vectors
    estimates = torch.stack([nodelib.trace_hutchinson(f_z, z, s.expand_as(z)) for s in signs])
    assert rel(estimates.mean(0), nodelib.trace_exact(f_z, z)) < 1e-12


@pytest.mark.parametrize("noise", nodelib.NOISE_TYPES)
def test_hutchinson_mean_and_variance_match_closed_forms(noise):
    """Over K probes, the mean is within 4 standard errors of the exact trace and the sample variance
    within 4 standard errors of the closed forms with S = (J + J^T)/2:
    Var_gauss = 2 Σ_ij S_ij^2 and Var_rademacher = 2 Σ_{i≠j} S_ij^2."""
    dim, K = 6, 40_000
    field, t, z = field_and_states(dim=dim, batch=2)
    J = jacobians(field, t, z.detach())
    S = (J + J.transpose(1, 2)) / 2
    exact = torch.diagonal(J, dim1=1, dim2=2).sum(-1)
    var_gauss = 2 * (S ** 2).sum((1, 2))
    var_rademacher = var_gauss - 2 * (torch.diagonal(S, dim1=1, dim2=2) ** 2).sum(-1)
    want_var = var_gauss if noise == "gaussian" else var_rademacher

    zk = z.detach().repeat(K, 1).requires_grad_(True)  # K copies of each state, one probe each
    generator = torch.Generator().manual_seed(1)
    eps = nodelib.draw_noise(zk, noise, generator=generator)
    est = nodelib.trace_hutchinson(field(t, zk), zk, eps, create_graph=False).view(K, 2)
    mean, var = est.mean(0), est.var(0)
    se_mean = (var / K).sqrt()
    se_var = ((est - mean) ** 2).std(0) / K ** 0.5
    assert ((mean - exact).abs() < 4 * se_mean).all(), (mean, exact, se_mean)
    assert ((var - want_var).abs() < 4 * se_var).all(), (var, want_var, se_var)
    assert (var_rademacher < var_gauss).all()


def test_draw_noise_moments_and_reproducibility():
    like = torch.empty(200_000, 3)
    for noise in nodelib.NOISE_TYPES:
        a = nodelib.draw_noise(like, noise, generator=torch.Generator().manual_seed(5))
        b = nodelib.draw_noise(like, noise, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b) and a.dtype == like.dtype and a.shape == like.shape
        cov = a.T @ a / a.shape[0]
        assert (cov - torch.eye(3)).abs().max() < 0.02  # E[εε^T] = I (standard error about 0.003)
        assert a.mean(0).abs().max() < 0.02
    r = nodelib.draw_noise(like, "rademacher")
    assert set(r.unique().tolist()) == {-1.0, 1.0}


def test_bad_names_and_shapes_raise():
    field, t, z = field_and_states()
    with pytest.raises(ValueError, match="rademacher"):
        nodelib.draw_noise(z, "uniform")
    with pytest.raises(ValueError, match="exact"):
        nodelib.trace.check_trace_method("approximate")
    with pytest.raises(ValueError, match="shape"):
        nodelib.trace_hutchinson(field(t, z), z, torch.ones(3))
    with pytest.raises(ValueError, match="autograd"):
        nodelib.trace_exact(field(t, z).detach(), z)
