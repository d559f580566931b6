"""The diffrax side of ``benchmarks/compiled.py``: a worker run in ``benchmarks/.venv-jax`` (JAX, diffrax).

    benchmarks/.venv-jax/bin/python benchmarks/compiled_jax.py PROBLEM.npz RESULTS.npz

It loads the MLP problem that the PyTorch side solves (weights of ``nodelib.MLPField(2, hidden=(64,
64))``, ``y0``, the target, float32), jit-compiles forward and backward of the squared-error loss on
``z(1)`` with ``diffrax.Dopri5()``, ``PIDController(rtol=1e-5, atol=1e-5)`` and each of
``BacksolveAdjoint`` and ``RecursiveCheckpointAdjoint``, and writes ``z(1)`` and the gradients to
RESULTS.npz. Then it follows ``compiled.py``'s protocol: a line ``@@ {json}`` when ready, and for
every ``run`` read from stdin one timed call of each variant, answered by ``@@ {name: [cpu s, wall s]}``.
This file imports only numpy, JAX and diffrax: nodelib never depends on them.
"""
from __future__ import annotations

import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from worker_protocol import announce, serve


def field(t, z, params):
    """``MLP([z, t])`` with tanh between the layers, as ``nodelib.MLPField`` (weights ``(out, in)``)."""
    x = jnp.concatenate([z, jnp.full(z.shape[:-1] + (1,), t, z.dtype)], axis=-1)
    for i, (w, b) in enumerate(params):
        x = x @ w.T + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    return x


def solve(params, y0, adjoint):
    """``z(1)`` by dopri5 at rtol = atol = 1e-5 from ``z(0) = y0``, and the solver's statistics."""
    solution = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), t0=0.0, t1=1.0, dt0=None, y0=y0,
                                   args=params, adjoint=adjoint, saveat=diffrax.SaveAt(t1=True),
                                   stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5))
    return solution.ys[-1], solution.stats


def main() -> None:
    problem, results = np.load(sys.argv[1]), sys.argv[2]
    params = [(jnp.asarray(problem[f"w{i}"]), jnp.asarray(problem[f"b{i}"])) for i in range(3)]
    y0, target = jnp.asarray(problem["y0"]), jnp.asarray(problem["target"])
    adjoints = {"diffrax BacksolveAdjoint": diffrax.BacksolveAdjoint(),
                "diffrax RecursiveCheckpointAdjoint": diffrax.RecursiveCheckpointAdjoint()}
    steps = {}
    for name, adjoint in adjoints.items():
        def loss(p, adjoint=adjoint):
            return jnp.mean((solve(p, y0, adjoint)[0] - target) ** 2)
        steps[name] = jax.jit(jax.grad(loss))
    compile_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        jax.block_until_ready(step(params))
        compile_s[name] = time.perf_counter() - start
    z1, stats = jax.jit(lambda p: solve(p, y0, diffrax.RecursiveCheckpointAdjoint()))(params)
    grads = {name: np.concatenate([np.ravel(g) for pair in step(params) for g in pair])
             for name, step in steps.items()}
    np.savez(results, z1=np.asarray(z1), **{f"grad {name}": g for name, g in grads.items()})
    announce({"compile_s": compile_s, "steps_forward": int(stats["num_steps"]), "jax": jax.__version__,
              "diffrax": diffrax.__version__})
    serve({name: (lambda step=step: jax.block_until_ready(step(params))) for name, step in steps.items()})


if __name__ == "__main__":
    main()
