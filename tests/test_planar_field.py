"""Gated planar dynamics (nodelib.dynamics.GatedPlanarField) against loops and autograd."""
import pytest
import torch

from nodelib.cnf import CNF
from nodelib.dynamics import GatedPlanarField

from fields import autograd_trace


def test_field_is_the_gated_sum_of_planar_terms():
    field = GatedPlanarField(3, 4, gate_hidden=5)
    z, t = torch.randn(7, 3), torch.tensor(0.4)
    gates = field.gate(t.reshape(1, 1))[0]
    assert torch.all((gates >= 0) & (gates <= 1))
    reference = sum(gates[k] * field.u[k] * torch.tanh(z @ field.w[k] + field.b[k])[:, None] for k in range(4))
    assert torch.allclose(field(t, z), reference, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("shape", [(6, 2), (5, 8), (2, 3, 4), (3,)])
def test_closed_form_divergence_equals_autograd_trace(shape):
    field = GatedPlanarField(shape[-1], 5, init_scale=1.0)
    for t in (0.0, 0.7, -1.3):
        z = 2 * torch.randn(shape)
        div = field.divergence(torch.tensor(t), z)
        assert div.shape == shape[:-1]
        assert torch.allclose(div, autograd_trace(field, torch.tensor(t), z), rtol=1e-12, atol=1e-13)


def test_divergence_is_differentiable_like_autograd():
    """Gradients of the closed form (used in training) equal those of autograd's trace."""
    field = GatedPlanarField(3, 4)
    z, t = torch.randn(5, 3), torch.tensor(0.3)
    params = list(field.parameters())
    closed = torch.autograd.grad(field.divergence(t, z).sum(), params)
    reference = torch.autograd.grad(
        sum(torch.autograd.functional.jacobian(lambda v: field(t, v), p, create_graph=True).trace() for p in z),
        params)
    for a, b in zip(closed, reference):
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-12)


def test_cnf_with_closed_form_trace_matches_exact_trace():
    field = GatedPlanarField(2, 3)
    x = torch.randn(16, 2)
    logp = {trace: CNF(field, t0=0.0, t1=1.0, trace=trace, rtol=1e-9, atol=1e-9).log_prob(x)
            for trace in ("closed_form", "exact")}
    assert torch.allclose(logp["closed_form"], logp["exact"], rtol=1e-9, atol=1e-9)


def test_bad_input_is_rejected_with_clear_errors():
    field = GatedPlanarField(2, 3)
    with pytest.raises(ValueError, match=r"z must be a tensor of shape \(\.\.\., 2\)"):
        field(torch.tensor(0.0), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"z must be a tensor of shape"):
        field.divergence(torch.tensor(0.0), torch.randn(4, 5))
    with pytest.raises(ValueError, match="z has dtype torch.float32"):
        field.divergence(torch.tensor(0.0), torch.randn(4, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="t must be a scalar time"):
        field(torch.zeros(4), torch.randn(4, 2))
    with pytest.raises(ValueError, match="n_components must be a positive int"):
        GatedPlanarField(2, 0)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        GatedPlanarField(-1, 2)
