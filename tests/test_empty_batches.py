"""A batch of no points: every per-point computation returns an empty result of the right shape
(and zero parameter gradients), every average over points refuses it, naming the empty dimension."""
import pytest
import torch

import nodelib
from fields import TimeMLP




@pytest.mark.parametrize("solver", [nodelib.odeint, nodelib.odeint_adjoint])
def test_solves_of_an_empty_batch_are_empty_and_give_zero_gradients(solver):
    field = TimeMLP()
    stats = nodelib.SolveStats()
    zs = solver(field, torch.zeros(0, 2, requires_grad=True), torch.tensor([0.0, 0.5, 1.0]), stats=stats)
    assert zs.shape == (3, 0, 2) and stats.nfe_forward == 0
    zs.sum().backward()
    grads = [p.grad for p in field.parameters()]
    if solver is nodelib.odeint_adjoint:  # the adjoint hands back zeros; direct backprop reaches nothing
        assert all(torch.equal(g, torch.zeros_like(p)) for g, p in zip(grads, field.parameters()))
    else:
        assert all(g is None for g in grads)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
@pytest.mark.parametrize("adjoint", [True, False])
def test_cnf_log_prob_and_its_gradients_of_an_empty_batch(trace, adjoint):
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), trace=trace, adjoint=adjoint)
    x = torch.zeros(0, 2)
    assert cnf.log_prob(x).shape == (0,)
    grad_x, grad_theta = nodelib.log_prob_gradients(cnf, x)
    assert grad_x.shape == (0, 2) and all(torch.equal(g, torch.zeros_like(g)) for g in grad_theta)


def test_flows_of_an_empty_batch():
    for direction in ("normalizing", "generative"):
        flow = nodelib.PlanarFlow(2, 3, direction=direction)
        assert flow.log_prob(torch.zeros(0, 2)).shape == (0,)
        assert [s.shape for s in flow.to_data(torch.zeros(0, 2))] == [(0, 2), (0,)]


def test_averages_over_no_points_are_refused():
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)))
    with pytest.raises(ValueError, match=r"x must be a tensor of at least one point.*got \(0, 2\)"):
        nodelib.mean_nll(cnf, torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"data must be a tensor of shape \(N, d\)"):
        nodelib.fit_density(cnf, torch.zeros(0, 2), iterations=1, verbose=False)
