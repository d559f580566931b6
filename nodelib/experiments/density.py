"""Figs. 4 and 5 of Chen et al. (2018): continuous against discrete planar flows (chapter "CNF against NF").

Two experiments, one code path at two scales:

* **Density matching (Fig. 4).** A flow ``q`` is fitted to an unnormalised target density ``p̃``
  (the energies of :mod:`nodelib.data.energies`) by minimising ``KL(q‖p)`` with samples of ``q``
  (:func:`nodelib.fit_kl`). The planar NF has ``K`` layers (generative direction: samples and their
  log-densities are explicit); the planar CNF has ``M`` hidden units whose parameters come from a
  hypernetwork of ``t`` (:class:`nodelib.HyperPlanarField`), and samples with their log-densities
  come from one forward solve of the augmented ODE (:meth:`nodelib.CNF.sample_with_log_prob`).
  ``K = M`` runs over the preset's ``sizes``, as in the paper's figure.
* **Maximum likelihood (Fig. 5).** Both flows are fitted to samples of two circles and two moons
  (:func:`nodelib.fit_density`), the NF in the normalizing direction (exact ``log q(x)``), the CNF
  by the reverse-time augmented ODE. The parameter counts are matched: the NF gets
  ``K = round(P / (2n + 1))`` layers for a CNF of ``P`` parameters (:func:`matched_nf_layers`). The
  score is the test negative log-likelihood on fresh samples, beside the data's entropy.

Presets: ``"quick"`` (a minute, the chapter runs it live) and ``"full"`` (the paper's sizes
``K, M ∈ {1, 2, 8, 32, 64}`` and its 10,000 Adam iterations for the CNF; hours). Both run on the CPU
unless told otherwise, because a GPU trains these small 2D flows more slowly (:func:`run`). :func:`run`
prints plain-text progress, checkpoints every model (an interrupted run resumes when started again
with the same output folder) and writes ``results.json`` atomically after every model, with
provenance. The command line ``python -m nodelib.experiments density`` calls it.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..cnf import CNF
from ..compiled import check_compiled_flag
from ..data import energies, toy2d
from ..dynamics import HyperPlanarField
from ..flows import PlanarFlow
from ..reproducibility import seed_everything
from ..solve import SolveStats
from ..training import FitHistory, fit_density, fit_kl
from ..storage import load_checkpoint, read_json, write_json_atomic
from .measure import count_parameters
from .runs import config_changes, default_dtype, log, pick_device, provenance, replace_preset

__all__ = ["DensityPreset", "PRESETS", "PAPER", "get_preset", "recorded_config", "matched_nf_layers", "build_nf",
           "build_cnf", "evaluation_copy", "kl_estimate", "heldout_nll", "run", "kl_table", "ml_table",
           "still_to_run", "plot_density_matching", "plot_maximum_likelihood", "save_figures"]

PARTS = ("kl", "ml")

#: What Chen et al. (2018, §4.1) did for Figs. 4 and 5. Fig. 4 (density matching) shows NFs of
#: K = 2, 8, 32 planar layers against CNFs of M = 2, 8, 32 units; the CNFs were trained for 10,000
#: Adam iterations, the NFs for 500,000 RMSprop iterations. Fig. 5 (maximum likelihood on two circles
#: and two moons, qualitative) uses a CNF with 64 hidden units against an NF of 64 stacked
#: one-hidden-unit (planar) layers, not matched in parameters; the paper gives no iteration count.
PAPER = {
    "sizes": (2, 8, 32),
    "cnf_iterations": 10_000, "cnf_optimizer": "Adam",
    "nf_kl_iterations": 500_000, "nf_kl_optimizer": "RMSprop",
    "ml_datasets": ("two_circles", "two_moons"), "ml_cnf_width": 64, "ml_nf_layers": 64,
}

@dataclasses.dataclass(frozen=True)
class DensityPreset:
    """Everything that defines a run of both experiments besides the device and the output folder.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        targets, sizes: Fig. 4's energies (:data:`nodelib.data.energies.NAMES`) and its ``K = M`` values.
        kl_iterations_nf, kl_iterations_cnf: Adam iterations of the KL fits.
        kl_batch, kl_lr: samples per iteration and initial learning rate (cosine schedule to 0).
        kl_anneal: fraction of the iterations over which the target's weight rises from 0.01 to 1.
        kl_eval_samples: samples for the reported ``KL(q‖p)`` and its standard error.
        entropy_samples: samples for the Monte Carlo entropy of each data set (the floor of the test NLL).
        datasets: Fig. 5's data sets (:data:`nodelib.data.toy2d.NAMES`).
        ml_width: the CNF's ``M`` in Fig. 5.
        ml_nf_layers: the NF's depth ``K`` in Fig. 5; ``None`` (the presets): as many layers as match the
            CNF's parameter count (:func:`matched_nf_layers`); the paper's configuration is
            ``ml_width = ml_nf_layers = 64``.
        ml_hidden: the hidden widths of the CNF's hypernetwork in Fig. 5 (``None``: ``hidden``).
        ml_iterations, ml_batch, ml_lr: the maximum-likelihood fits.
        ml_repeats: independent repeats of each maximum-likelihood fit (new initialisation and
            minibatches; same data), to see the spread between seeds.
        n_train, n_test: training and test points (independent draws).
        hidden: the widths of the hypernetwork's hidden layers.
        rtol, atol: tolerances of the CNF's dopri5 solves in training.
        eval_tol: tolerance of the solves that report KL and test NLL.
        adjoint: differentiate the CNF's solves by the adjoint method (else direct backprop).
        kinetic_weight, jacobian_weight: the weights of the CNF's regularisers in training
            (:class:`nodelib.CNF`, chapter "Regularised dynamics"); 0 (the presets): unregularised.
        trace: the CNF's trace, ``"closed_form"`` (the presets) or ``"exact"``; a Jacobian penalty
            needs ``"exact"``, since the closed form computes no Jacobian products.
        compiled: train the CNFs on nodelib's compiled path (:class:`nodelib.CNF`'s ``compiled``): ``True``
            (``--compile``: each solver step compiled by ``torch.compile``, the first iterations paying for
            the compilation) or ``"eager"``; ``False`` (the presets): the default path. The same training to
            rounding; the reported KL and test NLL are computed on the default path either way.
        nf_init_scale: standard deviation of the NF's initial ``u`` and ``w``.
        dtype: ``"float32"`` or ``"float64"``.
        seed: model ``i`` of a run is initialised from ``seed + i``, its samples or minibatches from
            a generator of its own, so each model is reproducible alone and after a resume.
        checkpoint_every: iterations between checkpoints.
        log_every: iterations between the recorded (and printed) losses, training times and, for a
            CNF, evaluation counts; ``None`` (the presets): a quarter of each fit's iterations.
    """

    name: str
    targets: tuple
    sizes: tuple
    kl_iterations_nf: int
    kl_iterations_cnf: int
    kl_batch: int
    kl_lr: float
    datasets: tuple
    ml_width: int
    ml_iterations: int
    ml_batch: int
    ml_lr: float
    hidden: tuple
    ml_repeats: int = 1
    ml_hidden: Optional[tuple] = None
    ml_nf_layers: Optional[int] = None
    kl_anneal: float = 0.5
    kl_eval_samples: int = 20_000
    entropy_samples: int = 100_000
    n_train: int = 5000
    n_test: int = 5000
    rtol: float = 1e-3
    atol: float = 1e-3
    eval_tol: float = 1e-5
    adjoint: bool = False
    kinetic_weight: float = 0.0
    jacobian_weight: float = 0.0
    trace: str = "closed_form"
    compiled: Union[bool, str] = False
    nf_init_scale: float = 0.5
    dtype: str = "float64"
    seed: int = 0
    checkpoint_every: int = 100
    log_every: Optional[int] = None

    @property
    def fig5_hidden(self) -> tuple:
        """The hypernetwork of Fig. 5's CNF: ``ml_hidden``, or ``hidden`` if that is ``None``."""
        return self.hidden if self.ml_hidden is None else self.ml_hidden

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]


#: ``quick``: one target, ``K = M ∈ {2, 8, 32}``, a few hundred iterations, a hypernetwork with one
#: hidden layer of 4 (Fig. 5: ``M = 8``, 248 parameters, against an NF of 50 layers, 250 parameters;
#: three repeats). ``full``, the book's choices at full scale: the four energies, ``K, M ∈ {1, 2, 8, 32,
#: 64}`` (the paper's 2, 8, 32 and two more), 10,000 Adam iterations for the CNF as in the paper, a
#: hypernetwork ``1-32-32``, the adjoint method; the NFs get 100,000 Adam iterations (the paper:
#: 500,000 RMSprop iterations). For Fig. 5, ``full`` matches parameters, unlike the paper: ``M = 32``
#: with a hypernetwork ``1-8`` (1,744 parameters) against an NF of 349 layers, 10,000 iterations each
#: (with the ``1-32-32`` hypernetwork and ``M = 64``, 13,792 parameters, the matched NF would need
#: 2,758 layers). The paper's own Fig. 5 configuration is ``full`` with
#: ``ml_width=64, ml_hidden=(32, 32), ml_nf_layers=64``.
PRESETS = {
    "quick": DensityPreset(name="quick", targets=("u1",), sizes=(2, 8, 32), kl_iterations_nf=300,
                           kl_iterations_cnf=300, kl_batch=256, kl_lr=2e-2, datasets=("two_circles", "two_moons"),
                           ml_width=8, ml_iterations=400, ml_batch=256, ml_lr=2e-2, hidden=(4,), ml_repeats=3,
                           kl_eval_samples=10_000, entropy_samples=20_000, checkpoint_every=100),
    "full": DensityPreset(name="full", targets=energies.NAMES, sizes=(1, 2, 8, 32, 64), kl_iterations_nf=100_000,
                          kl_iterations_cnf=PAPER["cnf_iterations"], kl_batch=512, kl_lr=1e-2,
                          datasets=PAPER["ml_datasets"], ml_width=32, ml_iterations=10_000,
                          ml_batch=512, ml_lr=1e-2, hidden=(32, 32), ml_hidden=(8,), ml_repeats=3,
                          kl_eval_samples=100_000,
                          n_train=50_000, n_test=50_000, rtol=1e-5, atol=1e-5, eval_tol=1e-6, adjoint=True,
                          dtype="float32", checkpoint_every=500),
}


def get_preset(name: str, **overrides) -> DensityPreset:
    """Preset ``name`` with some fields replaced, e.g. ``get_preset("quick", ml_iterations=50)``."""
    preset = replace_preset(PRESETS, name, **overrides)

    def names(value) -> tuple:  # one name given as a string is a selection of one, not of its letters
        return (value,) if isinstance(value, str) else tuple(value)

    preset = dataclasses.replace(preset, targets=names(preset.targets), sizes=tuple(preset.sizes),
                                 datasets=names(preset.datasets), hidden=tuple(preset.hidden),
                                 ml_hidden=None if preset.ml_hidden is None else tuple(preset.ml_hidden))
    bad = [t for t in preset.targets if t not in energies.NAMES]
    if bad:
        raise ValueError(f"targets {bad} are unknown; expected names from {energies.NAMES}.")
    bad = [d for d in preset.datasets if d not in toy2d.NAMES]
    if bad:
        raise ValueError(f"datasets {bad} are unknown; expected names from {toy2d.NAMES}.")
    for field in ("kl_iterations_nf", "kl_iterations_cnf", "kl_batch", "ml_width", "ml_iterations", "ml_batch",
                  "ml_repeats", "kl_eval_samples", "entropy_samples", "n_train", "n_test", "checkpoint_every"):
        value = getattr(preset, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive int, got {value!r}.")
    if not preset.sizes or not all(isinstance(s, int) and s >= 1 for s in preset.sizes):
        raise ValueError(f"sizes must be positive ints, got {preset.sizes!r}.")
    if not 0 <= preset.kl_anneal <= 1:
        raise ValueError(f"kl_anneal must be a fraction in [0, 1], got {preset.kl_anneal!r}.")
    if preset.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={preset.dtype!r} must be 'float32' or 'float64'.")
    if preset.log_every is not None and (isinstance(preset.log_every, bool) or not isinstance(preset.log_every, int)
                                         or preset.log_every < 1):
        raise ValueError(f"log_every must be a positive int or None, got {preset.log_every!r}.")
    if preset.trace not in ("closed_form", "exact"):
        raise ValueError(f"trace={preset.trace!r} must be 'closed_form' or 'exact'.")
    check_compiled_flag(preset.compiled)
    if preset.jacobian_weight and preset.trace != "exact":
        raise ValueError(f"jacobian_weight={preset.jacobian_weight!r} needs trace='exact' (the closed-form "
                         f"trace computes no Jacobian products); add --set trace=exact.")
    return preset


def recorded_config(config: dict) -> dict:
    """A recorded run's configuration (``results["config"]``) with the fields added to
    :class:`DensityPreset` since it ran filled in with their defaults, which is how that run behaved
    (e.g. ``kinetic_weight`` 0: unregularised)."""
    added = {field.name: field.default for field in dataclasses.fields(DensityPreset)
             if field.name not in config and field.default is not dataclasses.MISSING}
    return {**_plain_values(added), **config}


def matched_nf_layers(params: int, dim: int = 2) -> int:
    """The depth ``K = round(params / (2 dim + 1))`` (at least 1) of a planar NF with about ``params``
    parameters: each planar layer has ``u, w ∈ R^dim`` and ``b``, so ``|K (2 dim + 1) - params| ≤ dim``."""
    if isinstance(params, bool) or not isinstance(params, int) or params < 1:
        raise ValueError(f"params must be a positive int, got {params!r}.")
    return max(1, int(math.floor(params / (2 * dim + 1) + 0.5)))


def build_nf(layers: int, preset: DensityPreset, *, direction: str, device: torch.device) -> PlanarFlow:
    """A planar NF of ``layers`` layers in 2D, built in the preset's dtype."""
    with default_dtype(preset.torch_dtype):
        return PlanarFlow(2, layers, direction=direction, init_scale=preset.nf_init_scale).to(device)


def build_cnf(width: int, preset: DensityPreset, *, device: torch.device, hidden: Optional[tuple] = None) -> CNF:
    """The paper's planar CNF in 2D: :class:`~nodelib.HyperPlanarField` with ``width`` units and a hypernetwork
    with hidden widths ``hidden`` (default ``preset.hidden``), the preset's trace (closed form by default),
    regularisers and solver path (``preset.compiled``), dopri5 at the preset's training tolerance on
    ``t ∈ [0, 1]``."""
    with default_dtype(preset.torch_dtype):
        field = HyperPlanarField(2, width, preset.hidden if hidden is None else hidden).to(device)
    return CNF(field, trace=preset.trace, adjoint=preset.adjoint, rtol=preset.rtol, atol=preset.atol,
               kinetic_weight=preset.kinetic_weight, jacobian_weight=preset.jacobian_weight, compiled=preset.compiled)


def evaluation_copy(model: nn.Module, tol: float) -> nn.Module:
    """``model`` for reporting: a CNF sharing its field and trace, solved at tolerance ``tol``, without
    regularisers (they change training, not the density); an NF is exact as it is."""
    if isinstance(model, CNF):
        return CNF(model.field, trace=model.trace, adjoint=False, rtol=tol, atol=tol)
    return model


def kl_estimate(model: nn.Module, log_target, log_normaliser: float, n: int, *, seed: int = 1, batch: int = 10_000,
                stats: Optional[SolveStats] = None) -> Tuple[float, float]:
    """Monte Carlo ``KL(q‖p) = E_q[log q - log p̃] + log Z`` (eq. :eq:`reverse-kl`) from ``n`` samples of
    ``q``, and its standard error.

    Args:
        model: a module with ``sample_with_log_prob(n, generator=...)``, the density ``q``.
        log_target: ``log p̃``, points ``(B, d)`` to ``(B,)``.
        log_normaliser: ``log Z = log ∫ p̃``.
        n, seed, batch: samples, seed of their generator (on the model's device), samples per call.
        stats: a :class:`nodelib.SolveStats` for a CNF's evaluation counts.
    """
    device = next(iter(model.parameters())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    kwargs = {"stats": stats} if isinstance(model, CNF) else {}
    gaps = []
    with torch.no_grad():
        for size in [batch] * (n // batch) + ([n % batch] if n % batch else []):
            x, log_q = model.sample_with_log_prob(size, generator=generator, **kwargs)
            gaps.append((log_q - log_target(x)).double().cpu())
    gap = torch.cat(gaps)
    return float(gap.mean()) + log_normaliser, float(gap.std() / math.sqrt(len(gap)))


def _log_probs(model: nn.Module, x: Tensor, stats: Optional[SolveStats] = None) -> Tensor:
    """``log q(x)`` of every point of ``x`` (float64, on the CPU), in chunks of 5,000 points."""
    with torch.no_grad():
        kwargs = {"stats": stats} if isinstance(model, CNF) else {}
        return torch.cat([model.log_prob(chunk, **kwargs) for chunk in x.split(5000)]).double().cpu()


def heldout_nll(model: nn.Module, x: Tensor, *, stats: Optional[SolveStats] = None) -> Tuple[float, float]:
    """Average negative log-likelihood of ``x`` under ``model`` and its standard error, in nats."""
    logp = _log_probs(model, x, stats)
    return float(-logp.mean()), float(logp.std() / math.sqrt(len(logp)))


def paired_nll_differences(cnfs: Sequence[nn.Module], nfs: Sequence[nn.Module], x: Tensor) -> Dict[str, dict]:
    """Test NLL of every CNF minus that of every NF on the same points ``x``, with paired standard errors.

    For CNF ``i`` and NF ``j`` the per-point differences ``d = log q_j(x) - log q_i(x)`` are averaged
    (their mean is the difference of the two test NLLs) and their standard deviation over ``sqrt(n)``
    is the standard error of that difference. Because both models see the same points, what makes a
    point likely or unlikely under both cancels, and this error is much smaller than that of either
    NLL. Keys ``"cnf-r<i> - nf-r<j>"``; values ``{"difference", "se"}`` in nats.
    """
    cnf_logp = [_log_probs(m, x) for m in cnfs]
    nf_logp = [_log_probs(m, x) for m in nfs]
    out = {}
    for i, a in enumerate(cnf_logp):
        for j, b in enumerate(nf_logp):
            d = b - a
            out[f"cnf-r{i} - nf-r{j}"] = {"difference": float(d.mean()), "se": float(d.std() / math.sqrt(len(d)))}
    return out


def _grid_mass(model: nn.Module, device: torch.device, dtype: torch.dtype) -> float:
    """``∫ q`` over ``[-6, 6]²`` by the midpoint rule (close to 1 for a proper density)."""
    def log_prob(points: Tensor) -> Tensor:
        return model.log_prob(points.to(device=device, dtype=dtype)).cpu()
    return toy2d.grid_log_density(log_prob, bounds=(-6, 6, -6, 6), resolution=120, dtype=dtype).integral()


def _ml_data(name: str, cfg: DensityPreset, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Training and test samples of the data set ``name`` (seeds 1 and 2)."""
    return tuple(toy2d.sample(name, n, seed=seed, dtype=cfg.torch_dtype).to(device)
                 for n, seed in ((cfg.n_train, 1), (cfg.n_test, 2)))


def _plain(preset: DensityPreset) -> dict:
    return _plain_values(dataclasses.asdict(preset))


def _plain_values(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _record(model: nn.Module, history: FitHistory, iterations: int, checkpoint: Optional[pathlib.Path]) -> dict:
    return {"params": count_parameters(model), "iterations": iterations, "train_time_s": history.total_seconds,
            "final_loss": history.losses[-1][1] if history.losses else None,
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "losses": [list(row) for row in history.losses], "parts": [list(row) for row in history.parts],
            "elapsed_s": [list(row) for row in history.elapsed], "train_nfe": [list(row) for row in history.nfe]}


def _build(part: str, kind: str, size: Optional[int], cfg: DensityPreset, device: torch.device) -> nn.Module:
    """The untrained model of one job: Fig. 4's NF (``size`` layers, generative) or CNF (``size``
    units); Fig. 5's CNF (``cfg.ml_width`` units) or NF (normalizing; ``cfg.ml_nf_layers`` layers, or
    as many as match the CNF's parameter count)."""
    if part == "kl":
        return (build_nf(size, cfg, direction="generative", device=device) if kind == "nf"
                else build_cnf(size, cfg, device=device))
    if kind == "cnf":
        return build_cnf(cfg.ml_width, cfg, device=device, hidden=cfg.fig5_hidden)
    layers = cfg.ml_nf_layers or matched_nf_layers(HyperPlanarField.count_parameters(2, cfg.ml_width, cfg.fig5_hidden))
    return build_nf(layers, cfg, direction="normalizing", device=device)


def _log_every(cfg: DensityPreset, iterations: int) -> int:
    return cfg.log_every or max(1, iterations // 4)


def _fit_kl(model: nn.Module, kind: str, target: str, index: int, cfg: DensityPreset,
            checkpoint: Optional[pathlib.Path], deadline: Optional[float], verbose: bool) -> Optional[dict]:
    iterations = cfg.kl_iterations_nf if kind == "nf" else cfg.kl_iterations_cnf
    history = fit_kl(model, lambda x: energies.unnormalised_log_density(target, x), iterations=iterations,
                     batch_size=cfg.kl_batch, lr=cfg.kl_lr, seed=cfg.seed + index,
                     anneal_iterations=int(cfg.kl_anneal * iterations), log_every=_log_every(cfg, iterations),
                     checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every, verbose=verbose,
                     deadline=deadline)
    if not history.complete:
        return None
    record = _record(model, history, iterations, checkpoint)
    stats = SolveStats()
    record["kl"], record["kl_se"] = kl_estimate(evaluation_copy(model, cfg.eval_tol),
                                                lambda x: energies.unnormalised_log_density(target, x),
                                                energies.log_normaliser(target), cfg.kl_eval_samples, stats=stats)
    record["eval_nfe"] = stats.nfe_forward if kind == "cnf" else None
    return record


def _fit_ml(model: nn.Module, kind: str, index: int, cfg: DensityPreset, train: Tensor, test: Tensor,
            checkpoint: Optional[pathlib.Path], deadline: Optional[float], verbose: bool) -> Optional[dict]:
    history = fit_density(model, train, iterations=cfg.ml_iterations, batch_size=cfg.ml_batch, lr=cfg.ml_lr,
                          seed=cfg.seed + index, log_every=_log_every(cfg, cfg.ml_iterations), checkpoint=checkpoint,
                          checkpoint_every=cfg.checkpoint_every, verbose=verbose, deadline=deadline)
    if not history.complete:
        return None
    record = _record(model, history, cfg.ml_iterations, checkpoint)
    stats = SolveStats()
    evaluated = evaluation_copy(model, cfg.eval_tol)
    record["test_nll"], record["test_nll_se"] = heldout_nll(evaluated, test, stats=stats)
    record["eval_nfe"] = stats.nfe_forward if kind == "cnf" else None
    param = next(iter(model.parameters()))
    record["grid_mass"] = _grid_mass(evaluated, param.device, param.dtype)
    if kind == "nf":
        record["layers"] = len(model.layers)
    else:
        record["width"] = cfg.ml_width
    return record


def run(preset: str = "quick", *, out: Optional[str] = None, device: Optional[str] = None,
        parts: Sequence[str] = PARTS, budget_s: Optional[float] = None, threads: Optional[int] = None,
        verbose: bool = True, return_models: bool = False, **overrides):
    """Run Figs. 4 and 5 and return the results (also written to ``out/results.json``).

    Args:
        preset: ``"quick"`` or ``"full"``.
        out: folder for ``results.json`` and ``checkpoints/``; ``None`` keeps nothing on disk.
        device: ``"cpu"``, ``"cuda"``, ...; default the CPU, even where CUDA is available: these 2D fits
            are too small for a GPU (``benchmarks/devices.py``: on an H200 a training iteration of the
            full preset's NF with ``K = 64`` took 2.7 times and of its CNF with ``M = 64`` 1.8 times as
            long as on two CPU threads).
        parts: ``"kl"`` (Fig. 4, density matching) and/or ``"ml"`` (Fig. 5, maximum likelihood).
        budget_s: stop (after a checkpoint) once this many seconds have passed; the results are then
            marked ``"incomplete"`` and running the same call again resumes.
        threads: PyTorch's CPU thread count.
        verbose: print the progress lines of every fit (the run's own lines are always printed).
        return_models: also return the trained models, ``{(part, name, kind, i): model}``, with ``i``
            the size ``K = M`` for Fig. 4 and the repeat for Fig. 5.
        overrides: fields of :class:`DensityPreset` to change, e.g. ``sizes=(2,)``.

    The models are trained one after the other: for each target and size, NF then CNF; then for each
    data set and repeat, NF then CNF. Every model has a checkpoint ``out/checkpoints/<part>-<name>-<kind>-<i>.pt``;
    a rerun with the same ``out`` keeps the models that ``results.json`` records as done (reloading
    them from their checkpoints) and resumes the others. The provenance's ``wall_time_s`` is the last
    call's; ``wall_time_total_s`` adds up the calls that wrote the file.
    """
    started = time.monotonic()
    deadline = None if budget_s is None else started + budget_s
    cfg = get_preset(preset, **overrides)
    parts = tuple(parts)
    if not parts or any(p not in PARTS for p in parts):
        raise ValueError(f"parts={parts!r} must be a non-empty selection from {PARTS}.")
    dev = pick_device(device, prefer_cuda=False)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}.")
        torch.set_num_threads(threads)
    out_dir = pathlib.Path(out) if out is not None else None
    results = {"experiment": "cnf-vs-nf", "preset": cfg.name, "status": "running", "parts": list(parts),
               "config": _plain(cfg), "paper": {k: list(v) if isinstance(v, tuple) else v for k, v in PAPER.items()},
               "density_matching": {}, "maximum_likelihood": {}, "provenance": None}
    if out_dir is not None and (out_dir / "results.json").is_file():
        previous = read_json(out_dir / "results.json")
        changes = config_changes(recorded_config(previous.get("config") or {}), results["config"])
        if changes:
            raise ValueError(f"{out_dir} holds a run with another configuration ({changes}); use another "
                             f"--out or the same options.")
        results["density_matching"] = previous.get("density_matching", {})
        results["maximum_likelihood"] = previous.get("maximum_likelihood", {})
        earlier_s = float((previous.get("provenance") or {}).get("wall_time_total_s", 0.0))
    else:
        earlier_s = 0.0
    models: Dict[tuple, nn.Module] = {}
    log(f"CNF against NF: preset {cfg.name}, parts {list(parts)}, device {dev}, dtype {cfg.dtype}")

    def save() -> None:
        elapsed = time.monotonic() - started
        results["provenance"] = provenance(dev, wall_time_s=elapsed, wall_time_total_s=earlier_s + elapsed)
        if out_dir is not None:
            write_json_atomic(out_dir / "results.json", results)

    jobs = []
    if "kl" in parts:
        jobs += [("kl", target, kind, size) for target in cfg.targets for size in cfg.sizes for kind in ("nf", "cnf")]
    if "ml" in parts:
        jobs += [("ml", dataset, kind, repeat) for dataset in cfg.datasets for repeat in range(cfg.ml_repeats)
                 for kind in ("nf", "cnf")]
    data: Dict[str, Tuple[Tensor, Tensor]] = {}
    for index, (part, name, kind, size) in enumerate(jobs):
        tag = f"{part}-{name}-{kind}-" + (f"{size}" if part == "kl" else f"r{size}")
        checkpoint = None
        if out_dir is not None:
            (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            checkpoint = out_dir / "checkpoints" / f"{tag}.pt"
        if part == "kl":
            slot = results["density_matching"].setdefault(name, {"log_normaliser": energies.log_normaliser(name),
                                                                 "nf": {}, "cnf": {}})
            done = slot[kind].get(str(size))
        else:
            if name not in results["maximum_likelihood"]:
                entropy, entropy_se = toy2d.entropy(name, n=cfg.entropy_samples)
                results["maximum_likelihood"][name] = {"entropy": entropy, "entropy_se": entropy_se,
                                                       "nf": {}, "cnf": {}}
            slot = results["maximum_likelihood"][name]
            done = slot[kind].get(str(size))
        if done is not None and checkpoint is not None and checkpoint.is_file():
            if return_models or (part == "ml" and "paired" not in slot):
                seed_everything(cfg.seed + index)
                model = _build(part, kind, size, cfg, dev)
                model.load_state_dict(load_checkpoint(checkpoint, keys=("model",))["model"])
                models[(part, name, kind, size)] = model
            continue
        seed_everything(cfg.seed + index)
        model = _build(part, kind, size, cfg, dev)
        if part == "kl":
            record = _fit_kl(model, kind, name, index, cfg, checkpoint, deadline, verbose)
        else:
            if name not in data:
                data[name] = _ml_data(name, cfg, dev)
            record = _fit_ml(model, kind, index, cfg, *data[name], checkpoint, deadline, verbose)
        if record is None:
            results["status"] = "incomplete"
            log(f"[{tag}] time budget reached; run the same command again to resume")
            break
        models[(part, name, kind, size)] = model
        slot[kind][str(size)] = record
        if part == "kl":
            record["size"] = size
            log(f"[{tag}] {record['params']} parameters, KL(q||p) = {record['kl']:.3f} ± {record['kl_se']:.3f} "
                f"nats, {record['train_time_s']:.1f} s")
        else:
            record["repeat"] = size
            log(f"[{tag}] {record['params']} parameters, test NLL {record['test_nll']:.3f} ± "
                f"{record['test_nll_se']:.3f} nats (entropy {slot['entropy']:.3f}), {record['train_time_s']:.1f} s")
        save()
    else:
        results["status"] = "complete"
        for name, slot in results["maximum_likelihood"].items():
            if "ml" in parts and "paired" not in slot:
                repeats = range(cfg.ml_repeats)
                test = data[name][1] if name in data else _ml_data(name, cfg, dev)[1]
                slot["paired"] = paired_nll_differences(
                    [evaluation_copy(models[("ml", name, "cnf", r)], cfg.eval_tol) for r in repeats],
                    [models[("ml", name, "nf", r)] for r in repeats], test)
                log(f"[ml-{name}] test NLL of each CNF minus each NF, paired: " + ", ".join(
                    f"{v['difference']:+.4f} ± {v['se']:.4f}" for v in slot["paired"].values()) + " nats")
    save()
    log(f"CNF against NF {results['status']} in {time.monotonic() - started:.1f} s"
        + (f"; results in {out_dir / 'results.json'}" if out_dir is not None else ""))
    return (results, models) if return_models else results


def kl_table(results: dict) -> list:
    """Fig. 4's numbers as rows ``{target, size, nf_params, nf_kl, nf_kl_se, cnf_params, cnf_kl, cnf_kl_se}``,
    for every target and size with both models done."""
    rows = []
    for target, slot in results["density_matching"].items():
        for size in sorted(int(k) for k in slot["nf"] if k in slot["cnf"]):
            nf, cnf = slot["nf"][str(size)], slot["cnf"][str(size)]
            rows.append({"target": target, "size": size, "nf_params": nf["params"], "nf_kl": nf["kl"],
                         "nf_kl_se": nf["kl_se"], "cnf_params": cnf["params"], "cnf_kl": cnf["kl"],
                         "cnf_kl_se": cnf["kl_se"]})
    return rows


def ml_table(results: dict) -> list:
    """Fig. 5's numbers as rows ``{dataset, entropy, nf_params, cnf_params, nf_nll, cnf_nll}`` (lists over
    the repeats with both models done) with their means ``nf_mean``, ``cnf_mean``."""
    rows = []
    for name, slot in results["maximum_likelihood"].items():
        repeats = sorted(int(k) for k in slot["nf"] if k in slot["cnf"])
        if not repeats:
            continue
        nf = [slot["nf"][str(r)]["test_nll"] for r in repeats]
        cnf = [slot["cnf"][str(r)]["test_nll"] for r in repeats]
        rows.append({"dataset": name, "entropy": slot["entropy"], "nf_params": slot["nf"][str(repeats[0])]["params"],
                     "cnf_params": slot["cnf"][str(repeats[0])]["params"], "nf_nll": nf, "cnf_nll": cnf,
                     "nf_mean": sum(nf) / len(nf), "cnf_mean": sum(cnf) / len(cnf)})
    return rows


def still_to_run(recorded: Sequence[Tuple[pathlib.Path, dict]]) -> list:
    """What the full preset covers and no complete recorded run does, as ``(what, command)`` pairs.

    ``recorded`` is :func:`nodelib.experiments.runs.recorded_results`'s list for ``"cnf-vs-nf"``. A
    Fig. 4 target counts as done at a size ``K = M`` when a complete run holds both of its models
    there (runs over different sizes of one target add up); a Fig. 5 data set when a complete run
    holds it. Targets missing the same sizes share one command; an empty list means nothing is missing.
    """
    full = PRESETS["full"]
    complete = [r for _, r in recorded if r.get("status") == "complete"]
    done4 = {(row["target"], row["size"]) for r in complete for row in kl_table(r)}
    book_fig5 = [r for r in complete if r.get("config", {}).get("ml_nf_layers") is None  # (not the paper's
                 and r.get("config", {}).get("ml_width", full.ml_width) == full.ml_width]  # configuration)
    done5 = {row["dataset"] for r in book_fig5 for row in ml_table(r)}
    groups: Dict[tuple, list] = {}
    for target in full.targets:
        missing = tuple(s for s in full.sizes if (target, s) not in done4)
        if missing:
            groups.setdefault(missing, []).append(target)
    todo = []
    for missing, targets in groups.items():
        every = missing == full.sizes
        command = f"python -m nodelib.experiments density --preset full --parts kl --targets {','.join(targets)}"
        if not every:
            command += f" --sizes {','.join(map(str, missing))}"
        folder = "-".join(targets) + ("" if every else "-" + "-".join(map(str, missing)))
        what = f"Fig. 4 on {', '.join(targets)}" + ("" if every else f", K = M = {', '.join(map(str, missing))}")
        todo.append((what, f"{command} --out results/density-full-kl-{folder}"))
    for name in full.datasets:
        if name not in done5:
            todo.append((f"Fig. 5 on {name}", f"python -m nodelib.experiments density --preset full --parts ml "
                                              f"--datasets {name} --out results/density-full-{name.split('_')[-1]}"))
    return todo


def _panel(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


def plot_density_matching(results: dict, models: dict, target: str, *, n: int = 2000, seed: int = 3,
                          bounds: Tuple[float, float, float, float] = (-4, 4, -4, 4)):
    """Fig. 4's layout for one target: the target density, then one column per size with the NF's and
    the CNF's samples below it (rows: target / NF with K layers / CNF with M units). Returns the figure."""
    import matplotlib.pyplot as plt

    record = results["density_matching"][target]
    sizes = sorted(int(s) for s in record["nf"] if str(s) in record["cnf"])
    fig, axes = plt.subplots(3, len(sizes), figsize=(2.3 * len(sizes), 7.0), squeeze=False)
    grid = toy2d.grid_log_density(lambda z: energies.unnormalised_log_density(target, z), bounds=bounds,
                                  resolution=200, dtype=torch.float64)
    for j, size in enumerate(sizes):
        axes[0, j].imshow(grid.density, extent=grid.extent, origin="lower", cmap="viridis")
        _panel(axes[0, j], f"target {target.upper()}")
        for row, kind, label in ((1, "nf", "K"), (2, "cnf", "M")):
            model = models[("kl", target, kind, size)]
            device = next(iter(model.parameters())).device
            with torch.no_grad():
                x = model.sample_with_log_prob(n, generator=torch.Generator(device=device).manual_seed(seed))[0]
            x = x.cpu()
            axes[row, j].scatter(x[:, 0], x[:, 1], s=0.5, color=f"C{row - 1}")
            axes[row, j].set_xlim(*bounds[:2])
            axes[row, j].set_ylim(*bounds[2:])
            r = record[kind][str(size)]
            _panel(axes[row, j], f"{kind.upper()} {label}={size}: KL {r['kl']:.2f}")
    fig.tight_layout()
    return fig


_ML_BOUNDS = {"two_circles": (-1.6, 1.6, -1.6, 1.6), "two_moons": (-3.5, 3.5, -3.5, 3.5)}


def plot_maximum_likelihood(results: dict, models: dict, *, n: int = 2000, seed: int = 3, resolution: int = 80):
    """Fig. 5's comparison: per data set (rows), the data, then the NF's and the CNF's samples and
    densities (of the first repeat), with their test NLL. Returns the figure."""
    import matplotlib.pyplot as plt

    names = list(results["maximum_likelihood"])
    fig, axes = plt.subplots(len(names), 5, figsize=(12.5, 2.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        bounds = _ML_BOUNDS.get(name, (-4, 4, -4, 4))
        data = toy2d.sample(name, n, seed=2)
        row[0].scatter(data[:, 0], data[:, 1], s=0.5, color="k")
        _panel(row[0], f"{name.replace('_', ' ')}: data")
        for i, kind in enumerate(("nf", "cnf")):
            model = models[("ml", name, kind, 0)]
            param = next(iter(model.parameters()))
            record = results["maximum_likelihood"][name][kind]["0"]
            evaluated = evaluation_copy(model, results["config"]["eval_tol"])
            with torch.no_grad():
                x = evaluated.sample(n, generator=torch.Generator(device=param.device).manual_seed(seed)).cpu()
            grid = toy2d.grid_log_density(
                lambda z: evaluated.log_prob(z.to(device=param.device, dtype=param.dtype)).cpu(),
                bounds=bounds, resolution=resolution, dtype=param.dtype)
            row[1 + 2 * i].scatter(x[:, 0], x[:, 1], s=0.5, color=f"C{i}")
            _panel(row[1 + 2 * i], f"{kind.upper()} samples ({record['params']} params)")
            row[2 + 2 * i].imshow(grid.density, extent=grid.extent, origin="lower", cmap="viridis")
            _panel(row[2 + 2 * i], f"{kind.upper()} density: NLL {record['test_nll']:.2f}")
        for ax in row:
            ax.set_xlim(*bounds[:2])
            ax.set_ylim(*bounds[2:])
    fig.tight_layout()
    return fig


def save_figures(results: dict, models: dict, out: str) -> list:
    """Draw Fig. 4 (one file per target) and Fig. 5 into ``out`` as PNG files; returns their paths.
    Needs matplotlib (the ``book`` extra); without it, logs a line and draws nothing."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        log("matplotlib is not installed: no figures drawn (pip install 'nodelib[book]')")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out)
    figures = [(f"fig4-{target}.png", lambda t=target: plot_density_matching(results, models, t))
               for target in results["density_matching"]]
    if results["maximum_likelihood"]:
        figures.append(("fig5.png", lambda: plot_maximum_likelihood(results, models)))
    paths = []
    for name, draw in figures:
        fig = draw()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        paths.append(str(out_dir / name))
        log(f"figure {out_dir / name}")
    return paths
