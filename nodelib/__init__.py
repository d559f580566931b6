"""nodelib: the small library behind the book *Neural ODEs, checked*.

The public surface, by chapter of the book:

* :func:`odeint_adjoint`, :class:`AugmentedDynamics` - the adjoint sensitivity method (Theorem 1);
* :func:`odeint`, :class:`SolveStats`, :class:`SolverError` - black-box solves with counts and guards;
  :func:`odeint_compiled` - the same solves by nodelib's own stepping, each step compiled by ``torch.compile``
  if asked (the opt-in compiled path, also ``odeint_adjoint(..., compiled=True)`` and ``CNF(compiled=True)``);
* :class:`MLPField` - the free-form vector field ``f(z, t) = MLP([z, t])``; :class:`ConvField` - the
  ODE-Net's time-concatenated convolutional field (chapter "ODE-Net on MNIST");
* :func:`trace_exact`, :func:`trace_hutchinson`, :func:`draw_noise` - ``tr ∇_z f`` (Theorem 2);
* :class:`CNF`, :class:`StandardNormal`, :func:`log_prob_gradients` - continuous normalizing flows;
* :func:`fit_density`, :func:`mean_nll` - maximum-likelihood training of density models; :func:`fit_kl` -
  fitting a flow to an unnormalised density by KL(q‖p);
* :class:`PlanarFlow`, :class:`PlanarLayer` - discrete planar flows; :class:`GatedPlanarField` - their
  continuous, gated counterpart with a closed-form trace; :class:`HyperPlanarField` - the paper's planar CNF
  dynamics, whose unit parameters come from a hypernetwork of t;
* :class:`LatentODE`, :class:`RNNForecaster`, :func:`poisson_log_likelihood` - latent ODEs for irregularly
  sampled time series, their recurrent baselines, and Poisson process likelihoods (chapter "Latent ODEs for
  irregular time series");
* :func:`seed_everything` - determinism for chapters and experiments.
"""
from .adjoint import AugmentedDynamics, odeint_adjoint
from .cnf import CNF, StandardNormal, log_prob_gradients
from .compiled import odeint_compiled
from .dynamics import ConvField, GatedPlanarField, HyperPlanarField, MLPField
from .flows import PlanarFlow, PlanarLayer
from .latent import LatentODE
from .poisson import poisson_log_likelihood
from .recurrent import RNNForecaster
from .reproducibility import seed_everything
from .solve import SolverError, SolveStats, odeint
from .trace import NOISE_TYPES, TRACE_METHODS, draw_noise, trace_exact, trace_hutchinson
from .training import FitHistory, fit_density, fit_kl, mean_nll

__all__ = ["odeint", "odeint_adjoint", "odeint_compiled", "AugmentedDynamics", "SolveStats", "SolverError",
           "MLPField", "seed_everything",
           "CNF", "StandardNormal", "log_prob_gradients",
           "trace_exact", "trace_hutchinson", "draw_noise", "TRACE_METHODS", "NOISE_TYPES",
           "fit_density", "fit_kl", "mean_nll", "FitHistory",
           "PlanarFlow", "PlanarLayer", "GatedPlanarField", "HyperPlanarField", "ConvField",
           "LatentODE", "RNNForecaster", "poisson_log_likelihood"]
__version__ = "0.1.0"
