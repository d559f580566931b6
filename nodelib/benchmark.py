"""Side-by-side measurements of adjoint implementations (chapter "Faster and more accurate adjoints").

Used by ``benchmarks/adjoint.py`` (the recorded table in ``benchmarks/README.md``) and by the chapter.
:func:`count_operations` counts the tensor operations a computation dispatches, for the chapter's
section on where a solve's time goes. Every solver runs on the same field, initial state, times and loss, in one process, in alternating
order; the table reports NFE, median forward+backward wall time, memory kept for the backward pass,
the gradient's relative error against the exact gradient (direct backprop through dopri5 at
tolerance 1e-12 in float64), and the time ratio to a reference solver.
"""
from __future__ import annotations

import collections
import dataclasses
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch
import torchdiffeq
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from .dynamics import MLPField
from .memory import kept_for_backward

__all__ = ["Problem", "Row", "standard_problems", "compare", "markdown_table", "count_operations"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark problem: times ``t``, the solvers' shared keyword arguments, and the loss.

    The loss is the squared error against a fixed random target at every time in ``t``, averaged
    (``reduction="mean"``) or summed (``"sum"``) over the batch and the times.
    """

    name: str
    t: Tensor
    solver_kwargs: dict
    batch: int = 512
    reduction: str = "mean"


@dataclasses.dataclass
class Row:
    """One solver on one problem: NFE, memory and gradient error of the untimed pass, median time,
    and the median over repeats of the time ratio to the reference solver's run in the same repeat."""

    problem: str
    solver: str
    nfe_forward: int
    nfe_backward: int
    seconds: float
    kept_bytes: int
    grad_error: float
    time_ratio: float


class _Counted(nn.Module):
    """The benchmark field, counting its evaluations whichever library calls it."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.calls = 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.calls += 1
        return self.field(t, z)


def standard_problems(*, rk4_steps: Sequence[int] = (100, 1000, 10000), observations: int = 100,
                      dtype: torch.dtype = torch.float32) -> List[Problem]:
    """The issue's problems: MLP 3-64-64-2 tanh field, batch 512, t in [0, 1].

    dopri5 at rtol = atol = 1e-5; rk4 at the given numbers of steps; and a loss on ``observations``
    equally spaced times with dopri5 at torchdiffeq's default tolerances (rtol 1e-7, atol 1e-9),
    once with the loss summed and once averaged (the scale of the adjoint changes how many steps an
    adaptive backward solve needs, chapter "Faster and more accurate adjoints").
    """
    t01 = torch.tensor([0.0, 1.0], dtype=dtype)
    problems = [Problem("dopri5 1e-5", t01, dict(method="dopri5", rtol=1e-5, atol=1e-5))]
    problems += [Problem(f"rk4 {n} steps", t01, dict(method="rk4", options=dict(step_size=1.0 / n)))
                 for n in rk4_steps]
    if observations:
        t_obs = torch.linspace(0.0, 1.0, observations + 1, dtype=dtype)
        problems += [Problem(f"dopri5, {observations} obs, {reduction} loss", t_obs, dict(method="dopri5"),
                             reduction=reduction) for reduction in ("sum", "mean")]
    return problems


def _run(solver: Callable, field: _Counted, y0: Tensor, problem: Problem, target: Tensor, *,
         measure_memory: bool) -> dict:
    """One forward+backward pass: timed, or (``measure_memory``) with the memory count, untimed."""
    field.calls = 0
    y0 = y0.clone().requires_grad_(True)

    def forward() -> Tensor:
        return solver(field, y0, problem.t, **problem.solver_kwargs)

    start = time.perf_counter()
    ys, kept = kept_for_backward(forward) if measure_memory else (forward(), None)
    nfe_forward = field.calls
    squared = (ys - target) ** 2
    loss = squared.sum() if problem.reduction == "sum" else squared.mean()
    grads = torch.autograd.grad(loss, [y0, *field.parameters()])
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, kept=kept, nfe_f=nfe_forward, nfe_b=field.calls - nfe_forward,
                grad=torch.cat([g.reshape(-1) for g in grads]))


def compare(problem: Problem, solvers: Dict[str, Callable], *, reference: str, repeats: int = 5,
            seed: int = 0, skip_repeats: Sequence[str] = ()) -> List[Row]:
    """Run every solver on ``problem``; one :class:`Row` each.

    A first, untimed pass per solver counts NFE and memory and takes the gradient; then ``repeats``
    timed passes run in alternating order (the memory count's bookkeeping stays out of the timings).
    ``reference`` names the solver that time ratios are taken against; solvers in ``skip_repeats``
    get one timed pass (for example direct backprop where it needs gigabytes).
    """
    if reference not in solvers:
        raise ValueError(f"reference={reference!r} is not one of the solvers {sorted(solvers)}.")
    if repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}.")
    dtype = problem.t.dtype
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    field = _Counted(MLPField(2, hidden=(64, 64)).to(dtype))
    y0 = torch.randn(problem.batch, 2, generator=generator, dtype=dtype)
    target = torch.randn(len(problem.t), problem.batch, 2, generator=generator, dtype=dtype)
    counted = {name: _run(solver, field, y0, problem, target, measure_memory=True) for name, solver in solvers.items()}
    seconds: Dict[str, list] = {name: [] for name in solvers}
    for r in range(repeats):
        order = list(solvers) if r % 2 == 0 else list(solvers)[::-1]
        for name in order:
            if r == 0 or name not in skip_repeats:
                seconds[name].append(_run(solvers[name], field, y0, problem, target, measure_memory=False)["seconds"])
    median = {name: statistics.median(values) for name, values in seconds.items()}
    # Ratios within each repeat (the two runs were back to back), then their median: steadier than a
    # ratio of medians when the machine's speed drifts.
    ratio = {name: statistics.median(a / b for a, b in zip(values, seconds[reference]))
             for name, values in seconds.items()}
    exact_problem = dataclasses.replace(problem, t=problem.t.double(),
                                        solver_kwargs=dict(method="dopri5", rtol=1e-12, atol=1e-12))
    exact = _run(torchdiffeq.odeint, field.double(), y0.double(), exact_problem, target.double(),
                 measure_memory=False)["grad"]
    field.to(dtype)
    rows = []
    for name, run in counted.items():
        error = float((run["grad"].double() - exact).norm() / exact.norm())
        rows.append(Row(problem.name, name, run["nfe_f"], run["nfe_b"], median[name], run["kept"], error,
                        ratio[name]))
    return rows


def markdown_table(rows: Sequence[Row], *, reference: str) -> str:
    """The rows as a Markdown table, with the time ratio to ``reference``."""
    lines = [f"| problem | solver | NFE fwd / bwd | fwd+bwd s (median) | kept for backward MiB | "
             f"grad. rel. error vs exact | time ratio to {reference} |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.problem} | {r.solver} | {r.nfe_forward} / {r.nfe_backward} | {r.seconds:.3f} | "
                     f"{r.kept_bytes / 2 ** 20:.3f} | {r.grad_error:.1e} | {r.time_ratio:.2f} |")
    return "\n".join(lines)


class _OperationCounter(TorchDispatchMode):
    """Counts every ATen operator call that reaches the dispatcher below autograd."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_operations(fn: Callable[[], object]) -> collections.Counter:
    """Run ``fn()`` and count the tensor operations it dispatches, by ATen operator name.

    Every call that reaches PyTorch's kernels is counted once: the forward computation's and, when
    ``fn`` calls ``backward`` or ``torch.autograd.grad``, the backward pass's. Composite
    operations are counted as the kernels they run (``nn.Linear`` as ``addmm``, or ``t`` and
    ``addmm``). The counts are exact and repeatable, unlike times.

    Example:
        >>> import torch
        >>> from nodelib.benchmark import count_operations
        >>> x = torch.ones(3, requires_grad=True)
        >>> counts = count_operations(lambda: (x * x).sum().backward())
        >>> counts["aten.mul"] >= 1, counts["aten.sum"]
        (True, 1)
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments, got {type(fn).__name__}.")
    with _OperationCounter() as counter:
        fn()
    return counter.counts
