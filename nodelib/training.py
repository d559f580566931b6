"""Training of density models: maximum likelihood on data (chapter "Generative modelling with
continuous normalizing flows", eq. :eq:`cnf-mle`) and ``KL(q‖p)`` to an unnormalised target density
(chapters "Normalizing flows" and "CNF against NF", eq. :eq:`reverse-kl`).

:func:`fit_density` fits any model with ``log_prob(x) -> (B,)`` (a :class:`nodelib.CNF`, a
:class:`nodelib.PlanarFlow`) to data by minimising the average negative log-likelihood of
minibatches. :func:`fit_kl` fits any model with ``sample_with_log_prob(n) -> (x, log q(x))`` to an
unnormalised log-density ``log p̃`` by minimising the Monte Carlo estimate of
``E_q[log q - log p̃] = KL(q‖p) - log Z``. A model with penalties (a :class:`nodelib.CNF` built with
``kinetic_weight`` or ``jacobian_weight``, :cite:`finlay2020train`) is fitted to the regularised
objective: the weighted means of its per-sample penalties are added to either loss. Both run Adam
with a cosine learning-rate schedule, print plain-text progress, and with ``checkpoint=path`` save
their state atomically every ``checkpoint_every`` iterations and resume from it when rerun, bit for
bit (the file loads with ``torch.load(..., weights_only=True)``); with ``deadline`` they stop early,
after a checkpoint.
Bit for bit means every random stream a fit draws from is in the checkpoint: the fit's own
generator (minibatches, samples) and PyTorch's global generators, from which a model may draw as
well (Hutchinson's probe in ``CNF.log_prob``, dropout); resuming restores them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ._validate import positive_float, positive_ints
from .cnf import CNF
from .solve import SolveStats
from .storage import load_checkpoint, save_checkpoint

__all__ = ["FitHistory", "fit_density", "fit_kl", "kl_weight", "mean_nll"]


@dataclasses.dataclass
class FitHistory:
    """What :func:`fit_density` or :func:`fit_kl` did: ``(iteration, minibatch loss)`` pairs every
    ``log_every`` iterations, the number of iterations run in this call and its wall-clock seconds,
    the seconds of training over all calls that resumed one another, whether all iterations are
    done (``False`` when a ``deadline`` stopped the run early), and the parts of each logged loss.

    At the same iterations, ``elapsed`` holds ``(iteration, seconds)``, the training time so far
    (over resumed calls too, without evaluations); for a :class:`nodelib.CNF`, ``nfe`` holds
    ``(iteration, forward, backward)``, the evaluations of the vector field in that iteration's
    solves and in the adjoint's backward solves (:class:`nodelib.SolveStats`); with an ``evaluate``
    function, ``evaluations`` holds ``(iteration, evaluate(model))``.

    ``parts`` holds ``(iteration, {name: value})`` at the iterations of ``losses``: the data term
    (``"nll"`` for :func:`fit_density`, ``"kl"`` for :func:`fit_kl`) and, for a regularised
    :class:`nodelib.CNF`, the minibatch means of its penalties (``"kinetic"``, ``"jacobian"``;
    :cite:`finlay2020train`), unweighted: the loss is the data term plus
    ``Σ model.penalty_weights[name] · parts[name]``.

    Example:
        >>> import torch, nodelib
        >>> history = nodelib.fit_density(nodelib.PlanarFlow(1, 1), torch.randn(100, 1),
        ...                               iterations=20, log_every=10, verbose=False)
        >>> [iteration for iteration, loss in history.losses], history.complete
        ([10, 20], True)
        >>> [(iteration, list(parts)) for iteration, parts in history.parts]
        [(10, ['nll']), (20, ['nll'])]
    """

    losses: List[Tuple[int, float]] = dataclasses.field(default_factory=list)
    iterations_run: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    complete: bool = True
    parts: List[Tuple[int, Dict[str, float]]] = dataclasses.field(default_factory=list)
    elapsed: List[Tuple[int, float]] = dataclasses.field(default_factory=list)
    nfe: List[Tuple[int, int, int]] = dataclasses.field(default_factory=list)
    evaluations: List[Tuple[int, float]] = dataclasses.field(default_factory=list)


def mean_nll(model: nn.Module, x: Tensor, *, batch_size: int = 5000) -> float:
    """The average negative log-likelihood ``-(1/N) Σ log p(x_i)`` in nats, without a graph.

    ``x`` must hold at least one point: the mean over no points is undefined (a per-point
    ``log_prob`` of an empty batch is itself empty, but it has no mean).

    Example:
        >>> import math, torch, nodelib
        >>> nll = nodelib.mean_nll(nodelib.StandardNormal(1), torch.zeros(10, 1))
        >>> round(nll, 6)  # log √(2π)
        0.918939
    """
    positive_ints(batch_size=batch_size)
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a tensor of at least one point, shape (N, d) with N >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    with torch.no_grad():
        return float(-torch.cat([model.log_prob(chunk) for chunk in x.split(batch_size)]).mean())


PathLike = Union[str, os.PathLike]


Parts = Dict[str, Tensor]


def _optimise(model: nn.Module, loss_at: Callable[[int, torch.Generator], Tuple[Tensor, Parts]], *, iterations: int,
              lr: float, generator: torch.Generator, log_every: int, checkpoint: Optional[PathLike],
              checkpoint_every: int, verbose: bool, deadline: Optional[float],
              describe: Callable[[int, float, Dict[str, float]], str], settings: dict,
              stats: Optional[SolveStats] = None,
              evaluate: Optional[Callable[[nn.Module], float]] = None, until: Optional[int] = None) -> FitHistory:
    """Adam with a cosine schedule on ``loss_at(iteration, generator) -> (loss, parts)``; checkpoints, resume,
    progress lines. ``parts`` (scalars) are recorded, as floats, with the loss; so are the counts of
    ``stats`` (reset before each iteration, read after its backward pass; the caller's ``loss_at``
    passes it to its solves) and ``evaluate(model)`` (without a graph, not counted as training time).

    ``settings`` (plain numbers) is saved with each checkpoint; resuming with other settings raises,
    since the restored optimiser, schedule and generator would silently keep the old ones.

    ``until`` (default ``iterations``) stops after that iteration, with a checkpoint, while the
    schedule still spans ``iterations``: a later call resumes from there."""
    until = iterations if until is None else until
    if isinstance(until, bool) or not isinstance(until, int) or not 1 <= until <= iterations:
        raise ValueError(f"until must be an int in [1, iterations = {iterations}], got {until!r}.")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
    history, start_iteration, seconds_before = FitHistory(), 0, 0.0
    path = None if checkpoint is None else pathlib.Path(checkpoint)
    state = None if path is None else load_checkpoint(
        path, keys=("model", "optimizer", "schedule", "generator", "iteration", "losses"))
    if state is not None:
        saved = state.get("settings", settings)  # (checkpoints written before settings were saved)
        if saved != settings:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
            now = ", ".join(f"{k}={settings.get(k)!r}" for k in changed)
            raise ValueError(f"checkpoint {path} was written with {was}, not {now}; pass the same arguments "
                             f"to resume it, or another checkpoint path to start afresh.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        _set_global_rng(state)
        start_iteration = int(state["iteration"])
        if start_iteration > until:
            raise ValueError(f"checkpoint {path} is at iteration {start_iteration}, past until = {until}.")
        seconds_before = float(state.get("seconds", 0.0))
        history.losses = [(int(i), float(v)) for i, v in state["losses"]]
        history.parts = [(int(i), {k: float(v) for k, v in p.items()}) for i, p in state.get("parts", [])]
        history.elapsed = [(int(i), float(v)) for i, v in state.get("elapsed", [])]
        history.nfe = [(int(i), int(f), int(b)) for i, f, b in state.get("nfe", [])]
        history.evaluations = [(int(i), float(v)) for i, v in state.get("evaluations", [])]
        if verbose:
            print(f"resumed from {path} at iteration {start_iteration}", flush=True)
    begin = time.perf_counter()
    paused = 0.0  # seconds spent in evaluate, not training

    def seconds() -> float:
        return seconds_before + time.perf_counter() - begin - paused

    def save(iteration: int) -> None:
        save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "schedule": schedule.state_dict(), "generator": generator.get_state(),
                               "iteration": iteration, "losses": history.losses, "parts": history.parts,
                               "elapsed": history.elapsed, "nfe": history.nfe,
                               "evaluations": history.evaluations, "settings": settings,
                               "seconds": seconds(), **_global_rng()})

    warned = False

    for iteration in range(start_iteration + 1, until + 1):
        optimizer.zero_grad()
        if stats is not None:
            stats.reset()
        loss, parts = loss_at(iteration, generator)
        if not warned and not math.isfinite(loss.item()):
            warnings.warn(f"the training loss is {loss.item()} at iteration {iteration}; the parameters will "
                          f"become non-finite (lower lr, or check the model and the data). Warned once per fit.",
                          RuntimeWarning, stacklevel=3)
            warned = True
        loss.backward()
        optimizer.step()
        schedule.step()
        history.iterations_run += 1
        if iteration % log_every == 0 or iteration == until:
            history.losses.append((iteration, loss.item()))
            history.parts.append((iteration, {name: part.item() for name, part in parts.items()}))
            history.elapsed.append((iteration, seconds()))
            if stats is not None:
                history.nfe.append((iteration, stats.nfe_forward, stats.nfe_backward))
            if evaluate is not None:
                start = time.perf_counter()
                with torch.no_grad():
                    history.evaluations.append((iteration, float(evaluate(model))))
                paused += time.perf_counter() - start
            if verbose:
                print(f"iteration {iteration:5d}: {describe(iteration, loss.item(), history.parts[-1][1])} "
                      f"({time.perf_counter() - begin:.1f} s)", flush=True)
        stop = deadline is not None and time.monotonic() > deadline and iteration < until
        if path is not None and (iteration % checkpoint_every == 0 or iteration == until or stop):
            save(iteration)
        if stop:
            history.complete = False
            if verbose:
                print(f"time budget reached at iteration {iteration}; run again to resume", flush=True)
            break
    history.seconds = time.perf_counter() - begin - paused
    history.total_seconds = seconds_before + history.seconds
    return history


def _global_rng() -> dict:
    """PyTorch's global random states: the CPU's, and every CUDA device's once CUDA is in use."""
    states = {"rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["rng_cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_global_rng(state: dict) -> None:
    """Restore what :func:`_global_rng` saved (CUDA states only onto as many devices as were saved)."""
    if "rng_cpu" in state:
        torch.set_rng_state(state["rng_cpu"])
    saved = state.get("rng_cuda")
    if saved and torch.cuda.is_available() and torch.cuda.device_count() == len(saved):
        torch.cuda.set_rng_state_all(saved)


def _per_sample(values: Tensor, batch_size: int, what: str) -> Tensor:
    """``values`` must hold one number per sample of the minibatch."""
    if not isinstance(values, Tensor) or values.shape != (batch_size,):
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{what} must return one value per sample, shape ({batch_size},), got {got}; a sum or "
                         f"mean over the batch would silently weight the objective by the batch size.")
    return values


def _penalty_weights(model: nn.Module, method: str) -> Dict[str, float]:
    """The model's active penalty weights (``{}`` for a model without penalties); it must then offer ``method``."""
    weights = dict(getattr(model, "penalty_weights", None) or {})
    if weights and not callable(getattr(model, method, None)):
        raise TypeError(f"model has penalty_weights {weights} but no {method} method to compute the penalties.")
    return weights


def _penalised(data_term: Tensor, penalties: Dict[str, Tensor], weights: Dict[str, float], batch_size: int,
               what: str, name: str) -> Tuple[Tensor, Parts]:
    """``data_term + Σ weight · mean(penalty)``, and its parts ``{name: data_term, penalty: mean(penalty)}``."""
    parts = {name: data_term.detach()}
    loss = data_term
    for penalty, weight in weights.items():
        mean = _per_sample(penalties[penalty], batch_size, f"{what}[{penalty!r}]").mean()
        parts[penalty] = mean.detach()
        loss = loss + weight * mean
    return loss, parts


def _counter(model: nn.Module) -> Tuple[Optional[SolveStats], dict]:
    """For a :class:`nodelib.CNF`, a :class:`nodelib.SolveStats` and the keyword arguments that pass it to
    its solves; for other models ``(None, {})``."""
    if isinstance(model, CNF):
        stats = SolveStats()
        return stats, {"stats": stats}
    return None, {}


def _describe(loss: float, parts: Dict[str, float], weights: Dict[str, float]) -> str:
    """``loss`` as the sum of its parts: ``"1.167 = nll 1.100 + 0.1 × kinetic 0.670"``."""
    (data_name, data_term), *penalties = parts.items()
    return " + ".join([f"{loss:.3f} = {data_name} {data_term:.3f}"]
                      + [f"{weights[name]:g} × {name} {value:.3f}" for name, value in penalties])


def fit_density(model: nn.Module, data: Tensor, *, iterations: int, batch_size: int = 256, lr: float = 1e-2,
                seed: int = 0, log_every: int = 100, checkpoint: Optional[Union[str, os.PathLike]] = None,
                checkpoint_every: int = 100, verbose: bool = True, deadline: Optional[float] = None,
                evaluate: Optional[Callable[[nn.Module], float]] = None) -> FitHistory:
    """Fit ``model`` to ``data`` (shape ``(N, d)``) by maximum likelihood.

    Each iteration draws a minibatch of ``batch_size`` rows with replacement (from a generator seeded
    with ``seed``), takes one Adam step on ``-mean(log p(x))``, and follows a cosine schedule from
    ``lr`` down to 0 over ``iterations``.

    A model with non-empty ``penalty_weights`` (a :class:`nodelib.CNF` built with ``kinetic_weight``
    or ``jacobian_weight``) is fitted instead to the regularised objective :eq:`regularised-objective`
    of :cite:`finlay2020train`,

        -mean(log p(x)) + kinetic_weight · mean(K(x)) + jacobian_weight · mean(J(x)),

    with the kinetic energy ``K`` and the Jacobian's Frobenius norm ``J``
    from the same solve as ``log p(x)``
    (:meth:`nodelib.CNF.log_prob_and_penalties`); ``FitHistory.parts`` and the progress lines show
    the three terms apart. With both weights 0 the fit is the unregularised one, bit for bit.

    Args:
        model: a module with ``log_prob(x) -> (B,)`` (and, with ``penalty_weights``,
            ``log_prob_and_penalties(x) -> ((B,), {name: (B,)})``).
        data: the training points, shape ``(N, d)``.
        iterations: total number of Adam steps (counting those of a resumed run).
        batch_size, lr, seed: minibatch size, initial learning rate, seed of the minibatch draws.
        log_every: print (if ``verbose``) and record the minibatch loss (and its parts) every this many
            iterations.
        checkpoint: a file to save the model, optimiser, schedule and generator to, and to resume from.
        checkpoint_every: iterations between checkpoints.
        verbose: print progress lines.
        deadline: a ``time.monotonic()`` value; once passed, the run saves a checkpoint and stops
            (``FitHistory.complete`` is then ``False``; calling again resumes).
        evaluate: a function of the model returning a number (e.g. the test NLL), called without a
            graph every ``log_every`` iterations and recorded in ``FitHistory.evaluations``; its time
            is not training time. It must not draw from the fit's generator (it may draw from
            PyTorch's global one, which then changes the rest of the fit as any extra draw would).

    Example:
        >>> import torch, nodelib
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at 0x...>
        >>> data = 2.0 + 0.5 * torch.randn(2000, 1)        # N(2, 0.25)
        >>> flow = nodelib.PlanarFlow(1, 2)
        >>> _ = nodelib.fit_density(flow, data, iterations=300, lr=0.05, verbose=False)
        >>> best = nodelib.mean_nll(torch.distributions.Normal(2.0, 0.5), data)
        >>> nodelib.mean_nll(flow, data) - best < 0.2   # near the data's own density
        True

        A CNF with a kinetic-energy penalty (RNODE, :cite:`finlay2020train`):

        >>> field = nodelib.MLPField(1, hidden=(8,))
        >>> cnf = nodelib.CNF(field, kinetic_weight=0.1, adjoint=False)
        >>> history = nodelib.fit_density(cnf, data, iterations=4, batch_size=32,
        ...                               log_every=2, verbose=False)
        >>> [(iteration, list(parts)) for iteration, parts in history.parts]
        [(2, ['nll', 'kinetic']), (4, ['nll', 'kinetic'])]
        >>> (_, loss), (_, parts) = history.losses[-1], history.parts[-1]
        >>> abs(loss - (parts["nll"] + 0.1 * parts["kinetic"])) < 1e-5
        True
    """
    positive_ints(iterations=iterations, batch_size=batch_size, log_every=log_every,
                         checkpoint_every=checkpoint_every)
    positive_float("lr", lr)
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[0] < 1:
        raise ValueError(f"data must be a tensor of shape (N, d), got {getattr(data, 'shape', type(data).__name__)}.")
    if not callable(getattr(model, "log_prob", None)):
        raise TypeError(f"model must have a log_prob(x) method, got {type(model).__name__}.")
    weights = _penalty_weights(model, "log_prob_and_penalties")
    stats, counted = _counter(model)

    def loss_at(iteration: int, generator: torch.Generator) -> Tuple[Tensor, Parts]:
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator)
        if not weights:
            nll = -_per_sample(model.log_prob(data[index], **counted), batch_size, "model.log_prob(x)").mean()
            return nll, {"nll": nll.detach()}
        log_p, penalties = model.log_prob_and_penalties(data[index], **counted)
        nll = -_per_sample(log_p, batch_size, "model.log_prob_and_penalties(x)[0]").mean()
        return _penalised(nll, penalties, weights, batch_size, "model.log_prob_and_penalties(x)[1]", "nll")

    def describe(iteration: int, loss: float, parts: Dict[str, float]) -> str:
        return f"minibatch loss {_describe(loss, parts, weights)}" if weights else f"minibatch NLL {loss:.3f}"

    return _optimise(model, loss_at, iterations=iterations, lr=lr, generator=torch.Generator().manual_seed(seed),
                     log_every=log_every, checkpoint=checkpoint, checkpoint_every=checkpoint_every, verbose=verbose,
                     deadline=deadline, describe=describe, stats=stats, evaluate=evaluate,
                     settings=dict(objective="nll", iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                                   **{f"{name}_weight": weight for name, weight in weights.items()}))


def kl_weight(iteration: int, anneal_iterations: int, beta0: float = 0.01) -> float:
    """The weight ``β`` of ``log p̃`` at ``iteration`` (counted from 1): rises linearly from ``beta0``
    to 1 over the first ``anneal_iterations`` iterations, then stays at 1 (no annealing if 0)."""
    if anneal_iterations <= 0:
        return 1.0
    return min(1.0, beta0 + (1.0 - beta0) * (iteration - 1) / anneal_iterations)


def fit_kl(model: nn.Module, log_target: Callable[[Tensor], Tensor], *, iterations: int, batch_size: int = 256,
           lr: float = 1e-2, seed: int = 0, anneal_iterations: int = 0, beta0: float = 0.01, log_every: int = 100,
           checkpoint: Optional[PathLike] = None, checkpoint_every: int = 100, verbose: bool = True,
           deadline: Optional[float] = None, evaluate: Optional[Callable[[nn.Module], float]] = None) -> FitHistory:
    """Fit ``model``'s density ``q`` to ``p = p̃/Z`` by minimising ``KL(q‖p)`` (eq. :eq:`reverse-kl`).

    Each iteration draws ``batch_size`` samples ``x ~ q`` with their ``log q(x)`` (reparameterised:
    differentiable in the parameters), and takes one Adam step on the mean of
    ``log q(x) - β log p̃(x)``. At ``β = 1`` this is an unbiased estimate of ``KL(q‖p) - log Z``; the
    weight ``β`` (:func:`~nodelib.training.kl_weight`) rises from ``beta0`` to 1 over the first ``anneal_iterations``
    iterations, as in :cite:`rezende2015variational`, which keeps ``q`` from collapsing onto one mode
    early on. The samples are drawn with a generator seeded with ``seed`` on the model's device.

    A model with non-empty ``penalty_weights`` (a regularised :class:`nodelib.CNF`) adds, as in
    :func:`fit_density`, the weighted means of the penalties of the samples' trajectories
    (:cite:`finlay2020train`), from the same
    forward solve (:meth:`nodelib.CNF.sample_with_log_prob_and_penalties`); ``FitHistory.parts``
    records ``"kl"`` (the loss above) and the penalties.

    Args:
        model: a module with ``sample_with_log_prob(n, generator=...) -> (x, log q(x))`` (a
            generative :class:`nodelib.PlanarFlow`, a :class:`nodelib.CNF`; with ``penalty_weights``,
            ``sample_with_log_prob_and_penalties(n, generator=...) -> (x, log q(x), {name: (n,)})``).
        log_target: ``log p̃``, mapping points ``(B, d)`` to ``(B,)``.
        iterations, batch_size, lr, seed, log_every, checkpoint, checkpoint_every, verbose, deadline, evaluate:
            as for :func:`fit_density`.
        anneal_iterations, beta0: the annealing of ``β``.

    Example:
        >>> import torch, nodelib
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at 0x...>
        >>> flow = nodelib.PlanarFlow(1, 2, direction="generative")
        >>> def log_target(x):  # N(1, 0.25), unnormalised
        ...     return -0.5 * ((x - 1.0) / 0.5).pow(2).sum(-1)
        >>> _ = nodelib.fit_kl(flow, log_target, iterations=300, lr=0.05, verbose=False)
        >>> abs(flow.sample(20_000).mean().item() - 1.0) < 0.1
        True
    """
    positive_ints(iterations=iterations, batch_size=batch_size, log_every=log_every,
                         checkpoint_every=checkpoint_every)
    if not callable(getattr(model, "sample_with_log_prob", None)):
        raise TypeError(f"model must have a sample_with_log_prob(n) method, got {type(model).__name__}.")
    if not callable(log_target):
        raise TypeError(f"log_target must be a function of points (B, d) -> (B,), got {type(log_target).__name__}.")
    if isinstance(anneal_iterations, bool) or not isinstance(anneal_iterations, int) or anneal_iterations < 0:
        raise ValueError(f"anneal_iterations must be a non-negative int, got {anneal_iterations!r}.")
    positive_float("lr", lr)
    if isinstance(beta0, bool) or not isinstance(beta0, (int, float)) or not 0 < beta0 <= 1:
        raise ValueError(f"beta0 must be in (0, 1], got {beta0!r}.")
    device = next(iter(model.parameters())).device
    weights = _penalty_weights(model, "sample_with_log_prob_and_penalties")
    stats, counted = _counter(model)

    def loss_at(iteration: int, generator: torch.Generator) -> Tuple[Tensor, Parts]:
        if weights:
            x, log_q, penalties = model.sample_with_log_prob_and_penalties(batch_size, generator=generator,
                                                                           **counted)
        else:
            x, log_q = model.sample_with_log_prob(batch_size, generator=generator, **counted)
        log_p = _per_sample(log_target(x), batch_size, "log_target(x)")
        kl = (log_q - kl_weight(iteration, anneal_iterations, beta0) * log_p).mean()
        if not weights:
            return kl, {"kl": kl.detach()}
        return _penalised(kl, penalties, weights, batch_size, "model.sample_with_log_prob_and_penalties(n)[2]",
                          "kl")

    def describe(iteration: int, loss: float, parts: Dict[str, float]) -> str:
        beta = f"beta {kl_weight(iteration, anneal_iterations, beta0):.2f}"
        return f"loss {_describe(loss, parts, weights)} ({beta})" if weights else f"KL loss {loss:.3f} ({beta})"

    return _optimise(model, loss_at, iterations=iterations, lr=lr,
                     generator=torch.Generator(device=device).manual_seed(seed), log_every=log_every,
                     checkpoint=checkpoint, checkpoint_every=checkpoint_every, verbose=verbose, deadline=deadline,
                     describe=describe, stats=stats, evaluate=evaluate,
                     settings=dict(objective="kl", iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                                   anneal_iterations=anneal_iterations, beta0=beta0,
                                   **{f"{name}_weight": w for name, w in weights.items()}))
