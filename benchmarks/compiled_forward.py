"""The forward solve of GitHub issue 24's MLP problem: torchdiffeq, nodelib.odeint, odeint_compiled.

    python benchmarks/compiled_forward.py [--repeats 31]

``MLPField(2, hidden=(64, 64))``, float32, batch 512, t in [0, 1], dopri5 at rtol = atol = 1e-5, one
thread. Prints the compile time of ``odeint_compiled(..., compile_step=True)`` (first call minus a
steady call, per grad mode, and again for a second batch size), then medians over alternating
rounds (each round runs every solver once) of

* the forward solve under ``torch.no_grad()``;
* forward and backward of a squared-error loss on z(1) by direct backpropagation, with
  ``nodelib.odeint_adjoint`` beside them as the default path's adjoint.

Times are the thread's CPU time (one thread: PyTorch computes on the calling thread) and wall time.
Compilation starts from an empty inductor cache (a fresh temporary directory), so the compile times
are those of a first run. ``--tanh-fallback`` makes inductor call ATen's ``tanh`` instead of
generating its own (``make_fallback``: a process-wide setting, an experiment, not nodelib's default).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torchdiffeq

import nodelib
from nodelib.compiled import odeint_compiled


def _timed(fn) -> tuple:
    start, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - start, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--tanh-fallback", action="store_true", help="inductor calls ATen's tanh")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    if args.tanh_fallback:
        from torch._inductor.lowering import make_fallback
        make_fallback(torch.ops.aten.tanh, warn=False)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    field = nodelib.MLPField(2, hidden=(64, 64))
    y0, target, t = torch.randn(512, 2), torch.randn(512, 2), torch.tensor([0.0, 1.0])
    tol = dict(rtol=1e-5, atol=1e-5)
    solvers = {
        "torchdiffeq.odeint": lambda y: torchdiffeq.odeint(field, y, t, method="dopri5", **tol),
        "nodelib.odeint": lambda y: nodelib.odeint(field, y, t, **tol),
        "odeint_compiled, eager": lambda y: odeint_compiled(field, y, t, **tol),
        "odeint_compiled, compiled step": lambda y: odeint_compiled(field, y, t, compile_step=True, **tol),
    }
    compiled = solvers["odeint_compiled, compiled step"]

    def train(solver):
        def step():
            ((solver(y0)[-1] - target) ** 2).mean().backward()
            field.zero_grad(set_to_none=True)
        return step

    def infer(solver, y=y0):
        def solve():
            with torch.no_grad():
                solver(y)
        return solve

    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, 1 thread, float32, batch 512, "
          f"dopri5 1e-5{', inductor calls ATen tanh' if args.tanh_fallback else ''}\n\n"
          f"compile time (first call minus a steady call, wall clock):")
    for name, make, y in (("no_grad, batch 512", infer, y0), ("grad, batch 512", train, y0),
                          ("no_grad, batch 256 (a new shape)", infer, y0[:256])):
        first = _timed(make(compiled, y) if make is infer else make(compiled))[1]
        steady = _timed(make(compiled, y) if make is infer else make(compiled))[1]
        print(f"  {name}: {first - steady:.1f} s")

    sections = [("forward, no_grad", infer, solvers),
                ("forward + backward, direct backprop (adjoint for nodelib.odeint_adjoint)", train,
                 {"nodelib.odeint_adjoint": lambda y: nodelib.odeint_adjoint(field, y, t, **tol),
                  **{k: v for k, v in solvers.items() if k != "torchdiffeq.odeint"}})]
    for title, make, group in sections:
        runs = {name: [] for name in group}
        for name, solver in group.items():  # warm-up
            make(solver)()
        for _ in range(args.repeats):
            for name, solver in group.items():
                runs[name].append(_timed(make(solver)))
        print(f"\n{title}, median of {args.repeats} alternating rounds\n")
        print("| solver | CPU ms | wall ms |\n|---|---|---|")
        for name, values in runs.items():
            print(f"| {name} | {statistics.median(v[0] for v in values) * 1e3:.2f} | "
                  f"{statistics.median(v[1] for v in values) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
