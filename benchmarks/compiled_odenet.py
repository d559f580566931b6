"""A training step of Table 1's ODE-Net: nodelib's default path against ``SolverSettings(compiled=True)``.

    python benchmarks/compiled_odenet.py [--repeats 11] [--threads 1] [--batch 128]

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
``torch.compile``). Before timing, the script checks that the variants' logits agree (to 1e-4 relative)
and their evaluation counts (the ODE block's ``stats``) are equal, and prints the gradients' relative
difference to the default's and the compile time (first call minus a steady call, wall clock; from an
empty inductor cache, a fresh temporary directory). Printed then: medians of the CPU time (of the calling
thread, ``time.thread_time()``, with one thread; of the process, ``time.process_time()``, with
``--threads`` above 1) and of the wall time, with the median over rounds of the ratio to the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

import torch
from torch import nn

import nodelib
from nodelib.experiments import ODEBlock, build_classifier
from nodelib.experiments import mnist as table1

VARIANTS = {"nodelib default": False, "nodelib compiled": True, "nodelib compiled='eager'": "eager"}


def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """One forward and backward pass of the cross-entropy; the logits and the gradients, flattened."""
    logits = model(images)
    nn.functional.cross_entropy(logits, labels).backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return logits.detach(), grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=table1.get_preset("full").batch_size)
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.process_time
    preset = table1.get_preset("full")
    models = {}
    for name, compiled in VARIANTS.items():
        torch.manual_seed(0)
        solver = dataclasses.replace(preset.solver("odenet"), compiled=compiled)
        models[name] = build_classifier("odenet", image_size=28, channels=preset.channels, solver=solver)
    images = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))
    print(f"torch {torch.__version__}, nodelib {nodelib.__version__}, {args.threads} thread(s), Table 1 ODE-Net "
          f"(full preset: {preset.channels} channels, float32, batch {args.batch}, dopri5 at {preset.rtol:g}, "
          f"adjoint)\n")

    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        step(model, images, labels)
        first = time.perf_counter() - start
        block = next(m for m in model if isinstance(m, ODEBlock))
        block.stats = nodelib.SolveStats()
        start = time.perf_counter()
        logits, grads = step(model, images, labels)
        steady = time.perf_counter() - start
        results[name] = logits, grads, (block.stats.nfe_forward, block.stats.nfe_backward)
        print(f"{name}: first call {first:.1f} s, steady {steady:.2f} s (compile time {first - steady:.1f} s); "
              f"NFE forward {block.stats.nfe_forward}, backward {block.stats.nfe_backward}", flush=True)
    logits, grads, nfe = results["nodelib default"]
    for name, (other_logits, other_grads, other_nfe) in list(results.items())[1:]:
        if other_nfe != nfe or relative(other_logits, logits) > 1e-4:
            raise SystemExit(f"{name} disagrees with the default: NFE {other_nfe} against {nfe}, logits "
                             f"{relative(other_logits, logits):.1e} relative")
        print(f"{name} against the default: logits {relative(other_logits, logits):.1e}, gradients "
              f"{relative(other_grads, grads):.1e} relative")

    runs = {name: [] for name in models}
    turns = list(models)
    for i in range(args.repeats):
        for name in turns[i % len(turns):] + turns[:i % len(turns)]:
            cpu, wall = clock(), time.perf_counter()
            step(models[name], images, labels)
            runs[name].append((clock() - cpu, time.perf_counter() - wall))
    print(f"\nmedians of {args.repeats} alternating rounds\n")
    print("| variant | CPU ms | wall ms | CPU / default |\n|---|---|---|---|")
    for name, values in runs.items():
        ratio = statistics.median(v[0] / d[0] for v, d in zip(values, runs["nodelib default"]))
        print(f"| {name} | {statistics.median(v[0] for v in values) * 1e3:.1f} | "
              f"{statistics.median(v[1] for v in values) * 1e3:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
