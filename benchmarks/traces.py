"""Side-by-side benchmark: the closed-form planar trace against the exact autograd trace.

Run ``python benchmarks/traces.py`` (``--quick`` for a smoke run). For gated planar dynamics
``f(z, t) = Σ_k σ_k(t) u_k tanh(w_kᵀz + b_k)`` (:class:`nodelib.GatedPlanarField`) it times what a
CNF needs at every evaluation, ``f(z, t)`` and ``tr ∇_§1 f(z, t)``, two ways, in one process and in
alternating order:

* exact: ``f`` under autograd, then :func:`nodelib.trace_exact` (``d`` vector-Jacobian products);
* closed form: ``f`` and ``GatedPlanarField.divergence`` (eq. :eq:`gated-planar-trace`).

It does so without a graph (evaluating a density) and keeping the graph for backpropagation
(training), prints the median time of each over ``--repeats`` runs, the ratio exact/closed form,
and the largest difference between the two traces (they must agree to rounding).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import nodelib


def exact(field, t, z, train):
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        f_z = field(t, z)
        return f_z, nodelib.trace_exact(f_z, z, create_graph=train)


def closed_form(field, t, z, train):
    with torch.set_grad_enabled(train):
        return field(t, z), field.divergence(t, z)


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256])
    parser.add_argument("--components", type=int, default=32, help="planar terms K")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="dimension 64 only, 5 repeats")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.repeats = [64], 5
    nodelib.seed_everything(0, threads=args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"float32, batch {args.batch}, K = {args.components} planar terms, median of {args.repeats}")
    print("| d | mode | exact trace (ms) | closed form (ms) | ratio exact/closed | max trace difference |")
    print("|---|---|---|---|---|---|")
    for dim in args.dims:
        field = nodelib.GatedPlanarField(dim, args.components).float()
        z, t = torch.randn(args.batch, dim), torch.tensor(0.5)
        for mode, train in (("evaluate", False), ("train", True)):
            runs = {"exact": [], "closed": []}
            for _ in range(args.repeats):  # alternate, so that drifts in machine load hit both
                runs["exact"].append(seconds(lambda: exact(field, t, z, train)))
                runs["closed"].append(seconds(lambda: closed_form(field, t, z, train)))
            ms = {name: 1e3 * statistics.median(values) for name, values in runs.items()}
            diff = (exact(field, t, z, False)[1] - closed_form(field, t, z, False)[1]).abs().max().item()
            print(f"| {dim} | {mode} | {ms['exact']:.3f} | {ms['closed']:.3f} | {ms['exact'] / ms['closed']:.1f} "
                  f"| {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
