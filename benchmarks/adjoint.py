"""nodelib.odeint_adjoint against torchdiffeq.odeint_adjoint, side by side in one process.

    python benchmarks/adjoint.py            # the full table recorded in benchmarks/README.md
    python benchmarks/adjoint.py --quick    # fewer problems and repeats, for a smoke run

Direct backprop through torchdiffeq.odeint runs beside them as the memory reference (once only on
the 10,000-step problem, where it keeps about 10 GiB). A float64 section checks gradient accuracy
against direct backprop at rtol 1e-10 and against a tight reference.
"""
from __future__ import annotations

import argparse
import datetime
import platform

import torch
import torchdiffeq

import nodelib
from nodelib.benchmark import compare, markdown_table, standard_problems


def accuracy_rows() -> list[str]:
    """Float64: nodelib's adjoint and direct backprop at rtol 1e-10, against a 1e-13 reference."""
    torch.manual_seed(0)
    field = nodelib.MLPField(2, hidden=(64, 64)).double()
    y0 = torch.randn(512, 2, dtype=torch.float64)
    target = torch.randn(2, 512, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)

    def grad(solver, tol):
        z = y0.clone().requires_grad_(True)
        loss = ((solver(field, z, t, rtol=tol, atol=tol) - target) ** 2).mean()
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [z, *field.parameters()])])

    reference = grad(torchdiffeq.odeint, 1e-13)
    ours, direct, peer = (grad(s, 1e-10) for s in (nodelib.odeint_adjoint, torchdiffeq.odeint,
                                                    torchdiffeq.odeint_adjoint))
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    return ["| quantity (float64, dopri5, rtol = atol = 1e-10) | relative difference |", "|---|---|",
            f"| nodelib adjoint vs direct backprop | {rel(ours, direct):.1e} |",
            f"| nodelib adjoint vs reference (direct, 1e-13) | {rel(ours, reference):.1e} |",
            f"| direct backprop vs reference (direct, 1e-13) | {rel(direct, reference):.1e} |",
            f"| torchdiffeq adjoint vs reference (direct, 1e-13) | {rel(peer, reference):.1e} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="rk4 at 100 and 1,000 steps only, 2 repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 2 if args.quick else args.repeats
    print(f"{datetime.date.today()}, {platform.machine()} ({platform.processor() or 'cpu'}), 1 thread, "
          f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, nodelib {nodelib.__version__}; "
          f"float32, batch 512, median of {repeats} alternating runs\n")
    solvers = {"nodelib adjoint": nodelib.odeint_adjoint, "torchdiffeq adjoint": torchdiffeq.odeint_adjoint,
               "direct backprop": torchdiffeq.odeint}
    rows = []
    for problem in standard_problems(rk4_steps=(100, 1000) if args.quick else (100, 1000, 10000)):
        rows += compare(problem, solvers, reference="torchdiffeq adjoint", repeats=repeats,
                        skip_repeats=("direct backprop",) if "10000" in problem.name else ())
        print(markdown_table(rows[-3:], reference="torchdiffeq adjoint").split("\n", 2)[-1], flush=True)
    print("\n" + markdown_table(rows, reference="torchdiffeq adjoint"))
    print("\n" + "\n".join(accuracy_rows()))


if __name__ == "__main__":
    main()
