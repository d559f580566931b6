"""nodelib.odeint_adjoint against independent references: closed forms, direct backprop,
torchdiffeq's adjoint and finite differences."""
import pytest
import torch
import torchdiffeq
from torch import nn

import nodelib
from fields import Linear, TimeMLP, rel

TIGHT = dict(rtol=1e-11, atol=1e-12)


def loss_on_all(ys):
    """A loss that depends on every observation time, nonlinearly."""
    return (ys ** 2).sum() + ys[1:].sin().sum()


def gradients(solver, func, y0, t, **kw):
    y0 = y0.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    ys = solver(func, y0, t, **kw)
    return torch.autograd.grad(loss_on_all(ys), (y0, t, *func.parameters()))


def test_linear_ode_matches_matrix_exponential():
    """dz/dt = Az: z(T) = exp(AT) z0, so every gradient follows from autograd through matrix_exp."""
    A = torch.randn(3, 3) * 0.5
    z0 = torch.randn(4, 3)
    w = torch.randn(4, 3)
    T = 1.3

    field = Linear(A.clone())
    y0 = z0.clone().requires_grad_(True)
    t = torch.tensor([0.0, T], requires_grad=True)
    zT = nodelib.odeint_adjoint(field, y0, t, **TIGHT)[-1]
    got = torch.autograd.grad((w * zT).sum(), (y0, field.A, t))

    A_ref = A.clone().requires_grad_(True)
    y0_ref = z0.clone().requires_grad_(True)
    T_ref = torch.tensor(T, requires_grad=True)
    zT_ref = y0_ref @ torch.linalg.matrix_exp(A_ref * T_ref).T
    dy0, dA, dT = torch.autograd.grad((w * zT_ref).sum(), (y0_ref, A_ref, T_ref))

    assert rel(zT, zT_ref) < 1e-10
    assert rel(got[0], dy0) < 1e-9
    assert rel(got[1], dA) < 1e-9
    assert abs(float(got[2][1] - dT)) < 1e-9 * abs(float(dT))
    assert abs(float(got[2][0] + dT)) < 1e-9 * abs(float(dT))  # autonomous: moving t0 is moving t1 back


@pytest.mark.parametrize("reverse", [False, True])
def test_matches_direct_backprop_on_many_times(reverse):
    func = TimeMLP()
    y0 = torch.randn(5, 2)
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.4])
    if reverse:
        t = t.flip(0)
    ours = gradients(nodelib.odeint_adjoint, func, y0, t, **TIGHT)
    direct = gradients(torchdiffeq.odeint, func, y0, t, rtol=1e-13, atol=1e-13)
    for g, r in zip(ours, direct):
        assert rel(g, r) < 1e-8


def test_matches_torchdiffeq_adjoint():
    func = TimeMLP()
    y0 = torch.randn(7, 2)
    t = torch.linspace(0.0, 1.0, 6)
    ours = gradients(nodelib.odeint_adjoint, func, y0, t, **TIGHT)
    peer = gradients(torchdiffeq.odeint_adjoint, func, y0, t, **TIGHT)
    assert rel(ours, peer) < 1e-9


def test_gradcheck_against_finite_differences():
    """Every input at once (y0, t and the field's tensors, passed as adjoint_params)."""
    W1, b1, W2 = torch.randn(3, 4) * 0.5, torch.randn(4) * 0.1, torch.randn(4, 2) * 0.5

    def solve(y0, t, W1, b1, W2):
        def field(s, z):
            return torch.tanh(torch.cat([z, s.expand(z.shape[0], 1)], 1) @ W1 + b1) @ W2
        return nodelib.odeint_adjoint(field, y0, t, adjoint_params=(W1, b1, W2), rtol=1e-12, atol=1e-12)

    inputs = (torch.randn(2, 2), torch.tensor([0.0, 0.4, 1.0]), W1, b1, W2)
    inputs = tuple(x.clone().requires_grad_(True) for x in inputs)
    assert torch.autograd.gradcheck(solve, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_float32_agrees_with_float64_reference():
    func = TimeMLP()
    y0 = torch.randn(5, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    ref = gradients(torchdiffeq.odeint, func, y0, t, rtol=1e-12, atol=1e-12)
    func32 = func.to(torch.float32)
    got = gradients(nodelib.odeint_adjoint, func32, y0.float(), t.float(), rtol=1e-6, atol=1e-7)
    assert all(g.dtype == torch.float32 for g in got)
    assert rel([g.double() for g in got], ref) < 1e-4


def test_state_of_any_shape():
    """A (2, 3, 4) state: the field acts on the last axis, so the batch axes must not mix."""
    W = torch.randn(4, 4) * 0.3

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.W = nn.Parameter(W.clone())

        def forward(self, t, z):
            return torch.tanh(z @ self.W)

    y0 = torch.randn(2, 3, 4)
    t = torch.tensor([0.0, 0.7])
    ours = gradients(nodelib.odeint_adjoint, Field(), y0, t, **TIGHT)
    direct = gradients(torchdiffeq.odeint, Field(), y0, t, rtol=1e-13, atol=1e-13)
    assert ours[0].shape == (2, 3, 4)
    assert rel(ours, direct) < 1e-8


def test_module_without_parameters_gives_state_and_time_gradients():
    class Rotation(nn.Module):
        def forward(self, t, z):
            return torch.stack([-z[..., 1], z[..., 0]], dim=-1)

    theta = 0.9
    y0 = torch.tensor([[1.0, 0.5]], requires_grad=True)
    t = torch.tensor([0.0, theta], requires_grad=True)
    zT = nodelib.odeint_adjoint(Rotation(), y0, t, **TIGHT)[-1]
    gy0, gt = torch.autograd.grad(zT[0, 0], (y0, t))
    # z(T) = R(T) z0 with R the rotation by T: d z_x(T) / d z0 = (cos T, -sin T)
    expected = torch.tensor([[torch.cos(torch.tensor(theta)), -torch.sin(torch.tensor(theta))]])
    assert rel(gy0, expected) < 1e-10
    # d z_x(T) / dT = f_x(z(T)) = -z_y(T)
    assert abs(float(gt[1] + zT[0, 1].detach())) < 1e-10


def test_stats_count_every_evaluation():
    func = TimeMLP()
    y0 = torch.randn(3, 2, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0])
    stats = nodelib.SolveStats()
    ys = nodelib.odeint_adjoint(func, y0, t, stats=stats)
    forward_calls = func.calls
    ys.sum().backward()
    assert stats.nfe_forward == forward_calls > 0
    assert stats.nfe_backward == func.calls - forward_calls > 0
    stats.reset()
    assert stats.nfe_forward == stats.nfe_backward == 0


def test_seminorm_saves_evaluations_at_the_same_accuracy():
    func = TimeMLP(hidden=32)
    y0 = torch.randn(64, 2)
    t = torch.tensor([0.0, 2.0])
    ref = gradients(torchdiffeq.odeint, func, y0, t, rtol=1e-12, atol=1e-12)
    counts, errors = {}, {}
    for norm in ("mixed", "seminorm"):
        stats = nodelib.SolveStats()
        got = gradients(nodelib.odeint_adjoint, func, y0, t, rtol=1e-6, atol=1e-8,
                        adjoint_options=dict(norm=norm), stats=stats)
        counts[norm], errors[norm] = stats.nfe_backward, rel(got, ref)
    assert counts["seminorm"] < counts["mixed"]
    assert errors["seminorm"] < 1e-5 and errors["mixed"] < 1e-5


@pytest.mark.parametrize("method,options", [("rk4", dict(step_size=0.01)), ("dopri5", None)])
def test_checkpoints_keep_the_peer_adjoints_gradient(method, options):
    """Against torchdiffeq's adjoint, not direct backprop: on a fixed grid, direct backprop
    differentiates the linear interpolation at t = 0.3 (off the grid in floating point), whose time
    gradient is not f (measured 3% apart)."""
    func = TimeMLP()
    y0 = torch.randn(4, 2)
    t = torch.tensor([0.0, 0.3, 1.0])
    kw = dict(method=method, options=options, **TIGHT)
    peer = gradients(torchdiffeq.odeint_adjoint, func, y0, t, **kw)
    checked = gradients(nodelib.odeint_adjoint, func, y0, t, checkpoints=7, **kw)
    assert rel(checked, peer) < 1e-9  # measured 1e-14 (rk4), 5e-11 (dopri5)


def test_fixed_grid_checkpoints_stay_inside_the_interval():
    """A step that does not divide [t0, t1]: checkpoints snapped onto the solver's grid must not land
    beyond t1 (where the solve would then end past t1 and interpolate back), so the forward result is
    torchdiffeq's, bit for bit, and the gradient matches torchdiffeq's adjoint on the same grid."""
    func = TimeMLP()
    y0 = torch.randn(4, 2)
    t = torch.tensor([0.0, 1.0])
    kw = dict(method="rk4", options=dict(step_size=1 / 3.6))
    direct = torchdiffeq.odeint(func, y0, t, **kw)
    peer = gradients(torchdiffeq.odeint_adjoint, func, y0, t, **kw)
    for checkpoints in (7, 100):
        ours = nodelib.odeint_adjoint(func, y0, t, checkpoints=checkpoints, **kw)
        assert torch.equal(ours.detach(), direct.detach())
        got = gradients(nodelib.odeint_adjoint, func, y0, t, checkpoints=checkpoints, **kw)
        assert rel(got, peer) < 1e-6  # the restarts change the backward solve by O(h^4): measured 7e-8
def test_fixed_grid_adjoint_is_exact_gradient_of_nothing_but_the_ode():
    """rk4 with the same grid forwards and backwards: agrees with direct backprop to O(h^4)."""
    func = TimeMLP()
    y0 = torch.randn(4, 2)
    t = torch.tensor([0.0, 1.0])
    ours = gradients(nodelib.odeint_adjoint, func, y0, t, method="rk4", options=dict(step_size=1e-2))
    direct = gradients(torchdiffeq.odeint, func, y0, t, method="rk4", options=dict(step_size=1e-2))
    assert rel(ours, direct) < 1e-7
