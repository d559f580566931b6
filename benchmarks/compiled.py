"""GitHub issue 24's MLP problem, forward + backward: nodelib default, nodelib compiled, torchdiffeq, diffrax.

    python benchmarks/compiled.py [--problem both] [--repeats 15] [--out results/compiled-benchmark/results.json]

The problem: ``nodelib.MLPField(2, hidden=(64, 64))`` (tanh, input ``[z, t]``), batch 512, t in [0, 1],
float32, forward and backward of a squared-error loss on ``z(1)``, one thread, solved by one of two methods
(``--problem``; by default both, one after the other): ``dopri5`` at rtol = atol = 1e-5, or ``rk4``,
torchdiffeq's 3/8 rule, at 100 steps of 0.01 (diffrax has no such solver: ``compiled_jax.py`` defines it from
its Butcher tableau).

For each method, three worker processes solve it, each with the same weights, ``y0`` and target (a ``.npz``
file):

* PyTorch (this file, ``--worker``): ``nodelib.odeint_adjoint`` (the default path), ``odeint_adjoint(...,
  compiled="eager")`` (nodelib's own stepping, uncompiled), ``odeint_adjoint(..., compiled=True)`` and
  ``torchdiffeq.odeint_adjoint``;
* PyTorch with inductor calling ATen's ``tanh`` (``--worker --tanh-fallback``; a process-wide setting, see
  ``benchmarks/compiled-notes.md``): ``odeint_adjoint(..., compiled=True)`` only;
* JAX (``benchmarks/compiled_jax.py``, in ``benchmarks/.venv-jax``, which this script creates with
  ``python -m venv`` and ``pip install jax diffrax equinox optax``): diffrax's ``BacksolveAdjoint`` and
  ``RecursiveCheckpointAdjoint``, jit-compiled.

Each worker compiles and warms up first (compile times are reported), writes its ``z(1)`` and gradients,
then waits. The workers then take turns, one computing at a time: a round asks each for one timed call of
each of its variants. Reported: medians over the rounds of the process CPU time and the wall time (ms),
ratios to diffrax's ``BacksolveAdjoint``, and the agreement of ``z(1)`` and of the gradients across sides;
the same numbers, with the run's provenance, go to ``--out``: dopri5's at the top level, rk4's under the key
``"rk4"``. By default, a run of both problems goes where chapter "Faster and more accurate adjoints" reads
it, a run of one is not written.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from worker_protocol import announce, serve

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-jax"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
#: The solver arguments of each problem, for ``nodelib`` and ``torchdiffeq``.
SOLVERS = {"dopri5": dict(method="dopri5", **TOLERANCE), "rk4": dict(method="rk4", options=dict(step_size=0.01))}
#: How close diffrax's ``z(1)`` must come to ``nodelib.odeint``'s (relative): dopri5's steps differ slightly
#: between the two, rk4's are the same.
AGREEMENT = {"dopri5": 1e-4, "rk4": 1e-5}
REFERENCE = "diffrax BacksolveAdjoint"
RECORDED = HERE.parent / "results" / "compiled-benchmark" / "results.json"


def jax_python() -> Path:
    """The virtual environment's interpreter, after creating the environment if it is missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import jax, diffrax, equinox, optax"], capture_output=True)
    if check.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "jax", "diffrax", "equinox", "optax"],
                       check=True)
    return python


def write_problem(path: Path) -> None:
    """The weights of a seeded ``MLPField(2, hidden=(64, 64))``, ``y0`` and the target, float32."""
    import torch

    import nodelib
    torch.manual_seed(0)
    field = nodelib.MLPField(2, hidden=(64, 64))
    layers = [m for m in field.net if isinstance(m, torch.nn.Linear)]
    arrays = {f"{kind}{i}": getattr(layer, name).detach().numpy()
              for i, layer in enumerate(layers) for kind, name in (("w", "weight"), ("b", "bias"))}
    np.savez(path, y0=torch.randn(512, 2).numpy(), target=torch.randn(512, 2).numpy(), **arrays)


# ----------------------------------------------------------------------------- the PyTorch worker

def _torch_worker(problem_path: str, results_path: str, tanh_fallback: bool, method: str) -> None:
    """Load the problem, warm up (compile) each variant for ``method`` (a key of ``SOLVERS``), write ``z(1)``
    and gradients, then answer ``run``."""
    import torch
    import torchdiffeq

    import nodelib
    if tanh_fallback:
        from torch._inductor.lowering import make_fallback
        make_fallback(torch.ops.aten.tanh, warn=False)
    torch.set_num_threads(1)
    problem = np.load(problem_path)
    field = nodelib.MLPField(2, hidden=(64, 64))
    with torch.no_grad():
        for i, layer in enumerate(m for m in field.net if isinstance(m, torch.nn.Linear)):
            layer.weight.copy_(torch.from_numpy(problem[f"w{i}"]))
            layer.bias.copy_(torch.from_numpy(problem[f"b{i}"]))
    y0, target = torch.from_numpy(problem["y0"]), torch.from_numpy(problem["target"])
    t, solver = torch.tensor([0.0, 1.0]), SOLVERS[method]
    if tanh_fallback:
        variants = {"nodelib compiled, tanh fallback": dict(compiled=True)}
    else:
        variants = {"nodelib default": dict(compiled=False), "nodelib own stepping, eager": dict(compiled="eager"),
                    "nodelib compiled": dict(compiled=True), "torchdiffeq": None}

    def step(kwargs, stats=None):
        if kwargs is None:
            z1 = torchdiffeq.odeint_adjoint(field, y0, t, **solver)[-1]
        else:
            z1 = nodelib.odeint_adjoint(field, y0, t, stats=stats, **solver, **kwargs)[-1]
        ((z1 - target) ** 2).mean().backward()
        grads = torch.cat([p.grad.reshape(-1) for p in field.parameters()])
        field.zero_grad(set_to_none=True)
        return grads

    compile_s, counts, grads = {}, {}, {}
    for name, kwargs in variants.items():
        start = time.perf_counter()
        step(kwargs)
        first = time.perf_counter() - start
        start, stats = time.perf_counter(), nodelib.SolveStats()
        grads[f"grad {name}"] = step(kwargs, stats).numpy()
        compile_s[name] = first - (time.perf_counter() - start)
        counts[name] = [stats.nfe_forward, stats.nfe_backward] if kwargs is not None else None
    with torch.no_grad():
        z1 = nodelib.odeint(field, y0, t, **solver)[-1]
    np.savez(results_path, z1=z1.numpy(), **grads)
    announce({"compile_s": compile_s, "nfe": counts, "torch": torch.__version__,
              "torchdiffeq": torchdiffeq.__version__})
    serve({name: (lambda kwargs=kwargs: step(kwargs)) for name, kwargs in variants.items()})


# ----------------------------------------------------------------------------- the driver

class Worker:
    """A worker process that speaks the ``@@ {json}`` protocol on stdout and takes ``run`` on stdin."""

    def __init__(self, command: list, env: dict):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=env, cwd=HERE.parent)
        self.info = self.read()

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise RuntimeError(f"worker {self.process.args} ended with status {self.process.wait()}")

    def run(self) -> dict:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def measure(method: str, repeats: int, python: Path, scratch: Path) -> dict:
    """Start the three workers on the problem in ``scratch`` solved by ``method``, let them take turns for
    ``repeats`` rounds, print the table and the agreement across sides, and return the record of the run."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(HERE.parent)}
    workers = {}
    for key, command in (("torch", [sys.executable, __file__, "--problem", method, "--worker"]),
                         ("fallback", [sys.executable, __file__, "--problem", method, "--tanh-fallback", "--worker"]),
                         ("jax", [str(python), str(HERE / "compiled_jax.py")])):
        files = [str(scratch / "problem.npz"), str(scratch / f"{method}-{key}.npz")]
        arguments = files + [method] if key == "jax" else files
        cache = {"TORCHINDUCTOR_CACHE_DIR": str(scratch / f"inductor-{method}-{key}")}  # a first compile, per worker
        workers[key] = Worker(command + arguments, {**env, **cache})
        print(f"{method}, {key} ready: {json.dumps(workers[key].info)}", flush=True)
    runs: dict = {}
    for _ in range(repeats):
        for worker in workers.values():
            for name, value in worker.run().items():
                runs.setdefault(name, []).append(value)
    for worker in workers.values():
        worker.close()

    results = {key: np.load(scratch / f"{method}-{key}.npz") for key in workers}
    info = {key: worker.info for key, worker in workers.items()}
    cpu = {name: statistics.median(v[0] for v in values) * 1e3 for name, values in runs.items()}
    wall = {name: statistics.median(v[1] for v in values) * 1e3 for name, values in runs.items()}
    compile_s = {**info["torch"]["compile_s"], **info["fallback"]["compile_s"], **info["jax"]["compile_s"]}
    nfe = {**info["torch"]["nfe"], **info["fallback"]["nfe"]}
    setting = "dopri5 rtol = atol = 1e-5" if method == "dopri5" else "rk4 (3/8 rule), 100 steps of 0.01"
    print(f"\ntorch {info['torch']['torch']}, torchdiffeq {info['torch']['torchdiffeq']}, "
          f"jax {info['jax']['jax']}, diffrax {info['jax']['diffrax']}; float32, batch 512, "
          f"{setting}, one thread; median of {repeats} alternating rounds\n")
    print(f"| solver | CPU ms | wall ms | CPU / {REFERENCE} | NFE fwd, bwd | compile s |\n"
          f"|---|---|---|---|---|---|")
    for name in cpu:
        counts = nfe.get(name)
        print(f"| {name} | {cpu[name]:.2f} | {wall[name]:.2f} | {cpu[name] / cpu[REFERENCE]:.2f} | "
              f"{'%d, %d' % tuple(counts) if counts else '-'} | {compile_s[name]:.1f} |")
    z1 = results["torch"]["z1"]
    z1_difference = _rel(results["jax"]["z1"], z1)
    reference_grad = results["torch"]["grad nodelib default"]
    gradient_difference = {name[5:]: _rel(results[key][name], reference_grad)
                           for key in workers for name in results[key].files
                           if name.startswith("grad ") and name != "grad nodelib default"}
    print(f"\ndiffrax forward steps: {info['jax']['steps_forward']}")
    print(f"z(1), diffrax against nodelib.odeint: relative difference {z1_difference:.1e}")
    for name, difference in gradient_difference.items():
        print(f"gradient, {name} against nodelib default: relative difference {difference:.1e}")
    assert z1_difference < AGREEMENT[method], "the two sides do not solve the same problem"
    settings = TOLERANCE if method == "dopri5" else SOLVERS[method]["options"]
    return {"config": {"field": "MLPField(2, hidden=(64, 64))", "batch": 512, "t": [0.0, 1.0], "method": method,
                       **settings, "dtype": "float32", "threads": 1, "repeats": repeats},
            "cpu_ms": cpu, "wall_ms": wall, "reference": REFERENCE,
            "ratio_to_reference": {name: cpu[name] / cpu[REFERENCE] for name in cpu},
            "nfe": nfe, "compile_s": compile_s, "diffrax_steps_forward": info["jax"]["steps_forward"],
            "z1_difference_diffrax": z1_difference, "gradient_difference_to_default": gradient_difference,
            "versions": {"jax": info["jax"]["jax"], "diffrax": info["jax"]["diffrax"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("dopri5", "rk4", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, help=f"the JSON file of the results (default: "
                        f"{RECORDED.relative_to(HERE.parent)} for --problem both, none for one problem)")
    parser.add_argument("--worker", nargs=2, metavar=("PROBLEM", "RESULTS"), help=argparse.SUPPRESS)
    parser.add_argument("--tanh-fallback", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _torch_worker(*args.worker, args.tanh_fallback, args.problem)
        return
    python, scratch = jax_python(), Path(tempfile.mkdtemp(prefix="compiled-bench-"))
    write_problem(scratch / "problem.npz")
    methods = ("dopri5", "rk4") if args.problem == "both" else (args.problem,)
    records = {method: measure(method, args.repeats, python, scratch) for method in methods}
    out = args.out or (RECORDED if args.problem == "both" else None)
    if out is None:
        return
    from nodelib.experiments.runs import provenance
    from nodelib.storage import write_json_atomic
    import torch
    torch.set_num_threads(1)
    dopri5 = records.pop("dopri5", {})  # at the top level, where chapter 5 reads it; rk4 under "rk4"
    write_json_atomic(out, {"experiment": "compiled-benchmark", "preset": "cpu", "status": "complete", **dopri5,
                            **records, "provenance": provenance(torch.device("cpu"))})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
