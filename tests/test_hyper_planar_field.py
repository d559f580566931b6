"""Hypernetwork planar dynamics (nodelib.dynamics.HyperPlanarField) against loops over the units,
autograd's Jacobian trace, its gradients, and a CNF with the exact trace."""
import pytest
import torch

from nodelib.cnf import CNF
from nodelib.dynamics import HyperPlanarField

from fields import autograd_trace


@pytest.mark.parametrize("dim,width,hidden", [(2, 1, (4,)), (2, 8, (8, 8)), (3, 5, ()), (4, 64, (32, 32))])
def test_parameter_count_formula(dim, width, hidden):
    field = HyperPlanarField(dim, width, hidden)
    counted = sum(p.numel() for p in field.parameters())
    widths = [1, *hidden, width * (2 * dim + 2)]
    by_hand = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))   # weights + biases of each layer
    assert counted == by_hand == HyperPlanarField.count_parameters(dim, width, hidden)


def test_field_is_the_gated_sum_of_time_dependent_planar_terms():
    """f(z, t) = Σ_m σ_m(t) u_m(t) tanh(w_m(t)ᵀz + b_m(t)) with (u, w, b, g)(t) read off the hypernetwork."""
    field = HyperPlanarField(3, 4, (5, 6))
    z = torch.randn(7, 3)
    for t in (0.0, 0.4, 1.0):
        out = field.hypernet(torch.tensor([t]))                          # raw outputs, unit by unit
        reference = torch.zeros(7, 3)
        for m in range(4):
            u, w, b, g = out[8 * m:8 * m + 3], out[8 * m + 3:8 * m + 6], out[8 * m + 6], out[8 * m + 7]
            reference += torch.sigmoid(g) * torch.tanh(z @ w + b)[:, None] * u
        assert torch.allclose(field(torch.tensor(t), z), reference, rtol=1e-13, atol=1e-14)
    # The parameters do change with t (the point of the hypernetwork).
    assert not torch.allclose(field.unit_parameters(0.0)[1], field.unit_parameters(1.0)[1])


@pytest.mark.parametrize("shape", [(6, 2), (5, 8), (2, 3, 4), (3,)])
def test_closed_form_divergence_equals_autograd_trace(shape):
    field = HyperPlanarField(shape[-1], 5, (6,))
    for t in (0.0, 0.7, -1.3):
        z = 2 * torch.randn(shape)
        div = field.divergence(torch.tensor(t), z)
        assert div.shape == shape[:-1]
        assert torch.allclose(div, autograd_trace(field, torch.tensor(t), z), rtol=1e-12, atol=1e-13)
        f, div2 = field.forward_and_divergence(torch.tensor(t), z)
        assert torch.equal(f, field(torch.tensor(t), z)) and torch.equal(div, div2)


def test_divergence_is_differentiable_like_autograd():
    """Gradients of the closed form in θ and z (used in training) equal those of autograd's trace."""
    field = HyperPlanarField(3, 4, (5,))
    z, t = torch.randn(5, 3, requires_grad=True), torch.tensor(0.3)
    wrt = [z, *field.parameters()]
    closed = torch.autograd.grad(field.divergence(t, z).pow(2).sum(), wrt)
    exact = torch.stack([torch.autograd.functional.jacobian(lambda v: field(t, v), p, create_graph=True).trace()
                         for p in z])
    reference = torch.autograd.grad(exact.pow(2).sum(), wrt)
    for a, b in zip(closed, reference):
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-12)


def test_cnf_with_closed_form_trace_matches_exact_trace():
    field = HyperPlanarField(2, 6, (8,))
    x = torch.randn(16, 2)
    logp = {trace: CNF(field, trace=trace, rtol=1e-9, atol=1e-9).log_prob(x) for trace in ("closed_form", "exact")}
    assert torch.allclose(logp["closed_form"], logp["exact"], rtol=1e-9, atol=1e-9)


def test_bad_input_is_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="width must be a positive int"):
        HyperPlanarField(2, 0)
    with pytest.raises(ValueError, match="hidden must be a sequence of positive ints"):
        HyperPlanarField(2, 3, (4, 0))
    field = HyperPlanarField(2, 3, (4,))
    with pytest.raises(ValueError, match=r"z must be a tensor of shape \(\.\.\., 2\)"):
        field(torch.tensor(0.0), torch.randn(4, 3))
    with pytest.raises(ValueError, match="dtype"):
        field(torch.tensor(0.0), torch.randn(4, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="t must be a scalar time"):
        field(torch.zeros(2), torch.randn(4, 2))
