"""nodelib.CNF(compiled=...) against the default CNF, in float64.

A compiled CNF solves with nodelib's own stepping (odeint_adjoint(..., compiled=...), or odeint_compiled
without the adjoint), which takes torchdiffeq's steps, and takes the exact or Hutchinson trace's
vector-Jacobian products by torch.func instead of torch.autograd.grad: log-densities, samples, penalties,
gradients and evaluation counts must equal the default CNF's to rounding.
"""
import pytest
import torch

import nodelib

from fields import rel

TOLERANCE = dict(rtol=1e-8, atol=1e-8)
FIELDS = {
    "planar": (lambda: nodelib.HyperPlanarField(2, 4, hidden=(8,)), dict(trace="closed_form")),
    "exact": (lambda: nodelib.MLPField(2, hidden=(8,)), dict(trace="exact")),
    "hutchinson": (lambda: nodelib.MLPField(2, hidden=(8,)), dict(trace="hutchinson", noise="gaussian")),
    "regularised": (lambda: nodelib.MLPField(2, hidden=(8,)),
                    dict(trace="exact", kinetic_weight=0.5, jacobian_weight=0.5)),
}


def _cnf(name: str, compiled, adjoint: bool = True) -> nodelib.CNF:
    make, kwargs = FIELDS[name]
    torch.manual_seed(1)
    return nodelib.CNF(make(), adjoint=adjoint, compiled=compiled, **TOLERANCE, **kwargs)


def _log_prob_and_gradients(cnf: nodelib.CNF):
    """``log p(x)`` and its penalties, and the gradients of their mean w.r.t. ``x`` and ``θ``, with the counts."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    stats = nodelib.SolveStats()
    log_p, penalties = cnf.log_prob_and_penalties(x, generator=torch.Generator().manual_seed(3), stats=stats)
    outputs = [log_p, *penalties.values()]
    grads = torch.autograd.grad(sum(out.mean() for out in outputs), [x, *cnf.parameters()])
    return outputs, grads, stats


def _samples_and_gradients(cnf: nodelib.CNF):
    """Fig. 4's training path: samples with their ``log q`` from one forward solve, and the gradients of
    ``mean(log q(x) + ‖x‖²)`` w.r.t. ``θ``, with the counts."""
    stats = nodelib.SolveStats()
    x, log_q = cnf.sample_with_log_prob(16, generator=torch.Generator().manual_seed(4), stats=stats)
    grads = torch.autograd.grad((log_q + x.pow(2).sum(-1)).mean(), list(cnf.parameters()))
    return [x, log_q], grads, stats


@pytest.mark.parametrize("adjoint", [True, False])
@pytest.mark.parametrize("name", FIELDS)
def test_log_prob_penalties_and_gradients_match_the_default_cnf(name, adjoint):
    ours, our_grads, our_stats = _log_prob_and_gradients(_cnf(name, "eager", adjoint))
    theirs, their_grads, their_stats = _log_prob_and_gradients(_cnf(name, False, adjoint))
    assert rel(ours, theirs) < 1e-12
    assert rel(our_grads, their_grads) < 1e-12
    assert our_stats == their_stats  # the same steps, forward and backward
    assert our_stats.nfe_forward > 0 and (our_stats.nfe_backward > 0) == adjoint


@pytest.mark.parametrize("adjoint", [True, False])
@pytest.mark.parametrize("name", ["planar", "exact"])
def test_samples_with_log_prob_and_gradients_match_the_default_cnf(name, adjoint):
    ours, our_grads, our_stats = _samples_and_gradients(_cnf(name, "eager", adjoint))
    theirs, their_grads, their_stats = _samples_and_gradients(_cnf(name, False, adjoint))
    assert rel(ours, theirs) < 1e-12
    assert rel(our_grads, their_grads) < 1e-12
    assert our_stats == their_stats


def test_sample_and_reverse_match_the_default_cnf():
    ours, theirs = _cnf("exact", "eager"), _cnf("exact", False)
    x = torch.randn(8, 2)
    assert rel(ours.reverse(x), theirs.reverse(x)) < 1e-12
    generator = [torch.Generator().manual_seed(5) for _ in range(2)]
    assert rel(ours.sample(8, generator=generator[0]), theirs.sample(8, generator=generator[1])) < 1e-12


@pytest.mark.parametrize("name", ["planar", "exact"])
def test_the_compiled_steps_give_the_default_log_prob_and_gradients(name):
    """torch.compile of the forward and the backward step (tens of seconds each on a small CPU); the exact
    trace's torch.func.vjp is traced inside the adjoint's torch.func.vjp."""
    ours, our_grads, our_stats = _log_prob_and_gradients(_cnf(name, True))
    theirs, their_grads, their_stats = _log_prob_and_gradients(_cnf(name, False))
    assert rel(ours, theirs) < 1e-12
    assert rel(our_grads, their_grads) < 1e-12
    assert our_stats == their_stats


@pytest.mark.parametrize("compiled", ["yes", 1, 1.0, None, "Eager"])
def test_bad_compiled_values_are_refused(compiled):
    with pytest.raises(ValueError, match=r"^compiled must be False, True or 'eager', got "):
        _cnf("planar", compiled)


def test_methods_the_compiled_path_does_not_implement_are_refused():
    with pytest.raises(ValueError, match=r"^CNF\(compiled=\.\.\.\) supports method='dopri5' or 'rk4', got "
                                         r"'bosh3'; use compiled=False"):
        nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), method="bosh3", compiled="eager")
    with pytest.raises(ValueError, match=r"^CNF\(compiled=\.\.\.\) does not support options \['jump_t'\]"):
        nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), options=dict(jump_t=torch.tensor([0.5])), compiled=True)


@pytest.mark.parametrize("name", ["exact", "hutchinson"])
def test_log_prob_gradients_of_a_compiled_cnf_match_the_default_cnfs(name):
    """log_prob_gradients differentiates the trace once more, by autograd through torch.func's products."""
    x = torch.randn(5, 2)
    ours = nodelib.log_prob_gradients(_cnf(name, "eager"), x, generator=torch.Generator().manual_seed(6))
    theirs = nodelib.log_prob_gradients(_cnf(name, False), x, generator=torch.Generator().manual_seed(6))
    assert rel([ours[0], *ours[1]], [theirs[0], *theirs[1]]) < 1e-12
