"""The book's Reproducibility page: where every recorded full-scale result came from.

Each ``results.json`` of ``python -m nodelib.experiments`` carries its provenance (device, versions,
command, date, wall time). :func:`page` turns a folder of them into the Markdown of the back-matter
page "Reproducibility" (``tools/reproducibility_page.py`` writes ``book/reproducibility.md``, and a
test checks that the committed page is what the recorded results give), so that the chapters can
show results and leave how and where they were made to this one page.
"""
from __future__ import annotations

import pathlib
import textwrap
from typing import List, Tuple, Union

from ..storage import read_json

__all__ = ["recorded_runs", "describe", "training_seconds", "page", "index"]

PathLike = Union[str, pathlib.Path]
_FIGURES = {"kl": "Fig. 4 (density matching)", "ml": "Fig. 5 (maximum likelihood)"}
_DATASETS = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "digits": "the 8x8 digits", "mnist5k": "MNIST (5,000)"}


def recorded_runs(folder: PathLike) -> List[Tuple[pathlib.Path, dict]]:
    """Every complete run below ``folder`` (``DIR/results.json``), with its contents, sorted by folder
    name; a run still going, or stopped before its end, is not a recorded result yet."""
    found = [(path, read_json(path)) for path in sorted(pathlib.Path(folder).glob("*/results.json"))]
    return [(path, results) for path, results in found if results.get("status") == "complete"]


def index(folder: PathLike) -> str:
    """The JSON text of ``results/index.json``: the recorded ``results.json`` files, relative to ``folder``."""
    import json

    names = [f"{path.parent.name}/{path.name}" for path, _ in recorded_runs(folder)]
    return json.dumps({"results": names}, indent=1) + "\n"


def describe(results: dict) -> str:
    """What a recorded run produced, in words (e.g. ``"Table 1 on MNIST: MLP, ResNet, RK-Net, ODE-Net"``)."""
    config = results.get("config", {})
    if results.get("experiment") == "mnist-table1":
        names = {"mlp": "MLP", "resnet": "ResNet", "rknet": "RK-Net", "odenet": "ODE-Net"}
        models = ", ".join(names.get(m, m) for m in results.get("models_requested", []))
        seed = f", seed {config['seed']}" if config.get("seed") else ""
        return f"Table 1 on {_DATASETS.get(results.get('dataset'), results.get('dataset'))}: {models}{seed}"
    if results.get("experiment") == "cnf-vs-nf":
        parts = []
        for part in results.get("parts", []):
            if part == "kl":
                targets = ", ".join(t.upper() for t in config.get("targets", []))
                sizes = ", ".join(str(s) for s in config.get("sizes", []))
                parts.append(f"{_FIGURES[part]} on {targets}, K = M = {sizes}")
            else:
                datasets = ", ".join(d.replace("_", " ") for d in config.get("datasets", []))
                layers = config.get("ml_nf_layers")
                how = (f", CNF of {config.get('ml_width')} units against NF of {layers} layers"
                       if layers else "")
                seed = f", seed {config['seed']}" if config.get("seed") else ""
                penalties = [f"{name} {config[f'{name}_weight']:g}" for name in ("kinetic", "jacobian")
                             if config.get(f"{name}_weight")]
                regularised = f", CNF regularised ({', '.join(penalties)})" if penalties else ""
                parts.append(f"{_FIGURES[part]} on {datasets}{how}{seed}{regularised}")
        return "; ".join(parts)
    if results.get("experiment") == "latent-ode":
        names = {"rnn": "RNN", "rnn_dt": "RNN with time differences", "latent_ode": "latent ODE"}
        models = ", ".join(names[m] for m in results.get("models", list(names)))
        ns = ", ".join(str(n) for n in config.get("observations", []))
        warmup = (f"warm-up on {config['warmup_obs']} points for {config['warmup_fraction']:.0%} of the steps"
                  if config.get("warmup_fraction") else "no warm-up")
        layers, starts = config.get("ode_layers", 1), config.get("starts", 1)
        field = (f"f: {layers} {config.get('ode_activation', 'tanh').replace('elu', 'ELU')} "
                 f"layer{'s' * (layers > 1)}, {starts} start{'s' * (starts > 1)}")
        return (f"Table 2 on {config.get('n_series', '?'):,} spirals, seed {config.get('seed')}: {models}; "
                f"N = {ns}; {field}; likelihood σ = {config.get('obs_std')}; {warmup}")
    if results.get("experiment") == "cnf-regularisation":
        datasets = ", ".join(d.replace("_", " ") for d in config.get("datasets", []))
        return (f"Regularised dynamics: one CNF trained with (kinetic {config.get('kinetic_weight'):g}, "
                f"Jacobian {config.get('jacobian_weight'):g}) and without penalties, side by side, on {datasets}")
    if results.get("experiment") in ("compiled-benchmark", "adjoint-breakdown"):
        problem = (f"{config.get('method')} at {config.get('rtol'):g}".replace("e-0", "e-")
                   + f", batch {config.get('batch')}, medians of {config.get('repeats')}")
        if results["experiment"] == "compiled-benchmark":
            also = " (and rk4 at 100 steps)" if "rk4" in results else ""
            return (f"The compiled path against the default adjoint, torchdiffeq and diffrax, {problem} "
                    f"alternating rounds{also}")
        return f"Where the adjoint's time goes: field, vector-Jacobian products and the rest, {problem} runs"
    return str(results.get("experiment"))


def _command(command: str, width: int = 84) -> str:
    """A command broken before its options (an option stays with its value) into lines of at most
    ``width`` characters where it can be."""
    tokens = []
    for word in command.split(" "):
        if tokens and not word.startswith("--") and tokens[-1].startswith("--") and " " not in tokens[-1]:
            tokens[-1] += " " + word
        else:
            tokens.append(word)
    lines, line = [], ""
    for token in tokens:
        if line and token.startswith("--") and len(line) + 1 + len(token) > width - 2:
            lines.append(line + " \\")
            line = "    " + token
        else:
            line = f"{line} {token}" if line else token
    return "\n".join(lines + [line])


def training_seconds(results: dict) -> float:
    """Seconds of training over every model of a run (checkpointed, so resumed runs count in full)."""
    if results.get("experiment") == "mnist-table1":
        return sum(m.get("train_time_s", 0.0) for m in results.get("models", {}).values())
    if results.get("experiment") == "latent-ode":
        return sum(model.get("train_time_s", 0.0) for slot in results.get("runs", {}).values()
                   for kind, model in slot.items() if kind != "paired")
    if results.get("experiment") == "cnf-regularisation":
        return sum(model.get("training_seconds", 0.0) for slot in results.get("datasets", {}).values()
                   for model in slot.get("models", {}).values())
    return sum(model.get("train_time_s", 0.0)
               for part in ("density_matching", "maximum_likelihood")
               for slot in results.get(part, {}).values()
               for kind in ("nf", "cnf") for model in slot.get(kind, {}).values())


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def page(folder: PathLike, *, repository_folder: str = "results") -> str:
    """The Markdown of the Reproducibility page for the runs recorded in ``folder``."""
    import pandas

    from ..display import table

    runs = recorded_runs(folder)
    rows, commands, software = [], [], set()
    for path, results in runs:
        prov = results.get("provenance") or {}
        threads = prov.get("cpu_threads")
        device = (f"{prov.get('device_name')}, {threads} thread{'s' if threads != 1 else ''}"
                  if prov.get("device") == "cpu" else f"{prov.get('device_name')} ({prov.get('device')})")
        rows.append({"result": describe(results), f"folder in `{repository_folder}/`": f"`{path.parent.name}`",
                     "device": device, "finished": str(prov.get("date", "?"))[:10],
                     "training": ("–" if results.get("experiment") in ("adjoint-breakdown", "compiled-benchmark")
                                  else _duration(training_seconds(results)))})
        software.add(f"Python {prov.get('python')}, torch {prov.get('torch')}, torchdiffeq {prov.get('torchdiffeq')}, "
                     f"nodelib {prov.get('nodelib')}")
        comment = "\n".join(textwrap.wrap(describe(results), 82, initial_indent="# ", subsequent_indent="# "))
        commands.append(f"{comment}\n{_command(prov.get('command', '?'))}")
    return "\n".join([
        "# Reproducibility",
        "",
        "The chapters show results; this page says where they came from. It is generated from the "
        "provenance that every recorded run writes into its `results.json` (by `tools/reproducibility_page.py`; "
        "a test checks that the page matches the recorded files).",
        "",
        "## How the chapters are checked",
        "",
        "Every chapter is stored executed. Continuous integration runs `make test` on a CPU with Python 3.11 "
        "and torch 2.13.0: the unit tests of `nodelib`, every chapter re-executed under nbval (each stored "
        "output compared with the new one; training curves, timings and solver step counts, which move with "
        "the CPU, are exempt and guarded by asserted thresholds instead), the book built with warnings as "
        "errors, and every page opened in a headless browser. What a chapter shows executed is its quick "
        "run, which takes about a minute on a CPU.",
        "",
        "## Recorded full-scale results",
        "",
        "Parts III and IV also show results of the `full` presets of `python -m nodelib.experiments`, which take hours. "
        "They were run once and recorded, each in its own folder of the repository, with its figures. "
        "Training time is the sum over the run's models, resumed runs included.",
        "",
        table(pandas.DataFrame(rows), caption=f"The {len(rows)} recorded runs.").data,
        "",
        "Software: " + "; ".join(sorted(software)) + ".",
        "",
        "The commands, as recorded (run from the repository's root in the book's environment; given again, "
        "a command resumes its run from the checkpoints):",
        "",
        "```bash",
        "\n\n".join(commands),
        "```",
        "",
        "## Checked on a GPU",
        "",
        "Continuous integration has no GPU. The checks that need one (`tools/gpu_check.sh`: the unit tests "
        "with the CUDA tests, both quick presets on CUDA, the device benchmark and one epoch of Table 1's full "
        "preset) ran once on an NVIDIA H200 with Python 3.12 and torch 2.11.0 (CUDA 13.0), on 2026-12-01. "
        "Their logs are kept unedited in the repository's `benchmarks/gpu-check-2026-12-01/`, and "
        "`benchmarks/README.md` records the device benchmark (an ODE-Net training step on MNIST 13 times faster "
        "than on two CPU threads; the small two-dimensional flows of Figs. 4 and 5 slower on the GPU, which is "
        "why their recorded runs are on the CPU).",
        "",
    ])
