"""Table 1 and Fig. 3 of Chen et al. (2018) beside the book's runs (chapter "ODE-Net on MNIST").

The chapter shows results; the bookkeeping behind them lives here:

* :func:`recorded_runs` - the recorded full-scale runs, by folder name; in a checkout of the book's
  repository a missing run is an error (the chapter's checks would otherwise pass vacuously);
* :func:`table1_frame` - Table 1 with the paper's numbers beside the recorded runs';
* :func:`quick_frame` - the columns of Table 1 for a run of the quick preset;
* :func:`paired_frame` - differences of test errors on the same test images, with paired standard
  errors and the counts of images only one model gets wrong;
* :func:`nfe_statistics` - the solver's work over training (Fig. 3c, 3d).

The frames hold strings rounded for reading, ready for :func:`nodelib.display.table`.
"""
from __future__ import annotations

import collections
import pathlib
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Tuple

from .classifiers import MODELS
from .measure import paired_error_difference
from .mnist import PAPER_TABLE1
from .runs import BOOK_REPOSITORY, recorded_results

if TYPE_CHECKING:  # (pandas is one of the book's extras, imported where it is used)
    import pandas

__all__ = ["RECORDED_RUNS", "MODEL_NAMES", "PAPER_COMPLEXITY", "run_name", "in_checkout", "recorded_runs",
           "percent", "dataset_label", "table1_frame", "quick_frame", "paired_frame", "nfe_statistics"]

#: The recorded full-scale runs that the chapter shows (folders of the repository's ``results/``).
RECORDED_RUNS = ("mnist-full", "fashion-full", "fashion-full-seed1")

#: The models' names as Table 1 prints them.
MODEL_NAMES = {"mlp": "1-layer MLP", "resnet": "ResNet", "rknet": "RK-Net", "odenet": "ODE-Net"}

#: Table 1's memory and time columns: ``L`` layers of the ResNet, ``L~`` evaluations of the field.
PAPER_COMPLEXITY = {"mlp": ("–", "–"), "resnet": ("$O(L)$", "$O(L)$"),
                    "rknet": (r"$O(\tilde L)$", r"$O(\tilde L)$"), "odenet": ("$O(1)$", r"$O(\tilde L)$")}

DASH = "–"


def run_name(path) -> str:
    """The folder name of a recorded ``results.json``, given as a path or as a web address."""
    return pathlib.PurePosixPath(str(path)).parent.name


def in_checkout(roots: Sequence[str] = ("..", ".")) -> bool:
    """Whether one of ``roots`` is the root of a checkout of the book's repository (a chapter runs
    in ``book/``, a test from the root): it holds ``_toc.yml`` and the ``nodelib`` package."""
    return any((pathlib.Path(r) / "_toc.yml").is_file() and (pathlib.Path(r) / "nodelib").is_dir() for r in roots)


def recorded_runs(names: Sequence[str] = RECORDED_RUNS, *, roots: Sequence[str] = ("..", "."),
                  repository: Optional[str] = BOOK_REPOSITORY) -> Optional[dict]:
    """``{folder name: results}`` of the recorded full-scale Table 1 runs ``names``.

    In a checkout of the book's repository (:func:`in_checkout`) they are read from its ``results/``
    folder, and each of ``names`` must be there. Elsewhere (a chapter opened alone) they are read by
    :func:`~nodelib.experiments.runs.recorded_results` from ``repository``; ``None`` when that fails.

    Raises:
        FileNotFoundError: in a checkout, ``results/`` or one of the runs ``names`` is missing.
    """
    if in_checkout(roots):
        root = next(pathlib.Path(r) for r in roots if (pathlib.Path(r) / "_toc.yml").is_file()
                    and (pathlib.Path(r) / "nodelib").is_dir())
        folder = root / "results"
        found = recorded_results("mnist-table1", folders=(str(folder),), repository=None) if folder.is_dir() else None
        runs = {run_name(path): r for path, r in found or []}
        missing = [name for name in names if name not in runs]
        if missing:
            raise FileNotFoundError(f"{folder} lacks the recorded Table 1 runs {missing}: restore them from the "
                                    f"repository (they are committed), or rerun the commands on the "
                                    f"Reproducibility page.")
        return {name: runs[name] for name in names}
    found = recorded_results("mnist-table1", repository=repository)
    if found is None:
        return None
    runs = {run_name(path): r for path, r in found}
    return {name: runs[name] for name in names if name in runs}


def percent(x: float, digits: int = 2) -> str:
    """A fraction as a percentage: ``percent(0.0043) == "0.43%"``."""
    return f"{100 * x:.{digits}f}%"


def dataset_label(results: Mapping) -> str:
    """"MNIST", or "Fashion-MNIST, seed 1" (Fashion-MNIST was run with two seeds)."""
    if results["dataset"] == "mnist":
        return "MNIST"
    if results["dataset"] == "fashion":
        return f"Fashion-MNIST, seed {results['config']['seed']}"
    return f"{results['dataset']}, seed {results['config']['seed']}"


def _trained(results: Optional[Mapping], kind: str) -> Optional[dict]:
    model = (results or {}).get("models", {}).get(kind, {})
    return model if "test_error" in model else None


def table1_frame(runs: Optional[Mapping[str, Mapping]]) -> "pandas.DataFrame":
    """Table 1 of Chen et al. (2018) beside the recorded runs, one row per model.

    Each cell shows the recorded value with the paper's in parentheses: parameters, MNIST test
    error, backward memory (bytes autograd keeps for one training batch; the paper gives its order)
    and training time relative to the ResNet's (the paper gives its order), both from ``mnist-full``;
    and the Fashion-MNIST test errors of ``fashion-full`` and ``fashion-full-seed1`` (seeds 0 / 1).
    With ``runs=None`` (no recorded results at hand) only the paper's columns.
    """
    import pandas

    if runs is None:
        return pandas.DataFrame({
            "model": [MODEL_NAMES[k] for k in MODELS],
            "parameters": [f"{PAPER_TABLE1[k]['params'] / 1e6:.2f} M" for k in MODELS],
            "MNIST test error": [percent(PAPER_TABLE1[k]["test_error"]) for k in MODELS],
            "memory": [PAPER_COMPLEXITY[k][0] for k in MODELS],
            "time": [PAPER_COMPLEXITY[k][1] for k in MODELS]})
    mnist = runs.get("mnist-full")
    fashion = [runs.get(name) for name in ("fashion-full", "fashion-full-seed1")]
    resnet = _trained(mnist, "resnet")
    rows = []
    for kind in MODELS:
        paper, ours = PAPER_TABLE1[kind], _trained(mnist, kind)
        memory, time = PAPER_COMPLEXITY[kind]
        errors = [_trained(r, kind) for r in fashion]
        rows.append({
            "model": MODEL_NAMES[kind],
            "parameters": (f"{ours['params']:,d}" if ours else DASH) + f" ({paper['params'] / 1e6:.2f} M)",
            "MNIST test error": (percent(ours["test_error"]) if ours else DASH)
            + f" ({percent(paper['test_error'])})",
            "Fashion-MNIST, seeds 0 / 1": " / ".join(percent(e["test_error"]) if e else DASH
                                                    for e in errors),
            "backward memory": (f"{ours['backward_memory_bytes'] / 2**20:.1f} MiB" if ours else DASH)
            + f" ({memory})",
            "training time / ResNet's": (f"{ours['train_time_s'] / resnet['train_time_s']:.2f}"
                                                   if ours and resnet else DASH) + f" ({time})",
        })
    return pandas.DataFrame(rows)


def quick_frame(results: Mapping) -> "pandas.DataFrame":
    """The Table 1 columns of one run (any preset): parameters, test error, backward memory, and the
    mean forward NFE at test time and backward NFE in the last epoch (``–`` where there is no solve)."""
    import pandas

    rows = []
    for kind in MODELS:
        r = _trained(results, kind)
        if r is None:
            continue
        rows.append({"model": MODEL_NAMES[kind], "parameters": f"{r['params']:,d}",
                     "test error": percent(r["test_error"]),
                     "backward memory (MiB)": f"{r['backward_memory_bytes'] / 2**20:.2f}",
                     "NFE forward": DASH if r["nfe_forward"] is None else f"{r['nfe_forward']:.1f}",
                     "NFE backward": DASH if r["nfe_backward"] is None else f"{r['nfe_backward']:.1f}"})
    return pandas.DataFrame(rows)


PAIRS: Tuple[Tuple[str, str], ...] = (("mlp", "resnet"), ("rknet", "resnet"), ("odenet", "resnet"),
                                      ("odenet", "rknet"))


def paired_frame(runs: Optional[Mapping[str, Mapping]],
                 pairs: Iterable[Tuple[str, str]] = PAIRS) -> "pandas.DataFrame":
    """Test error of model ``a`` minus model ``b``'s on the same test images, for each run and each
    pair ``(a, b)`` that the run trained, with the paired standard error
    (:func:`~nodelib.experiments.measure.paired_error_difference`) and the images only ``a``, only
    ``b`` and both get wrong. No rows for ``runs=None`` (no recorded results at hand)."""
    import pandas

    columns = ["data", "difference", "points", "only the first wrong", "only the second wrong", "both wrong"]
    rows = []
    pairs = list(pairs)
    for results in (runs or {}).values():
        n = results["data"]["test"]
        for a, b in pairs:
            ra, rb = _trained(results, a), _trained(results, b)
            if ra is None or rb is None:
                continue
            d = paired_error_difference(ra["test_wrong"], rb["test_wrong"], n)
            rows.append({"data": dataset_label(results), "difference": f"{MODEL_NAMES[a]} − {MODEL_NAMES[b]}",
                         "points": f"{100 * d['difference']:+.2f} ± {100 * d['se']:.2f}".replace("-", "−"),
                         "only the first wrong": f"{d['only_a']:,d}", "only the second wrong": f"{d['only_b']:,d}",
                         "both wrong": f"{len(set(ra['test_wrong']) & set(rb['test_wrong'])):,d}"})
    return pandas.DataFrame(rows, columns=columns)


def nfe_statistics(history: Mapping) -> dict:
    """The solver's work over an ODE-Net's training, from its ``history``: the mean forward and
    backward NFE per iteration, their ratio, and how often each count occurred."""
    forward, backward = list(history["nfe_forward_iter"]), list(history["nfe_backward_iter"])
    if not forward or len(forward) != len(backward):
        raise ValueError(f"history must hold as many forward as backward counts, at least one; got "
                         f"{len(forward)} and {len(backward)}.")
    mean_f, mean_b = sum(forward) / len(forward), sum(backward) / len(backward)
    return {"iterations": len(forward), "forward": mean_f, "backward": mean_b, "ratio": mean_b / mean_f,
            "forward_counts": collections.Counter(forward), "backward_counts": collections.Counter(backward)}
