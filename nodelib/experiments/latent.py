"""Table 2 of :cite:`chen2018neural`: the latent ODE against two RNNs on bi-directional spirals
(chapter "Latent ODEs for irregular time series").

For each number ``N`` of irregular observations per spiral (the preset's ``observations``), three
models are trained on the training spirals: the latent ODE (:class:`nodelib.latent.LatentODE`, by its
ELBO), the RNN and the RNN with time differences (:class:`nodelib.recurrent.RNNForecaster`, by their
Gaussian negative log-likelihood). Each then predicts the ``n_future`` grid times after the
observation window of every test spiral from its ``N`` observations; the score is the
root-mean-square error against the noisy observations there, and the comparison of two models is
paired over the same test spirals. The same score on the training spirals (``train_future_rmse``:
their times after the window, which training never sees) serves for choices such as the
likelihood's ``σ`` without the test spirals.

Command line: ``python -m nodelib.experiments latent --preset quick --out results/latent-quick``.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import shutil
import tempfile
import time
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ..data.spirals import Spirals, irregular_observations, spirals
from ..latent import LatentField, LatentODE
from ..recurrent import RNNForecaster
from ..reproducibility import seed_everything
from ..series import random_subsets
from ..solve import SolveStats
from ..storage import load_checkpoint, read_json, write_json_atomic
from ..training import _optimise
from .runs import config_changes, default_dtype, log, pick_device, provenance, replace_preset

__all__ = ["MODELS", "MODEL_NAMES", "PAPER", "LatentPreset", "PRESETS", "get_preset", "make_data", "build",
           "predictive_errors", "reference_rmse", "run", "table2_frame", "paired_frame", "scores_frame",
           "starts_frame",
           "plot_extrapolations", "plot_latent_traversal", "save_figures"]

#: The seed of start ``k`` of a model (:attr:`LatentPreset.starts`) is its start 0's plus ``k`` times this.
START_SEED_STRIDE = 1_000_003

#: The three models of Table 2, in the order they are trained.
MODELS = ("rnn", "rnn_dt", "latent_ode")
MODEL_NAMES = {"rnn": "RNN", "rnn_dt": "RNN, time differences", "latent_ode": "Latent ODE"}

#: What the paper specifies (§5.1, Table 2); the rest is this module's choice, in the presets.
PAPER = {"n_series": 1000, "n_window": 100, "observations": (30, 50, 100), "latent_dim": 4, "rnn_hidden": 25,
         "ode_hidden": 20, "decoder_hidden": 20,
         "table2": {"rnn": (0.3937, 0.3202, 0.1813), "latent_ode": (0.1642, 0.1502, 0.1346)}}


@dataclasses.dataclass(frozen=True)
class LatentPreset:
    """The settings of a run; fields the paper gives carry its values (:data:`PAPER`).

    Data: ``n_series`` spirals (:func:`nodelib.data.spirals.spirals`, seed ``seed``), the first
    ``n_train`` for training, the others for testing; ``n_window`` observable and ``n_future``
    predicted grid times ``h = step`` apart; radial speed ``speed``, radius ``r_min`` where the curves
    begin, starts up to ``max_start``; noise ``noise``. Models: as :data:`PAPER`, with the
    likelihood's ``σ = obs_std`` and, as in the authors' example code, a field ``f`` of
    ``ode_layers`` hidden layers of ``ode_activation`` units (the paper states one layer).
    Training: Adam from ``lr`` with a cosine schedule, ``iterations`` steps on minibatches of
    ``batch_size`` spirals, for every model; ``starts`` initialisations of each model train for
    the first ``start_fraction`` of the steps, and the one with the lowest ``train_future_rmse`` then trains to the end;
    with a warm-up (``warmup_fraction > 0``; none in the presets), each series of a minibatch shows
    only a random ``warmup_obs`` of its ``N`` observations in the first ``warmup_fraction`` of the
    steps (:func:`nodelib.series.random_subsets`; nothing changes when ``N <= warmup_obs``).
    Solves: dopri5 at ``rtol``, ``atol``; ``adjoint`` chooses the adjoint method over direct
    backpropagation (both give the same gradients; with a 4-dimensional state, memory is no concern).
    """

    name: str
    n_series: int = 1000
    n_train: int = 800
    n_window: int = 100
    n_future: int = 100
    step: float = 0.05
    speed: float = 0.15
    r_min: float = 0.5
    max_start: float = 20.0
    noise: float = 0.1
    observations: Tuple[int, ...] = (30, 50, 100)
    latent_dim: int = 4
    rnn_hidden: int = 25
    ode_hidden: int = 20
    ode_layers: int = 2
    ode_activation: str = "elu"
    decoder_hidden: int = 20
    obs_std: float = 0.3
    iterations: int = 5000
    batch_size: int = 100
    lr: float = 0.03
    warmup_obs: int = 30
    warmup_fraction: float = 0.0
    starts: int = 4
    start_fraction: float = 0.2
    rtol: float = 1e-3
    atol: float = 1e-4
    adjoint: bool = False
    seed: int = 0
    checkpoint_every: int = 250


PRESETS = {
    "quick": LatentPreset("quick", n_series=300, n_train=200, observations=(30,), iterations=600, starts=1),
    "full": LatentPreset("full"),
}


def get_preset(name: str, **overrides) -> LatentPreset:
    """Preset ``name`` with ``overrides`` (``None`` keeps a field); bad values raise ``ValueError``."""
    cfg = replace_preset(PRESETS, name, **overrides)
    observations = tuple(cfg.observations)
    if not observations or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= cfg.n_window
                               for n in observations):
        raise ValueError(f"observations must be ints in [1, n_window = {cfg.n_window}], got {cfg.observations!r}.")
    if isinstance(cfg.warmup_obs, bool) or not isinstance(cfg.warmup_obs, int) or cfg.warmup_obs < 1:
        raise ValueError(f"warmup_obs must be a positive int, got {cfg.warmup_obs!r}.")
    if isinstance(cfg.warmup_fraction, bool) or not isinstance(cfg.warmup_fraction, (int, float)) \
            or not 0.0 <= cfg.warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {cfg.warmup_fraction!r}.")
    if isinstance(cfg.ode_layers, bool) or not isinstance(cfg.ode_layers, int) or cfg.ode_layers < 1:
        raise ValueError(f"ode_layers must be a positive int, got {cfg.ode_layers!r}.")
    if cfg.ode_activation not in LatentField.ACTIVATIONS:
        raise ValueError(f"ode_activation must be one of {sorted(LatentField.ACTIVATIONS)}, "
                         f"got {cfg.ode_activation!r}.")
    if isinstance(cfg.starts, bool) or not isinstance(cfg.starts, int) or cfg.starts < 1:
        raise ValueError(f"starts must be a positive int, got {cfg.starts!r}.")
    if isinstance(cfg.start_fraction, bool) or not isinstance(cfg.start_fraction, (int, float)) \
            or not 0.0 < cfg.start_fraction <= 1.0:
        raise ValueError(f"start_fraction must be in (0, 1], got {cfg.start_fraction!r}.")
    if not 0 < cfg.n_train < cfg.n_series:
        raise ValueError(f"n_train must be in [1, n_series - 1 = {cfg.n_series - 1}], got {cfg.n_train!r}.")
    return dataclasses.replace(cfg, observations=observations)


def make_data(cfg: LatentPreset, n_obs: int) -> dict:
    """The training and test spirals and their ``n_obs`` (the chapter's ``N``) irregular observations
    (seeds fixed by ``cfg.seed``)."""
    data = spirals(cfg.n_series, n_window=cfg.n_window, n_future=cfg.n_future, step=cfg.step, speed=cfg.speed,
                   r_min=cfg.r_min, max_start=cfg.max_start, noise=cfg.noise, seed=cfg.seed)
    train, test = data.split(cfg.n_train)
    return {"train": train, "test": test, "train_obs": irregular_observations(train, n_obs, seed=cfg.seed + 1),
            "test_obs": irregular_observations(test, n_obs, seed=cfg.seed + 2)}


def build(kind: str, cfg: LatentPreset) -> nn.Module:
    """The untrained model ``kind`` (one of :data:`MODELS`), in float32 like the data."""
    with default_dtype(torch.float32):
        return _build(kind, cfg)


def _build(kind: str, cfg: LatentPreset) -> nn.Module:
    if kind == "latent_ode":
        return LatentODE(2, cfg.latent_dim, rnn_hidden=cfg.rnn_hidden, ode_hidden=cfg.ode_hidden,
                         ode_layers=cfg.ode_layers, ode_activation=cfg.ode_activation, decoder_hidden=cfg.decoder_hidden, obs_std=cfg.obs_std, rtol=cfg.rtol, atol=cfg.atol,
                         adjoint=cfg.adjoint)
    if kind in ("rnn", "rnn_dt"):
        return RNNForecaster(2, cfg.rnn_hidden, time_input=kind == "rnn_dt")
    raise ValueError(f"kind={kind!r} is unknown; expected one of {MODELS}.")


def _loss(model: nn.Module, times: Tensor, values: Tensor, generator: torch.Generator,
          stats: Optional[SolveStats]) -> Tensor:
    """The training loss per observation: the negative ELBO, or the RNN's negative log-likelihood."""
    if isinstance(model, LatentODE):
        return -model.elbo(times, values, generator=generator, stats=stats).elbo.sum() / times.numel()
    return model.nll(times, values).sum() / times.numel()


def predictive_errors(model: nn.Module, data: Spirals, observations: Tuple[Tensor, Tensor]) -> Tensor:
    """Each spiral's root-mean-square prediction error over the ``n_future`` times after the window and
    the two coordinates, against the noisy observations there: ``(N,)``. (A perfect prediction of the
    noiseless spiral scores the noise's standard deviation, on average.)"""
    with torch.no_grad():
        times, values = observations
        query = data.future_times
        if isinstance(model, LatentODE):
            predicted = model.predict(times, values, query)
        else:
            predicted = model.forecast(times, values, query)
        return (predicted - data.observed[:, data.n_window:]).pow(2).mean((-2, -1)).sqrt()


def reference_rmse(data: Spirals) -> Dict[str, float]:
    """The RMSE of two reference predictions of the ``n_future`` times after the window, scored like
    :func:`predictive_errors`: ``"origin"``, the origin at every time (the spirals' size), and
    ``"noiseless"``, the noiseless spirals themselves (the noise)."""
    future = data.observed[:, data.n_window:]
    return {"origin": float(future.pow(2).mean().sqrt()),
            "noiseless": float((future - data.clean[:, data.n_window:]).pow(2).mean().sqrt())}


def _fit(kind: str, n: int, cfg: LatentPreset, data: dict, checkpoint: Optional[pathlib.Path],
         deadline: Optional[float], verbose: bool) -> Tuple[nn.Module, Optional[dict]]:
    """Train ``kind`` on ``N = n`` observations per training spiral: with ``cfg.starts > 1``, each
    start (its own initial parameters) for the first ``cfg.start_fraction`` of the steps, then the
    start whose ``train_future_rmse`` is lowest to the end. Each start has its checkpoint beside
    ``checkpoint``, which holds the chosen one's (a temporary folder without ``checkpoint``)."""
    if checkpoint is None:
        with tempfile.TemporaryDirectory() as folder:
            return _fit(kind, n, cfg, data, pathlib.Path(folder) / f"{kind}-n{n}.pt", deadline, verbose)
    times, values = data["train_obs"]
    warmup = round(cfg.warmup_fraction * cfg.iterations) if n > cfg.warmup_obs else 0

    def train(start: int, path: pathlib.Path, until: int):
        seed_everything(cfg.seed + 100 * n + MODELS.index(kind) + START_SEED_STRIDE * start)
        model, stats = build(kind, cfg), SolveStats()

        def loss_at(iteration: int, generator: torch.Generator) -> Tuple[Tensor, dict]:
            index = torch.randint(0, times.shape[0], (cfg.batch_size,), generator=generator)
            batch = times[index], values[index]
            if iteration <= warmup:
                batch = random_subsets(*batch, cfg.warmup_obs, generator=generator)
            return _loss(model, *batch, generator, stats), {}

        history = _optimise(
            model, loss_at, iterations=cfg.iterations, until=until, lr=cfg.lr,
            generator=torch.Generator().manual_seed(cfg.seed + n), log_every=max(1, cfg.iterations // 20),
            checkpoint=path, checkpoint_every=cfg.checkpoint_every, verbose=verbose, deadline=deadline,
            describe=lambda i, loss, parts: f"loss {loss:.4f} per observation",
            settings=dict(kind=kind, n=n, iterations=cfg.iterations, lr=cfg.lr, batch_size=cfg.batch_size,
                          warmup=warmup, warmup_obs=cfg.warmup_obs, start=start))
        return model, history, stats

    def future_rmse(model: nn.Module) -> float:
        return float(predictive_errors(model, data["train"], data["train_obs"]).pow(2).mean().sqrt())

    scores, seconds, start = [], [], 0
    if cfg.starts > 1:
        for candidate in range(cfg.starts):
            path = checkpoint.with_name(f"{checkpoint.stem}-start{candidate}.pt")
            model, history, _ = train(candidate, path, max(1, round(cfg.start_fraction * cfg.iterations)))
            if not history.complete:
                return model, None
            scores.append(round(future_rmse(model), 6))
            seconds.append(history.total_seconds)
        start = min(range(cfg.starts), key=scores.__getitem__)
        if not checkpoint.is_file():
            shutil.copyfile(checkpoint.with_name(f"{checkpoint.stem}-start{start}.pt"), checkpoint)
    model, history, stats = train(start, checkpoint, cfg.iterations)
    if not history.complete:
        return model, None
    errors = predictive_errors(model, data["test"], data["test_obs"])
    record = {"params": sum(p.numel() for p in model.parameters()),
              "train_time_s": history.total_seconds + sum(seconds) - (seconds[start] if seconds else 0.0),
              "losses": history.losses, "test_rmse": float(errors.pow(2).mean().sqrt()),
              "test_errors": [round(float(e), 6) for e in errors], "train_future_rmse": future_rmse(model)}
    if scores:
        record["starts"] = {"train_future_rmse": scores, "chosen": start}
    if kind == "latent_ode":
        record["nfe_forward_per_iteration"] = stats.nfe_forward / max(1, history.iterations_run)
    return model, record


def _plain(cfg: LatentPreset) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def run(preset: str = "quick", *, out: Optional[str] = None, budget_s: Optional[float] = None,
        threads: Optional[int] = None, verbose: bool = False, quiet: bool = False, return_models: bool = False,
        models: Tuple[str, ...] = MODELS, **overrides):
    """Train the models of Table 2 for each ``N`` in the preset's ``observations`` and return the
    results (also written to ``out/results.json`` when ``out`` is given).

    Args:
        preset: ``"quick"`` (300 spirals, ``N = 30``, 600 iterations: under a minute on a CPU) or
            ``"full"`` (1,000 spirals, ``N`` = 30, 50, 100, 5,000 iterations).
        out: folder for ``results.json`` and ``checkpoints/``; a rerun with the same ``out`` keeps the
            models already done and resumes the others from their checkpoints.
        budget_s: stop after a checkpoint once this many seconds have passed (rerun to resume).
        threads: PyTorch's CPU thread count.
        verbose: print the fits' progress lines.
        quiet: print nothing (else one line per model, and one at the start and the end).
        return_models: also return the trained models, ``{(kind, N): model}``.
        models: the models to train, a subset of :data:`MODELS` (the paired comparisons need all three).
        overrides: fields of :class:`LatentPreset`.

    The models run on the CPU: with a 4-dimensional latent state, a GPU has nothing to parallelise.
    """
    started = time.monotonic()
    deadline = None if budget_s is None else started + budget_s
    cfg = get_preset(preset, **overrides)
    models = tuple(models)
    if not models or any(kind not in MODELS for kind in models):
        raise ValueError(f"models={models!r} must be a non-empty selection from {MODELS}.")
    say = (lambda message: None) if quiet else log
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}.")
        torch.set_num_threads(threads)
    device = pick_device("cpu")
    out_dir = pathlib.Path(out) if out is not None else None
    results = {"experiment": "latent-ode", "preset": cfg.name, "status": "running", "config": _plain(cfg),
               "models": [kind for kind in MODELS if kind in models],
               "paper": {k: (list(v) if isinstance(v, tuple) else v) for k, v in PAPER.items()},
               "runs": {}, "provenance": None}
    earlier_s = 0.0
    if out_dir is not None and (out_dir / "results.json").is_file():
        previous = read_json(out_dir / "results.json")
        changes = config_changes(previous.get("config") or {}, results["config"])
        if changes:
            raise ValueError(f"{out_dir} holds a run with another configuration ({changes}); use another "
                             f"--out or the same options.")
        results["runs"] = previous.get("runs", {})
        earlier_s = float((previous.get("provenance") or {}).get("wall_time_total_s", 0.0))
    say(f"Table 2: preset {cfg.name}, N = {list(cfg.observations)}, {cfg.n_series} spirals")

    def save() -> None:
        elapsed = time.monotonic() - started
        results["provenance"] = provenance(device, wall_time_s=elapsed, wall_time_total_s=earlier_s + elapsed)
        if out_dir is not None:
            write_json_atomic(out_dir / "results.json", results)

    trained: Dict[tuple, nn.Module] = {}
    complete = True
    for n in cfg.observations:
        data = make_data(cfg, n)
        slot = results["runs"].setdefault(str(n), {})
        for kind in results["models"]:
            checkpoint = None
            if out_dir is not None:
                (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
                checkpoint = out_dir / "checkpoints" / f"{kind}-n{n}.pt"
            if kind in slot and checkpoint is not None and checkpoint.is_file():
                if return_models:
                    model = build(kind, cfg)
                    model.load_state_dict(load_checkpoint(checkpoint, keys=("model",))["model"])
                    trained[(kind, n)] = model
                continue
            model, record = _fit(kind, n, cfg, data, checkpoint, deadline, verbose)
            if record is None:
                complete = False
                say(f"[{kind}, N = {n}] time budget reached; run the same command again to resume")
                break
            trained[(kind, n)] = model
            slot[kind] = record
            say(f"[{kind}, N = {n}] test RMSE {record['test_rmse']:.4f}, {record['train_time_s']:.1f} s")
            save()
        if not complete:
            break
        if set(MODELS) <= set(slot):
            slot["paired"] = {other: _paired(slot["latent_ode"]["test_errors"], slot[other]["test_errors"])
                              for other in ("rnn", "rnn_dt")}
    results["status"] = "complete" if complete else "incomplete"
    save()
    say(f"Table 2 {results['status']} in {time.monotonic() - started:.1f} s")
    return (results, trained) if return_models else results


def _paired(first: list, second: list) -> dict:
    """Mean and standard error of the per-spiral differences ``first - second``."""
    d = torch.tensor(first, dtype=torch.float64) - torch.tensor(second, dtype=torch.float64)
    return {"difference": float(d.mean()), "se": float(d.std() / math.sqrt(d.numel())), "n_test": d.numel()}


def table2_frame(*runs: dict, decimals: int = 4):
    """Table 2 as a ``pandas.DataFrame``: for each model a row per recorded run (labelled by its
    seed when there are several) and the paper's row; a column per ``N`` of the first run."""
    import pandas as pd

    ns = [int(n) for n in runs[0]["runs"]]
    paper = runs[0]["paper"]
    rows = []
    for kind in MODELS:
        for i, results in enumerate(runs):
            label = "this book" + (f", seed {results['config']['seed']}" if len(runs) > 1 else "")
            slots = results["runs"]
            rows.append([MODEL_NAMES[kind] if i == 0 else "", label,
                         *[f"{slots[str(n)][kind]['test_rmse']:.{decimals}f}" if str(n) in slots else "–"
                           for n in ns]])
        if kind in paper["table2"]:
            column = dict(zip(paper["observations"], paper["table2"][kind]))
            rows.append(["", "Table 2", *[f"{column[n]:.4f}" if n in column else "–" for n in ns]])
    return pd.DataFrame(rows, columns=["model", "source", *[f"N = {n}" for n in ns]])


def paired_frame(*runs: dict, decimals: int = 4):
    """The latent ODE's RMSE minus each RNN's, per test spiral: mean ± standard error, and the
    difference in standard errors; a row per run, ``N`` and RNN."""
    import pandas as pd

    rows = []
    for results in runs:
        for n, slot in results["runs"].items():
            for other, p in slot.get("paired", {}).items():
                rows.append([results["config"]["seed"], int(n), f"Latent ODE − {MODEL_NAMES[other]}",
                             f"{p['difference']:+.{decimals}f} ± {p['se']:.{decimals}f}",
                             f"{p['difference'] / p['se']:+.1f}"])
    frame = pd.DataFrame(rows, columns=["seed", "N", "difference", "RMSE per spiral", "in standard errors"])
    return frame if len(runs) > 1 else frame.drop(columns="seed")


def scores_frame(runs, settings: Dict[str, str]):
    """The latent ODE's two scores in recorded runs, as a ``pandas.DataFrame``: a row per run and
    ``N``, with the run's configuration fields ``settings`` (``{field: column name}``), ``N``, the
    RMSE on the training spirals' futures (``train_future_rmse``, which training never sees: the
    score by which settings are chosen) and on the test spirals."""
    import pandas as pd

    rows = [[results["config"][field] for field in settings]
            + [int(n), slot["latent_ode"]["train_future_rmse"], slot["latent_ode"]["test_rmse"]]
            for results in runs for n, slot in results["runs"].items() if "latent_ode" in slot]
    return pd.DataFrame(rows, columns=[*settings.values(), "N", "RMSE, training spirals' futures",
                                       "RMSE, test spirals"])


def starts_frame(runs, kind: str = "latent_ode"):
    """The starts of model ``kind`` in recorded runs, as a ``pandas.DataFrame``: a row per run and
    ``N`` with the seed, ``N``, each start's RMSE on the training spirals' futures when the starts
    were compared, the start that went on (counted from 1), and its two final scores."""
    import pandas as pd

    rows, count = [], 0
    for results in runs:
        for n, slot in results["runs"].items():
            record = slot[kind]
            scores = record["starts"]["train_future_rmse"]
            count = max(count, len(scores))
            rows.append([results["config"]["seed"], int(n), *scores, record["starts"]["chosen"] + 1,
                         record["train_future_rmse"], record["test_rmse"]])
    columns = ["seed", "N", *[f"start {k + 1}" for k in range(count)], "chosen",
               "RMSE, training spirals' futures", "RMSE, test spirals"]
    return pd.DataFrame(rows, columns=columns)


def plot_extrapolations(models: Dict[tuple, nn.Module], data: dict, n_obs: int, *, index: int = 0, paths: int = 40):
    """The paper's Fig. 8 for this experiment, one row of three panels: test spiral ``index`` with its
    ``n_obs`` observations and the extrapolations of the RNN with time differences and of the latent ODE;
    then the latent ODE's posterior-mean trajectories over the window for ``paths`` test spirals,
    projected on their first two principal components, coloured by direction. ``data`` is
    :func:`make_data`'s; ``models`` maps ``(kind, N)`` to trained models, as :func:`run` returns them."""
    import matplotlib.pyplot as plt

    test, (times, values) = data["test"], data["test_obs"]
    ode = models[("latent_ode", n_obs)]
    with torch.no_grad():
        predictions = {"RNN, time differences": models[("rnn_dt", n_obs)].forecast(times, values, test.future_times),
                       "Latent ODE": ode.predict(times, values, test.future_times)}
        mean, _ = ode.encode(times, values)
        latent_paths = ode.trajectory(mean[:paths], test.times[:test.n_window])
        flat = latent_paths.reshape(-1, latent_paths.shape[-1])
        _, _, v = torch.pca_lowrank(flat, q=2)
        projected = ((latent_paths - flat.mean(0)) @ v).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (name, predicted) in zip(axes[:2], predictions.items()):
        ax.plot(*test.clean[index].T, color="0.7", lw=1, label="true spiral")
        ax.plot(*values[index].T, ".", color="C0", ms=4, label="observations")
        ax.plot(*predicted[index].T, color="C3", lw=1.5, label="extrapolation")
        ax.set(title=f"{name}, N = {n_obs}", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    axes[1].sharex(axes[0])
    axes[1].sharey(axes[0])
    axes[0].legend(fontsize=7, loc="lower left")
    for b in range(projected.shape[1]):
        ccw = bool(test.counter_clockwise[b])
        axes[2].plot(projected[:, b, 0], projected[:, b, 1], lw=0.7, color="C0" if ccw else "C1",
                     label=("counter-clockwise" if ccw else "clockwise") if b < 2 else None)
    axes[2].set(title="Latent trajectories", xlabel="principal component 1", ylabel="principal component 2")
    axes[2].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def plot_latent_traversal(model: LatentODE, data: dict, *, index: int = 0, spread: float = 0.5,
                          steps: int = 7):
    """The paper's Fig. 9: from the posterior mean of test spiral ``index``, each of the first three
    latent dimensions in turn shifted by ``steps`` values in ``[-spread, spread]``, solved over the
    whole grid and decoded (one panel per dimension)."""
    import matplotlib.pyplot as plt

    test, (times, values) = data["test"], data["test_obs"]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.1), sharex=True, sharey=True)
    with torch.no_grad():
        mean, _ = model.encode(times[index:index + 1], values[index:index + 1])
        for ax, dim in zip(axes, range(3)):
            for k, shift in enumerate(torch.linspace(-spread, spread, steps)):
                z0 = mean.clone()
                z0[0, dim] += shift
                path = model.decoder(model.trajectory(z0, test.times))[:, 0]
                ax.plot(*path.T, color=plt.cm.viridis(k / (steps - 1)), lw=1)
            ax.set(title=f"varying $z_{{0,{dim + 1}}}$", xlabel="$x_1$", aspect="equal")
    axes[0].set_ylabel("$x_2$")
    fig.tight_layout()
    return fig


def save_figures(results: dict, models: Dict[tuple, nn.Module], out: str, *, n_obs: Optional[int] = None) -> list:
    """Write the Fig. 8 and Fig. 9 analogues of a complete run's models at ``n_obs`` observations (default:
    the run's smallest ``N``, as in the paper's figures) to ``out/fig8.png`` and ``out/fig9.png``;
    return the paths."""
    import matplotlib.pyplot as plt

    n_obs = min(results["config"]["observations"]) if n_obs is None else n_obs
    cfg = get_preset(results["preset"], **{k: (tuple(v) if isinstance(v, list) else v)
                                           for k, v in results["config"].items() if k != "name"})
    data = make_data(cfg, n_obs)
    paths = []
    for name, fig in (("fig8.png", plot_extrapolations(models, data, n_obs)),
                      ("fig9.png", plot_latent_traversal(models[("latent_ode", n_obs)], data))):
        path = pathlib.Path(out) / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
