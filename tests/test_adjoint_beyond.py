"""What nodelib's adjoint adds to the peer library's: checkpoints, cheap many-time losses, second derivatives."""
import pytest
import torch
import torchdiffeq

import nodelib
from fields import TimeMLP, rel


def grads(solver, func, y0, t, **kw):
    y0 = y0.clone().requires_grad_(True)
    ys = solver(func, y0, t, **kw)
    return torch.autograd.grad(ys[-1].pow(2).sum(), (y0, *func.parameters()))


def test_checkpoints_repair_the_contracting_example():
    func = nodelib.dynamics.ContractingReadoutField(lam=30.0)
    y0 = torch.randn(8, 2)
    t = torch.tensor([0.0, 1.0])
    ref = grads(torchdiffeq.odeint, func, y0, t, rtol=1e-12, atol=1e-12)
    plain = grads(nodelib.odeint_adjoint, func, y0, t)
    checkpointed = grads(nodelib.odeint_adjoint, func, y0, t, checkpoints=16)
    assert rel(plain, ref) > 1e-2
    assert rel(checkpointed, ref) < 2e-8  # measured 2.1e-9


def test_many_observation_times_cost_less_than_half_of_torchdiffeq():
    """Loss on 100 observation times: the backward solve carries its step size across them."""
    func = TimeMLP(hidden=64)
    y0 = torch.randn(32, 2)
    t = torch.linspace(0.0, 1.0, 101)
    stats = nodelib.SolveStats()
    ours = grads_all(nodelib.odeint_adjoint, func, y0, t, stats=stats)
    func.calls = 0
    y0_ = y0.clone().requires_grad_(True)
    ys = torchdiffeq.odeint_adjoint(func, y0_, t)
    forward_calls = func.calls
    peer = torch.autograd.grad(loss_all(ys), (y0_, *func.parameters()))
    peer_backward = func.calls - forward_calls
    assert stats.nfe_forward == forward_calls
    assert stats.nfe_backward <= peer_backward / 2
    assert rel(ours, peer) < 1e-6


def loss_all(ys):
    return ys.pow(2).sum() + ys.cos().sum()


def grads_all(solver, func, y0, t, **kw):
    y0 = y0.clone().requires_grad_(True)
    return torch.autograd.grad(loss_all(solver(func, y0, t, **kw)), (y0, *func.parameters()))


def test_zero_gradient_tail_is_skipped():
    """A loss that ignores the last times costs no backward work on them, and is still right."""
    func = TimeMLP()
    y0 = torch.randn(4, 2)
    t = torch.linspace(0.0, 1.0, 11)
    stats_full, stats_head = nodelib.SolveStats(), nodelib.SolveStats()
    y0_ = y0.clone().requires_grad_(True)
    head = nodelib.odeint_adjoint(func, y0_, t, stats=stats_head, rtol=1e-10, atol=1e-10)[:3]
    got = torch.autograd.grad(head.pow(2).sum(), (y0_, *func.parameters()))
    y0_ = y0.clone().requires_grad_(True)
    ref_ys = torchdiffeq.odeint(func, y0_, t[:3], rtol=1e-12, atol=1e-12)
    ref = torch.autograd.grad(ref_ys.pow(2).sum(), (y0_, *func.parameters()))
    nodelib.odeint_adjoint(func, y0_, t, stats=stats_full, rtol=1e-10, atol=1e-10).pow(2).sum().backward()
    assert rel(got, ref) < 1e-8
    assert stats_head.nfe_backward < stats_full.nfe_backward / 3


def hvp(solver, func, y0, t, v, **kw):
    params = list(func.parameters())
    ys = solver(func, y0, t, rtol=1e-11, atol=1e-12, **kw)
    g = torch.autograd.grad(loss_all(ys), params, create_graph=True)
    return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)


def test_hessian_vector_product_matches_double_backprop():
    func = TimeMLP()
    v = [torch.randn_like(p) for p in func.parameters()]
    y0 = torch.randn(5, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    ours = hvp(nodelib.odeint_adjoint, func, y0, t, v)
    direct = hvp(torchdiffeq.odeint, func, y0, t, v)
    assert rel(ours, direct) < 1e-8  # measured 1.2e-10


def test_gradient_penalty_matches_double_backprop():
    """d/dθ |dL/dy0|^2: differentiates the adjoint's y0-gradient with respect to the parameters."""
    func = TimeMLP()
    t = torch.tensor([0.0, 1.0])
    results = []
    for solver in (nodelib.odeint_adjoint, torchdiffeq.odeint):
        y0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        ys = solver(func, y0, t, rtol=1e-11, atol=1e-12)
        g, = torch.autograd.grad(ys[-1].pow(2).sum(), y0, create_graph=True)
        results.append(torch.autograd.grad(g.pow(2).sum(), list(func.parameters())))
    assert rel(results[0], results[1]) < 1e-9  # measured 5e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    func = TimeMLP()
    y0 = torch.randn(5, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    cpu = grads_all(nodelib.odeint_adjoint, func, y0, t, rtol=1e-10, atol=1e-10)
    gpu = grads_all(nodelib.odeint_adjoint, func.cuda(), y0.cuda(), t.cuda(), rtol=1e-10, atol=1e-10)
    assert rel([g.cpu() for g in gpu], cpu) < 1e-8


def test_the_first_gradient_can_be_differentiated_more_than_once():
    """A Hessian row by row: each row differentiates the same first gradient again."""
    func = TimeMLP()
    t = torch.tensor([0.0, 1.0])
    hessians = []
    for solve in (nodelib.odeint_adjoint, nodelib.odeint):
        z0 = torch.randn(1, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64).requires_grad_()
        loss = solve(func, z0, t, rtol=1e-10, atol=1e-12)[-1].pow(2).sum()
        (grad,) = torch.autograd.grad(loss, z0, create_graph=True)
        rows = [torch.autograd.grad(grad[0, i], z0, retain_graph=True)[0] for i in range(2)]
        hessians.append(torch.cat(rows))
    assert rel(hessians[0], hessians[1]) < 1e-7
