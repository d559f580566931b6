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
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
import torchdiffeq
from torch import Tensor, nn

from ._state import TupleState
from ._validate import is_real

__all__ = ["SolveStats", "SolverError", "odeint", "ADAPTIVE_METHODS", "FIXED_GRID_METHODS", "SCIPY_METHODS"]

#: Embedded-error-estimate Runge-Kutta methods of torchdiffeq.
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: Fixed-grid methods of torchdiffeq: Runge-Kutta methods and the Adams-Bashforth(-Moulton) multistep
#: methods (``fixed_adams`` is torchdiffeq's other name for ``implicit_adams``). ``explicit_adams``
#: defaults to ``options["max_order"] = 4`` here (torchdiffeq: 12, whose high-order Adams-Bashforth
#: steps are unstable already at ``h|λ| = 0.01``: on ``dz/dt = -z`` with ``step_size = 0.01`` it
#: returns ``z(1) = 0.735`` instead of ``e⁻¹ = 0.368``).
FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams",
                      "fixed_adams")
_EXPLICIT_ADAMS_MAX_ORDER = 4
#: scipy's ``solve_ivp`` behind torchdiffeq (``options["solver"]``: ``"LSODA"``, ``"Radau"``, ``"BDF"``, ...):
#: the implicit methods for stiff problems. It runs outside autograd, so only :func:`nodelib.odeint_adjoint`
#: can differentiate it.
SCIPY_METHODS = ("scipy_solver",)

_ADAPTIVE_OPTIONS = {"first_step", "min_step", "max_step", "step_t", "jump_t", "safety", "ifactor",
                     "dfactor", "dtype", "norm", "max_num_steps"}
_FIXED_OPTIONS = {"step_size", "grid_constructor", "interp", "perturb", "max_num_steps"}
_ADAMS_OPTIONS = _FIXED_OPTIONS | {"max_iters", "max_order"}
_SCIPY_OPTIONS = {"solver", "min_step", "max_step", "max_num_steps"}

#: Default cap on the number of solver steps of one solve (accepted and rejected steps together).
DEFAULT_MAX_NUM_STEPS = 100_000


class SolverError(RuntimeError):
    """A solve that cannot finish: step size underflow, too many steps, or a non-finite state.

    Example:
        >>> import torch, nodelib
        >>> try:  # dz/dt = z^2 from z = 1 blows up at t = 1
        ...     nodelib.odeint(lambda t, z: z ** 2, torch.ones(1), torch.tensor([0.0, 2.0]))
        ... except nodelib.SolverError as error:
        ...     print(type(error).__name__)
        SolverError
    """


@dataclasses.dataclass
class SolveStats:
    """Counts of evaluations of the vector field, accumulated over every solve it is passed to.

    ``nfe_forward`` counts evaluations of ``func`` in forward solves. ``nfe_backward`` counts
    evaluations of the augmented dynamics in adjoint backward solves (each is one evaluation of
    ``func`` and one vector-Jacobian product), plus the evaluations needed for time gradients.
    ``steps_forward``/``steps_backward`` count solver steps, rejected ones included.

    Example:
        >>> import torch, nodelib
        >>> stats = nodelib.SolveStats()
        >>> _ = nodelib.odeint(lambda t, z: -z, torch.ones(1), torch.tensor([0.0, 1.0]),
        ...                    method="rk4", options=dict(step_size=0.1), stats=stats)
        >>> stats.steps_forward, stats.nfe_forward  # 10 steps of 4 evaluations
        (10, 40)
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
        """An embedded-error-estimate method of torchdiffeq (step-size control, an error norm)."""
        return self.method in ADAPTIVE_METHODS

    @property
    def scipy(self) -> bool:
        """scipy's ``solve_ivp``: no step callbacks, and no graph for autograd."""
        return self.method in SCIPY_METHODS


def _allowed_options(method: str) -> set:
    if method in ADAPTIVE_METHODS:
        return _ADAPTIVE_OPTIONS
    if method in SCIPY_METHODS:
        return _SCIPY_OPTIONS
    return _ADAMS_OPTIONS if method.endswith("_adams") else _FIXED_OPTIONS


def check_solver(method: Optional[str], rtol: float, atol: float, options: Optional[dict], *,
                 prefix: str = "") -> SolverConfig:
    """Validate the solver arguments; ``prefix`` is prepended to argument names in messages."""
    method = "dopri5" if method is None else method
    methods = ADAPTIVE_METHODS + FIXED_GRID_METHODS + SCIPY_METHODS
    if method not in methods:
        raise ValueError(f"{prefix}method={method!r} is not supported; expected one of {methods}.")
    for name, value in ((f"{prefix}rtol", rtol), (f"{prefix}atol", atol)):
        if not is_real(value) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative float, got {value!r}.")
    if method not in FIXED_GRID_METHODS and rtol == 0 and atol == 0:
        raise ValueError(f"{prefix}rtol and {prefix}atol are both 0, so no step of the adaptive method "
                         f"{method!r} could pass its error test; make at least one of them positive.")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"{prefix}options must be a dict or None, got {type(options).__name__}.")
    options = {} if options is None else dict(options)
    allowed = _allowed_options(method)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{prefix}options has keys {unknown} that method={method!r} does not take; "
                         f"valid keys are {sorted(allowed)}.")
    if method == "explicit_adams":
        options.setdefault("max_order", _EXPLICIT_ADAMS_MAX_ORDER)
    max_num_steps = options.pop("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if isinstance(max_num_steps, bool) or not isinstance(max_num_steps, int) or max_num_steps < 1:
        raise ValueError(f"{prefix}options['max_num_steps'] must be a positive int, got {max_num_steps!r}.")
    for key in ("step_size", "first_step"):
        if key in options and (not is_real(options[key]) or not 0 < options[key] < math.inf):
            raise ValueError(f"{prefix}options[{key!r}] must be a positive float, got {options[key]!r}.")
    if "max_step" in options and (not is_real(options["max_step"]) or not 0 < options["max_step"]):
        raise ValueError(f"{prefix}options['max_step'] must be a positive float, got {options['max_step']!r}.")
    if "min_step" in options and (not is_real(options["min_step"]) or not 0 <= options["min_step"] < math.inf):
        raise ValueError(f"{prefix}options['min_step'] must be a non-negative float, got {options['min_step']!r}.")
    if "norm" in options and not callable(options["norm"]):
        raise ValueError(f"{prefix}options['norm'] must be a callable mapping the error estimate to a scalar "
                         f"tensor, got {options['norm']!r} (the names 'mixed' and 'seminorm' apply to the "
                         f"adjoint's backward solve only: pass them in adjoint_options).")
    return SolverConfig(method, float(rtol), float(atol), options, max_num_steps)


def check_times(t: Tensor, y0: Tensor) -> None:
    """``t`` must be a 1-D, strictly monotone, finite tensor on ``y0``'s device, of ``y0``'s floating-point
    dtype or a more precise one (times kept in float64 beside a float32 state are legitimate: the solver
    steps in ``t``'s precision and hands ``func`` the time in the state's dtype, as torchdiffeq does)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}.")
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-D tensor with at least two times, got shape {tuple(t.shape)}.")
    if not t.is_floating_point() or torch.finfo(t.dtype).eps > torch.finfo(y0.dtype).eps:
        raise ValueError(f"t has dtype {t.dtype} but y0 has dtype {y0.dtype}; t must be a floating-point tensor "
                         f"at least as precise as y0, e.g. t.to(y0.dtype).")
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


#: The stiffness guard of :class:`GuardedField` looks at windows of this many steps...
_WINDOW = 200
#: ... once a solve has taken this many, and stops it when the step size of the last window would
#: need more than :data:`_STIFF_FACTOR` times ``max_num_steps`` to reach the end of the interval.
_STIFF_AFTER = 1000
_STIFF_FACTOR = 4


class GuardedField:
    """``func`` as torchdiffeq calls it, with evaluation counting and the step guards.

    torchdiffeq calls ``callback_step(t0, y0, dt)`` before every step, accepted or rejected, of
    its Runge-Kutta and Adams solvers, so the guards below run under ``python -O`` as well
    (torchdiffeq's own checks are ``assert`` statements, which ``-O`` removes):

    * at most ``max_num_steps`` steps (scipy's solvers take no callbacks: for them the cap counts
      evaluations of ``func`` instead);
    * an adaptive step size that underflows, or a state that becomes non-finite, is an error;
    * a stiff problem fails fast: an explicit method crosses it in steps bounded by its stability
      region, not by the tolerance, so the step size stalls. Every :data:`_WINDOW` steps (after the
      first :data:`_STIFF_AFTER`), if the last window moved time no faster than the one before and
      at its rate the rest of the interval would need more than :data:`_STIFF_FACTOR` times
      ``max_num_steps`` steps, the solve stops with an error that suggests an implicit method, in
      a second or so rather than after ``max_num_steps`` steps;
    * every output of ``func`` must have the shape, dtype and device of its input.
    """

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], config: SolverConfig, *, what: str = "func"):
        self.func = func
        self.max_num_steps = config.max_num_steps
        self.adaptive = config.adaptive
        self.scipy = config.scipy
        self.what = what
        self.nfe = 0
        self.steps = 0
        self.last_accepted_dt: Optional[float] = None
        self._end = self._marks = None
        self._solve_steps = 0
        if not config.scipy:  # (scipy's solvers warn about callbacks they cannot call)
            self.callback_step = self._before_step
        if config.adaptive:  # (fixed-grid solvers warn about this one)
            self.callback_accept_step = self._record_accepted_step

    def start(self, t: Tensor) -> None:
        """Begin a solve over the times ``t`` (for the stiffness guard)."""
        self._end = float(t[-1])
        self._marks = []
        self._solve_steps = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.func(t, y)
        check_output(out, y, self.what)
        self.nfe += 1
        if self.scipy and self.nfe > self.max_num_steps:
            raise SolverError(f"{self.what}: more than options['max_num_steps']={self.max_num_steps} evaluations "
                              f"of the field (t={float(t):.6g}); raise max_num_steps or loosen rtol/atol.")
        return out

    def _before_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
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
        if self.adaptive and self._marks is not None:
            self._watch_for_stiffness(float(t0.detach()), abs(float(dt.detach())))

    def _watch_for_stiffness(self, t: float, dt: float) -> None:
        self._solve_steps += 1
        if self._solve_steps % _WINDOW:
            return
        marks = self._marks
        marks.append(t)
        if self._solve_steps < _STIFF_AFTER or len(marks) < 3:
            return
        last, before = abs(marks[-1] - marks[-2]), abs(marks[-2] - marks[-3])
        if last > 2 * before:  # the steps are growing: a transient, not stiffness
            return
        needed = abs(self._end - t) / max(last / _WINDOW, 1e-300)
        if needed > _STIFF_FACTOR * self.max_num_steps:
            raise SolverError(
                f"{self.what}: the problem looks stiff. At t={t:.6g} the last {_WINDOW} steps moved time by only "
                f"{last:.3g} (steps of about {last / _WINDOW:.2g}, the current one {dt:.2g}); at that rate reaching "
                f"t={self._end:.6g} would take about {needed:.1e} steps, more than options['max_num_steps']="
                f"{self.max_num_steps}. An explicit method crosses a stiff problem only in steps bounded by its "
                f"stability region: use an implicit one, method='scipy_solver' with options=dict(solver='BDF') "
                f"(or 'Radau', 'LSODA').")

    def _record_accepted_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.last_accepted_dt = abs(float(dt.detach()))


def check_output(out: Any, y: Tensor, what: str) -> None:
    """``out = func(t, y)`` must be a tensor of ``y``'s shape, dtype and device (checked at every call)."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{what} must return a torch.Tensor, got {type(out).__name__}.")
    if out.shape != y.shape:
        raise ValueError(f"{what}(t, y) returned shape {tuple(out.shape)} but y has shape "
                         f"{tuple(y.shape)}; the vector field must return dy/dt with the shape of y.")
    if out.dtype != y.dtype or out.device != y.device:
        raise ValueError(f"{what}(t, y) returned dtype {out.dtype} on {out.device} but y has dtype "
                         f"{y.dtype} on {y.device}.")


def solve(field: GuardedField, y0: Tensor, t: Tensor, config: SolverConfig,
          options: Optional[dict] = None) -> Tensor:
    """Call ``torchdiffeq.odeint`` on a guarded field; ``options`` overrides ``config.options``.

    An empty state (a batch of no points) needs no solve: its trajectory is empty too."""
    if y0.numel() == 0:
        return y0.unsqueeze(0).expand(len(t), *y0.shape).clone()
    opts = dict(config.options)
    if options:
        opts.update(options)
    field.start(t)
    ys = torchdiffeq.odeint(field, y0, t, rtol=config.rtol, atol=config.atol, method=config.method,
                            options=opts)
    if not torch.isfinite(ys[-1]).all():
        raise SolverError(f"{field.what}: the solution is not finite at t={float(t[-1]):.6g}.")
    return ys


def check_func(func: Any, *, name: str = "func") -> None:
    if not callable(func):
        raise TypeError(f"{name} must be callable as {name}(t, y), got {type(func).__name__}.")


def odeint(func: Callable, y0: Union[Tensor, Tuple[Tensor, ...]], t: Tensor, *, rtol: float = 1e-7,
           atol: float = 1e-9, method: Optional[str] = None, options: Optional[dict] = None,
           stats: Optional[SolveStats] = None) -> Union[Tensor, Tuple[Tensor, ...]]:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and return ``y`` at every time in ``t``.

    Gradients flow by direct backpropagation through the solver's operations (memory grows with
    the number of steps); use :func:`nodelib.odeint_adjoint` for constant memory. Same calling
    convention as ``torchdiffeq.odeint``, with nodelib's input checks, step guards and counts.

    Gradients with respect to the times ``t`` are those of the exact solution map at the computed
    states, eq. :eq:`time-gradients` (as :func:`nodelib.odeint_adjoint` gives them), on every method:
    ``∂y(t_i)/∂t_i = f(t_i, y(t_i))`` and ``∂y(t_i)/∂t_0 = -(∂y(t_i)/∂y_0) f(t_0, y_0)``. They cost two
    evaluations of ``func`` per time, and only when ``t.requires_grad``. (Differentiating the solver's
    own arithmetic instead gives zero on fixed grids, whose interpolation hides the times.)

    Args:
        func: the vector field ``f(t, y)``, returning a tensor shaped like ``y`` (a tuple shaped like
            ``y`` for a tuple state).
        y0: initial state, a tensor of any shape (a batch is just a leading dimension), or a tuple of
            tensors of one dtype and device (torchdiffeq's tuple states; solved as one flat vector).
            An empty state (e.g. a batch of no points, shape ``(0, d)``) gives an empty result.
        t: 1-D, strictly increasing or decreasing times on ``y0``'s device, of its dtype or a more
            precise one (``func`` receives the time in ``y0``'s dtype).
        rtol, atol: error tolerances of adaptive methods.
        method: a name from :data:`~nodelib.solve.ADAPTIVE_METHODS`,
            :data:`~nodelib.solve.FIXED_GRID_METHODS` or :data:`~nodelib.solve.SCIPY_METHODS` (default dopri5). ``"scipy_solver"`` cannot be differentiated by
            direct backpropagation: with gradients enabled and an input that requires grad, it is
            refused (use :func:`nodelib.odeint_adjoint`).
        options: solver options of torchdiffeq, plus ``max_num_steps``.
        stats: a :class:`SolveStats` to which evaluation and step counts are added.

    Returns:
        A tensor of shape ``(len(t), *y0.shape)``, or for a tuple state a tuple of such tensors.

    Example:
        >>> import torch, nodelib
        >>> t = torch.tensor([0.0, 1.0], requires_grad=True)
        >>> z = nodelib.odeint(lambda t, z: -z, torch.ones(1), t)
        >>> round(z[-1].item(), 6)  # e^-1
        0.367879
        >>> z[-1].sum().backward()  # dz(1)/dt_1 = f(z(1)) = -e^-1
        >>> round(t.grad[1].item(), 6)
        -0.367879
    """
    check_func(func)
    if isinstance(y0, tuple):
        state = TupleState(y0)
        options = _tuple_norm(options, state, method)
        ys = odeint(state.wrap(func), state.flatten(y0), t, rtol=rtol, atol=atol, method=method,
                    options=options, stats=stats)
        return state.split(ys)
    check_state(y0)
    check_times(t, y0)
    config = check_solver(method, rtol, atol, options)
    check_fixed_grid_length(config, t)
    params = list(func.parameters()) if isinstance(func, nn.Module) else []
    check_params(params, y0, name="func.parameters()")
    field = GuardedField(func, config)
    if config.scipy and torch.is_grad_enabled() and (
            y0.requires_grad or t.requires_grad or any(p.requires_grad for p in params)):
        raise ValueError("method='scipy_solver' runs outside autograd, so its solution cannot be differentiated "
                         "by direct backpropagation; use nodelib.odeint_adjoint, or call odeint under "
                         "torch.no_grad() for values only.")
    return solve_with_time_gradients(field, y0, t, lambda start, times: solve(field, start, times, config),
                                     stats)


def solve_with_time_gradients(field: GuardedField, y0: Tensor, t: Tensor,
                              run: Callable[[Tensor, Tensor], Tensor], stats: Optional[SolveStats]) -> Tensor:
    """``run(y0, t)`` (a solve on times that carry no gradient), made differentiable in ``t`` when
    ``t`` requires a gradient, with its evaluations and steps added to ``stats``.

    Time gradients: the solve runs on ``t`` held constant, and each time ``t_i`` enters through a
    midpoint step of length ``δ_i = t_i - t_i`` (zero, with derivative 1): the values stay, and the
    first and second derivatives in ``t_i`` are those of the exact flow (eq. (time-gradients) and
    its derivative).
    """
    time_grads = t.requires_grad and torch.is_grad_enabled()
    start = _time_step(field, t[0], y0, -1) if time_grads else y0
    ys = run(start, t.detach())
    if time_grads:
        ys = torch.stack([y0] + [_time_step(field, t_i, y, 1) for t_i, y in zip(t[1:], ys[1:])])
    if stats is not None:
        stats.nfe_forward += field.nfe
        stats.steps_forward += field.steps
    return ys


def _time_step(field: GuardedField, t: Tensor, y: Tensor, sign: int) -> Tensor:
    """``y ± δ f(t' + δ/2, y ± (δ/2) f(t', y))`` with ``t' = t`` held constant and ``δ = t - t'``.

    Its value is ``y``. With ``sign = +1`` its derivatives in ``t`` are those of the solution at a
    later time ``t`` (``f``, then ``∂f/∂t + ∇f f``); with ``sign = -1``, those of the state carried
    back to ``t'`` from ``y`` at the initial time ``t`` (``-f``, then ``-∂f/∂t + ∇f f``).
    """
    delta = (t - t.detach()).to(y.dtype)
    t_fixed = t.detach().to(y.dtype)
    inner = y + (sign * delta / 2) * field(t_fixed, y)
    return y + sign * delta * field(t_fixed + delta / 2, inner)


def _tuple_norm(options: Optional[dict], state: TupleState, method: Optional[str]) -> Optional[dict]:
    """The error norm of a tuple state on the flat vector: a user's norm (which takes the tuple, as in
    torchdiffeq), or torchdiffeq's default for tuples, the largest RMS over the elements. (Only
    adaptive methods take a norm; for the others the options pass unchanged.)"""
    if method not in (None,) + ADAPTIVE_METHODS or (options is not None and not isinstance(options, dict)):
        return options
    options = {} if options is None else options
    if "norm" not in options:
        return {**options, "norm": state.mixed_norm}
    norm = options["norm"]
    if not callable(norm):
        return options
    return {**options, "norm": lambda flat: norm(state.split(flat))}
