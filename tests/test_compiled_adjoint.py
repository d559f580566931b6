"""odeint_adjoint(compiled=...) against the default odeint_adjoint and direct backpropagation, in float64.

The compiled path takes the default adjoint's steps in both solves (nodelib's own stepping, with the
augmented dynamics by torch.func), so gradients and counts must match the default's to rounding;
both must match direct backpropagation through the solver at tight tolerances.
"""
import re

import pytest
import torch

import nodelib

from fields import Linear, rel

SOLVERS = [dict(rtol=1e-8, atol=1e-8), dict(rtol=1e-5, atol=1e-5, adjoint_options=dict(norm="seminorm")),
           dict(method="rk4", options=dict(step_size=0.1))]
TIMES = [[0.0, 0.3, 0.5, 1.0], [1.0, 0.4, 0.0]]


@pytest.fixture
def mlp():
    return nodelib.MLPField(2, hidden=(16, 16))


def _gradients(func, times, compiled, **kwargs):
    """Gradients of a squared-error loss on every output, w.r.t. y0, t and the parameters, and the counts."""
    torch.manual_seed(1)
    y0, target = torch.randn(8, 2, requires_grad=True), torch.randn(len(times), 8, 2)
    t, stats = torch.tensor(times, requires_grad=True), nodelib.SolveStats()
    ys = nodelib.odeint_adjoint(func, y0, t, stats=stats, compiled=compiled, **kwargs)
    return torch.autograd.grad(((ys - target) ** 2).mean(), [y0, t, *func.parameters()]), stats


@pytest.mark.parametrize("times", TIMES)
@pytest.mark.parametrize("kwargs", SOLVERS)
def test_gradients_and_counts_match_the_default_adjoint(mlp, kwargs, times):
    ours, our_stats = _gradients(mlp, times, "eager", **kwargs)
    theirs, their_stats = _gradients(mlp, times, False, **kwargs)
    assert rel(ours, theirs) < 1e-9
    assert our_stats == their_stats  # the same steps forward and backward, rejected ones included
    assert our_stats.nfe_backward > 0


def test_checkpoints_and_a_linear_field_match_the_default_adjoint():
    field = Linear(torch.tensor([[-0.5, 1.0], [-1.0, -0.2]]))
    ours, our_stats = _gradients(field, [0.0, 2.0], "eager", rtol=1e-7, atol=1e-7, checkpoints=3)
    theirs, their_stats = _gradients(field, [0.0, 2.0], False, rtol=1e-7, atol=1e-7, checkpoints=3)
    assert rel(ours, theirs) < 1e-9
    assert our_stats == their_stats


def test_gradients_match_direct_backpropagation(mlp):
    def gradients(solver, **kwargs):
        torch.manual_seed(1)
        y0, target = torch.randn(8, 2, requires_grad=True), torch.randn(8, 2)
        z1 = solver(mlp, y0, torch.tensor([0.0, 1.0]), rtol=1e-12, atol=1e-12, **kwargs)[-1]
        return torch.autograd.grad(((z1 - target) ** 2).mean(), [y0, *mlp.parameters()])

    assert rel(gradients(nodelib.odeint_adjoint, compiled="eager"), gradients(nodelib.odeint)) < 1e-9


def test_the_compiled_step_gives_the_eager_gradients():
    """torch.compile of both solves' steps (tens of seconds on a small CPU: two graphs)."""
    field = nodelib.MLPField(2, hidden=(8,))
    ours, our_stats = _gradients(field, [0.0, 1.0], True, rtol=1e-6, atol=1e-6)
    theirs, their_stats = _gradients(field, [0.0, 1.0], "eager", rtol=1e-6, atol=1e-6)
    assert rel(ours, theirs) < 1e-12
    assert our_stats == their_stats


@pytest.mark.parametrize("kwargs", [
    dict(rtol=-1.0), dict(method="dopri9"), dict(options=dict(step_size=0.1)),
    dict(adjoint_options=dict(norm="euclid")), dict(checkpoints=-1), dict(adjoint_params=[torch.ones(2)]),
    dict(t=torch.tensor([0.0, 1.0, 0.5]))])
def test_bad_input_raises_the_default_adjoints_error(mlp, kwargs):
    kwargs = dict(dict(t=torch.tensor([0.0, 1.0])), **kwargs)
    with pytest.raises((TypeError, ValueError)) as expected:
        nodelib.odeint_adjoint(mlp, torch.zeros(4, 2), **kwargs)
    with pytest.raises(expected.type, match=f"^{re.escape(str(expected.value))}$"):
        nodelib.odeint_adjoint(mlp, torch.zeros(4, 2), compiled="eager", **kwargs)


@pytest.mark.parametrize("kwargs, error", [
    (dict(method="bosh3"), "compiled=False"), (dict(adjoint_method="euler"), "adjoint_method="),
    (dict(options=dict(jump_t=torch.tensor([0.5]))), "compiled=False"),
    (dict(adjoint_params=[torch.ones(2, dtype=torch.float64, requires_grad=True)]),
     "functional_call"),
    (dict(compiled="yes"), "compiled must be"), (dict(compiled=1.0), "compiled must be")])
def test_what_the_compiled_path_does_not_do_is_refused(mlp, kwargs, error):
    kwargs = dict(dict(compiled="eager"), **kwargs)
    with pytest.raises(ValueError, match=re.escape(error)):
        nodelib.odeint_adjoint(mlp, torch.zeros(4, 2), torch.tensor([0.0, 1.0]), **kwargs)
    with pytest.raises(TypeError, match="tensor state"):
        nodelib.odeint_adjoint(mlp, (torch.zeros(4, 2),), torch.tensor([0.0, 1.0]), compiled="eager")


def test_second_derivatives_are_refused(mlp):
    y0 = torch.zeros(4, 2, requires_grad=True)
    z1 = nodelib.odeint_adjoint(mlp, y0, torch.tensor([0.0, 1.0]), compiled="eager")[-1]
    with pytest.raises(RuntimeError, match="compiled=False"):
        torch.autograd.grad(z1.sum(), y0, create_graph=True)
