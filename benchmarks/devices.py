"""Where the full presets train faster, the CPU or a CUDA device: side by side in one process.

    python benchmarks/devices.py                        # on a machine with a CUDA device
    python benchmarks/devices.py --devices cpu,cpu      # a smoke run without one
    python benchmarks/devices.py --compile              # also the compiled path (nodelib.compiled)

Three workloads at the full presets' sizes, each built once per device from the same seed:

* Fig. 4's planar NF with K = 64 layers and its CNF with M = 64 units fitted to U1 by KL(q||p)
  (``nodelib.fit_kl``: float32, 512 samples per iteration, the CNF by dopri5 at 1e-5 with the adjoint);
* Table 1's ODE-Net (64 channels, dopri5 at 1e-3 with the adjoint): SGD steps on one fixed batch of
  128 random 28x28 images.

With ``--compile``, the CNF and the ODE-Net are also timed on nodelib's compiled path
(``CNF(compiled=True)``, ``SolverSettings(compiled=True)``: each solver step one graph of
``torch.compile``, whose compilation the untimed first unit pays). Each timed unit is a few training
iterations; the devices take turns, after one untimed unit each,
and the script prints the median seconds per iteration on each device and the ratio of the first
device's time to the second's in the same repeat (median over repeats).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import statistics
import time

import torch
from torch import nn

import nodelib
from nodelib.data import energies
from nodelib.experiments import build_classifier, density
from nodelib.experiments import mnist as table1


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kl_workload(kind: str, device: torch.device, iterations: int, compiled: bool = False):
    preset = density.get_preset("full", compiled=compiled)
    torch.manual_seed(0)
    model = (density.build_nf(64, preset, direction="generative", device=device) if kind == "nf"
             else density.build_cnf(64, preset, device=device))

    def unit() -> None:
        nodelib.fit_kl(model, lambda x: energies.unnormalised_log_density("u1", x), iterations=iterations,
                       batch_size=preset.kl_batch, lr=preset.kl_lr, verbose=False)
    return unit


def odenet_workload(device: torch.device, iterations: int, compiled: bool = False):
    preset = table1.get_preset("full")
    torch.manual_seed(0)
    solver = dataclasses.replace(preset.solver("odenet"), compiled=compiled)
    model = build_classifier("odenet", image_size=28, channels=preset.channels, solver=solver).to(device)
    images = torch.rand(preset.batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(device)
    labels = torch.randint(0, 10, (preset.batch_size,), generator=torch.Generator().manual_seed(2)).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=preset.momentum)

    def unit() -> None:
        for _ in range(iterations):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimiser.step()
    return unit


def timed(unit, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    unit()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu,cuda", help="two devices, compared as first / second")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (Colab and this repository's machine: 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5, help="training iterations per timed unit")
    parser.add_argument("--compile", action="store_true", help="also time the CNF and ODE-Net compiled")
    args = parser.parse_args()
    devices = [torch.device(d) for d in args.devices.split(",")]
    if len(devices) != 2:
        raise ValueError(f"--devices must name two devices, e.g. cpu,cuda; got {args.devices!r}.")
    torch.set_num_threads(args.threads)
    names = [torch.cuda.get_device_name(d) if d.type == "cuda" else platform.processor() or platform.machine()
             for d in devices]
    print(f"{datetime.date.today()}, {' against '.join(f'{d} ({n})' for d, n in zip(devices, names))}, "
          f"{args.threads} CPU threads, torch {torch.__version__}, nodelib {nodelib.__version__}; "
          f"{args.iterations} iterations per unit, median of {args.repeats} alternating repeats\n")
    workloads = {"Fig. 4 NF, K = 64": lambda d: kl_workload("nf", d, args.iterations),
                 "Fig. 4 CNF, M = 64": lambda d: kl_workload("cnf", d, args.iterations),
                 "Table 1 ODE-Net": lambda d: odenet_workload(d, args.iterations)}
    if args.compile:
        workloads.update({"Fig. 4 CNF, M = 64, compiled": lambda d: kl_workload("cnf", d, args.iterations, True),
                          "Table 1 ODE-Net, compiled": lambda d: odenet_workload(d, args.iterations, True)})
    print(f"| workload | s per iteration, {devices[0]} | s per iteration, {devices[1]} | ratio {devices[0]} / {devices[1]} |")
    print("|---|---|---|---|")
    for name, make in workloads.items():
        units = [make(d) for d in devices]
        for unit, device in zip(units, devices):
            timed(unit, device)                                          # warm-up: allocations, kernels
        times = [[], []]
        for _ in range(args.repeats):
            for i in (0, 1):
                times[i].append(timed(units[i], devices[i]) / args.iterations)
        ratio = statistics.median(a / b for a, b in zip(*times))
        print(f"| {name} | {statistics.median(times[0]):.4f} | {statistics.median(times[1]):.4f} | {ratio:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
