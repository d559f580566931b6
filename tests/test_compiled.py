"""odeint_compiled against torchdiffeq 0.2.5 (the independent reference) and nodelib.odeint, in float64.

The self-stepping solver must take torchdiffeq's steps: the same outputs to rounding, the same
evaluation counts, the same gradients by direct backpropagation, and nodelib's errors for bad input.
"""
import math
import re

import pytest
import torch
import torchdiffeq

import nodelib
from nodelib.compiled import odeint_compiled

from fields import rel

SOLVERS = [("dopri5", dict(rtol=1e-8, atol=1e-8)), ("dopri5", dict(rtol=1e-5, atol=1e-5)),
           ("rk4", dict(options=dict(step_size=0.1)))]
TIMES = [[0.0, 0.3, 0.5, 1.0], [1.0, 0.4, 0.0]]  # output times between steps, and a solve backwards in time


def decay(t, z):
    return -z


@pytest.fixture
def mlp():
    return nodelib.MLPField(2, hidden=(64, 64))


def _rel_per_time(ys, ref):
    return max(rel(y, r) for y, r in zip(ys, ref))


@pytest.mark.parametrize("times", TIMES)
@pytest.mark.parametrize("method, kwargs", SOLVERS)
def test_states_and_counts_match_torchdiffeq(mlp, method, kwargs, times):
    y0, t = torch.randn(64, 2), torch.tensor(times)
    for func in (mlp, decay):
        ours, theirs = nodelib.SolveStats(), nodelib.SolveStats()
        ys = odeint_compiled(func, y0, t, method=method, stats=ours, **kwargs)
        nodelib.odeint(func, y0, t, method=method, stats=theirs, **kwargs)
        assert _rel_per_time(ys, torchdiffeq.odeint(func, y0, t, method=method, **kwargs)) < 1e-12
        assert ours == theirs  # evaluations and steps, rejected steps included


def test_decay_matches_the_closed_form():
    t = torch.linspace(0, 2, 5)
    ys = odeint_compiled(decay, torch.ones(3), t, rtol=1e-10, atol=1e-10)
    assert rel(ys, torch.exp(-t)[:, None].expand(5, 3)) < 1e-8


def test_rejected_steps_are_retaken_as_torchdiffeq_does():
    times = []  # when an attempt is rejected, the next one starts over: the evaluation times go back

    def field(t, z):  # a fast transient, entered with too large a first step
        times.append(float(t))
        return -50 * (z - torch.cos(t))

    y0, t, kwargs = torch.tensor([3.0]), torch.tensor([0.0, 0.5, 1.0]), dict(rtol=1e-6, atol=1e-6)
    ours, theirs = nodelib.SolveStats(), nodelib.SolveStats()
    ys = odeint_compiled(field, y0, t, options=dict(first_step=0.5), stats=ours, **kwargs)
    assert any(b < a for a, b in zip(times, times[1:]))
    nodelib.odeint(field, y0, t, options=dict(first_step=0.5), stats=theirs, **kwargs)
    assert rel(ys, torchdiffeq.odeint(field, y0, t, options=dict(first_step=0.5), **kwargs)) < 1e-12
    assert ours == theirs


@pytest.mark.parametrize("times", TIMES)
@pytest.mark.parametrize("method, kwargs", SOLVERS)
def test_gradients_match_direct_backpropagation(mlp, method, kwargs, times):
    y0, target = torch.randn(64, 2), torch.randn(len(times), 64, 2)

    def gradients(solver):
        z, t = y0.clone().requires_grad_(True), torch.tensor(times, requires_grad=True)
        loss = ((solver(mlp, z, t, method=method, **kwargs) - target) ** 2).mean()
        return torch.autograd.grad(loss, [z, t, *mlp.parameters()])

    assert rel(gradients(odeint_compiled), gradients(nodelib.odeint)) < 1e-10


def test_an_empty_batch_gives_an_empty_result(mlp):
    ys = odeint_compiled(mlp, torch.zeros(0, 2), torch.tensor([0.0, 1.0]))
    assert ys.shape == (2, 0, 2)


def _bad_inputs(mlp):
    t, y0 = torch.tensor([0.0, 1.0]), torch.zeros(4, 2)
    return [
        dict(func=3, y0=y0, t=t),
        dict(func=mlp, y0=torch.zeros(4, 2, dtype=torch.int64), t=t),
        dict(func=mlp, y0=torch.full((4, 2), math.nan), t=t),
        dict(func=mlp, y0=y0, t=[0.0, 1.0]),
        dict(func=mlp, y0=y0, t=torch.tensor([[0.0, 1.0]])),
        dict(func=mlp, y0=y0, t=torch.tensor([0.0, 1.0, 0.5])),
        dict(func=mlp, y0=y0, t=t.float()),
        dict(func=nodelib.MLPField(2, hidden=(4,)).float(), y0=y0, t=t),
        dict(func=mlp, y0=y0, t=t, method="dopri9"),
        dict(func=mlp, y0=y0, t=t, rtol=-1.0),
        dict(func=mlp, y0=y0, t=t, rtol=0.0, atol=0.0),
        dict(func=mlp, y0=y0, t=t, options=dict(step_size=0.1)),
        dict(func=mlp, y0=y0, t=t, options=[("first_step", 0.1)]),
        dict(func=mlp, y0=y0, t=t, method="rk4", options=dict(step_size=1e-6, max_num_steps=10)),
        dict(func=lambda t, z: z[:, :1], y0=y0, t=t),
        dict(func=lambda t, z: z.float(), y0=y0, t=t),
    ]


@pytest.mark.parametrize("case", range(16))
def test_bad_input_raises_nodelib_odeints_error(mlp, case):
    kwargs = _bad_inputs(mlp)[case]
    with pytest.raises((TypeError, ValueError)) as expected:
        nodelib.odeint(**kwargs)
    with pytest.raises(expected.type, match=f"^{re.escape(str(expected.value))}$"):
        odeint_compiled(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(method="bosh3"), dict(method="rk4", options=dict(interp="cubic")),
                                    dict(options=dict(jump_t=torch.tensor([0.5])))])
def test_what_it_does_not_do_is_refused(kwargs):
    with pytest.raises(ValueError, match="odeint_compiled"):
        odeint_compiled(decay, torch.ones(2), torch.tensor([0.0, 1.0]), **kwargs)
    with pytest.raises(TypeError, match="tensor state"):
        odeint_compiled(decay, (torch.ones(2),), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("kwargs", [dict(func=lambda t, z: z ** 2, end=2.0),  # blows up at t = 1
                                    dict(func=decay, end=1.0, options=dict(max_num_steps=2), rtol=1e-10,
                                         atol=1e-10)])
def test_the_step_guards_raise_solver_errors(kwargs):
    kwargs = dict(kwargs, y0=torch.ones(1), t=torch.tensor([0.0, kwargs.pop("end")]))
    with pytest.raises(nodelib.SolverError) as expected:
        nodelib.odeint(**kwargs)
    with pytest.raises(nodelib.SolverError, match=f"^{re.escape(str(expected.value))}$"):
        odeint_compiled(**kwargs)


def test_the_compiled_step_gives_the_eager_results():
    """torch.compile of the step (tens of seconds on a small CPU: one field, no gradients)."""
    field, y0, t = nodelib.MLPField(2, hidden=(8,)), torch.randn(16, 2), torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        eager = odeint_compiled(field, y0, t, rtol=1e-6, atol=1e-6)
        compiled = odeint_compiled(field, y0, t, rtol=1e-6, atol=1e-6, compile_step=True)
    assert rel(compiled, eager) < 1e-12


def test_compiled_solves_may_compile_more_graphs_than_torchs_recompile_limit():
    """A process that trains models of several sizes compiles a step once per size (here: 2 states of
    dz/dt = -z by rk4, a small graph each), beyond torch's limit (here set to 1), up to RECOMPILE_LIMIT."""
    t, options = torch.tensor([0.0, 1.0]), dict(step_size=0.25)
    with torch._dynamo.config.patch(recompile_limit=1):
        for n in (3, 5):
            y0 = torch.ones(n)
            compiled = odeint_compiled(decay, y0, t, method="rk4", options=options, compile_step=True)
            assert rel(compiled[-1], y0 * math.exp(-1)) < 1e-4  # rk4's error at h = 1/4
            assert rel(compiled, odeint_compiled(decay, y0, t, method="rk4", options=options)) < 1e-12
        assert torch._dynamo.config.recompile_limit == 1
