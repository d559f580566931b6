"""A training iteration of Fig. 4's CNF with M = 64: nodelib's default path against ``CNF(compiled=True)``.

    python benchmarks/compiled_cnf.py [--repeats 21] [--tanh-fallback] [--diffrax]

The model is the density experiments' planar CNF at the full preset (``density.build_cnf(64, ...)``:
``HyperPlanarField(2, 64, hidden=(32, 32))``, closed-form trace, float32, dopri5 at rtol = atol = 1e-5 on
[0, 1], the adjoint method), built from seed 0 once per variant, so all have the same weights. One
iteration is what ``nodelib.fit_kl`` computes on U1 (Fig. 4's first target) with the full preset's 512
samples: ``x, log q(x)`` from one forward solve of the augmented ODE, the loss ``mean(log q(x) - log p̃(x))``
and its backward pass (the adjoint's backward solve), without the optimiser's step, so that every
iteration does the same work. The samples come from a generator seeded alike for every variant.

Variants, in one process and one thread, taking turns (in an order that rotates from round to round)
for ``--repeats`` rounds after one untimed round: the default CNF (torchdiffeq's stepping,
``AugmentedDynamics``), ``compiled=True`` and ``compiled="eager"`` (nodelib's own stepping without
``torch.compile``). Printed: the compile time
(first call minus a steady call, wall clock; from an empty inductor cache, a fresh temporary
directory), evaluation counts, the agreement of the gradients, and medians of the thread's CPU time
(``time.thread_time()``) and of the wall time, with the median over rounds of the ratio to the default.
``--tanh-fallback`` makes inductor call ATen's ``tanh`` (a process-wide setting; see
``benchmarks/compiled-notes.md``). ``--diffrax`` adds the same iteration in JAX (diffrax's
``BacksolveAdjoint`` and ``RecursiveCheckpointAdjoint``, jit-compiled; ``benchmarks/compiled_cnf_jax.py``
in ``benchmarks/.venv-jax``, as ``benchmarks/compiled.py`` sets it up) on the same weights and base draws:
a worker process that takes its turn after the PyTorch variants in every round; its times are the
process's CPU time (JAX may compute on a thread other than the caller's).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import nodelib
from nodelib.data import energies
from nodelib.experiments import density

from compiled import ONE_THREAD, Worker, jax_python
from worker_protocol import take_turns

VARIANTS = {"nodelib default": False, "nodelib compiled": True, "nodelib compiled='eager'": "eager"}


def iteration(cnf: nodelib.CNF, batch: int, stats=None) -> torch.Tensor:
    """One forward and backward pass of Fig. 4's KL loss; the gradients, flattened."""
    x, log_q = cnf.sample_with_log_prob(batch, generator=torch.Generator().manual_seed(1), stats=stats)
    (log_q - energies.unnormalised_log_density("u1", x)).mean().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in cnf.parameters()])
    cnf.zero_grad(set_to_none=True)
    return grads


def diffrax_worker(cnf: nodelib.CNF, batch: int) -> tuple:
    """The JAX worker, started on ``cnf``'s hypernetwork weights and the base draws of :func:`iteration`."""
    scratch = Path(tempfile.mkdtemp(prefix="compiled-cnf-"))
    layers = [m for m in cnf.field.hypernet if isinstance(m, torch.nn.Linear)]
    z0 = cnf.base.sample(batch, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    np.savez(scratch / "problem.npz", z0=z0.numpy(),
             **{f"{kind}{i}": getattr(layer, name).detach().numpy()
                for i, layer in enumerate(layers) for kind, name in (("w", "weight"), ("b", "bias"))})
    command = [str(jax_python()), str(Path(__file__).with_name("compiled_cnf_jax.py")), str(scratch / "problem.npz"),
               str(scratch / "results.npz")]
    return Worker(command, {**os.environ, **ONE_THREAD}), scratch / "results.npz"


def timed(fn) -> tuple:
    start, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - start, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--tanh-fallback", action="store_true", help="inductor calls ATen's tanh")
    parser.add_argument("--diffrax", action="store_true", help="also time diffrax (JAX) on the same problem")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    if args.tanh_fallback:
        from torch._inductor.lowering import make_fallback
        make_fallback(torch.ops.aten.tanh, warn=False)
    torch.set_num_threads(1)
    batch = density.get_preset("full").kl_batch
    models = {}
    for name, compiled in VARIANTS.items():
        torch.manual_seed(0)
        models[name] = density.build_cnf(64, density.get_preset("full", compiled=compiled), device=torch.device("cpu"))
    print(f"torch {torch.__version__}, 1 thread, Fig. 4 CNF M = 64 (full preset: float32, {batch} samples, "
          f"dopri5 1e-5, adjoint), U1{', inductor calls ATen tanh' if args.tanh_fallback else ''}\n")

    grads = {}
    for name, cnf in models.items():
        first = timed(lambda: iteration(cnf, batch))[1]
        stats = nodelib.SolveStats()
        start = time.perf_counter()
        grads[name] = iteration(cnf, batch, stats)
        steady = time.perf_counter() - start
        print(f"{name}: first call {first:.1f} s, steady {steady * 1e3:.0f} ms (compile time {first - steady:.1f} s); "
              f"NFE forward {stats.nfe_forward}, backward {stats.nfe_backward}")
    if args.diffrax:
        worker, results = diffrax_worker(models["nodelib default"], batch)
        print(f"diffrax ready: {worker.info}")
        jax_results = np.load(results)
        grads.update({name[5:]: torch.from_numpy(jax_results[name]) for name in jax_results.files
                      if name.startswith("grad ")})
    reference = grads["nodelib default"]
    for name, g in list(grads.items())[1:]:
        print(f"gradient of {name} against the default: relative difference "
              f"{float((g - reference).norm() / reference.norm()):.1e}")

    local = {name: (lambda model=model: timed(lambda: iteration(model, batch))) for name, model in models.items()}
    runs = take_turns(local, args.repeats, worker if args.diffrax else None)
    if args.diffrax:
        worker.close()
    print(f"\nmedians of {args.repeats} alternating rounds\n")
    print("| variant | CPU ms | wall ms | CPU / default |\n|---|---|---|---|")
    for name, values in runs.items():
        ratio = statistics.median(v[0] / d[0] for v, d in zip(values, runs["nodelib default"]))
        print(f"| {name} | {statistics.median(v[0] for v in values) * 1e3:.2f} | "
              f"{statistics.median(v[1] for v in values) * 1e3:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
