"""Tuple states, as torchdiffeq takes them: nodelib against torchdiffeq on the same tuple problems."""
import pytest
import torch
import torchdiffeq
from torch import nn

import nodelib


class CoupledPair(nn.Module):
    """A state (x, v) of shapes (B, 2) and (B,): dx/dt = tanh(x W) + v, dv/dt = -v·|x|²."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(0.5 * torch.randn(2, 2))

    def forward(self, t, state):
        x, v = state
        return torch.tanh(x @ self.W) + v[:, None], -v * (x * x).sum(-1)


class ExactTraceCNF(nn.Module):
    """torchdiffeq's CNF convention: the state (z, log p), the field returning (f, -tr ∇f)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, state):
        z, _ = state
        with torch.enable_grad():
            z = z.requires_grad_(True) if not z.requires_grad else z
            f = self.net(torch.cat([z, t.expand(z.shape[0], 1)], 1))
            trace = nodelib.trace_exact(f, z)
        return f, -trace[:, None]


def test_odeint_solves_a_tuple_state_as_torchdiffeq_does():
    field = CoupledPair()
    x0, v0 = torch.randn(4, 2, requires_grad=True), torch.rand(4, requires_grad=True)
    t = torch.linspace(0, 1, 5)
    ours = nodelib.odeint(field, (x0, v0), t, rtol=1e-9, atol=1e-11)
    peer = torchdiffeq.odeint(field, (x0, v0), t, rtol=1e-9, atol=1e-11)
    assert isinstance(ours, tuple) and [o.shape for o in ours] == [(5, 4, 2), (5, 4)]
    for a, b in zip(ours, peer):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    grads = [torch.autograd.grad(sum(o.pow(2).sum() for o in out), (x0, v0, field.W)) for out in (ours, peer)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("field_class", [CoupledPair, ExactTraceCNF])
def test_odeint_adjoint_on_tuple_states_matches_torchdiffeq(field_class):
    field = field_class()
    # torchdiffeq's CNF example differentiates the parameters only (its field cannot take the
    # views its peer hands it for the other gradients), so the comparison does the same.
    cnf = field_class is ExactTraceCNF
    first = torch.randn(6, 2).requires_grad_(not cnf)
    second = (torch.zeros(6, 1) if cnf else torch.rand(6)).requires_grad_(not cnf)
    t = torch.tensor([0.0, 0.5, 1.0], requires_grad=not cnf)
    inputs = tuple(field.parameters()) if cnf else (first, second, t, *field.parameters())
    weights = torch.randn(3, 6, 2), torch.randn(3, *second.shape)
    results = []
    for odeint_adjoint in (nodelib.odeint_adjoint, torchdiffeq.odeint_adjoint):
        out = odeint_adjoint(field, (first, second), t, rtol=1e-10, atol=1e-12)
        loss = (out[0] * weights[0]).sum() + (out[1] * weights[1]).sum()
        results.append(([o.detach() for o in out], torch.autograd.grad(loss, inputs)))
    (ours, our_grads), (peer, peer_grads) = results
    for a, b in zip(ours, peer):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for a, b in zip(our_grads, peer_grads):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9), (a, b)


def test_a_forward_norm_receives_the_tuple():
    seen = []

    def norm(state):
        seen.append(tuple(s.shape for s in state))
        return max(s.abs().max() for s in state)

    nodelib.odeint(lambda t, y: (-y[0], -y[1]), (torch.ones(()), torch.ones(2, 2)), torch.tensor([0.0, 1.0]),
                   options=dict(norm=norm))
    assert seen and set(seen) == {((), (2, 2))}


def test_bad_tuple_states_are_refused():
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match=r"y0\[1\] has dtype torch.float32 on cpu but y0\[0\] has dtype torch.float64"):
        nodelib.odeint(lambda t, y: y, (torch.ones(2), torch.ones(2, dtype=torch.float32)), t)
    with pytest.raises(TypeError, match="func must return a tuple of 2 tensors shaped like y0, got Tensor"):
        nodelib.odeint(lambda t, y: y[0], (torch.ones(2), torch.ones(3)), t)
    with pytest.raises(ValueError, match=r"func\(t, y\)\[1\] returned \(2,\) but y\[1\] has shape \(3,\)"):
        nodelib.odeint_adjoint(lambda t, y: (y[0], y[0]), (torch.ones(2), torch.ones(3)), t, adjoint_params=())
    with pytest.raises(ValueError, match="y0 is an empty tuple"):
        nodelib.odeint(lambda t, y: y, (), t)


def test_the_cnf_style_field_is_differentiated_in_every_input_against_direct_backprop():
    field = ExactTraceCNF()
    z0, logp0 = torch.randn(6, 2, requires_grad=True), torch.zeros(6, 1, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], requires_grad=True)
    inputs = (z0, logp0, t, *field.parameters())
    grads = []
    for solve in (nodelib.odeint_adjoint, nodelib.odeint):
        z, logp = solve(field, (z0, logp0), t, rtol=1e-10, atol=1e-12)
        grads.append(torch.autograd.grad(z.pow(2).sum() + logp.sum(), inputs))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9), (a, b)
