"""What torchdiffeq's own test suite (0.2.5: tests/gradient_tests.py, tests/norm_tests.py) asks of an
``odeint_adjoint``, asked of nodelib's: every method, gradcheck in y0 and t, times in float64 beside
a float32 state, adjoint norms in torchdiffeq's convention, unused parameters, norms that scale."""
import importlib

import pytest
import torch
from torch import nn

import nodelib
from nodelib.solve import ADAPTIVE_METHODS, FIXED_GRID_METHODS, SCIPY_METHODS

METHODS = FIXED_GRID_METHODS + ADAPTIVE_METHODS + SCIPY_METHODS


def test_every_method_of_torchdiffeq_is_accepted():
    peer = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
    assert set(peer) <= set(METHODS)


def line_problem():
    """dz/dt = a + (z - a t - b)³ from z(t0) = a t0 + b: the solution is the line z = a t + b, which
    every method follows exactly, and so do its first derivatives (∂f/∂z = 0 on the line)."""
    a, b = torch.tensor(0.7, requires_grad=True), torch.tensor(-1.2, requires_grad=True)
    t = torch.linspace(0.5, 3.0, 6, requires_grad=True)
    y0 = (a * t[0] + b).detach().reshape(1).requires_grad_(True)
    return y0, t, a, b


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_of_odeint_adjoint_in_state_time_and_parameters(method):
    def solve(y0, t, a, b):
        return nodelib.odeint_adjoint(lambda t, z: a + (z - a * t - b) ** 3, y0, t, method=method,
                                      adjoint_params=(a, b))

    assert torch.autograd.gradcheck(solve, line_problem())


@pytest.mark.parametrize("method", FIXED_GRID_METHODS + ADAPTIVE_METHODS)
def test_gradcheck_of_odeint_in_state_time_and_parameters(method):
    def solve(y0, t, a, b):
        return nodelib.odeint(lambda t, z: a + (z - a * t - b) ** 3, y0, t, method=method)

    assert torch.autograd.gradcheck(solve, line_problem())


def test_scipy_solver_is_refused_where_autograd_cannot_follow_it():
    y0, t, a, b = line_problem()
    field = lambda t, z: a + (z - a * t - b) ** 3  # noqa: E731
    with pytest.raises(ValueError, match="scipy_solver' runs outside autograd"):
        nodelib.odeint(field, y0, t, method="scipy_solver")
    with torch.no_grad():
        values = nodelib.odeint(field, y0, t, method="scipy_solver")
    assert torch.allclose(values.squeeze(1), a.detach() * t.detach() + b.detach(), atol=1e-9)


def test_scipy_backward_refuses_second_derivatives():
    y0, t, a, b = line_problem()
    zs = nodelib.odeint_adjoint(lambda t, z: a + (z - a * t - b) ** 3, y0, t, method="scipy_solver",
                                adjoint_params=(a, b))
    with pytest.raises(RuntimeError, match="adjoint_method='scipy_solver' runs outside autograd"):
        torch.autograd.grad(zs.sum(), y0, create_graph=True)


class Oscillating(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2), nn.Tanh())
        self.calls = 0

    def forward(self, t, x):
        self.calls += 1
        return self.net(x) * torch.sin(2 * t)


@pytest.mark.parametrize("solver", [nodelib.odeint, nodelib.odeint_adjoint])
def test_float64_times_beside_a_float32_state(solver):
    field = Oscillating()
    x0 = torch.tensor([1.0, 2.0])
    t = torch.tensor([0.0, 0.4, 1.0], requires_grad=True)
    seen = set()

    def field32(t_, x):
        seen.add(t_.dtype)
        return field(t_, x)

    reference = solver(field32, x0, t, adjoint_params=tuple(field.parameters())) if solver is nodelib.odeint_adjoint \
        else solver(field32, x0, t)
    (t64,) = torch.autograd.grad(reference.sum(), t)
    field.float()
    t.grad = None
    kwargs = dict(adjoint_params=tuple(field.parameters())) if solver is nodelib.odeint_adjoint else {}
    out = solver(field32, x0.float(), t, rtol=1e-6, atol=1e-7, **kwargs)
    (t32,) = torch.autograd.grad(out.sum(), t)
    assert out.dtype == torch.float32 and t32.dtype == torch.float64
    assert seen == {torch.float64, torch.float32}  # the field sees the time in its state's dtype
    assert torch.allclose(out.double(), reference, atol=1e-5)
    assert torch.allclose(t32, t64, atol=1e-4)


def test_seminorm_saves_backward_evaluations_with_float64_times_and_a_float32_state():
    field = Oscillating().float()
    x0, t = torch.tensor([1.0, 2.0], dtype=torch.float32), torch.tensor([0.0, 1.0], dtype=torch.float64)
    counts = []
    for options in (None, dict(norm="seminorm")):
        out = nodelib.odeint_adjoint(field, x0, t, rtol=1e-6, atol=1e-6, adjoint_options=options)
        field.calls = 0
        out.sum().backward()
        counts.append(field.calls)
    assert counts[1] < counts[0], counts


def test_a_larger_norm_never_takes_fewer_steps():
    counts, field = [], Oscillating()
    for scale in (1, 10):
        stats = nodelib.SolveStats()
        nodelib.odeint(field, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), stats=stats,
                       options=dict(norm=lambda e, s=scale: s * e.abs().max()))
        counts.append(stats.nfe_forward)
    assert counts[0] < counts[1], counts


def test_unused_parameters_get_zero_gradients_not_none():
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.A = nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))
            self.unused = nn.Linear(2, 5)

        def forward(self, t, y):
            return (y ** 3) @ self.A

    func = WithUnused()
    nodelib.odeint_adjoint(func, torch.tensor([[2.0, 0.0]]), torch.linspace(0, 2, 5)).sum().backward()
    assert func.A.grad.abs().sum() > 0
    assert torch.equal(func.unused.weight.grad, torch.zeros(5, 2))
    assert torch.equal(func.unused.bias.grad, torch.zeros(5))


@pytest.mark.parametrize("tuple_state", [False, True])
def test_adjoint_norm_in_torchdiffeq_convention(tuple_state):
    params = (torch.rand(7, requires_grad=True), torch.rand((), requires_grad=True))
    x0 = (torch.tensor(1.0), torch.tensor([[0.5, 0.5], [0.1, 0.1]])) if tuple_state else torch.tensor(1.0)
    shapes = [(), (2, 2)] if tuple_state else [()]
    seen = []

    def norm(blocks):
        seen.append(tuple(tuple(b.shape) for b in blocks))
        return max(b.abs().max() for b in blocks)

    def field(t, x):
        scale = 1 + params[0].sum() * params[1]
        return tuple(scale * xi for xi in x) if tuple_state else scale * x

    grads = []
    for options in (dict(norm=norm), None):
        out = nodelib.odeint_adjoint(field, x0, torch.tensor([0.0, 1.0]), adjoint_params=params, rtol=1e-9,
                                     atol=1e-11, adjoint_options=options)
        grads.append(torch.autograd.grad(sum(o.sum() for o in out) if tuple_state else out.sum(), params))
    assert seen and set(seen) == {((),) + tuple(shapes) * 2 + ((7,), ())}
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-7)


def test_an_adjoint_norm_of_unclear_convention_is_refused():
    with pytest.raises(ValueError, match=r"adjoint_options\['norm'\] must take either one argument"):
        nodelib.odeint_adjoint(lambda t, x: -x, torch.ones(2), torch.tensor([0.0, 1.0]), adjoint_params=(),
                               adjoint_options=dict(norm=lambda *blocks: blocks[0].abs().max()))
