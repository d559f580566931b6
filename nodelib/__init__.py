"""nodelib: the small library behind the book *Neural ODEs, checked*.

The public surface, by chapter of the book:

* :func:`odeint_adjoint` - the adjoint sensitivity method (Theorem 1);
* :func:`odeint`, :class:`SolveStats`, :class:`SolverError` - black-box solves with counts and guards.
"""
from .adjoint import odeint_adjoint
from .solve import SolverError, SolveStats, odeint

__all__ = ["odeint", "odeint_adjoint", "SolveStats", "SolverError"]
__version__ = "0.1.0"
