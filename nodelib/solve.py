"""The black-box solve: input checks, guarded calls to ``torchdiffeq.odeint``, evaluation counts.

Every solve in nodelib, forward or backward, direct or adjoint, goes through :func:`solve`, so
that all of them share one set of guarantees (chapter "Adjoint gradients in practice"):

* inputs are checked once, at the boundary, by :func:`check_problem`, and bad input raises a
  ``ValueError``/``TypeError`` that names the argument and says what was expected;
* the number of solver steps is capped (``options["max_num_steps"]``, default
  :data:`DEFAULT_MAX_NUM_STEPS`), a step size that underflows raises, and so does a
  non-finite state: a long solve never hangs silently;
* function evaluations are counted into a :class:`SolveStats` the caller may pass in.

:func:`odeint` is direct backpropagation through the solver (the reference the adjoint is checked
against, and the cheaper choice when memory is not the constraint).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import torch
import torchdiffeq
from torch import Tensor, nn

from ._validate import is_real

__all__ = ["SolveStats", "SolverError", "odeint", "ADAPTIVE_METHODS", "FIXED_GRID_METHODS"]

#: Embedded-error-estimate Runge-Kutta methods of torchdiffeq that nodelib supports.
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: Fixed-grid Runge-Kutta methods of torchdiffeq that nodelib supports.
FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4")

_ADAPTIVE_OPTIONS = {"first_step", "min_step", "max_step", "step_t", "jump_t", "safety", "ifactor",
                     "dfactor", "dtype", "norm", "max_num_steps"}
_FIXED_OPTIONS = {"step_size", "grid_constructor", "interp", "perturb", "max_num_steps"}

#: Default cap on the number of solver steps of one solve (accepted and rejected steps together).
DEFAULT_MAX_NUM_STEPS = 100_000


class SolverError(RuntimeError):
    """A solve that cannot finish: step size underflow, too many steps, or a non-finite state."""


@dataclasses.dataclass
class SolveStats:
    """Counts of evaluations of the vector field, accumulated over every solve it is passed to.

    ``nfe_forward`` counts evaluations of ``func`` in forward solves. ``nfe_backward`` counts
    evaluations of the augmented dynamics in adjoint backward solves (each is one evaluation of
    ``func`` and one vector-Jacobian product), plus the evaluations needed for time gradients.
    ``steps_forward``/``steps_backward`` count solver steps, rejected ones included.
    """

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_forward: int = 0
    steps_backward: int = 0

    def reset(self) -> None:
        """Set every count back to zero."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, 0)


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """A validated ``(method, rtol, atol, options)`` quadruple, ready for :func:`solve`."""

    method: str
    rtol: float
    atol: float
    options: dict
    max_num_steps: int

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS


def check_solver(method: Optional[str], rtol: float, atol: float, options: Optional[dict], *,
                 prefix: str = "") -> SolverConfig:
    """Validate the solver arguments; ``prefix`` is prepended to argument names in messages."""
    method = "dopri5" if method is None else method
    if method not in ADAPTIVE_METHODS + FIXED_GRID_METHODS:
        raise ValueError(f"{prefix}method={method!r} is not supported; expected one of "
                         f"{ADAPTIVE_METHODS + FIXED_GRID_METHODS}.")
    for name, value in ((f"{prefix}rtol", rtol), (f"{prefix}atol", atol)):
        if not is_real(value) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative float, got {value!r}.")
    if method in ADAPTIVE_METHODS and rtol == 0 and atol == 0:
        raise ValueError(f"{prefix}rtol and {prefix}atol are both 0, so no step of the adaptive method "
                         f"{method!r} could pass its error test; make at least one of them positive.")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"{prefix}options must be a dict or None, got {type(options).__name__}.")
    options = {} if options is None else dict(options)
    allowed = _ADAPTIVE_OPTIONS if method in ADAPTIVE_METHODS else _FIXED_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{prefix}options has keys {unknown} that method={method!r} does not take; "
                         f"valid keys are {sorted(allowed)}.")
    max_num_steps = options.pop("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if isinstance(max_num_steps, bool) or not isinstance(max_num_steps, int) or max_num_steps < 1:
        raise ValueError(f"{prefix}options['max_num_steps'] must be a positive int, got {max_num_steps!r}.")
    for key in ("step_size", "first_step", "max_step"):
        if key in options and (not is_real(options[key]) or not 0 < options[key] < math.inf):
            raise ValueError(f"{prefix}options[{key!r}] must be a positive float, got {options[key]!r}.")
    if "min_step" in options and (not is_real(options["min_step"]) or not 0 <= options["min_step"] < math.inf):
        raise ValueError(f"{prefix}options['min_step'] must be a non-negative float, got {options['min_step']!r}.")
    if "norm" in options and not callable(options["norm"]):
        raise ValueError(f"{prefix}options['norm'] must be a callable mapping the error estimate to a scalar "
                         f"tensor, got {options['norm']!r} (the names 'mixed' and 'seminorm' apply to the "
                         f"adjoint's backward solve only: pass them in adjoint_options).")
    return SolverConfig(method, float(rtol), float(atol), options, max_num_steps)


def check_times(t: Tensor, y0: Tensor) -> None:
    """``t`` must be a 1-D, strictly monotone, finite tensor of ``y0``'s dtype and device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}.")
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-D tensor with at least two times, got shape {tuple(t.shape)}.")
    if t.dtype != y0.dtype:
        raise ValueError(f"t has dtype {t.dtype} but y0 has dtype {y0.dtype}; convert one of them, "
                         f"e.g. t.to(y0.dtype).")
    if t.device != y0.device:
        raise ValueError(f"t is on {t.device} but y0 is on {y0.device}; move one of them, e.g. t.to(y0.device).")
    t = t.detach()
    if not torch.isfinite(t).all():
        raise ValueError("t must be finite, got non-finite times.")
    dt = t[1:] - t[:-1]
    if not ((dt > 0).all() or (dt < 0).all()):
        raise ValueError(f"t must be strictly increasing or strictly decreasing, got {t.tolist()[:8]}"
                         f"{' ...' if t.numel() > 8 else ''}.")


def check_state(y0: Tensor) -> None:
    """``y0`` must be a finite floating-point tensor."""
    if not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}.")
    if not y0.is_floating_point():
        raise ValueError(f"y0 must be a floating-point tensor, got dtype {y0.dtype}.")
    with torch.no_grad():  # no graph for the check (it would hold y0 for a backward pass that never comes)
        finite = bool(torch.isfinite(y0).all())
    if not finite:
        raise ValueError("y0 must be finite, got NaN or infinite entries.")


def check_params(params: Sequence[Tensor], y0: Tensor, *, name: str) -> None:
    """Parameters of ``func`` must share ``y0``'s dtype and device."""
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(p).__name__}.")
        if p.is_floating_point() and p.dtype != y0.dtype:
            raise ValueError(f"{name}[{i}] has dtype {p.dtype} but y0 has dtype {y0.dtype}; "
                             f"convert the module, e.g. func.to(y0.dtype).")
        if p.device != y0.device:
            raise ValueError(f"{name}[{i}] is on {p.device} but y0 is on {y0.device}; "
                             f"move the module, e.g. func.to(y0.device).")


def check_fixed_grid_length(config: SolverConfig, t: Tensor, *, prefix: str = "") -> None:
    """Refuse, before starting, a fixed-grid solve that would exceed the step cap."""
    if config.adaptive or "step_size" not in config.options:
        return
    t = t.detach()
    n_steps = math.ceil(abs(float(t[-1]) - float(t[0])) / config.options["step_size"] - 1e-9)
    if n_steps > config.max_num_steps:
        raise ValueError(f"{prefix}options['step_size']={config.options['step_size']} needs {n_steps} steps "
                         f"over t, more than {prefix}options['max_num_steps']={config.max_num_steps}; "
                         f"raise max_num_steps or use a larger step_size.")


class GuardedField:
    """``func`` as torchdiffeq calls it, with evaluation counting and the step guards.

    torchdiffeq calls ``callback_step(t0, y0, dt)`` before every step, accepted or rejected, of
    every solver, so the guards below run under ``python -O`` as well (torchdiffeq's own checks
    are ``assert`` statements, which ``-O`` removes).
    """

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], config: SolverConfig, *,
                 check_against: Optional[Tensor] = None, what: str = "func"):
        self.func = func
        self.max_num_steps = config.max_num_steps
        self.adaptive = config.adaptive
        self.check_against = check_against
        self.what = what
        self.nfe = 0
        self.steps = 0
        self.last_accepted_dt: Optional[float] = None
        if config.adaptive:  # fixed-grid solvers of torchdiffeq warn about this callback
            self.callback_accept_step = self._record_accepted_step

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.func(t, y)
        if self.check_against is not None:
            self._check_output(out)
            self.check_against = None
        self.nfe += 1
        return out

    def _check_output(self, out: Any) -> None:
        ref = self.check_against
        if not isinstance(out, Tensor):
            raise TypeError(f"{self.what} must return a torch.Tensor, got {type(out).__name__}.")
        if out.shape != ref.shape:
            raise ValueError(f"{self.what}(t, y) returned shape {tuple(out.shape)} but y has shape "
                             f"{tuple(ref.shape)}; the vector field must return dy/dt with the shape of y.")
        if out.dtype != ref.dtype or out.device != ref.device:
            raise ValueError(f"{self.what}(t, y) returned dtype {out.dtype} on {out.device} but y has dtype "
                             f"{ref.dtype} on {ref.device}.")

    def callback_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.steps += 1
        if self.steps > self.max_num_steps:
            raise SolverError(f"{self.what}: more than options['max_num_steps']={self.max_num_steps} solver "
                              f"steps (t={float(t0.detach()):.6g}); the problem may be stiff (an explicit method then "
                              f"takes many small steps). Raise max_num_steps or loosen rtol/atol.")
        if self.adaptive and not bool(t0 + dt != t0):  # (a fixed grid may end with a harmless empty step)
            raise SolverError(f"{self.what}: step size underflow at t={float(t0.detach()):.6g} (dt={float(dt.detach()):.3g}); the "
                              f"solution blows up, the problem is stiff, or the field returned non-finite "
                              f"values. Check the field or loosen rtol/atol.")
        if not torch.isfinite(y0).all():
            raise SolverError(f"{self.what}: the state became non-finite at t={float(t0.detach()):.6g}.")

    def _record_accepted_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.last_accepted_dt = abs(float(dt.detach()))


def solve(field: GuardedField, y0: Tensor, t: Tensor, config: SolverConfig,
          options: Optional[dict] = None) -> Tensor:
    """Call ``torchdiffeq.odeint`` on a guarded field; ``options`` overrides ``config.options``."""
    opts = dict(config.options)
    if options:
        opts.update(options)
    ys = torchdiffeq.odeint(field, y0, t, rtol=config.rtol, atol=config.atol, method=config.method,
                            options=opts)
    if not torch.isfinite(ys[-1]).all():
        raise SolverError(f"{field.what}: the solution is not finite at t={float(t[-1]):.6g}.")
    return ys


def check_func(func: Any, *, name: str = "func") -> None:
    if not callable(func):
        raise TypeError(f"{name} must be callable as {name}(t, y), got {type(func).__name__}.")


def odeint(func: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t: Tensor, *, rtol: float = 1e-7,
           atol: float = 1e-9, method: Optional[str] = None, options: Optional[dict] = None,
           stats: Optional[SolveStats] = None) -> Tensor:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and return ``y`` at every time in ``t``.

    Gradients flow by direct backpropagation through the solver's operations (memory grows with
    the number of steps); use :func:`nodelib.odeint_adjoint` for constant memory. Same calling
    convention as ``torchdiffeq.odeint``, with nodelib's input checks, step guards and counts.

    Args:
        func: the vector field ``f(t, y)``, returning a tensor shaped like ``y``.
        y0: initial state, any shape (a batch is just a leading dimension).
        t: 1-D, strictly increasing or decreasing times, ``y0``'s dtype and device.
        rtol, atol: error tolerances of adaptive methods.
        method: a name from :data:`ADAPTIVE_METHODS` or :data:`FIXED_GRID_METHODS` (default dopri5).
        options: solver options of torchdiffeq, plus ``max_num_steps``.
        stats: a :class:`SolveStats` to which evaluation and step counts are added.

    Returns:
        A tensor of shape ``(len(t), *y0.shape)``.
    """
    check_func(func)
    check_state(y0)
    check_times(t, y0)
    config = check_solver(method, rtol, atol, options)
    check_fixed_grid_length(config, t)
    if isinstance(func, nn.Module):
        check_params(list(func.parameters()), y0, name="func.parameters()")
    field = GuardedField(func, config, check_against=y0)
    ys = solve(field, y0, t, config)
    if stats is not None:
        stats.nfe_forward += field.nfe
        stats.steps_forward += field.steps
    return ys
