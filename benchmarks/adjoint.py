"""Side-by-side benchmark: nodelib.odeint_adjoint against torchdiffeq, in one process.

Run ``python benchmarks/adjoint.py`` (add ``--quick`` for a smoke run). For each problem it runs the
two adjoints (and direct backprop as a memory reference) in alternating order, ``--repeats``
times, and prints NFE forward/backward, the median forward+backward wall time, the memory kept
for the backward pass, the relative gradient difference, and the time ratio nodelib/torchdiffeq.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torchdiffeq
from torch import nn

import nodelib


class MLPField(nn.Module):
    """The benchmark's vector field: an MLP 3-64-64-2 with tanh on (z, t), z in R^2."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
        self.nfe = 0

    def forward(self, t, z):
        self.nfe += 1
        return self.net(torch.cat([z, t.to(z).expand(z.shape[0], 1)], dim=1))


def kept_bytes(run):
    """Bytes of distinct tensor storages autograd keeps for the backward pass of ``run()``."""
    storages = {}

    def pack(x):
        storages[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = run()
    return out, sum(storages.values())


def problem_list(quick):
    rk4 = [100, 1000] if quick else [100, 1000, 10000]
    problems = [dict(name="dopri5 1e-5", t=torch.tensor([0.0, 1.0]), kw=dict(method="dopri5", rtol=1e-5, atol=1e-5))]
    problems += [dict(name=f"rk4 {n} steps", t=torch.tensor([0.0, 1.0]),
                      kw=dict(method="rk4", options=dict(step_size=1.0 / n))) for n in rk4]
    problems.append(dict(name="dopri5 1e-5, 100 obs", t=torch.linspace(0.0, 1.0, 101),
                         kw=dict(method="dopri5", rtol=1e-5, atol=1e-5)))
    return problems


def run_once(solver, field, y0, t, kw, target):
    stats = nodelib.SolveStats()
    extra = dict(stats=stats) if solver is nodelib.odeint_adjoint else {}
    field.nfe = 0
    y0 = y0.clone().requires_grad_(True)
    start = time.perf_counter()
    ys, kept = kept_bytes(lambda: solver(field, y0, t, **kw, **extra))
    nfe_f = field.nfe
    loss = ((ys - target) ** 2).mean()
    grads = torch.autograd.grad(loss, [y0, *field.parameters()])
    elapsed = time.perf_counter() - start
    flat = torch.cat([g.reshape(-1) for g in grads])
    return dict(time=elapsed, kept=kept, nfe_f=nfe_f, nfe_b=field.nfe - nfe_f, grad=flat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer problems and repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 2 if args.quick else args.repeats
    print(f"# torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, nodelib {nodelib.__version__}, "
          f"{platform.machine()}, 1 thread, batch 512, float32, median of {repeats} paired runs")
    header = ("| problem | solver | NFE fwd/bwd | fwd+bwd s | kept MiB | rel. grad diff to torchdiffeq | "
              "time ratio nodelib/torchdiffeq |")
    print(header)
    print("|" + "---|" * 7)
    for prob in problem_list(args.quick):
        torch.manual_seed(0)
        field = MLPField()
        y0 = torch.randn(512, 2)
        target = torch.randn(len(prob["t"]), 512, 2)
        solvers = {"nodelib adjoint": nodelib.odeint_adjoint, "torchdiffeq adjoint": torchdiffeq.odeint_adjoint,
                   "torchdiffeq direct": torchdiffeq.odeint}
        results = {name: [] for name in solvers}
        for r in range(repeats):
            order = list(solvers) if r % 2 == 0 else list(solvers)[::-1]
            if "10000" in prob["name"] and r > 0:
                order = [o for o in order if o != "torchdiffeq direct"]
            for name in order:
                results[name].append(run_once(solvers[name], field, y0, prob["t"], prob["kw"], target))
        ref = results["torchdiffeq adjoint"][0]["grad"]
        med = {name: statistics.median(x["time"] for x in res) for name, res in results.items()}
        for name, res in results.items():
            first = res[0]
            diff = ((first["grad"] - ref).norm() / ref.norm()).item()
            ratio = f"{med[name] / med['torchdiffeq adjoint']:.2f}" if name == "nodelib adjoint" else ""
            print(f"| {prob['name']} | {name} | {first['nfe_f']} / {first['nfe_b']} | {med[name]:.3f} | "
                  f"{first['kept'] / 2**20:.3f} | {diff:.1e} | {ratio} |")


if __name__ == "__main__":
    main()
