"""A training step of Table 1's ODE-Net: nodelib's default path, ``compiled=True``, torchdiffeq and diffrax.

    python benchmarks/compiled_odenet.py [--repeats 11] [--threads 1] [--batch 128] [--diffrax]

The model is the MNIST experiment's ODE-Net at the full preset (``build_classifier("odenet", image_size=28,
channels=64, ...)``: a convolutional stem, one ODE block whose field is ``ConvField(64)`` with ReLUs and
group norms, float32, dopri5 at rtol = atol = 1e-3 on [0, 1], the adjoint method; the preset's
``solver("odenet")`` with ``compiled`` replaced), built from seed 0 once per variant, so all have the same
weights. One step is the cross-entropy of the logits of a fixed batch (the full preset's 128 unless
``--batch``) of random 28x28 images with fixed labels (both from seeded generators) and its backward pass
(the adjoint's backward solve), without the optimiser's step, so that every step does the same work.

Variants, in one process, taking turns (in an order that rotates from round to round) for ``--repeats``
rounds after one untimed round: the default (torchdiffeq's stepping, ``AugmentedDynamics``),
``compiled=True`` (nodelib's own stepping, each step one graph of ``torch.compile``, the adjoint's
vector-Jacobian products by ``torch.func``) and ``compiled="eager"`` (the same steps without
``torch.compile``) and ``torchdiffeq`` (the same model, its ODE block solved by ``torchdiffeq.odeint_adjoint``
with the same method and tolerances and the field's parameters as ``adjoint_params``; its evaluations counted
by a hook on the field). Before timing, the script checks that the variants' logits agree (to 1e-4 relative)
and their evaluation counts are equal (torchdiffeq's forward ones only: its backward solve measures the error
of the parameters' adjoint otherwise), and prints the gradients' relative difference to the default's and
the compile time (first call minus a steady call, wall clock; from an empty inductor cache, a fresh
temporary directory). Printed then: medians of the CPU time (of the calling thread, ``time.thread_time()``,
with one thread; of the process, ``time.process_time()``, with ``--threads`` above 1) and of the wall time,
with the median over rounds of the ratio to the default.

``--diffrax`` (one thread only) adds the same step in JAX: ``benchmarks/compiled_odenet_jax.py``, in
``benchmarks/.venv-jax`` as ``benchmarks/compiled.py`` sets it up, builds the same network on the default
model's weights and the same batch and solves the block by diffrax's ``Dopri5`` with
``PIDController(rtol=1e-3, atol=1e-3)`` and each of ``BacksolveAdjoint`` and ``RecursiveCheckpointAdjoint``,
jit-compiled. The script stops unless the JAX stem's output, field (at the stem's output, t = 0.5) and head
(on it) equal PyTorch's to 1e-5 relative (the same network) and the logits agree to the tolerance, 1e-3
(the two controllers take different steps; both sides' forward steps are printed). The worker process takes
its turn in every round; its times are the process's CPU time (JAX may compute on a thread other than the
caller's), and the table gains the ratio to diffrax's ``BacksolveAdjoint``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchdiffeq
from torch import nn

import nodelib
from nodelib.experiments import ODEBlock, build_classifier
from nodelib.experiments import mnist as table1

from compiled import ONE_THREAD, Worker, jax_python
from worker_protocol import take_turns

#: ``SolverSettings.compiled`` of each variant (torchdiffeq's: the default model, whose block is then replaced)
VARIANTS = {"nodelib default": False, "nodelib compiled": True, "nodelib compiled='eager'": "eager",
            "torchdiffeq": False}
REFERENCE = "diffrax BacksolveAdjoint"


class TorchdiffeqBlock(nn.Module):
    """An :class:`ODEBlock` solved by ``torchdiffeq.odeint_adjoint``, counting the field's evaluations in ``stats``
    (forward solve: without gradients; backward solve: with them)."""

    def __init__(self, block: ODEBlock):
        super().__init__()
        self.field, self.solver, self.stats = block.field, block.solver, nodelib.SolveStats()
        self.field.register_forward_hook(self._count)

    def _count(self, *_) -> None:
        if torch.is_grad_enabled():
            self.stats.nfe_backward += 1
        else:
            self.stats.nfe_forward += 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.tensor([0.0, 1.0], dtype=z.dtype, device=z.device)
        return torchdiffeq.odeint_adjoint(self.field, z, t, rtol=self.solver.rtol, atol=self.solver.atol,
                                          method=self.solver.method, adjoint_params=tuple(self.field.parameters()))[-1]


def build(name: str) -> nn.Sequential:
    """The full preset's ODE-Net from seed 0, its block solved as the variant ``name`` says."""
    torch.manual_seed(0)
    preset = table1.get_preset("full")
    solver = dataclasses.replace(preset.solver("odenet"), compiled=VARIANTS[name])
    model = build_classifier("odenet", image_size=28, channels=preset.channels, solver=solver)
    if name == "torchdiffeq":
        i = block_index(model)
        model[i] = TorchdiffeqBlock(model[i])
    return model


def block_index(model: nn.Sequential) -> int:
    return next(i for i, m in enumerate(model) if isinstance(m, (ODEBlock, TorchdiffeqBlock)))


def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """One forward and backward pass of the cross-entropy; the logits and the gradients, flattened."""
    logits = model(images)
    nn.functional.cross_entropy(logits, labels).backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return logits.detach(), grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def diffrax_worker(model: nn.Sequential, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """The JAX worker, started on ``model``'s weights and the batch; the worker's results file and, to check
    it against, PyTorch's stem output, field at it (t = 0.5) and head on it."""
    scratch = Path(tempfile.mkdtemp(prefix="compiled-odenet-"))
    i = block_index(model)
    with torch.no_grad():
        features = model[:i](images)
        network = {"features": features, "field": model[i].field(torch.tensor(0.5), features),
                   "head": model[i + 1:](features)}
    names = [name for name, _ in model.named_parameters()]
    np.savez(scratch / "problem.npz", names=np.array(names), images=images.numpy(), labels=labels.numpy(),
             features=features.numpy(), **{f"param {name}": p.detach().numpy() for name, p in model.named_parameters()})
    command = [str(jax_python()), str(Path(__file__).with_name("compiled_odenet_jax.py")),
               str(scratch / "problem.npz"), str(scratch / "results.npz")]
    return Worker(command, {**os.environ, **ONE_THREAD}), scratch / "results.npz", network


def check_diffrax(results: Path, network: dict, logits: torch.Tensor, steps: tuple) -> dict:
    """Stop unless the JAX side is the same network (its parts to 1e-5 relative) with logits that agree to the
    solvers' tolerance; the JAX gradients by variant."""
    jax_results = {name: torch.from_numpy(array) for name, array in np.load(results).items()}
    parts = {part: relative(jax_results[part], value) for part, value in network.items()}
    difference = relative(jax_results["logits"], logits)
    print(f"diffrax against nodelib: stem output {parts['features']:.1e}, field at it (t = 0.5) {parts['field']:.1e}, "
          f"head on it {parts['head']:.1e}, logits {difference:.1e} relative; forward steps: diffrax "
          f"{steps[0]}, nodelib {steps[1]}")
    if max(parts.values()) > 1e-5:
        raise SystemExit("the JAX network is not nodelib's ODE-Net: " + ", ".join(
            f"{part} differs by {d:.1e} relative" for part, d in parts.items()))
    if difference > 1e-3:
        raise SystemExit(f"diffrax's logits differ from nodelib's by {difference:.1e} relative, more than the "
                         f"tolerance 1e-3: the two sides do not solve the same ODE")
    return {name[5:]: g for name, g in jax_results.items() if name.startswith("grad ")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=table1.get_preset("full").batch_size)
    parser.add_argument("--diffrax", action="store_true", help="also time diffrax (JAX) on the same problem")
    args = parser.parse_args()
    if args.diffrax and args.threads != 1:
        parser.error("--diffrax runs one thread on each side: leave --threads at 1")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.process_time
    preset = table1.get_preset("full")
    models = {name: build(name) for name in VARIANTS}
    images = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))
    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, nodelib {nodelib.__version__}, "
          f"{args.threads} thread(s), Table 1 ODE-Net (full preset: {preset.channels} channels, float32, "
          f"batch {args.batch}, dopri5 at {preset.rtol:g}, adjoint)\n")

    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        step(model, images, labels)
        first = time.perf_counter() - start
        block = model[block_index(model)]
        block.stats = nodelib.SolveStats()
        start = time.perf_counter()
        logits, grads = step(model, images, labels)
        steady = time.perf_counter() - start
        results[name] = logits, grads, block.stats
        print(f"{name}: first call {first:.1f} s, steady {steady:.2f} s (compile time {first - steady:.1f} s); "
              f"NFE forward {block.stats.nfe_forward}, backward {block.stats.nfe_backward}", flush=True)
    logits, reference_grads, stats = results["nodelib default"]
    grads = {}
    for name, (other_logits, other_grads, other_stats) in list(results.items())[1:]:
        # torchdiffeq's backward solve has its own error norm (the largest RMS of each parameter tensor's
        # adjoint, where nodelib's takes one RMS over all of them), and so its own backward steps
        counts = ("nfe_forward",) if name == "torchdiffeq" else ("nfe_forward", "nfe_backward")
        if any(getattr(other_stats, c) != getattr(stats, c) for c in counts) or relative(other_logits, logits) > 1e-4:
            raise SystemExit(f"{name} disagrees with the default: {other_stats} against {stats}, logits "
                             f"{relative(other_logits, logits):.1e} relative")
        print(f"{name} against the default: logits {relative(other_logits, logits):.1e} relative")
        grads[name] = other_grads
    if args.diffrax:
        worker, results_path, network = diffrax_worker(models["nodelib default"], images, labels)
        print(f"diffrax ready: {worker.info}")
        steps = (worker.info["steps_forward"], stats.steps_forward)
        grads.update(check_diffrax(results_path, network, logits, steps))
    for name, g in grads.items():
        print(f"gradients of {name} against the default: {relative(g, reference_grads):.1e} relative")

    def timed(model: nn.Sequential) -> tuple:
        cpu, wall = clock(), time.perf_counter()
        step(model, images, labels)
        return clock() - cpu, time.perf_counter() - wall

    local = {name: (lambda model=model: timed(model)) for name, model in models.items()}
    runs = take_turns(local, args.repeats, worker if args.diffrax else None)
    if args.diffrax:
        worker.close()
    references = ["nodelib default", *([REFERENCE] if args.diffrax else [])]
    print(f"\nmedians of {args.repeats} alternating rounds\n")
    print("| variant | CPU ms | wall ms | " + " | ".join(f"CPU / {r}" for r in references) + " |\n"
          + "|---|---|---" + "|---" * len(references) + "|")
    for name, values in runs.items():
        ratios = [statistics.median(v[0] / r[0] for v, r in zip(values, runs[reference])) for reference in references]
        print(f"| {name} | {statistics.median(v[0] for v in values) * 1e3:.1f} | "
              f"{statistics.median(v[1] for v in values) * 1e3:.1f} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
