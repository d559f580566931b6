"""Regularised dynamics (Finlay et al. 2020) against none: the same CNF trained both ways, side by side.

    python benchmarks/regularisation.py            # the full run recorded in benchmarks/README.md (~40 min)
    python benchmarks/regularisation.py --quick    # a smoke run of a few seconds

On each data set (two moons and pinwheel) two CNFs with the same field, initialisation, training data,
minibatch seed, solver and tolerance are fitted with `nodelib.fit_density`: one to the plain NLL, one to
NLL + λK·(kinetic energy) + λJ·(Jacobian Frobenius norm). The two fits run in one process, in alternating
time slices (checkpoint + deadline; a resumed fit is bit for bit an uninterrupted one), so that machine
noise hits both alike. For each model it records the NFE per training iteration at the end of training
(forward + adjoint backward, mean over the logged iterations of the last 10%), the NFE of one `log_prob`
solve of a test batch at the evaluation tolerance (a fresh CNF sharing the field, no penalties, no
adjoint), the training seconds, the validation and test NLL with standard errors and the paired
difference regularised - unregularised on the same points; and the curves (NFE per iteration, minibatch
loss parts, training seconds and the NLL of a test subset at the logged iterations) in a JSON file.
The weights and the training setup were chosen on the validation set (its own seed), never on the test set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import tempfile
import time
from typing import Dict, List, Tuple

import torch
from torch import Tensor

import nodelib
from nodelib.data import toy2d
from nodelib.experiments.runs import provenance

MODELS = ("unregularised", "regularised")
#: Where the recorded run lies: the chapter "Regularised dynamics" reads it with
#: ``nodelib.experiments.runs.recorded_results("cnf-regularisation")``.
RECORDED = pathlib.Path(__file__).resolve().parent.parent / "results" / "regularisation-benchmark" / "results.json"
TARGETS = {"test NLL difference (nats)": 0.02, "train NFE ratio": 0.5, "eval NFE ratio": 0.5,
           "training time ratio": 0.7}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run; both models of a data set share all of it but the weights."""

    datasets: Tuple[str, ...] = ("two_moons", "pinwheel")
    hidden: Tuple[int, ...] = (64, 64)
    iterations: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    tol: float = 1e-5
    adjoint: bool = True
    kinetic_weight: float = 0.02
    jacobian_weight: float = 0.02
    n_train: int = 100_000
    n_validation: int = 10_000
    n_test: int = 20_000
    n_test_subset: int = 2_000
    eval_tol: float = 1e-5
    eval_batch: int = 5_000
    log_every: int = 5
    evaluate_every: int = 50
    slice_seconds: float = 15.0
    init_seed: int = 0
    minibatch_seed: int = 0
    seeds: Tuple[int, int, int] = (0, 1, 2)  # training, validation, test data


QUICK = Config(hidden=(16, 16), iterations=12, batch_size=64, tol=1e-3, n_train=2_000, n_validation=500,
               n_test=1_000, n_test_subset=200, eval_tol=1e-3, eval_batch=400, log_every=2, evaluate_every=6,
               slice_seconds=0.5)


def make_cnf(config: Config, field: torch.nn.Module, regularised: bool) -> nodelib.CNF:
    """The training CNF: exact trace, dopri5 at ``config.tol``; with the penalties if ``regularised``."""
    weights = dict(kinetic_weight=config.kinetic_weight, jacobian_weight=config.jacobian_weight)
    return nodelib.CNF(field, trace="exact", adjoint=config.adjoint, rtol=config.tol, atol=config.tol,
                       **(weights if regularised else {}))


def make_field(config: Config) -> nodelib.MLPField:
    """The field ``f(z, t)``, float32, initialised from ``config.init_seed`` (the same for both models),
    whatever the default dtype (initialising in float64 and rounding would draw other weights)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(config.init_seed)
        return nodelib.MLPField(2, hidden=config.hidden)
    finally:
        torch.set_default_dtype(default)


def evaluation_cnf(config: Config, field: torch.nn.Module) -> nodelib.CNF:
    """A fresh CNF sharing ``field``: no penalties, no adjoint, dopri5 at the evaluation tolerance."""
    return nodelib.CNF(field, trace="exact", adjoint=False, rtol=config.eval_tol, atol=config.eval_tol)


def per_point_nll(config: Config, field: torch.nn.Module, x: Tensor) -> Tuple[Tensor, float]:
    """``-log p(x)`` per point (float64) and the mean NFE of one solve of a batch of ``config.eval_batch``."""
    cnf, stats, chunks = evaluation_cnf(config, field), nodelib.SolveStats(), x.split(config.eval_batch)
    with torch.no_grad():
        nll = torch.cat([-cnf.log_prob(chunk, stats=stats) for chunk in chunks]).double()
    return nll, stats.nfe_forward / len(chunks)


def mean_and_se(values: Tensor) -> Dict[str, float]:
    """The mean of ``values`` and its standard error."""
    return {"mean": float(values.mean()), "se": float(values.std() / math.sqrt(values.numel()))}


def fit_interleaved(config: Config, name: str, data: Dict[str, Tensor], directory: pathlib.Path
                    ) -> Dict[str, Tuple[torch.nn.Module, nodelib.FitHistory]]:
    """Fit both models of data set ``name`` in alternating slices of ``config.slice_seconds``; the model that
    goes first alternates from one round to the next."""
    subset = data["test"][:config.n_test_subset]
    fields = {model: make_field(config) for model in MODELS}
    cnfs = {model: make_cnf(config, fields[model], model == "regularised") for model in MODELS}
    histories: Dict[str, nodelib.FitHistory] = {}
    evaluate_calls = {model: 0 for model in MODELS}

    def evaluator(model: str):
        def evaluate(_cnf: nodelib.CNF) -> float:
            # fit_density calls this every log_every iterations; the NLL is computed every evaluate_every
            # (NaN in between, dropped from the curves). Resumed calls count on from the restored history.
            evaluate_calls[model] += 1
            if (evaluate_calls[model] * config.log_every) % config.evaluate_every:
                return math.nan
            return float(per_point_nll(config, fields[model], subset)[0].mean())
        return evaluate

    round_ = 0
    while not all(model in histories and histories[model].complete for model in MODELS):
        for model in (MODELS if round_ % 2 == 0 else MODELS[::-1]):
            if model in histories and histories[model].complete:
                continue
            evaluate_calls[model] = len(histories[model].evaluations) if model in histories else 0
            histories[model] = nodelib.fit_density(
                cnfs[model], data["train"], iterations=config.iterations, batch_size=config.batch_size,
                lr=config.lr, seed=config.minibatch_seed, log_every=config.log_every,
                checkpoint=directory / f"{name}-{model}.pt", verbose=False, evaluate=evaluator(model),
                deadline=time.monotonic() + config.slice_seconds)
            history = histories[model]
            last, loss = history.losses[-1] if history.losses else (0, math.nan)
            nfe = sum(history.nfe[-1][1:]) if history.nfe else 0
            print(f"{name} {model:>13}: iteration {last:5d}/{config.iterations}, loss {loss:.3f}, "
                  f"NFE {nfe}, {history.total_seconds:.0f} s of training", flush=True)
        round_ += 1
    return {model: (fields[model], histories[model]) for model in MODELS}


def curves(history: nodelib.FitHistory) -> Dict[str, List]:
    """The logged curves of one fit, as lists (for plotting)."""
    parts = sorted({name for _, p in history.parts for name in p})
    seconds = dict(history.elapsed)
    evaluated = [(i, v) for i, v in history.evaluations if math.isfinite(v)]
    return {"iteration": [i for i, _ in history.losses], "seconds": [s for _, s in history.elapsed],
            "nfe_forward": [f for _, f, _ in history.nfe], "nfe_backward": [b for _, _, b in history.nfe],
            "loss": [v for _, v in history.losses],
            **{name: [p[name] for _, p in history.parts] for name in parts},
            "test_subset_iteration": [i for i, _ in evaluated],
            "test_subset_seconds": [seconds[i] for i, _ in evaluated],
            "test_subset_nll": [v for _, v in evaluated]}


Fits = Dict[str, Tuple[torch.nn.Module, nodelib.FitHistory]]


def summarise(config: Config, data: Dict[str, Tensor], fits: Fits) -> dict:
    """Per model: NFE at the end of training, evaluation NFE, seconds, NLLs; then ratios, paired differences,
    targets."""
    result, nll = {"models": {}}, {}
    for model, (field, history) in fits.items():
        end = [(f, b) for i, f, b in history.nfe if i > 0.9 * config.iterations]
        nll[model] = {split: per_point_nll(config, field, data[split]) for split in ("validation", "test")}
        result["models"][model] = {
            "train_nfe_end": {"forward": sum(f for f, _ in end) / len(end),
                              "backward": sum(b for _, b in end) / len(end),
                              "total": sum(f + b for f, b in end) / len(end),
                              "iterations_averaged": len(end)},
            "eval_nfe_per_solve": nll[model]["test"][1], "training_seconds": history.total_seconds,
            **{f"{split}_nll": mean_and_se(nll[model][split][0]) for split in ("validation", "test")},
            "curves": curves(history)}
    plain, reg = (result["models"][m] for m in MODELS)
    result["paired_difference"] = {
        split: mean_and_se(nll["regularised"][split][0] - nll["unregularised"][split][0])
        for split in ("validation", "test")}
    result["ratios"] = {"train NFE ratio": reg["train_nfe_end"]["total"] / plain["train_nfe_end"]["total"],
                        "eval NFE ratio": reg["eval_nfe_per_solve"] / plain["eval_nfe_per_solve"],
                        "training time ratio": reg["training_seconds"] / plain["training_seconds"]}
    measured = {"test NLL difference (nats)": result["paired_difference"]["test"]["mean"], **result["ratios"]}
    result["targets"] = {key: {"target": bound, "measured": measured[key], "met": measured[key] <= bound}
                         for key, bound in TARGETS.items()}
    return result


def run(config: Config, checkpoints: pathlib.Path) -> dict:
    """Fit and measure every data set of ``config``; checkpoints (the fitted models) go to ``checkpoints``."""
    results = {"experiment": "cnf-regularisation", "preset": "quick" if config == QUICK else "full",
               "status": "running", "provenance": provenance(torch.device("cpu")),
               "config": dataclasses.asdict(config), "datasets": {}}
    print(f"{results['provenance']['date']}, {results['provenance']['device_name']}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, nodelib {nodelib.__version__}",
          flush=True)
    for name in config.datasets:
        data = {split: toy2d.sample(name, n, seed=seed, dtype=torch.float32) for split, n, seed in
                zip(("train", "validation", "test"), (config.n_train, config.n_validation, config.n_test),
                    config.seeds)}
        results["datasets"][name] = summarise(config, data, fit_interleaved(config, name, data, checkpoints))
        print(markdown_table({name: results["datasets"][name]}), flush=True)
    return results


def markdown_table(datasets: dict) -> str:
    """The README's table: one row per data set and model."""
    rows = ["| data set | model | NFE per iteration at the end (fwd + bwd) | eval NFE per solve | training s "
            "| test NLL ± s.e. | ratios reg/unreg: train NFE, eval NFE, time | paired difference ± s.e. |",
            "|---|---|---|---|---|---|---|---|"]
    for name, result in datasets.items():
        for model in MODELS:
            m = result["models"][model]
            end, test = m["train_nfe_end"], m["test_nll"]
            ratios = ", ".join(f"{v:.2f}" for v in result["ratios"].values())
            paired = result["paired_difference"]["test"]
            difference = f"{paired['mean']:+.4f} ± {paired['se']:.4f}" if model == "regularised" else ""
            if model != "regularised":
                ratios = ""
            rows.append(f"| {name} | {model} | {end['total']:.0f} ({end['forward']:.0f} + "
                        f"{end['backward']:.0f}) | {m['eval_nfe_per_solve']:.1f} "
                        f"| {m['training_seconds']:.0f} "
                        f"| {test['mean']:.4f} ± {test['se']:.4f} | {ratios} | {difference} |")
    return "\n".join(rows)


def main(argv: List[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration for a smoke run (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=RECORDED,
                        help="the JSON file of results and curves (default results/regularisation-benchmark/"
                             "results.json, where the book's chapter reads it)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoints", type=pathlib.Path, default=None,
                        help="keep the fits' checkpoints (the trained models) here (default: a temporary "
                             "folder)")
    parser.add_argument("--iterations", type=int, help="override the configuration's iterations")
    parser.add_argument("--weights", type=float, nargs=2, metavar=("KINETIC", "JACOBIAN"),
                        help="override the regularisation weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else Config()
    if args.iterations:
        config = dataclasses.replace(config, iterations=args.iterations)
    if args.weights:
        config = dataclasses.replace(config, kinetic_weight=args.weights[0], jacobian_weight=args.weights[1])
    with tempfile.TemporaryDirectory() as scratch:
        checkpoints = args.checkpoints or pathlib.Path(scratch)
        checkpoints.mkdir(parents=True, exist_ok=True)
        results = run(config, checkpoints)
    results["status"] = "complete"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + markdown_table(results["datasets"]))
    for name, result in results["datasets"].items():
        print(name + ": " + "; ".join(f"{key} {t['measured']:.3f} (target <= {t['target']}, "
                                      f"{'met' if t['met'] else 'missed'})"
                                      for key, t in result["targets"].items()))
    return results


if __name__ == "__main__":
    main()
