"""nodelib: the small library behind the book *Neural ODEs, checked*.

The public surface, by chapter of the book:

* :func:`odeint_adjoint`, :class:`AugmentedDynamics` - the adjoint sensitivity method (Theorem 1);
* :func:`odeint`, :class:`SolveStats`, :class:`SolverError` - black-box solves with counts and guards;
* :class:`MLPField` - the free-form vector field ``f(z, t) = MLP([z, t])``;
* :class:`PlanarFlow`, :class:`PlanarLayer` - discrete planar flows; :class:`GatedPlanarField` - their
  continuous, gated counterpart with a closed-form trace;
* :func:`seed_everything` - determinism for chapters and experiments.
"""
from .adjoint import AugmentedDynamics, odeint_adjoint
from .dynamics import GatedPlanarField, MLPField
from .flows import PlanarFlow, PlanarLayer
from .reproducibility import seed_everything
from .solve import SolverError, SolveStats, odeint

__all__ = ["odeint", "odeint_adjoint", "AugmentedDynamics", "SolveStats", "SolverError", "MLPField", "seed_everything",
           "PlanarFlow", "PlanarLayer", "GatedPlanarField"]
__version__ = "0.1.0"
