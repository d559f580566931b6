"""The diffrax side of ``benchmarks/compiled_cnf.py --diffrax``: Fig. 4's CNF iteration in JAX and diffrax.

    benchmarks/.venv-jax/bin/python benchmarks/compiled_cnf_jax.py PROBLEM.npz RESULTS.npz

It loads what the PyTorch side trains (the weights of ``HyperPlanarField(2, 64, hidden=(32, 32))``'s
hypernetwork and the 512 base draws ``z0``, float32), and jit-compiles forward and backward of the same
loss, ``mean(log q(x) - log p̃_U1(x))``: ``[x, Δ]`` from one solve of the augmented ODE
``d[z, Δ]/dt = [f, -tr ∇f]`` (closed-form trace) from ``[z0, 0]`` on [0, 1], ``log q(x) = log N(z0) + Δ``,
by ``diffrax.Dopri5()`` with ``PIDController(rtol=1e-5, atol=1e-5)`` and each of ``BacksolveAdjoint`` and
``RecursiveCheckpointAdjoint``. It writes the gradients to RESULTS.npz and then follows
``compiled.py``'s worker protocol (``@@ {json}`` when ready; one timed call of each variant per ``run``).
This file imports only numpy, JAX and diffrax: nodelib never depends on them.
"""
from __future__ import annotations

import math
import sys

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from worker_protocol import announce, compile_times, serve

DIM = 2


def field(t, z, params):
    """``(f, tr ∇f)`` of ``nodelib.HyperPlanarField``: unit parameters ``(u, w, b, gate logit g)`` from a
    tanh MLP of ``t`` (weights ``(out, in)``), ``f = (σ(g) h) u`` and ``tr ∇f = (1 - h²)(σ(g) u·w)``, with
    ``h = tanh(z wᵀ + b)``."""
    x = jnp.reshape(t, (1,)).astype(z.dtype)
    for i, (w, b) in enumerate(params):
        x = x @ w.T + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    units = x.reshape(-1, 2 * DIM + 2)
    u, w, b, gate = units[:, :DIM], units[:, DIM:2 * DIM], units[:, 2 * DIM], jax.nn.sigmoid(units[:, 2 * DIM + 1])
    h = jnp.tanh(z @ w.T + b)
    return (gate * h) @ u, (1 - h * h) @ (gate * (u * w).sum(-1))


def augmented(t, state, params):
    f, div = field(t, state[:, :DIM], params)
    return jnp.concatenate([f, -div[:, None]], axis=-1)


def u1(z):
    """Rezende and Mohamed's ``U1`` (``nodelib.data.energies``)."""
    ring = 0.5 * ((jnp.linalg.norm(z, axis=-1) - 2.0) / 0.4) ** 2
    return ring - jnp.logaddexp(-0.5 * ((z[:, 0] - 2.0) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2.0) / 0.6) ** 2)


def loss(params, z0, adjoint):
    """Fig. 4's KL loss on U1 after annealing, ``mean(log q(x) + U1(x))``."""
    start = jnp.concatenate([z0, jnp.zeros((z0.shape[0], 1), z0.dtype)], axis=-1)
    solution = diffrax.diffeqsolve(diffrax.ODETerm(augmented), diffrax.Dopri5(), t0=0.0, t1=1.0, dt0=None,
                                   y0=start, args=params, adjoint=adjoint, saveat=diffrax.SaveAt(t1=True),
                                   stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5))
    end = solution.ys[-1]
    log_q = -0.5 * (z0 ** 2).sum(-1) - math.log(2 * math.pi) + end[:, DIM]
    return jnp.mean(log_q + u1(end[:, :DIM])), solution.stats


def main() -> None:
    problem, results = np.load(sys.argv[1]), sys.argv[2]
    layers = sum(1 for name in problem.files if name.startswith("w"))
    params = [(jnp.asarray(problem[f"w{i}"]), jnp.asarray(problem[f"b{i}"])) for i in range(layers)]
    z0 = jnp.asarray(problem["z0"])
    adjoints = {"diffrax BacksolveAdjoint": diffrax.BacksolveAdjoint(),
                "diffrax RecursiveCheckpointAdjoint": diffrax.RecursiveCheckpointAdjoint()}
    steps = {name: jax.jit(jax.grad(lambda p, adjoint=adjoint: loss(p, z0, adjoint)[0]))
             for name, adjoint in adjoints.items()}
    compile_s = compile_times({name: (lambda step=step: jax.block_until_ready(step(params)))
                               for name, step in steps.items()})
    stats = jax.jit(lambda p: loss(p, z0, diffrax.RecursiveCheckpointAdjoint())[1])(params)
    grads = {name: np.concatenate([np.ravel(g) for pair in step(params) for g in pair])
             for name, step in steps.items()}
    np.savez(results, **{f"grad {name}": g for name, g in grads.items()})
    announce({"compile_s": compile_s, "steps_forward": int(stats["num_steps"]), "jax": jax.__version__,
              "diffrax": diffrax.__version__})
    serve({name: (lambda step=step: jax.block_until_ready(step(params))) for name, step in steps.items()})


if __name__ == "__main__":
    main()
