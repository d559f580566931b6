"""Maximum-likelihood training of density models (chapter "Generative modelling with continuous
normalizing flows", eq. :eq:`cnf-mle`).

Any model with ``log_prob(x) -> (B,)`` (a :class:`nodelib.CNF`, a :class:`nodelib.PlanarFlow`)
is fitted by minimising the average negative log-likelihood of minibatches with Adam and a cosine
learning-rate schedule. :func:`fit_density` prints plain-text progress, and with ``checkpoint=path``
saves its state atomically every ``checkpoint_every`` iterations and resumes from it when rerun
(the file loads with ``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["FitHistory", "fit_density", "mean_nll"]


@dataclasses.dataclass
class FitHistory:
    """What :func:`fit_density` did: ``(iteration, minibatch NLL)`` pairs every ``log_every``
    iterations, the number of iterations run in this call, and its wall-clock seconds."""

    losses: List[Tuple[int, float]] = dataclasses.field(default_factory=list)
    iterations_run: int = 0
    seconds: float = 0.0


def mean_nll(model: nn.Module, x: Tensor, *, batch_size: int = 5000) -> float:
    """The average negative log-likelihood ``-(1/N) Σ log p(x_i)`` in nats, without a graph."""
    with torch.no_grad():
        return float(-torch.cat([model.log_prob(chunk) for chunk in x.split(batch_size)]).mean())


def _save_atomically(state: dict, path: pathlib.Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit_density(model: nn.Module, data: Tensor, *, iterations: int, batch_size: int = 256, lr: float = 1e-2,
                seed: int = 0, log_every: int = 100, checkpoint: Optional[Union[str, os.PathLike]] = None,
                checkpoint_every: int = 100, verbose: bool = True) -> FitHistory:
    """Fit ``model`` to ``data`` (shape ``(N, d)``) by maximum likelihood.

    Each iteration draws a minibatch of ``batch_size`` rows with replacement (from a generator seeded
    with ``seed``), takes one Adam step on ``-mean(log p(x))``, and follows a cosine schedule from
    ``lr`` down to 0 over ``iterations``.

    Args:
        model: a module with ``log_prob(x) -> (B,)``.
        data: the training points, shape ``(N, d)``.
        iterations: total number of Adam steps (counting those of a resumed run).
        batch_size, lr, seed: minibatch size, initial learning rate, seed of the minibatch draws.
        log_every: print (if ``verbose``) and record the minibatch NLL every this many iterations.
        checkpoint: a file to save the model, optimiser, schedule and generator to, and to resume from.
        checkpoint_every: iterations between checkpoints.
        verbose: print progress lines.
    """
    for name, value in (("iterations", iterations), ("batch_size", batch_size), ("log_every", log_every),
                        ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[0] < 1:
        raise ValueError(f"data must be a tensor of shape (N, d), got {getattr(data, 'shape', type(data).__name__)}.")
    if not callable(getattr(model, "log_prob", None)):
        raise TypeError(f"model must have a log_prob(x) method, got {type(model).__name__}.")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
    generator = torch.Generator().manual_seed(seed)
    history, start_iteration = FitHistory(), 0
    path = None if checkpoint is None else pathlib.Path(checkpoint)
    if path is not None and path.exists():
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start_iteration = int(state["iteration"])
        history.losses = [(int(i), float(v)) for i, v in state["losses"]]
        if verbose:
            print(f"resumed from {path} at iteration {start_iteration}", flush=True)
    begin = time.perf_counter()
    for iteration in range(start_iteration + 1, iterations + 1):
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator)
        optimizer.zero_grad()
        loss = -model.log_prob(data[index]).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        history.iterations_run += 1
        if iteration % log_every == 0 or iteration == iterations:
            history.losses.append((iteration, loss.item()))
            if verbose:
                print(f"iteration {iteration:5d}: minibatch NLL {loss.item():.3f} "
                      f"({time.perf_counter() - begin:.1f} s)", flush=True)
        if path is not None and (iteration % checkpoint_every == 0 or iteration == iterations):
            _save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "schedule": schedule.state_dict(), "generator": generator.get_state(),
                              "iteration": iteration, "losses": history.losses}, path)
    history.seconds = time.perf_counter() - begin
    return history
