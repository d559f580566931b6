"""A self-stepping solver: torchdiffeq's ``dopri5`` and ``rk4`` a step at a time, for ``torch.compile``.

:func:`odeint_compiled` is the opt-in alternative to :func:`nodelib.odeint`, and
``odeint_adjoint(..., compiled=True)`` the adjoint method's. It
takes the same steps as torchdiffeq 0.2.5 (the same initial step size, the same accepted and
rejected steps, the same evaluations of ``func``, the same interpolation at the output times), so
that its results equal the default path's to rounding; but the stepping is nodelib's own code, and
one attempted step, with its acceptance test and step-size update, is a pure tensor function
(:func:`dopri5_attempt`) that ``torch.compile`` can fuse with the vector field inside it.

Step acceptance is tensor arithmetic (``torch.where``), so a step has no host synchronisation in
it. The Python loop around the steps still reads one small tensor from the device per adaptive
step, to learn whether the next output time is reached and whether a guard tripped; fixed-grid
``rk4`` reads nothing per step.

Gradients flow by direct backpropagation, through the same operations as in torchdiffeq: the
initial step size depends on ``y0`` and the parameters (and with it every step's time), later step
sizes do not.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from .solve import (GuardedField, SolverConfig, SolverError, SolveStats, check_fixed_grid_length, check_func,
                    check_output, check_params, check_solver, check_state, check_times,
                    solve_with_time_gradients)

__all__ = ["odeint_compiled", "solve_compiled", "check_compiled", "check_compiled_flag", "dopri5_step",
           "dopri5_attempt", "rk4_step", "COMPILED_METHODS", "RECOMPILE_LIMIT"]

#: The methods of :func:`odeint_compiled`.
COMPILED_METHODS = ("dopri5", "rk4")
_SUPPORTED_OPTIONS = {
    "dopri5": {"first_step", "min_step", "max_step", "safety", "ifactor", "dfactor", "norm"},
    "rk4": {"step_size"},
}

# The Dormand-Prince 5(4) pair: stage nodes, stage weights (row i feeds stage i + 2), the 5th-order
# weights (the last row: the 7th stage is evaluated at the new state, first-same-as-last), the
# weights of the error estimate (5th- minus 4th-order solution), and Shampine's weights for the
# state at the middle of the step, from which the dense output is built.
_DP_NODES = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_WEIGHTS = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_ERROR = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
             -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)
_DP_MIDPOINT = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2,
                -2691868925 / 45128329728 / 2, 187940372067 / 1594534317056 / 2,
                -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)
_DP_ORDER = 5


def _rms(x: Tensor) -> Tensor:
    """Root mean square, torchdiffeq's default error norm."""
    return x.square().mean().sqrt()


def _combine(weights, ks) -> Tensor:
    """``Σ_j w_j k_j`` over the nonzero weights."""
    terms = [w * k for w, k in zip(weights, ks) if w != 0]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _just_before(t: Tensor) -> Tensor:
    """The float below ``t``, with the derivative of ``t`` (the stages at the end of a step are
    evaluated there, in case ``func`` jumps at the end point)."""
    return t + (torch.nextafter(t, t - 1) - t).detach()


def _evaluate(func: Callable, sign: int, s: Tensor, y: Tensor) -> Tensor:
    """``dy/ds`` in the solver's time ``s = sign·t``, which always increases: ``sign·func(sign·s, y)``."""
    out = func(s, y) if sign > 0 else -func(-s, y)
    check_output(out, y, "func")
    return out


def dopri5_step(func: Callable, sign: int, t: Tensor, y: Tensor, h: Tensor, k1: Tensor, rtol: Tensor,
                atol: Tensor, norm: Callable[[Tensor], Tensor] = _rms):
    """One Dormand-Prince 5(4) step of length ``h`` from ``(t, y)``, with ``k1 = dy/dt`` there.

    Times ``t`` and ``h`` are solver times (float64 scalars); ``func`` receives them in ``y``'s
    dtype. Returns ``(y_new, error_ratio, k_last, y_mid)``: the 5th-order state at ``t + h``, the
    norm of the error estimate relative to ``atol + rtol·max(|y|, |y_new|)`` (accept if ``<= 1``),
    the derivative at the new state (the next step's ``k1``), and the state at ``t + h/2`` for the
    dense output. Six evaluations of ``func``.
    """
    t_y, h_y, end = t.to(y.dtype), h.to(y.dtype), _just_before((t + h).to(y.dtype))
    ks = [k1]
    for node, weights in zip(_DP_NODES, _DP_WEIGHTS):
        y_stage = y + h_y * _combine(weights, ks)
        ks.append(_evaluate(func, sign, end if node == 1 else t_y + node * h_y, y_stage))
    y_new = y_stage  # the last stage's state is the 5th-order solution
    scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
    error_ratio = norm(h_y * _combine(_DP_ERROR, ks) / scale).abs()
    return y_new, error_ratio, ks[-1], y + h_y * _combine(_DP_MIDPOINT, ks)


def dopri5_attempt(func: Callable, sign: int, norm: Callable[[Tensor], Tensor], state: tuple, dense: tuple,
                   control: tuple):
    """One attempted step with its acceptance test and the next step size, as tensor operations only.

    Args:
        func, sign, norm: as in :func:`dopri5_step`.
        state: ``(t, y, f, h)``: the time and state reached, ``f = dy/dt`` there, the proposed step.
        dense: ``(t_prev, y_prev, f_prev, y_mid, h_prev)``, the last accepted step's start, midpoint and
            length (float64), which with ``state`` make its dense output.
        control: float64 scalars ``(rtol, atol, min_step, max_step, safety, ifactor, dfactor)``.

    Returns:
        ``(state, dense, probe)``: the new ``state`` and ``dense`` (unchanged but for ``h`` if the step
        was rejected) and ``probe``, a float64 pair ``(t, tripped)`` for the host: the time reached
        and whether the step started from a non-finite state or with a step size that underflows.
    """
    t, y, f, h = state
    rtol, atol, min_step, max_step, safety, ifactor, dfactor = control
    h = torch.where(torch.isfinite(h), h, min_step).clamp(min_step, max_step)
    tripped = (t + h == t) | ~torch.isfinite(y).all()
    y_new, ratio, f_new, y_mid = dopri5_step(func, sign, t, y, h, f, rtol, atol, norm)
    accept = (ratio <= 1) | (h <= min_step)
    with torch.no_grad():  # the step-size controller (Hairer et al., II.4), without gradients
        ratio = ratio.detach().to(h.dtype)
        shrink = torch.where(ratio < 1, torch.ones_like(dfactor), dfactor)
        factor = torch.minimum(ifactor, torch.maximum(safety / ratio ** (1 / _DP_ORDER), shrink))
        h_next = (h.detach() * factor).clamp(min_step, max_step)
    h_next = h_next + 0 * h  # (the graph of the first h, with no gradient: see _zero_tie)

    def pick(new, old):
        return torch.where(accept, new, old)

    t_prev, y_prev, f_prev, y_mid_prev, h_prev = dense
    new_dense = (pick(t, t_prev), pick(y, y_prev), pick(f, f_prev), pick(y_mid, y_mid_prev),
                 pick(h, h_prev))
    t_next = pick(t + h, t)
    probe = torch.stack([t_next.detach(), tripped.to(t.dtype)])
    return (t_next, pick(y_new, y), pick(f_new, f), h_next), new_dense, probe


def _dense_output(s: Tensor, t_end: Tensor, y_end: Tensor, f_end: Tensor, dense: tuple) -> Tensor:
    """The quartic through the last accepted step at time ``s`` inside it: it matches the state at
    both ends and at the midpoint, and the derivative at both ends."""
    t0, y0, f0, y_mid, h = dense
    x = ((s - t0) / (t_end - t0)).to(y0.dtype)
    slope0, slope1 = h * f0, h * f_end
    c4 = 2 * (slope1 - slope0) - 8 * (y_end + y0) + 16 * y_mid
    c3 = 5 * slope0 - 3 * slope1 + 18 * y0 + 14 * y_end - 32 * y_mid
    c2 = slope1 - 4 * slope0 - 11 * y0 - 5 * y_end + 16 * y_mid
    return y0 + x * (slope0 + x * (c2 + x * (c3 + x * c4)))


def _initial_step(field: Callable, s0: Tensor, y0: Tensor, f0: Tensor, rtol: Tensor, atol: Tensor,
                  norm: Callable) -> Tensor:
    """The first step size, by Hairer, Nørsett and Wanner's rule (Solving ODEs I, II.4), as torchdiffeq
    chooses it; one evaluation of ``field``. Once per solve, so its branches may read the host."""
    scale = atol + y0.abs() * rtol
    d0, d1 = norm(y0 / scale).abs(), norm(f0 / scale).abs()
    h0 = (y0.new_tensor(1e-6) if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1).abs()
    f1 = field((s0 + h0).to(y0.dtype), y0 + h0 * f0)
    d2 = (norm((f1 - f0) / scale) / h0).abs()
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = torch.maximum(y0.new_tensor(1e-6), h0 * 1e-3)
    else:
        h1 = (0.01 / (d2 if d2 > d1 else d1)) ** (1 / _DP_ORDER)
    return torch.minimum(100 * h0, h1.abs()).to(s0.dtype)


def _zero_tie(y0: Tensor, func: Callable) -> Tensor:
    """A zero that requires grad if ``y0`` or a parameter of ``func`` does (and grad mode is on).

    Added to the tensors a step carries, it makes them all require grad from the first step on, as
    they do after a step or two anyway; a compiled step, which specialises on which of its inputs
    require grad, is then compiled once rather than up to three times. Values and gradients stay
    the same (an added zero, and a zero times any finite gradient)."""
    params = list(func.parameters()) if isinstance(func, nn.Module) else []
    tie = y0.new_zeros(())
    for x in (y0, *params):
        if x.requires_grad and x.numel() and torch.is_grad_enabled():
            tie = tie + 0 * x.reshape(-1)[0].to(y0.dtype)
    return tie


def _solve_dopri5(field: GuardedField, func: Callable, sign: int, y0: Tensor, s: Tensor, rtol: float,
                  atol: float, options: dict, max_num_steps: int, attempt: Callable) -> Tensor:
    """The adaptive loop over the output times ``s`` (solver time, increasing, float64)."""
    norm = options.get("norm", _rms)
    control = tuple(torch.tensor(v, dtype=torch.float64, device=y0.device) for v in (
        rtol, atol, options.get("min_step", 0.0), options.get("max_step", math.inf),
        options.get("safety", 0.9), options.get("ifactor", 10.0), options.get("dfactor", 0.2)))
    rtol_t, atol_t = control[:2]
    tie = _zero_tie(y0, func)
    f0 = _evaluate(field, sign, s[0].to(y0.dtype), y0)
    if "first_step" in options:
        h = control[0].new_tensor(options["first_step"])
    else:
        h = _initial_step(lambda t, y: _evaluate(field, sign, t, y), s[0], y0, f0, rtol_t, atol_t, norm)
    state = (s[0] + tie, y0 + tie, f0 + tie, h + tie)
    # (never read, as no output is interpolated before a step is accepted; fresh tensors, because a compiled
    # step specialises on which of its inputs alias)
    dense = (s[0] + tie, *(torch.zeros_like(y0) + tie for _ in range(3)), h.detach() + tie)
    outputs = [y0]
    targets, t_reached = s.tolist(), float(s[0])
    for i in range(1, len(s)):
        while targets[i] > t_reached:
            if field.steps >= max_num_steps:
                raise SolverError(f"{field.what}: more than options['max_num_steps']={max_num_steps} solver "
                                  f"steps (t={sign * t_reached:.6g}); the problem may be stiff (an explicit "
                                  f"method then takes many small steps). Raise max_num_steps or loosen "
                                  f"rtol/atol.")
            previous = state
            state, dense, probe = attempt(func, sign, norm, state, dense, control)
            field.steps += 1
            field.nfe += 6
            t_reached, tripped = probe.tolist()  # the one host read of a step
            if tripped:
                _raise_tripped(previous, sign, field.what)
        outputs.append(_dense_output(s[i], state[0], state[1], state[2], dense))
    field.last_accepted_dt = float(dense[4].detach())  # (the adjoint's backward solve starts from it)
    return torch.stack(outputs)


def _raise_tripped(state: tuple, sign: int, what: str) -> None:
    """The step guard of :class:`~nodelib.solve.GuardedField` that tripped at ``state``."""
    t, y, _, h = state
    where = sign * float(t.detach())
    if not torch.isfinite(y).all():
        raise SolverError(f"{what}: the state became non-finite at t={where:.6g}.")
    raise SolverError(f"{what}: step size underflow at t={where:.6g} (dt={float(h.detach()):.3g}); the "
                      f"solution blows up, the problem is stiff, or the field returned non-finite values. "
                      f"Check the field or loosen rtol/atol.")


def rk4_step(func: Callable, sign: int, t0: Tensor, t1: Tensor, y: Tensor) -> Tensor:
    """One step of the Runge-Kutta 3/8 rule (torchdiffeq's ``rk4``) from ``(t0, y)`` to ``t1``, four
    evaluations of ``func``; the times are in the grid's dtype, ``func`` receives them in ``y``'s."""
    h = t1 - t0

    def f(t, z):
        return _evaluate(func, sign, t.to(y.dtype), z)

    k1 = f(t0, y)
    k2 = f(t0 + h / 3, y + h * (k1 / 3))
    k3 = f(t0 + h * (2 / 3), y + h * (k2 - k1 / 3))
    k4 = f(t1, y + h * (k1 - k2 + k3))
    return y + (k1 + 3 * (k2 + k3) + k4) * (h / 8)


def _fixed_grid(s: Tensor, step_size: Optional[float]) -> Tensor:
    """The step boundaries: multiples of ``step_size`` from ``s[0]``, the last one moved onto ``s[-1]``
    (as torchdiffeq places them); without a step size, the output times themselves."""
    if step_size is None:
        return s
    count = math.ceil(float((s[-1] - s[0]) / step_size + 1))
    grid = torch.arange(count, dtype=s.dtype, device=s.device) * step_size + s[0]
    grid[-1] = s[-1]
    return grid


def _solve_rk4(field: GuardedField, func: Callable, sign: int, y0: Tensor, s: Tensor, options: dict,
               step: Callable) -> Tensor:
    """Fixed-grid steps; an output time inside a step gets the linear interpolant of its ends."""
    grid = _fixed_grid(s, options.get("step_size"))
    times, grid_times = s.tolist(), grid.tolist()
    outputs, j, y = [y0], 1, y0 + _zero_tie(y0, func)
    for i in range(len(grid) - 1):
        y_new = step(func, sign, grid[i], grid[i + 1], y)
        field.steps += 1
        field.nfe += 4
        a, b = grid_times[i], grid_times[i + 1]
        while j < len(times) and b >= times[j]:
            outputs.append(y if times[j] == a else y_new if times[j] == b
                           else y + (times[j] - a) / (b - a) * (y_new - y))
            j += 1
        y = y_new
    return torch.stack(outputs)


_compiled: dict = {}
#: How many graphs of a step torch may compile (one per field, shape, dtype, direction and grad mode) while a
#: solve with compiled steps runs, if ``torch._dynamo.config.recompile_limit`` is lower: its default, 8, is
#: reached by a run that trains a few models of different sizes.
RECOMPILE_LIMIT = 64


def _compiled_step(method: str) -> Callable:
    """``torch.compile`` of the method's step into one graph, built once per process; torch compiles it
    again for every new field, shape, dtype, direction or grad mode it meets, up to
    ``max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)`` graphs, then raises."""
    if method not in _compiled:
        _compiled[method] = torch.compile(dopri5_attempt if method == "dopri5" else rk4_step, dynamic=False,
                                          fullgraph=True)
    return _compiled[method]


def odeint_compiled(func: Callable, y0: Tensor, t: Tensor, *, method: str = "dopri5", rtol: float = 1e-7,
                    atol: float = 1e-9, options: Optional[dict] = None, stats: Optional[SolveStats] = None,
                    compile_step: bool = False) -> Tensor:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` by nodelib's own stepping; ``y`` at every time in ``t``.

    The results, evaluation counts and gradients (direct backpropagation) are those of
    :func:`nodelib.odeint` with the same arguments, to rounding; bad input raises the same errors.

    Args:
        func: the vector field ``f(t, y)``, returning a tensor shaped like ``y``.
        y0: initial state, a tensor of any shape (tuple states: use :func:`nodelib.odeint`).
        t: 1-D, strictly increasing or decreasing times, as for :func:`nodelib.odeint`.
        method: ``"dopri5"`` (adaptive) or ``"rk4"`` (torchdiffeq's 3/8-rule ``rk4``, fixed grid).
        rtol, atol: error tolerances of ``dopri5``.
        options: for ``dopri5`` ``first_step``, ``min_step``, ``max_step``, ``safety``, ``ifactor``,
            ``dfactor``, ``norm``; for ``rk4`` ``step_size`` (without it, one step per interval of
            ``t``); for both ``max_num_steps``.
        stats: a :class:`~nodelib.SolveStats` to which evaluation and step counts are added.
        compile_step: run each step through ``torch.compile`` (compiled once per field, shape and
            dtype; the first call pays for the compilation).

    Returns:
        A tensor of shape ``(len(t), *y0.shape)``.

    Example:
        >>> import torch, nodelib
        >>> t = torch.tensor([0.0, 1.0])
        >>> z = nodelib.odeint_compiled(lambda t, z: -z, torch.ones(1), t)
        >>> round(z[-1].item(), 6)  # e^-1
        0.367879
        >>> field, y0 = nodelib.MLPField(2, hidden=(8,)), torch.randn(4, 2)
        >>> z = nodelib.odeint_compiled(field, y0, t)  # compile_step=True compiles
        >>> torch.allclose(z, nodelib.odeint(field, y0, t), atol=1e-6)  # same steps
        True
    """
    check_func(func)
    if isinstance(y0, tuple):
        raise TypeError("odeint_compiled takes a tensor state; solve tuple states with nodelib.odeint.")
    check_state(y0)
    check_times(t, y0)
    config = check_solver(method, rtol, atol, options)
    check_compiled(config)
    check_fixed_grid_length(config, t)
    check_params(list(func.parameters()) if isinstance(func, nn.Module) else [], y0, name="func.parameters()")
    field = GuardedField(func, config)
    def run(start: Tensor, times: Tensor) -> Tensor:
        return solve_compiled(field, start, times, config, compile_step=compile_step)

    return solve_with_time_gradients(field, y0, t, run, stats)


def check_compiled(config: SolverConfig, *, prefix: str = "", caller: str = "odeint_compiled",
                   instead: str = "nodelib.odeint") -> None:
    """Refuse the methods and options that nodelib's own stepping does not implement (a ``ValueError``
    naming ``caller``, and what to use ``instead``); ``prefix`` is prepended to argument names."""
    if config.method not in COMPILED_METHODS:
        raise ValueError(f"{caller} supports {prefix}method={' or '.join(map(repr, COMPILED_METHODS))}, got "
                         f"{config.method!r}; use {instead} for the others.")
    unsupported = sorted(set(config.options) - _SUPPORTED_OPTIONS[config.method])
    if unsupported:
        raise ValueError(f"{caller} does not support {prefix}options {unsupported} of "
                         f"{prefix}method={config.method!r}; use {instead}.")


def check_compiled_flag(compiled: Any, *, name: str = "compiled") -> None:
    """``compiled`` must be ``False`` (the default path), ``True`` (nodelib's stepping, each step compiled)
    or ``"eager"`` (the same steps, not compiled): else a ``ValueError`` naming ``name``. Only the bools
    themselves count (not ``0``, ``1`` or ``1.0``, which compare equal to them)."""
    if not (compiled is False or compiled is True or isinstance(compiled, str) and compiled == "eager"):
        raise ValueError(f"{name} must be False, True or 'eager', got {compiled!r}.")


def solve_compiled(field: GuardedField, y0: Tensor, t: Tensor, config: SolverConfig,
                   options: Optional[dict] = None, *, compile_step: bool = True) -> Tensor:
    """:func:`nodelib.solve.solve` by nodelib's own stepping: the same solution, counts and guards.

    ``t`` is detached; ``options`` overrides ``config.options`` (``config`` passed
    :func:`check_compiled`). Sets ``field.last_accepted_dt`` as torchdiffeq's step callback does.
    With ``compile_step``, each step runs through ``torch.compile`` (see :func:`odeint_compiled`), which may
    compile up to :data:`RECOMPILE_LIMIT` graphs of it in the process."""
    if y0.numel() == 0:
        return y0.unsqueeze(0).expand(len(t), *y0.shape).clone()
    options = {**config.options, **(options or {})}
    sign = 1 if bool(t[1] > t[0]) else -1
    s = sign * t
    step = _compiled_step(config.method) if compile_step else (
        dopri5_attempt if config.method == "dopri5" else rk4_step)
    limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    with torch._dynamo.config.patch(recompile_limit=limit) if compile_step else contextlib.nullcontext():
        if config.method == "dopri5":
            ys = _solve_dopri5(field, field.func, sign, y0, s.to(torch.float64), config.rtol, config.atol,
                               options, config.max_num_steps, step)
        else:
            ys = _solve_rk4(field, field.func, sign, y0, s, options, step)
    if not torch.isfinite(ys[-1]).all():
        raise SolverError(f"{field.what}: the solution is not finite at t={float(t[-1]):.6g}.")
    return ys
