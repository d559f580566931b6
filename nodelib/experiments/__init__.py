"""The paper's experiments (Part III of the book), as importable functions with a command line.

* :mod:`nodelib.experiments.mnist` - Table 1 and Fig. 3 of Chen et al. (2018): MLP, ResNet,
  RK-Net and ODE-Net on the digits, MNIST or Fashion-MNIST (chapter "ODE-Net on MNIST");
* :mod:`nodelib.experiments.density` - Figs. 4 and 5: planar CNF against planar NF, by KL(q‖p) to
  unnormalised targets and by maximum likelihood on two circles and two moons (chapter "CNF against NF");
* :mod:`nodelib.experiments.latent` - Table 2: the latent ODE against two RNNs on bi-directional spirals
  (chapter "Latent ODEs for irregular time series");
* :mod:`nodelib.experiments.classifiers` - the four models;
* :mod:`nodelib.experiments.measure` - parameter counts, paired comparison of test errors;
* :mod:`nodelib.experiments.runs` - devices, provenance, checkpoints, atomic result files.

Command line: ``python -m nodelib.experiments mnist --preset quick|full [--dataset ...] --out DIR``,
``python -m nodelib.experiments density --preset quick|full --out DIR`` and
``python -m nodelib.experiments latent --preset quick|full --out DIR``
(``python -m nodelib.experiments --help``). The core of nodelib never imports this package.
"""
from .classifiers import MODELS, ODEBlock, SolverSettings, build_classifier
from .measure import count_parameters, paired_error_difference
from .mnist import PAPER_TABLE1, PRESETS, Preset, get_preset, memory_against_steps
from .mnist import run as run_mnist

__all__ = ["MODELS", "ODEBlock", "SolverSettings", "build_classifier", "count_parameters", "paired_error_difference",
           "PAPER_TABLE1", "PRESETS", "Preset", "get_preset", "memory_against_steps", "run_mnist"]
