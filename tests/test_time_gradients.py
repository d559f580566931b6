"""Gradients with respect to the observation times, eq. (time-gradients), on every method.

For dz/dt = f(t, z): ∂z(t_i)/∂t_i = f(t_i, z(t_i)) and ∂z(t_i)/∂t_0 = -(∂z(t_i)/∂z_0) f(t_0, z_0).
References: closed forms, central finite differences of tight solves, and odeint_adjoint.
"""
import math

import pytest
import torch

import nodelib
from nodelib.solve import ADAPTIVE_METHODS, FIXED_GRID_METHODS
from fields import TimeMLP

T = [0.0, 0.3, 1.0]
#: a fine grid for each fixed-grid method, and the tolerance of each adaptive one
STEP = {"euler": 1e-4, "midpoint": 1e-3, "heun2": 1e-3, "heun3": 1e-2, "rk4": 1e-2, "explicit_adams": 1e-2,
        "implicit_adams": 1e-2, "fixed_adams": 1e-2}
RTOL = {"dopri5": 1e-10, "dopri8": 1e-10, "bosh3": 1e-9, "fehlberg2": 1e-7, "adaptive_heun": 1e-7}


def test_every_method_has_a_case():
    assert (set(STEP), set(RTOL)) == (set(FIXED_GRID_METHODS), set(ADAPTIVE_METHODS))


@pytest.mark.parametrize("method", FIXED_GRID_METHODS + ADAPTIVE_METHODS)
@pytest.mark.parametrize("solver", [nodelib.odeint, nodelib.odeint_adjoint])
def test_time_gradients_of_exponential_decay_match_the_closed_form(solver, method):
    # z(t) = exp(-(t - t0)); L = z(t1) + 2 z(t2). The gradients are f at the computed states, so they
    # may be off by as much as the states are: the bound is the solve's own error, measured.
    t = torch.tensor(T, requires_grad=True)
    kwargs = (dict(options=dict(step_size=STEP[method])) if method in STEP
              else dict(rtol=RTOL[method], atol=RTOL[method] * 1e-2))
    extra = {} if solver is nodelib.odeint else dict(adjoint_params=())
    z = solver(lambda t, z: -z, torch.ones(1), t, method=method, **kwargs, **extra)
    (z[1] + 2 * z[2]).sum().backward()
    state_error = float((z.detach().squeeze(1) - torch.exp(-torch.tensor(T))).abs().max())
    e1, e2 = math.exp(-0.3), math.exp(-1.0)
    exact = torch.tensor([e1 + 2 * e2, -e1, -2 * e2])
    assert state_error < 1e-4
    assert float((t.grad - exact).abs().max()) <= 4 * state_error + 1e-12, (t.grad, exact, state_error)


def test_direct_time_gradients_match_finite_differences_on_a_non_autonomous_field():
    field = TimeMLP()
    z0 = torch.randn(3, 2)
    t = torch.tensor([0.1, 0.4, 0.9, 1.3], requires_grad=True)
    weights = torch.randn(4, 3, 2)
    solve = dict(rtol=1e-11, atol=1e-13)

    def loss(times):
        return (nodelib.odeint(field, z0, times, **solve) * weights).sum()

    loss(t).backward()
    h = 1e-5
    fd = torch.stack([(loss(t.detach() + h * e) - loss(t.detach() - h * e)) / (2 * h) for e in torch.eye(4)])
    assert torch.allclose(t.grad, fd, rtol=1e-6, atol=1e-7), (t.grad, fd)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.01))])
def test_direct_and_adjoint_time_gradients_agree(method, options):
    field = TimeMLP()
    z0 = torch.randn(3, 2)
    weights = torch.randn(4, 3, 2)
    grads = []
    for solver in (nodelib.odeint, nodelib.odeint_adjoint):
        t = torch.tensor([0.0, 0.2, 0.7, 1.0], requires_grad=True)
        (solver(field, z0, t, method=method, options=options, rtol=1e-10, atol=1e-12) * weights).sum().backward()
        grads.append(t.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-7, atol=1e-9), grads


def test_second_derivatives_in_time_are_exact():
    # dz/dt = t z: z(t1) = z0 exp((t1² - t0²)/2); d²z/dt1² = (1 + t1²) z, d²z/dt1 dz0 = t1 exp(...)
    t = torch.tensor([0.2, 0.8], requires_grad=True)
    z0 = torch.tensor([1.5], requires_grad=True)
    z1 = nodelib.odeint(lambda t, z: t * z, z0, t, rtol=1e-11, atol=1e-13)[1].sum()
    (dt,) = torch.autograd.grad(z1, t, create_graph=True)
    d2_t1, d2_t1_z0 = torch.autograd.grad(dt[1], (t, z0))
    growth = math.exp((0.8 ** 2 - 0.2 ** 2) / 2)
    assert math.isclose(dt[1].item(), 0.8 * 1.5 * growth, rel_tol=1e-9)
    assert math.isclose(float(d2_t1[1]), (1 + 0.8 ** 2) * 1.5 * growth, rel_tol=1e-8)
    assert math.isclose(float(d2_t1_z0), 0.8 * growth, rel_tol=1e-8)


def test_time_gradients_cost_two_evaluations_per_time_and_only_when_asked():
    stats = nodelib.SolveStats()
    t = torch.tensor([0.0, 0.5, 1.0])
    nodelib.odeint(lambda t, z: -z, torch.ones(2), t, method="rk4", options=dict(step_size=0.1), stats=stats)
    without = stats.nfe_forward
    stats.reset()
    nodelib.odeint(lambda t, z: -z, torch.ones(2), t.requires_grad_(), method="rk4", options=dict(step_size=0.1),
                   stats=stats)
    assert (without, stats.nfe_forward) == (40, 46)
