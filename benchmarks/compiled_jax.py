"""The diffrax side of ``benchmarks/compiled.py``: a worker run in ``benchmarks/.venv-jax`` (JAX, diffrax).

    benchmarks/.venv-jax/bin/python benchmarks/compiled_jax.py PROBLEM.npz RESULTS.npz {dopri5,rk4}

It loads the MLP problem that the PyTorch side solves (weights of ``nodelib.MLPField(2, hidden=(64,
64))``, ``y0``, the target, float32), jit-compiles forward and backward of the squared-error loss on
``z(1)`` with each of ``BacksolveAdjoint`` and ``RecursiveCheckpointAdjoint``, and writes ``z(1)`` and the
gradients to RESULTS.npz. The method is the third argument: ``dopri5``, ``diffrax.Dopri5()`` with
``PIDController(rtol=1e-5, atol=1e-5)``; or ``rk4``, torchdiffeq's 3/8-rule ``rk4`` (``RK38`` below, which
diffrax does not have) with ``ConstantStepSize()`` and ``dt0=0.01``, 100 steps. Then it follows
``compiled.py``'s protocol: a line ``@@ {json}`` when ready, and for every ``run`` read from stdin one timed
call of each variant, answered by ``@@ {name: [cpu s, wall s]}``. This file imports only numpy, JAX and
diffrax: nodelib never depends on them.
"""
from __future__ import annotations

import sys
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from worker_protocol import announce, compile_times, serve


def field(t, z, params):
    """``MLP([z, t])`` with tanh between the layers, as ``nodelib.MLPField`` (weights ``(out, in)``)."""
    x = jnp.concatenate([z, jnp.full(z.shape[:-1] + (1,), t, z.dtype)], axis=-1)
    for i, (w, b) in enumerate(params):
        x = x @ w.T + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    return x


def _linear_interpolation(*, t0, t1, y0, y1, k):
    """Dense output between the ends of a step, ignoring the stages ``k`` (as torchdiffeq's fixed grid)."""
    del k
    return diffrax.LocalLinearInterpolation(t0=t0, t1=t1, y0=y0, y1=y1)


class RK38(diffrax.AbstractERK):
    """The Runge-Kutta 3/8 rule, torchdiffeq's ``rk4`` (``rk4_alt_step_func``) and ``nodelib.compiled.rk4_step``:
    fourth order, four stages, for a constant step size only (``b_error`` is zero: no error estimate)."""

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        c=np.array([1 / 3, 2 / 3, 1.0]),
        a_lower=(np.array([1 / 3]), np.array([-1 / 3, 1.0]), np.array([1.0, -1.0, 1.0])),
        b_sol=np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8]),
        b_error=np.zeros(4))
    interpolation_cls: ClassVar = staticmethod(_linear_interpolation)

    def order(self, terms):
        del terms
        return 4


#: The solver, step-size controller and first step of each problem of ``compiled.py``.
METHODS = {"dopri5": (diffrax.Dopri5(), diffrax.PIDController(rtol=1e-5, atol=1e-5), None),
           "rk4": (RK38(), diffrax.ConstantStepSize(), 0.01)}


def solve(params, y0, adjoint, method):
    """``z(1)`` from ``z(0) = y0`` by ``METHODS[method]``, and the solver's statistics."""
    solver, controller, dt0 = METHODS[method]
    solution = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, t0=0.0, t1=1.0, dt0=dt0, y0=y0, args=params,
                                   adjoint=adjoint, saveat=diffrax.SaveAt(t1=True), stepsize_controller=controller)
    return solution.ys[-1], solution.stats


def main() -> None:
    problem, results, method = np.load(sys.argv[1]), sys.argv[2], sys.argv[3]
    params = [(jnp.asarray(problem[f"w{i}"]), jnp.asarray(problem[f"b{i}"])) for i in range(3)]
    y0, target = jnp.asarray(problem["y0"]), jnp.asarray(problem["target"])
    adjoints = {"diffrax BacksolveAdjoint": diffrax.BacksolveAdjoint(),
                "diffrax RecursiveCheckpointAdjoint": diffrax.RecursiveCheckpointAdjoint()}
    steps = {}
    for name, adjoint in adjoints.items():
        def loss(p, adjoint=adjoint):
            return jnp.mean((solve(p, y0, adjoint, method)[0] - target) ** 2)
        steps[name] = jax.jit(jax.grad(loss))
    compile_s = compile_times({name: (lambda step=step: jax.block_until_ready(step(params)))
                               for name, step in steps.items()})
    z1, stats = jax.jit(lambda p: solve(p, y0, diffrax.RecursiveCheckpointAdjoint(), method))(params)
    grads = {name: np.concatenate([np.ravel(g) for pair in step(params) for g in pair])
             for name, step in steps.items()}
    np.savez(results, z1=np.asarray(z1), **{f"grad {name}": g for name, g in grads.items()})
    announce({"compile_s": compile_s, "steps_forward": int(stats["num_steps"]), "jax": jax.__version__,
              "diffrax": diffrax.__version__})
    serve({name: (lambda step=step: jax.block_until_ready(step(params))) for name, step in steps.items()})


if __name__ == "__main__":
    main()
