"""Bad input to odeint_adjoint and odeint: a clear error that names the argument, never a hang."""
import math
import time

import pytest
import torch
from torch import nn

import nodelib
from fields import TimeMLP

SOLVERS = [nodelib.odeint_adjoint, nodelib.odeint]


@pytest.fixture
def problem():
    return TimeMLP(), torch.randn(3, 2), torch.tensor([0.0, 1.0])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("t,match", [
    ([[0.0, 1.0]], "t must be a 1-D tensor"),
    ([0.0], "at least two times"),
    ([0.0, 1.0, 0.5], "strictly increasing or strictly decreasing"),
    ([0.0, 0.0, 1.0], "strictly increasing or strictly decreasing"),
    ([0.0, float("nan")], "t must be finite"),
])
def test_bad_times(solver, problem, t, match):
    func, y0, _ = problem
    with pytest.raises(ValueError, match=match):
        solver(func, y0, torch.tensor(t))


@pytest.mark.parametrize("solver", SOLVERS)
def test_time_dtype_mismatch(solver, problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match=r"t has dtype torch.float32 but y0 has dtype torch.float64"):
        solver(func, y0, t.float())


@pytest.mark.parametrize("solver", SOLVERS)
def test_time_device_mismatch(solver, problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match=r"t is on meta but y0 is on cpu"):
        solver(func, y0, t.to("meta"))


@pytest.mark.parametrize("solver", SOLVERS)
def test_parameter_dtype_mismatch(solver, problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match=r"func.parameters\(\)\[0\] has dtype torch.float32 but y0"):
        solver(func.float(), y0, t)


@pytest.mark.parametrize("solver", SOLVERS)
def test_field_returning_wrong_shape(solver, problem):
    _, y0, t = problem

    class Wrong(nn.Module):
        def forward(self, t, z):
            return z[:, :1]

    with pytest.raises(ValueError, match=r"func\(t, y\) returned shape \(3, 1\) but y has shape \(3, 2\)"):
        solver(Wrong(), y0, t)


@pytest.mark.parametrize("solver", SOLVERS)
def test_non_finite_initial_state(solver, problem):
    func, y0, t = problem
    y0[0, 0] = float("inf")
    with pytest.raises(ValueError, match="y0 must be finite"):
        solver(func, y0, t)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.01))])
def test_blow_up_is_an_error_not_a_hang(solver, method, options):
    """dz/dt = z^2 from z0 = 1 blows up at t = 1."""

    class Square(nn.Module):
        def forward(self, t, z):
            return z ** 2

    with pytest.raises(nodelib.SolverError, match=r"underflow|non-finite|not finite|max_num_steps"):
        solver(Square(), torch.ones(1), torch.tensor([0.0, 2.0]), method=method, options=options)


@pytest.mark.parametrize("solver", SOLVERS)
def test_too_many_steps(solver):
    """A stiff problem at tight tolerance needs more than a handful of steps."""

    class Stiff(nn.Module):
        def forward(self, t, z):
            return -1000.0 * (z - torch.cos(t))

    with pytest.raises(nodelib.SolverError, match=r"more than options\['max_num_steps'\]=20"):
        solver(Stiff(), torch.zeros(1), torch.tensor([0.0, 1.0]), options=dict(max_num_steps=20))


@pytest.mark.parametrize("solver", SOLVERS)
def test_fixed_grid_too_long_is_refused_before_starting(solver, problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match=r"needs 1000000 steps"):
        solver(func, y0, t, method="rk4", options=dict(step_size=1e-6))


@pytest.mark.parametrize("solver", SOLVERS)
def test_unknown_method_and_option(solver, problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match="method='rk45' is not supported"):
        solver(func, y0, t, method="rk45")
    with pytest.raises(ValueError, match=r"options has keys \['step_size'\] that method='dopri5' does not take"):
        solver(func, y0, t, options=dict(step_size=0.1))


def test_function_without_adjoint_params_is_refused(problem):
    _, y0, t = problem
    W = torch.randn(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match="func is not an nn.Module.*adjoint_params"):
        nodelib.odeint_adjoint(lambda t, z: z @ W, y0, t)
    # with adjoint_params the gradient reaches W: dz/dt = zW, z(1) = z0 exp(W)
    zT = nodelib.odeint_adjoint(lambda t, z: z @ W, y0, t, adjoint_params=(W,), rtol=1e-10, atol=1e-10)[-1]
    got, = torch.autograd.grad(zT.sum(), W)
    W_ref = W.detach().clone().requires_grad_(True)
    ref, = torch.autograd.grad((y0 @ torch.linalg.matrix_exp(W_ref)).sum(), W_ref)
    assert torch.allclose(got, ref, rtol=1e-8, atol=1e-10)


def test_bad_adjoint_arguments(problem):
    func, y0, t = problem
    with pytest.raises(ValueError, match=r"adjoint_options\['norm'\] must be"):
        nodelib.odeint_adjoint(func, y0, t, adjoint_options=dict(norm="l1"))
    with pytest.raises(ValueError, match="checkpoints must be a non-negative int"):
        nodelib.odeint_adjoint(func, y0, t, checkpoints=-1)
    with pytest.raises(ValueError, match="adjoint_rtol must be a non-negative float"):
        nodelib.odeint_adjoint(func, y0, t, adjoint_rtol=-1.0)
    with pytest.raises(ValueError, match="checkpoints must be a non-negative int, got True"):
        nodelib.odeint_adjoint(func, y0, t, checkpoints=True)


def test_fixed_grid_adjoint_options_are_not_silently_dropped(problem):
    """An explicit adjoint_options replaces the forward options: a fixed-grid backward solve must not
    lose the step size (it would take one step per interval) or accept an error norm it cannot use."""
    func, y0, t = problem
    rk4 = dict(method="rk4", options=dict(step_size=0.01))
    with pytest.raises(ValueError, match=r"adjoint_options\['norm'\] applies to adaptive methods only"):
        nodelib.odeint_adjoint(func, y0, t, adjoint_options=dict(norm="seminorm", step_size=0.01), **rk4)
    with pytest.raises(ValueError, match=r"adjoint_options has no 'step_size'.*steps of 0.01"):
        nodelib.odeint_adjoint(func, y0, t, adjoint_options=dict(perturb=False), **rk4)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(rtol=0.0, atol=0.0), ValueError, r"rtol and atol are both 0"),
    (dict(rtol=True), ValueError, r"rtol must be a non-negative float, got True"),
    (dict(options=5), TypeError, r"options must be a dict or None, got int"),
    (dict(options="ab"), TypeError, r"options must be a dict or None, got str"),
    (dict(options=dict(max_num_steps=True)), ValueError, r"options\['max_num_steps'\] must be a positive int"),
    (dict(options=dict(first_step=0.0)), ValueError, r"options\['first_step'\] must be a positive float"),
    (dict(options=dict(max_step=-1.0)), ValueError, r"options\['max_step'\] must be a positive float"),
    (dict(options=dict(min_step=-1.0)), ValueError, r"options\['min_step'\] must be a non-negative float"),
    (dict(options=dict(norm="seminorm")), ValueError, r"options\['norm'\] must be a callable.*adjoint_options"),
    (dict(method="rk4", options=dict(step_size=float("inf"))), ValueError,
     r"options\['step_size'\] must be a positive float"),
])
def test_bad_solver_arguments_name_the_argument(solver, problem, kwargs, error, match):
    func, y0, t = problem
    with pytest.raises(error, match=match):
        solver(func, y0, t, **kwargs)


class ShapeChanging(nn.Module):
    """A field whose output is right at the first call and broadcastable but wrong from the call ``bad_from``."""

    def __init__(self, bad_from):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(-1.0))
        self.bad_from, self.calls = bad_from, 0

    def forward(self, t, z):
        self.calls += 1
        out = self.scale * z
        return out[:1] if self.calls >= self.bad_from else out


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_field_whose_output_shape_changes_later_is_caught(solver):
    with pytest.raises(ValueError, match=r"func\(t, y\) returned shape \(1, 2\) but y has shape \(3, 2\)"):
        solver(ShapeChanging(bad_from=5), torch.randn(3, 2), torch.tensor([0.0, 1.0]))


def test_a_field_whose_output_shape_changes_in_the_backward_pass_is_caught():
    field, z0 = ShapeChanging(bad_from=10 ** 6), torch.randn(3, 2, requires_grad=True)
    zs = nodelib.odeint_adjoint(field, z0, torch.tensor([0.0, 1.0]))
    field.bad_from = field.calls + 1
    with pytest.raises(ValueError, match=r"func\(t, y\) returned shape \(1, 2\) but y has shape \(3, 2\)"):
        zs.sum().backward()


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_stiff_problem_fails_within_a_thousand_steps(solver):
    """dz/dt = -1e8 (z - cos t): dopri5's stability bound keeps its steps near 3e-8, about 3e7 steps
    over [0, 1]. The cap of 100,000 steps would stop it after about a minute; the stiffness guard
    stops it within 1,000 steps, naming the time reached and the step size, suggesting an implicit method."""

    class VeryStiff(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, t, z):
            self.calls += 1
            return -1e8 * (z - torch.cos(t))

    field = VeryStiff()
    start = time.perf_counter()
    with pytest.raises(nodelib.SolverError, match=r"looks stiff\. At t=\S+ .*steps of about \S+.*about 3\.\de\+07 "
                                                  r"steps.*method='scipy_solver'") as error:
        solver(field, torch.zeros(1), torch.tensor([0.0, 1.0]))
    assert field.calls <= 6 * 1000 + 2, field.calls  # dopri5: 6 evaluations a step
    assert time.perf_counter() - start < 5, str(error.value)


def test_the_stiffness_guard_leaves_a_long_non_stiff_solve_alone():
    """A fast oscillation over many periods needs many steps, all of the same size: not stiffness."""
    stats = nodelib.SolveStats()
    zs = nodelib.odeint(lambda t, z: torch.stack([z[1], -400.0 * z[0]]), torch.tensor([1.0, 0.0]),
                        torch.tensor([0.0, 40.0]), rtol=1e-8, atol=1e-10, stats=stats)
    assert stats.steps_forward > 2000
    assert torch.allclose(zs[-1, 0], torch.cos(torch.tensor(800.0)), atol=1e-5)


def test_stiff_problems_are_solved_by_scipys_implicit_methods():
    t = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        z1 = nodelib.odeint(lambda t, z: -1e8 * (z - torch.cos(t)), torch.zeros(1), t, method="scipy_solver",
                            options=dict(solver="BDF"))[-1]
    assert abs(float(z1) - math.cos(1.0)) < 1e-6  # z follows cos t within 1e-8 after the first 1e-7 s


def test_adjoint_params_may_be_one_tensor():
    W = torch.randn(2, 2, requires_grad=True)
    z0, t = torch.randn(3, 2), torch.tensor([0.0, 1.0])
    zT = nodelib.odeint_adjoint(lambda t, z: z @ W, z0, t, adjoint_params=W, rtol=1e-10, atol=1e-12)[-1]
    (got,) = torch.autograd.grad(zT.sum(), W)
    W_ref = W.detach().clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((z0 @ torch.linalg.matrix_exp(W_ref)).sum(), W_ref)
    assert got.abs().sum() > 0 and torch.allclose(got, ref, rtol=1e-8, atol=1e-10)


def test_torch_func_transforms_are_refused_with_a_clear_error():
    t = torch.tensor([0.0, 1.0])
    solve = lambda z: nodelib.odeint_adjoint(lambda t, y: -y, z, t, adjoint_params=())[-1].sum()  # noqa: E731
    with pytest.raises(RuntimeError, match=r"does not support torch\.func transforms \(vmap, grad"):
        torch.func.vmap(solve)(torch.ones(3, 2))
    with pytest.raises(RuntimeError, match=r"does not support torch\.func transforms"):
        torch.func.grad(solve)(torch.ones(2))

