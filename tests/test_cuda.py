"""The same computations on a CUDA device as on the CPU (skipped where no CUDA device exists).

Reference: the CPU result of the identical float64 computation, same parameters, same inputs. The
adjoint solve on CUDA itself is checked in test_adjoint_beyond.test_cuda_matches_cpu; here the CNF
(log-density and its parameter gradients through the adjoint; sampling with base points drawn on
the device) and the ODE-Net classifier of Table 1.
"""
import copy

import pytest
import torch
from torch import nn

import nodelib
from nodelib.experiments import SolverSettings, build_classifier

from fields import rel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TIGHT = dict(rtol=1e-10, atol=1e-10)


def loss_and_grads(model, loss_fn, *inputs):
    loss = loss_fn(model, *inputs)
    return [loss.detach().cpu(), *[g.cpu() for g in torch.autograd.grad(loss, list(model.parameters()))]]


def test_cnf_log_prob_and_adjoint_gradients_on_cuda_match_cpu():
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16, 16)), adjoint=True, **TIGHT)
    x = torch.randn(64, 2)
    nll = lambda model, data: -model.log_prob(data).mean()
    cpu = loss_and_grads(cnf, nll, x)
    gpu = loss_and_grads(copy.deepcopy(cnf).cuda(), nll, x.cuda())
    assert rel(gpu, cpu) < 1e-8


def test_cnf_sampling_on_cuda_draws_on_the_device_and_matches_cpu():
    """sample_with_log_prob draws its base points on the CNF's device; the CPU's forward solve of the
    same base points and its reverse solve (log_prob) of the samples give the same x and log p."""
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), **TIGHT)
    x, log_p = copy.deepcopy(cnf).cuda().sample_with_log_prob(32, generator=torch.Generator("cuda").manual_seed(0))
    assert x.device.type == log_p.device.type == "cuda"
    z0 = torch.randn(32, 2, generator=torch.Generator("cuda").manual_seed(0), device="cuda").cpu()
    assert rel(x.cpu(), cnf.transform(z0)) < 1e-8
    assert rel(log_p.cpu(), cnf.log_prob(x.cpu())) < 1e-8


def test_odenet_logits_and_adjoint_gradients_on_cuda_match_cpu():
    """On a fixed grid (rk4, 4 steps, forward and adjoint backward), so that both devices take the
    same steps. With dopri5 at tolerance 1e-9 the two gradients differed by 7e-5 on an H200: rounding
    moves the accepted steps, and through the ReLU kinks of the ODE-Net's field the adjoint gradient
    moves with them, as it moves with the tolerance in
    test_experiments.test_odenet_adjoint_gradient_converges_to_direct_backprop."""
    torch.manual_seed(1)
    model = build_classifier("odenet", image_size=8, channels=8, solver=SolverSettings("rk4", adjoint=True, steps=4))
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    xent = lambda m, images, labels: nn.functional.cross_entropy(m(images), labels)
    cpu = loss_and_grads(model, xent, x, y)
    gpu = loss_and_grads(copy.deepcopy(model).cuda(), xent, x.cuda(), y.cuda())
    assert rel(gpu, cpu) < 1e-10
