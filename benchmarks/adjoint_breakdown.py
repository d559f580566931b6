"""Where nodelib.odeint_adjoint's time goes on the MLP problem of GitHub issue 24 (float32, one thread).

    python benchmarks/adjoint_breakdown.py [--repeats 21] [--out results/adjoint-breakdown/results.json]

The problem: ``MLPField(2, hidden=(64, 64))``, batch 512, t in [0, 1], dopri5 at rtol = atol = 1e-5,
forward and backward of a squared-error loss on z(1). Timers on the thread's CPU clock (with one
thread, PyTorch runs each CPU operation synchronously on the calling thread; a CPU clock leaves out
the time the process waits for a core on a shared machine) split one forward+backward into

* (a) evaluations of the field: every call of its ``forward``, in the forward solve and in the
  backward solve (where it records the graph for the vector-Jacobian product);
* (b) vector-Jacobian products: the ``torch.autograd.grad`` calls of the backward solve;
* (c) everything else: the solver loops, step-size control, interpolation, the augmented state's
  packing and unpacking, the autograd function's bookkeeping, the loss.

Instrumented runs alternate with plain ones; the table gives medians of CPU time, the plain runs'
CPU time shows what the timers cost, and the wall-clock medians how much the machine was shared.
The medians are also written, with the run's provenance, to ``--out`` (by default where chapter
"Faster and more accurate adjoints" reads them).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import torch

import nodelib
from nodelib.experiments.runs import provenance
from nodelib.storage import write_json_atomic

RECORDED = pathlib.Path(__file__).resolve().parent.parent / "results" / "adjoint-breakdown" / "results.json"


class _Timed(torch.nn.Module):
    """The field, with the time spent in its ``forward`` added to ``self.seconds``."""

    def __init__(self, field: torch.nn.Module):
        super().__init__()
        self.field = field
        self.seconds = 0.0

    def forward(self, t, z):
        start = time.thread_time()
        out = self.field(t, z)
        self.seconds += time.thread_time() - start
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=pathlib.Path, default=RECORDED, help="the JSON file of the medians")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    field = _Timed(nodelib.MLPField(2, hidden=(64, 64)))
    y0, target = torch.randn(512, 2), torch.randn(512, 2)
    t = torch.tensor([0.0, 1.0])
    grad = torch.autograd.grad
    vjp_seconds = [0.0]

    def timed_grad(*a, **k):
        start = time.thread_time()
        out = grad(*a, **k)
        vjp_seconds[0] += time.thread_time() - start
        return out

    def run(instrumented: bool):
        field.seconds, vjp_seconds[0] = 0.0, 0.0
        stats = nodelib.SolveStats()
        torch.autograd.grad = timed_grad if instrumented else grad
        try:
            start, wall = time.thread_time(), time.perf_counter()
            z = nodelib.odeint_adjoint(field, y0, t, rtol=1e-5, atol=1e-5, stats=stats)
            forward, forward_fields = time.thread_time() - start, field.seconds
            ((z[-1] - target) ** 2).mean().backward()
            total, wall = time.thread_time() - start, time.perf_counter() - wall
        finally:
            torch.autograd.grad = grad
        field.zero_grad(set_to_none=True)
        return total, field.seconds, vjp_seconds[0], wall, forward, forward_fields, stats

    for _ in range(3):  # warm-up
        run(True)
        run(False)
    rows, plain = [], []
    for _ in range(args.repeats):
        rows.append(run(True))
        plain.append(run(False))
    stats = rows[-1][-1]
    total, fields, vjps = (statistics.median(r[i] for r in rows) * 1e3 for i in range(3))
    other = statistics.median((r[0] - r[1] - r[2]) for r in rows) * 1e3
    print(f"torch {torch.__version__}, 1 thread, float32, batch 512, dopri5 1e-5; NFE forward "
          f"{stats.nfe_forward}, backward {stats.nfe_backward}; median of {args.repeats} runs (ms)\n")
    print("| part | ms | share |\n|---|---|---|")
    for name, value in (("(a) field evaluations", fields), ("(b) vector-Jacobian products", vjps),
                        ("(c) everything else", other), ("total, instrumented", total)):
        print(f"| {name} | {value:.2f} | {value / total:.0%} |")
    print(f"| total, plain (no timers) | {statistics.median(p[0] for p in plain) * 1e3:.2f} | |")
    med = lambda values: statistics.median(values) * 1e3  # noqa: E731
    print(f"\nby phase: forward solve {med(r[4] for r in rows):.2f} ms, of which field "
          f"{med(r[5] for r in rows):.2f}; loss and backward pass {med(r[0] - r[4] for r in rows):.2f} ms, "
          f"of which field {med(r[1] - r[5] for r in rows):.2f} and vector-Jacobian products {vjps:.2f}")
    print(f"\nwall clock, median: instrumented {statistics.median(r[3] for r in rows) * 1e3:.2f} ms, "
          f"plain {statistics.median(p[3] for p in plain) * 1e3:.2f} ms")
    write_json_atomic(args.out, {
        "experiment": "adjoint-breakdown", "preset": "cpu", "status": "complete",
        "config": {"field": "MLPField(2, hidden=(64, 64))", "batch": 512, "t": [0.0, 1.0], "method": "dopri5",
                   "rtol": 1e-5, "atol": 1e-5, "dtype": "float32", "threads": 1, "repeats": args.repeats},
        "nfe": {"forward": stats.nfe_forward, "backward": stats.nfe_backward},
        "cpu_ms": {"field": fields, "vjp": vjps, "other": other, "total": total,
                   "plain": med(p[0] for p in plain)},
        "phases_cpu_ms": {"forward": med(r[4] for r in rows), "forward_field": med(r[5] for r in rows),
                          "backward": med(r[0] - r[4] for r in rows),
                          "backward_field": med(r[1] - r[5] for r in rows)},
        "wall_ms": {"instrumented": med(r[3] for r in rows), "plain": med(p[3] for p in plain)},
        "provenance": provenance(torch.device("cpu"))})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
