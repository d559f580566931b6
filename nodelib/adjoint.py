"""The adjoint sensitivity method (Theorem 1 of the chapter "The adjoint sensitivity method").

For ``dz/dt = f(z, t, θ)`` and a loss on ``z(t_0), ..., z(t_N)``, the gradient is obtained by
solving the augmented system :eq:`augmented-system` for ``q = (z, a_z, a_θ)`` backwards in time,

    dz/dt   =  f(z, t, θ),
    da_z/dt = -a_z ∂f/∂z     (Theorem 1, first block),
    da_θ/dt = -a_z ∂f/∂θ     (Theorem 1, third block),

from ``q(t_N) = (z(t_N), ∂L/∂z(t_N), 0)``, adding ``∂L/∂z(t_i)`` to ``a_z`` at every observation
time (the adjoint jumps there), with any black-box solver. The two products ``a_z ∂f/∂z`` and
``a_z ∂f/∂θ`` are one vector-Jacobian product. Nothing from the forward solve is kept but the
states at the observation times (and at ``checkpoints`` extra times, if asked).

Time gradients need no extra ODE: ``a_z(t)·f(z(t), t)`` satisfies
``d/dt [a_z f] = a_z ∂f/∂t = -da_t/dt``, which gives eq. :eq:`time-gradients`,

    ∂L/∂t_i = (∂L/∂z(t_i))·f(z(t_i), t_i)   for i ≥ 1,      ∂L/∂t_0 = -a_z(t_0)·f(z(t_0), t_0),

one evaluation of ``f`` per observation time instead of a fourth block ``a_t`` in the solve.
"""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._state import TupleState
from .compiled import check_compiled, check_compiled_flag, solve_compiled
from .solve import (GuardedField, SolveStats, SolverConfig, _tuple_norm, check_fixed_grid_length, check_func,
                    check_output, check_params, check_solver, check_state, check_times, solve)

__all__ = ["odeint_adjoint", "AugmentedDynamics", "FunctionalAugmentedDynamics"]

Norm = Union[str, Callable[[Tensor, Tensor, Tensor], Tensor], None]


def _rms(x: Tensor) -> Tensor:
    return x.pow(2).mean().sqrt() if x.numel() else x.new_zeros(())


def _field_and_vjp(func: Callable, t: Tensor, z: Tensor, a: Tensor, params: tuple, create_graph: bool):
    """``f(t, z)`` and the partial products ``(-a ∂f/∂z, -a ∂f/∂θ)`` at a detached ``z``."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        fz = func(t, z)
        check_output(fz, z, "func")
        vjps = torch.autograd.grad(fz, (z,) + params, -a, allow_unused=True, create_graph=create_graph)
    return fz, tuple(torch.zeros_like(x) if g is None else g for g, x in zip(vjps, (z,) + params)), z


class _DifferentiableVJP(torch.autograd.Function):
    """The augmented right-hand side as a function of ``(z, a, θ)`` that autograd can differentiate.

    Differentiating the backward pass (``create_graph=True``) needs the products of
    :func:`_field_and_vjp` as functions of ``z``. Evaluating them on the ``z`` of the outer graph
    would let autograd reach ``θ`` through ``z`` and the forward solve (a total instead of a
    partial derivative, and an endless recursion into this backward pass). So the products are
    built on a detached copy, and this function splices their derivatives back in.
    """

    @staticmethod
    def forward(ctx, func, t, z, a, *params):
        with torch.enable_grad():
            a_leaf = a.detach().requires_grad_(True)
            fz, vjps, z_leaf = _field_and_vjp(func, t, z, a_leaf, params, create_graph=True)
        ctx.inner = (fz,) + vjps, (z_leaf, a_leaf) + params
        return (fz.detach(),) + tuple(v.detach() for v in vjps)

    @staticmethod
    def backward(ctx, *grad_outputs):
        outputs, leaves = ctx.inner
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad and g is not None]
        # retain_graph: a caller may differentiate the same first gradient more than once (a Hessian,
        # row by row), and each pass comes back through this inner graph.
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True,
                                    retain_graph=True)
        return (None, None) + tuple(grads)


class AugmentedDynamics:
    """The right-hand side of the augmented system :eq:`augmented-system` on a flat ``q = (z, a_z, a_θ)``.

    ``dq/dt = (f(z, t, θ), -a_z ∂f/∂z, -a_z ∂f/∂θ)``: the blocks of Theorem 1 that the gradient
    needs, with both products computed by one vector-Jacobian product. Solved from
    ``q(t_1) = pack(z(t_1), ∂L/∂z(t_1), 0)`` backwards to ``t_0``, it yields
    ``a_z(t_0) = ∂L/∂z(t_0)`` and ``a_θ(t_0) = ∂L/∂θ`` (chapter "The adjoint sensitivity method").

    Args:
        func: the vector field ``f(t, z)``.
        params: the tensors ``θ`` to differentiate with respect to.
        shape: the shape of the state ``z``.
        differentiable: build the products so that autograd can differentiate them once more.

    Example:
        >>> import torch, nodelib
        >>> field = nodelib.MLPField(2, hidden=(8,))       # 50 parameters
        >>> params = list(field.parameters())
        >>> dynamics = nodelib.AugmentedDynamics(field, params, torch.Size([3, 2]))
        >>> q = dynamics.pack(torch.randn(3, 2), torch.ones(3, 2), torch.zeros(50))
        >>> [block.shape for block in dynamics.unpack(dynamics(torch.tensor(0.0), q))]
        [torch.Size([3, 2]), torch.Size([3, 2]), torch.Size([50])]
    """

    def __init__(self, func: Callable, params: Sequence[Tensor], shape: torch.Size, *, differentiable: bool = False):
        self.func = func
        self.params = tuple(params)
        self.shape = torch.Size(shape)
        self.n = self.shape.numel()
        self.differentiable = differentiable

    def pack(self, z: Tensor, a_z: Tensor, a_theta: Tensor) -> Tensor:
        """Flatten the three blocks into one state vector ``q``."""
        return torch.cat([z.reshape(-1), a_z.reshape(-1), a_theta.reshape(-1)])

    def unpack(self, q: Tensor) -> tuple:
        """Split ``q`` into ``(z, a_z, a_θ)`` with ``z`` and ``a_z`` shaped like the state."""
        n = self.n
        return q[:n].view(self.shape), q[n:2 * n].view(self.shape), q[2 * n:]

    def __call__(self, t: Tensor, q: Tensor) -> Tensor:
        z, a, _ = self.unpack(q)
        if self.differentiable:
            fz, *vjps = _DifferentiableVJP.apply(self.func, t, z, a, *self.params)
        else:
            fz, vjps, _ = _field_and_vjp(self.func, t, z, a, self.params, create_graph=False)
        return torch.cat([fz.reshape(-1)] + [g.reshape(-1) for g in vjps])


class FunctionalAugmentedDynamics(AugmentedDynamics):
    """:class:`AugmentedDynamics` by ``torch.func``, which ``torch.compile`` traces into the step's graph.

    The same right-hand side ``(f, -a_z ∂f/∂z, -a_z ∂f/∂θ)``, its vector-Jacobian product taken by
    ``torch.func.vjp`` over ``torch.func.functional_call`` rather than by ``torch.autograd.grad`` (which
    ``torch.compile`` cannot put in a graph). ``θ`` must therefore be parameters of ``func``, an
    ``nn.Module`` (or empty), and the products cannot be differentiated once more.

    Example:
        >>> import torch, nodelib
        >>> from nodelib.adjoint import FunctionalAugmentedDynamics
        >>> field = nodelib.MLPField(2, hidden=(8,))
        >>> params, q = list(field.parameters()), torch.randn(2 * 6 + 50)
        >>> functional = FunctionalAugmentedDynamics(field, params, torch.Size([3, 2]))
        >>> reference = nodelib.AugmentedDynamics(field, params, torch.Size([3, 2]))
        >>> t = torch.tensor(0.0)
        >>> torch.allclose(functional(t, q), reference(t, q), atol=1e-6)
        True
    """

    def __init__(self, func: Callable, params: Sequence[Tensor], shape: torch.Size):
        super().__init__(func, params, shape)
        self.names = parameter_names(func, self.params)

    def __call__(self, t: Tensor, q: Tensor) -> Tensor:
        z, a, _ = self.unpack(q)

        def field(z: Tensor, params: dict) -> Tensor:
            return torch.func.functional_call(self.func, params, (t, z)) if params else self.func(t, z)

        fz, pullback = torch.func.vjp(field, z, dict(zip(self.names, self.params)))
        g_z, g_params = pullback(-a)
        blocks = [fz, g_z] + [g_params[name] for name in self.names]
        return torch.cat([block.reshape(-1) for block in blocks])


def parameter_names(func: Callable, params: Sequence[Tensor]) -> tuple:
    """The names of ``params`` among ``func``'s parameters and buffers, for ``torch.func.functional_call``;
    a ``ValueError`` if one of them is not there."""
    named = dict(func.named_parameters(remove_duplicate=False), **dict(func.named_buffers())) \
        if isinstance(func, nn.Module) else {}
    by_id = {}
    for name, tensor in named.items():
        by_id.setdefault(id(tensor), name)
    missing = [i for i, p in enumerate(params) if id(p) not in by_id]
    if missing:
        raise ValueError(f"odeint_adjoint(compiled=...) differentiates by torch.func.functional_call, so "
                         f"every adjoint parameter must be a parameter or buffer of func (an nn.Module); "
                         f"adjoint_params{missing} {'is' if len(missing) == 1 else 'are'} not. "
                         f"Use compiled=False.")
    return tuple(by_id[id(p)] for p in params)


def _norm_form(norm: Callable) -> str:
    """``"blocks"`` for nodelib's ``norm(e_z, e_a, e_θ)``, ``"tuple"`` for torchdiffeq's ``norm(tensors)``."""
    try:
        signature = inspect.signature(norm)
    except (TypeError, ValueError):  # (a builtin without a signature: take torchdiffeq's convention)
        return "tuple"

    def takes(*args) -> bool:
        try:
            signature.bind(*args)
            return True
        except TypeError:
            return False

    one, three = takes(0), takes(0, 0, 0)
    if one != three:
        return "tuple" if one else "blocks"
    raise ValueError(f"adjoint_options['norm'] must take either one argument (torchdiffeq's convention: a tuple "
                     f"(a_t, *y, *a_y, *a_params) of tensors) or three (nodelib's: the blocks z, a_z, a_theta of "
                     f"the error estimate); {norm!r} takes {'both' if one else 'neither'}.")


def _make_norm(norm: Norm, state_shapes: Sequence[torch.Size], param_shapes: Sequence[torch.Size]
               ) -> Callable[[Tensor], Tensor]:
    """Error norm of the backward solve over the blocks (z, a_z, a_θ) of the flat state.

    The default takes the largest RMS of the three blocks (torchdiffeq's default mixed norm takes the
    largest over every state tensor and every parameter tensor separately, and a time block, so its
    backward steps can differ slightly: 38 backward evaluations against 37 on Table 1's ODE-Net); ``"seminorm"``
    leaves ``a_θ`` out of error control (Kidger et al. 2021): ``a_θ`` never feeds back into the
    dynamics, so its error does not compound and need not shrink the step. A callable takes either
    the three blocks or, as in torchdiffeq, one tuple ``(a_t, *y, *a_y, *a_θ)`` of tensors shaped
    like the state's elements and the parameters (``a_t``, the time block that nodelib does not
    integrate, is a zero).
    """
    n = sum(math.prod(shape) for shape in state_shapes)
    if norm is None or norm == "mixed":
        return lambda e: torch.stack([_rms(e[:n]), _rms(e[n:2 * n]), _rms(e[2 * n:])]).max()
    if norm == "seminorm":
        return lambda e: torch.maximum(_rms(e[:n]), _rms(e[n:2 * n]))
    if callable(norm):
        if _norm_form(norm) == "blocks":
            return lambda e: norm(e[:n], e[n:2 * n], e[2 * n:])
        state, params = TupleState.from_shapes(state_shapes), TupleState.from_shapes(param_shapes)
        return lambda e: norm((e.new_zeros(()), *state.split(e[:n]), *state.split(e[n:2 * n]),
                               *params.split(e[2 * n:])))
    raise ValueError(f"adjoint_options['norm'] must be 'mixed', 'seminorm' or a callable, got {norm!r}.")


class _AdjointProblem:
    """Everything the autograd function needs besides its tensor inputs."""

    def __init__(self, func, params, state_shapes: List[torch.Size], forward: SolverConfig, backward: SolverConfig,
                 backward_norm: Norm, grid: Tensor, stats: Optional[SolveStats], compiled: Union[bool, str]):
        self.func = func
        self.params = params
        self.state_shapes = state_shapes
        self.forward = forward
        self.backward = backward
        self.backward_norm = backward_norm
        self.grid = grid
        self.stats = stats
        self.compiled = compiled
        self.forward_step: Optional[float] = None

    def solve(self, field: GuardedField, y0: Tensor, t: Tensor, config: SolverConfig,
              options: Optional[dict] = None) -> Tensor:
        """One solve: torchdiffeq's (the default) or nodelib's own stepping, its step compiled unless
        ``compiled == "eager"``."""
        if not self.compiled:
            return solve(field, y0, t, config, options)
        return solve_compiled(field, y0, t.detach(), config, options, compile_step=self.compiled is True)

    def count(self, field: GuardedField, direction: str) -> None:
        if self.stats is not None:
            setattr(self.stats, f"nfe_{direction}", getattr(self.stats, f"nfe_{direction}") + field.nfe)
            setattr(self.stats, f"steps_{direction}", getattr(self.stats, f"steps_{direction}") + field.steps)


class _AdjointSolve(torch.autograd.Function):
    """Forward: solve without recording a graph. Backward: the augmented system, interval by interval."""

    @staticmethod
    def forward(ctx, problem: _AdjointProblem, y0: Tensor, t: Tensor, *params: Tensor) -> Tensor:
        field = GuardedField(problem.func, problem.forward)
        with torch.no_grad():
            states = problem.solve(field, y0, problem.grid, problem.forward)
        problem.count(field, "forward")
        problem.forward_step = field.last_accepted_dt
        ctx.problem = problem
        ctx.t_requires_grad = t.requires_grad
        ctx.save_for_backward(t, states)
        return states

    @staticmethod
    def backward(ctx, grad_states: Tensor):
        problem: _AdjointProblem = ctx.problem
        t, states = ctx.saved_tensors
        grid, params = problem.grid, problem.params
        differentiable = torch.is_grad_enabled()
        config = problem.backward
        if differentiable and config.scipy:
            raise RuntimeError("odeint_adjoint: second derivatives (create_graph=True) record the backward solve, "
                               "but adjoint_method='scipy_solver' runs outside autograd; pick a torchdiffeq method "
                               "for the backward solve (adjoint_method=...).")
        if differentiable and problem.compiled:
            raise RuntimeError("odeint_adjoint: second derivatives (create_graph=True) record the backward "
                               "solve, which compiled=... does not support (its vector-Jacobian products are "
                               "taken by torch.func); use compiled=False.")
        shape = states.shape[1:]
        dynamics = (FunctionalAugmentedDynamics(problem.func, params, shape) if problem.compiled
                    else AugmentedDynamics(problem.func, params, shape, differentiable=differentiable))
        norm = _make_norm(problem.backward_norm, problem.state_shapes, [p.shape for p in params])
        field = GuardedField(dynamics, config, what="adjoint backward solve")
        carry_step = config.adaptive and "first_step" not in config.options
        obs = _observation_mask(grid, t)

        a_z = grad_states[-1]
        a_theta = states.new_zeros(sum(p.numel() for p in params))
        time_grads = [None] * len(t) if ctx.t_requires_grad else None
        i_obs = len(t) - 1
        # Step size carried from one interval to the next (adaptive methods); the first interval
        # starts from the forward solve's last step instead of a fresh step-size search.
        step = problem.forward_step
        for j in range(len(grid) - 1, 0, -1):
            if time_grads is not None and obs[j]:
                time_grads[i_obs] = _dot(grad_states[j], _eval(problem.func, grid[j], states[j], field))
            if obs[j]:
                i_obs -= 1
            if differentiable or a_z.any() or a_theta.any():
                options = {"norm": norm} if config.adaptive else {}
                length = abs(float(grid[j]) - float(grid[j - 1]))
                if carry_step and step is not None:
                    # Overshoot the interval by a hair rather than end a rounding error short of it,
                    # which would cost a second, tiny step (the solver interpolates back).
                    options["first_step"] = min(step, length * (1 + 1e-6))
                steps_before = field.steps
                q = dynamics.pack(states[j], a_z, a_theta)
                q = problem.solve(field, q, grid[j - 1:j + 1].flip(0), config, options)[1]
                _, a_z, a_theta = dynamics.unpack(q)
                if step is None or field.steps - steps_before > 1:
                    step = field.last_accepted_dt  # else one step, capped by the interval: keep the larger one
            if j == 1 and time_grads is not None:  # eq. (time-gradients): -a_z(t_0)·f, before the jump at t_0
                time_grads[0] = -_dot(a_z, _eval(problem.func, grid[0], states[0], field))
            a_z = a_z + grad_states[j - 1]
        if time_grads is not None:
            if differentiable:
                warnings.warn("odeint_adjoint: second derivatives involving t are not computed; the time "
                              "gradient is returned, but it is treated as constant in t.", stacklevel=2)
            time_grads = torch.stack(time_grads).to(t.dtype)
        problem.count(field, "backward")

        param_grads, offset = [], 0
        for p in params:
            param_grads.append(a_theta[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return (None, a_z, time_grads, *param_grads)


def _eval(func: Callable, t: Tensor, z: Tensor, field: GuardedField) -> Tensor:
    """``func`` at one time, which it receives in the state's dtype (counted as a backward evaluation)."""
    field.nfe += 1
    out = func(t.to(z.dtype), z)
    check_output(out, z, "func")
    return out


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a.reshape(-1) * b.reshape(-1)).sum()


def _observation_mask(grid: Tensor, t: Tensor) -> list:
    """``mask[j]`` is True where ``grid[j]`` is an observation time (an element of ``t``)."""
    t_set = set(t.detach().tolist())
    return [g in t_set for g in grid.tolist()]


def _time_grid(t: Tensor, checkpoints: int, config: SolverConfig) -> Tensor:
    """Observation times merged with ``checkpoints`` equally spaced interior times.

    For fixed-grid methods the checkpoints are moved onto the solver's grid, so that the stored
    states are solver states rather than interpolations between them.
    """
    t = t.detach()
    if checkpoints == 0:
        return t
    extra = torch.linspace(float(t[0]), float(t[-1]), checkpoints + 2, dtype=t.dtype, device=t.device)[1:-1]
    step = config.options.get("step_size")
    if step is not None:
        extra = t[0] + torch.round((extra - t[0]) / step) * step
        inside = (extra - t[0]) * (t[-1] - extra) > 0  # snapping may reach t_0 or pass t_N
        extra = extra[inside]
    distance = (extra[:, None] - t[None, :]).abs().min(dim=1).values
    extra = extra[distance > 1e-9 * (t[-1] - t[0]).abs()]  # a checkpoint on an observation time is redundant
    grid = torch.cat([t, extra]).unique()
    return grid if bool(t[1] > t[0]) else grid.flip(0)


def odeint_adjoint(func: Callable, y0: Union[Tensor, Tuple[Tensor, ...]], t: Tensor, *, rtol: float = 1e-7,
                   atol: float = 1e-9, method: Optional[str] = None, options: Optional[dict] = None,
                   adjoint_rtol: Optional[float] = None, adjoint_atol: Optional[float] = None,
                   adjoint_method: Optional[str] = None, adjoint_options: Optional[dict] = None,
                   adjoint_params: Union[Tensor, Sequence[Tensor], None] = None, checkpoints: int = 0,
                   stats: Optional[SolveStats] = None, compiled: Union[bool, str] = False
                   ) -> Union[Tensor, Tuple[Tensor, ...]]:
    """Solve ``dy/dt = func(t, y)`` and differentiate by the adjoint method (Theorem 1).

    Same calling convention as ``torchdiffeq.odeint_adjoint``, so the two swap in one line;
    ``torchdiffeq.odeint`` is the black-box solver of both the forward and the backward solve.
    ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``, ...) are not supported and raise an
    error: batch with a leading dimension of ``y0`` and differentiate with ``torch.autograd``.

    Args:
        func: the vector field ``f(t, y)``; an ``nn.Module`` unless ``adjoint_params`` is given.
        y0: initial state, a tensor of any shape (batches are leading dimensions), float32 or
            float64, or a tuple of tensors of one dtype and device (torchdiffeq's tuple states:
            ``func`` then takes and returns tuples, and the result is a tuple).
        t: 1-D, strictly increasing or decreasing observation times on ``y0``'s device, of its dtype
            or a more precise one. If ``t.requires_grad``, gradients with respect to the times are
            returned (eq. :eq:`time-gradients`), in ``t``'s dtype.
        rtol, atol, method, options: the forward solve (see :func:`nodelib.odeint`).
        adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options: the backward solve; default to
            the forward's (``adjoint_options``, when given, replaces ``options``: a fixed-grid
            backward method then needs its own ``step_size``). ``adjoint_options["norm"]`` may be
            ``"seminorm"`` (Kidger et al. 2021), for adaptive methods, or a callable: either
            torchdiffeq's, taking one tuple ``(a_t, *y, *a_y, *a_θ)``, or nodelib's, taking the
            three blocks ``(z, a_z, a_θ)`` of the error estimate.
        adjoint_params: the tensors to differentiate with respect to (a sequence, or one tensor);
            default ``func.parameters()``.
        checkpoints: number of extra times, equally spaced (on a fixed grid: moved to the nearest
            grid point inside the interval, duplicates merged), at which the forward state is stored;
            the backward solve restarts its reconstruction of ``z`` from each of them, which bounds
            the error of reverse-time reconstruction (memory grows by one state per checkpoint).
        stats: a :class:`~nodelib.SolveStats` to which forward and backward counts are added.
        compiled: opt in to nodelib's own stepping (:func:`nodelib.odeint_compiled`) for both
            solves, each step one graph compiled by ``torch.compile``, in the backward solve with the
            augmented dynamics inside it (:class:`~nodelib.adjoint.FunctionalAugmentedDynamics`);
            ``"eager"`` takes the same steps
            without compiling them. Same results, counts and errors as the default, to rounding; the
            first call per shape pays for the compilation. Methods ``dopri5`` and ``rk4`` only, tensor
            states, parameters of ``func`` only, and no second derivatives.

    Returns:
        A tensor of shape ``(len(t), *y0.shape)`` (a tuple of them for a tuple state),
        differentiable with respect to ``y0``, ``t`` and the parameters, also twice
        (``create_graph=True``: the backward solve is then recorded).

    Example:
        >>> import torch, nodelib
        >>> A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
        >>> z0, t = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        >>> z1 = nodelib.odeint_adjoint(lambda t, z: A @ z, z0, t, adjoint_params=A)[-1]
        >>> z1[0].backward()  # z(1) = exp(A) z(0), so the gradient is that of exp(A)[0, 0]
        >>> exact = torch.autograd.functional.jacobian(
        ...     lambda M: torch.linalg.matrix_exp(M)[0, 0], A.detach())
        >>> torch.allclose(A.grad, exact, atol=1e-5)
        True
    """
    check_func(func)
    _refuse_function_transforms()
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise ValueError("func is not an nn.Module, so its parameters cannot be found; pass "
                             "adjoint_params=(...) with the tensors to differentiate, or adjoint_params=() "
                             "if it has none.")
        adjoint_params, params_name = tuple(func.parameters()), "func.parameters()"
    else:  # one tensor is one parameter (torchdiffeq would iterate over its rows, silently)
        adjoint_params = (adjoint_params,) if isinstance(adjoint_params, Tensor) else tuple(adjoint_params)
        params_name = "adjoint_params"
    check_compiled_flag(compiled)
    solver = dict(rtol=rtol, atol=atol, method=method, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                  adjoint_method=adjoint_method, adjoint_options=adjoint_options, checkpoints=checkpoints,
                  stats=stats, compiled=compiled)
    if isinstance(y0, tuple):
        if compiled:
            raise TypeError("odeint_adjoint(compiled=...) takes a tensor state; solve tuple states with "
                            "compiled=False.")
        state = TupleState(y0)
        ys = _odeint_adjoint(state.wrap(func), state.flatten(y0), t, adjoint_params, params_name, state.shapes,
                             options=_tuple_norm(options, state, method), **solver)
        return state.split(ys)
    return _odeint_adjoint(func, y0, t, adjoint_params, params_name, None, options=options, **solver)


def _refuse_function_transforms() -> None:
    """Raise inside ``torch.func`` transforms, which cannot see through the backward solve."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    if peek is not None and peek() is not None:
        raise RuntimeError("odeint_adjoint does not support torch.func transforms (vmap, grad, jacrev, ...): its "
                           "backward pass is a solve of its own, which they cannot batch or transform. Batch with a "
                           "leading dimension of y0 instead of vmap, and differentiate with torch.autograd.grad or "
                           ".backward().")


def _odeint_adjoint(func: Callable, y0: Tensor, t: Tensor, adjoint_params: tuple, params_name: str,
                    state_shapes: Optional[List[torch.Size]], *, rtol, atol, method, options, adjoint_rtol,
                    adjoint_atol, adjoint_method, adjoint_options, checkpoints, stats, compiled) -> Tensor:
    """:func:`odeint_adjoint` on a tensor state, after its arguments are normalised."""
    check_state(y0)
    check_times(t, y0)
    check_params(adjoint_params, y0, name=params_name)
    params = tuple(p for p in adjoint_params if p.requires_grad)

    forward = check_solver(method, rtol, atol, options)
    if adjoint_options is None:
        if adjoint_method is not None and adjoint_method != forward.method and options:
            raise ValueError("adjoint_method differs from method, so adjoint_options cannot be inferred from "
                             "options; pass adjoint_options explicitly.")
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    adjoint_options = dict(adjoint_options)
    backward_norm = adjoint_options.pop("norm", None)
    backward = check_solver(forward.method if adjoint_method is None else adjoint_method,
                            rtol if adjoint_rtol is None else adjoint_rtol,
                            atol if adjoint_atol is None else adjoint_atol, adjoint_options, prefix="adjoint_")
    state_shapes = [y0.shape] if state_shapes is None else state_shapes
    _make_norm(backward_norm, state_shapes, [p.shape for p in params])  # validate early
    if backward_norm is not None and not backward.adaptive:
        raise ValueError(f"adjoint_options['norm'] applies to adaptive methods only; the backward method "
                         f"{backward.method!r} has no error norm of nodelib's.")
    if not backward.adaptive and "step_size" in forward.options and "step_size" not in backward.options:
        raise ValueError(f"adjoint_options has no 'step_size', so the backward {backward.method!r} solve would "
                         f"take one step per interval of t while the forward solve takes steps of "
                         f"{forward.options['step_size']}; pass adjoint_options=dict(step_size=...).")
    check_fixed_grid_length(forward, t)
    check_fixed_grid_length(backward, t, prefix="adjoint_")
    if isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 0:
        raise ValueError(f"checkpoints must be a non-negative int, got {checkpoints!r}.")
    if compiled:
        caller = "odeint_adjoint(compiled=...)"
        check_compiled(forward, caller=caller, instead="compiled=False")
        check_compiled(backward, prefix="adjoint_", caller=caller, instead="compiled=False")
        parameter_names(func, params)

    grid = _time_grid(t, checkpoints, forward)
    problem = _AdjointProblem(func, params, state_shapes, forward, backward, backward_norm, grid, stats,
                              compiled)
    states = _AdjointSolve.apply(problem, y0, t, *params)
    if len(grid) == len(t):
        return states
    index = torch.tensor([j for j, is_obs in enumerate(_observation_mask(grid, t)) if is_obs], device=grid.device)
    return states.index_select(0, index)
