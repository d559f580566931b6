"""The diffrax side of ``benchmarks/compiled_odenet.py --diffrax``: Table 1's ODE-Net step in JAX and diffrax.

    benchmarks/.venv-jax/bin/python benchmarks/compiled_odenet_jax.py PROBLEM.npz RESULTS.npz

It loads what the PyTorch side built: the ODE-Net's parameters under their PyTorch names (``names``, in the
order of ``model.parameters()``), the batch (``images``, ``labels``) and, to check that both sides are the same
network apart from the solver, the stem's output ``features``, float32. The same network in ``jax.numpy``:
the stem (a 3x3 convolution without padding, then twice group norm, ReLU and a 4x4 convolution of stride 2),
the ODE block on ``ConvField(64)`` (group norm, ReLU, a 3x3 convolution of ``[u, t]`` with the time as the last
input channel, group norm, ReLU, the same again, group norm) solved on [0, 1] by ``diffrax.Dopri5()`` with
``PIDController(rtol=1e-3, atol=1e-3)``, and the head (group norm, ReLU, global average pooling, linear);
convolutions by ``jax.lax.conv_general_dilated`` with PyTorch's weights, every group norm with 32 groups and
eps 1e-5, as ``torch.nn.GroupNorm``. The feature maps are NHWC and the weights HWIO, not PyTorch's NCHW and
OIHW: XLA's CPU backend runs an NCHW convolution inside a loop (diffrax's steps) about 45 times slower than
outside one (72 such 3x3 convolutions at batch 8: 595 ms in a ``fori_loop``, 13 ms unrolled), an NHWC one
with HWIO weights at full speed (36 evaluations of the field: 24 ms in a loop, 25 ms unrolled).
The loss is the mean cross-entropy of the logits, its gradient ``jax.grad``'s, jit-compiled, with each of
``BacksolveAdjoint`` and ``RecursiveCheckpointAdjoint``. It writes the stem's output, the field
``f(0.5, features)``, the head's output on ``features`` (in PyTorch's layout), the logits and the gradients
(flattened in ``names``' order) to RESULTS.npz and then follows ``compiled.py``'s worker protocol
(``@@ {json}`` when ready; one timed call of each variant per ``run``). This file imports only numpy, JAX and
diffrax: nodelib never depends on them.
"""
from __future__ import annotations

import sys

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from worker_protocol import announce, compile_times, serve

GROUPS = 32  # nodelib.experiments.norm_groups(64)
STEM = (("0", 1, 0), ("3", 2, 1), ("6", 2, 1))  # (name, stride, padding) of the stem's convolutions
STEM_NORMS = ("1", "4")  # the group norms before the second and third convolution
HEAD_NORM, HEAD_LINEAR = "8", "12"
FIELD = "7.field."
NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)  # transpositions of feature maps from PyTorch's layout and back
HWIO, OIHW = (2, 3, 1, 0), (3, 2, 0, 1)  # and of convolution weights


def conv(params, name, x, stride=1, padding=1):
    """``torch.nn.Conv2d``'s convolution and bias, on NHWC maps with HWIO weights."""
    y = jax.lax.conv_general_dilated(x, params[f"{name}.weight"], (stride, stride), [(padding, padding)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + params[f"{name}.bias"]


def group_norm(params, name, x):
    """``torch.nn.GroupNorm(32, C)``: biased variance over each group's channels and pixels, eps 1e-5."""
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, GROUPS, c // GROUPS)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    x = ((g - mean) / jnp.sqrt(var + 1e-5)).reshape(b, h, w, c)
    return x * params[f"{name}.weight"] + params[f"{name}.bias"]


def stem(params, images):
    x = conv(params, STEM[0][0], images, *STEM[0][1:])
    for norm, (name, stride, padding) in zip(STEM_NORMS, STEM[1:]):
        x = conv(params, name, jax.nn.relu(group_norm(params, norm, x)), stride, padding)
    return x


def field(t, z, params):
    """``nodelib.ConvField``: ``N(K_2(t, ρ(N(K_1(t, ρ(N(z)))))))``, ``K_i(t, u)`` a convolution of ``[u, t]``."""
    def with_time(u):
        return jnp.concatenate([u, jnp.full(u.shape[:-1] + (1,), t, u.dtype)], axis=-1)

    u = conv(params, FIELD + "conv1", with_time(jax.nn.relu(group_norm(params, FIELD + "norm1", z))))
    u = conv(params, FIELD + "conv2", with_time(jax.nn.relu(group_norm(params, FIELD + "norm2", u))))
    return group_norm(params, FIELD + "norm3", u)


def head(params, x):
    pooled = jax.nn.relu(group_norm(params, HEAD_NORM, x)).mean(axis=(1, 2))
    return pooled @ params[f"{HEAD_LINEAR}.weight"].T + params[f"{HEAD_LINEAR}.bias"]


def logits_and_stats(params, images, adjoint):
    solution = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), t0=0.0, t1=1.0, dt0=None,
                                   y0=stem(params, images), args=params, adjoint=adjoint,
                                   saveat=diffrax.SaveAt(t1=True),
                                   stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-3))
    return head(params, solution.ys[-1]), solution.stats


def loss(params, images, labels, adjoint):
    """The mean cross-entropy of the logits, as ``torch.nn.functional.cross_entropy``."""
    logits = logits_and_stats(params, images, adjoint)[0]
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, labels[:, None], axis=-1).mean()


def main() -> None:
    problem, results = np.load(sys.argv[1]), sys.argv[2]
    names = [str(name) for name in problem["names"]]
    params = {name: jnp.asarray(problem[f"param {name}"]) for name in names}
    params = {name: p.transpose(HWIO) if p.ndim == 4 else p for name, p in params.items()}
    images, labels = jnp.asarray(problem["images"].transpose(NHWC)), jnp.asarray(problem["labels"])
    features = jnp.asarray(problem["features"].transpose(NHWC))
    adjoints = {"diffrax BacksolveAdjoint": diffrax.BacksolveAdjoint(),
                "diffrax RecursiveCheckpointAdjoint": diffrax.RecursiveCheckpointAdjoint()}
    steps = {name: jax.jit(jax.grad(lambda p, adjoint=adjoint: loss(p, images, labels, adjoint)))
             for name, adjoint in adjoints.items()}
    compile_s = compile_times({name: (lambda step=step: jax.block_until_ready(step(params)))
                               for name, step in steps.items()})
    logits, stats = jax.jit(lambda p: logits_and_stats(p, images, diffrax.RecursiveCheckpointAdjoint()))(params)
    grads = {}
    for name, step in steps.items():
        by_name = step(params)
        grads[name] = np.concatenate([np.ravel(g.transpose(OIHW) if g.ndim == 4 else g)
                                      for g in map(by_name.__getitem__, names)])
    np.savez(results, features=np.asarray(stem(params, images)).transpose(NCHW),
             field=np.asarray(field(0.5, features, params)).transpose(NCHW), head=np.asarray(head(params, features)),
             logits=np.asarray(logits),
             **{f"grad {name}": g for name, g in grads.items()})
    announce({"compile_s": compile_s, "steps_forward": int(stats["num_steps"]),
              "accepted_forward": int(stats["num_accepted_steps"]), "jax": jax.__version__,
              "diffrax": diffrax.__version__})
    serve({name: (lambda step=step: jax.block_until_ready(step(params))) for name, step in steps.items()})


if __name__ == "__main__":
    main()
