"""The regularisers of nodelib.CNF (Finlay et al. 2020): the kinetic energy K = ∫ ‖f‖² dt and the Jacobian's
Frobenius norm J = ∫ ‖∇_z f‖_F² dt, integrated in the density solve, against quadrature along the solved
trajectory, Hutchinson's estimate against the exact norm, the adjoint against direct backprop, weights 0 against
today's solve and fit, and the regularised fit_density."""
import math
import time

import pytest
import torch

import nodelib
from fields import rel
from nodelib.data import toy2d

TIGHT = dict(rtol=1e-10, atol=1e-10)


def random_field(scale=2.0):
    """A small MLPField whose weights are scaled up, so that its trajectories bend."""
    field = nodelib.MLPField(2, hidden=(16,))
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(scale)
    return field


def simpson(y, t):
    """Composite Simpson's rule over the last axis of y on the uniform, ascending grid t (odd length)."""
    h = (t[-1] - t[0]) / (len(t) - 1)
    return h / 3 * (y[..., 0] + y[..., -1] + 4 * y[..., 1:-1:2].sum(-1) + 2 * y[..., 2:-1:2].sum(-1))


def quadrature_penalties(field, z_start, t_start, t_end, points=401):
    """K and J of the trajectories from z_start, by Simpson's rule on a fine grid of a tight dense solve,
    with ‖∇_z f‖_F² from autograd's full Jacobian point by point."""
    grid = torch.linspace(t_start, t_end, points)
    with torch.no_grad():
        z = nodelib.odeint(field, z_start, grid, rtol=1e-12, atol=1e-12)  # (points, B, 2)
    speed = torch.stack([field(t, zt).pow(2).sum(-1) for t, zt in zip(grid, z)], dim=-1).detach()
    frobenius = torch.tensor([[torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], point).pow(2).sum()
                               for t, point in zip(grid, z[:, b])] for b in range(z.shape[1])])
    if t_end < t_start:  # integrate over the interval, in ascending time
        grid, speed, frobenius = grid.flip(0), speed.flip(-1), frobenius.flip(-1)
    return simpson(speed, grid), simpson(frobenius, grid)


@pytest.mark.parametrize("adjoint", [False, True])
def test_penalties_of_the_density_solve_match_quadrature_along_the_trajectory(adjoint):
    """log_prob_and_penalties solves from t1 back to t0; K and J are nevertheless the positive integrals."""
    field = random_field()
    cnf = nodelib.CNF(field, t0=0.0, t1=1.5, adjoint=adjoint, kinetic_weight=0.3, jacobian_weight=0.7, **TIGHT)
    x = torch.randn(3, 2)
    log_p, penalties = cnf.log_prob_and_penalties(x)
    kinetic, jacobian = quadrature_penalties(field, x, 1.5, 0.0)
    assert rel(penalties["kinetic"], kinetic) < 1e-7  # measured 8e-10
    assert rel(penalties["jacobian"], jacobian) < 1e-7  # measured 2e-9
    assert (kinetic > 0.05).all() and (jacobian > 0.05).all()  # not a trivial flow
    # The extra components leave the log-density alone (up to the solver's tolerance).
    plain = nodelib.CNF(field, t0=0.0, t1=1.5, adjoint=adjoint, **TIGHT)
    assert rel(log_p, plain.log_prob(x)) < 1e-9


@pytest.mark.parametrize("t0, t1", [(0.0, 1.2), (1.2, 0.0)])
def test_penalties_of_the_sampling_solve_match_quadrature(t0, t1):
    """sample_with_log_prob_and_penalties integrates from t0 to t1, forwards or backwards in time."""
    field = random_field()
    cnf = nodelib.CNF(field, t0=t0, t1=t1, kinetic_weight=1.0, jacobian_weight=1.0, **TIGHT)
    x, log_q, penalties = cnf.sample_with_log_prob_and_penalties(3, generator=torch.Generator().manual_seed(2))
    z0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    kinetic, jacobian = quadrature_penalties(field, z0, t0, t1)
    assert rel(penalties["kinetic"], kinetic) < 1e-7
    assert rel(penalties["jacobian"], jacobian) < 1e-7
    assert rel(log_q, cnf.log_prob(x.detach())) < 1e-8


def test_only_active_penalties_are_integrated():
    field = random_field()
    x = torch.randn(3, 2)
    both = nodelib.CNF(field, kinetic_weight=1.0, jacobian_weight=1.0, **TIGHT).log_prob_and_penalties(x)[1]
    for weights, names in ((dict(kinetic_weight=1.0), ["kinetic"]), (dict(jacobian_weight=2.0), ["jacobian"]),
                           ({}, [])):
        cnf = nodelib.CNF(field, **weights, **TIGHT)
        penalties = cnf.log_prob_and_penalties(x)[1]
        assert list(penalties) == names == list(cnf.penalty_weights)
        assert all(rel(penalties[name], both[name]) < 1e-8 for name in names)


@pytest.mark.parametrize("noise", nodelib.NOISE_TYPES)
def test_hutchinson_frobenius_estimate_is_unbiased_and_shares_the_trace_probe(noise):
    """At a fixed (z, t): the mean of ‖εᵀ∇f‖² over many probes is within 4 standard errors of ‖∇f‖_F², and
    each probe's trace estimate and Frobenius estimate are εᵀJε and ‖εᵀJ‖² for the same ε."""
    field = random_field()
    cnf = nodelib.CNF(field, trace="hutchinson", noise=noise, jacobian_weight=1.0)
    z, t, K = torch.randn(1, 2), torch.tensor(0.4), 20_000
    jacobian = torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], z[0])
    eps = nodelib.draw_noise(z.repeat(K, 1), noise, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        _, div, rates = cnf.field_divergence_and_penalties(t, z.repeat(K, 1), noise=eps)
    estimates = rates["jacobian"]
    exact = jacobian.pow(2).sum()
    se = estimates.std() / math.sqrt(K)
    assert abs(estimates.mean() - exact) < 4 * se, (estimates.mean(), exact, se)
    assert estimates.std() > 1e-3 * exact  # an estimate, not the exact value
    assert rel(estimates, (eps @ jacobian).pow(2).sum(-1)) < 1e-12
    assert rel(div, ((eps @ jacobian) * eps).sum(-1)) < 1e-12


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_adjoint_gradients_of_the_regularised_loss_equal_direct_backprop(trace):
    x = torch.randn(8, 2)
    grads = {}
    for adjoint in (False, True):
        torch.manual_seed(0)
        cnf = nodelib.CNF(random_field(1.0), trace=trace, adjoint=adjoint, kinetic_weight=0.5, jacobian_weight=0.2,
                          rtol=1e-9, atol=1e-9)
        xi = x.clone().requires_grad_(True)
        log_p, penalties = cnf.log_prob_and_penalties(xi, generator=torch.Generator().manual_seed(7))
        loss = -log_p.mean() + 0.5 * penalties["kinetic"].mean() + 0.2 * penalties["jacobian"].mean()
        grads[adjoint] = torch.autograd.grad(loss, (xi, *cnf.parameters()))
    assert rel(grads[True], grads[False]) < 1e-6  # measured 1.3e-8 (exact), 1.5e-8 (Hutchinson)


def todays_log_prob(cnf, x, generator, stats):
    """log p(x) as nodelib computed it before the regularisers: the augmented state [z, Δ], solved from t1 to t0."""
    noise = nodelib.draw_noise(x, cnf.noise, generator=generator) if cnf.trace == "hutchinson" else None

    def augmented(t, state):
        f_z, div = cnf.field_and_divergence(t, state[:, :-1], noise=noise)
        return torch.cat([f_z, -div.unsqueeze(-1)], dim=-1)

    state = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=-1)
    t = torch.tensor([cnf.t1, cnf.t0])
    if cnf.adjoint:
        end = nodelib.odeint_adjoint(augmented, state, t, adjoint_params=tuple(cnf.field.parameters()), stats=stats,
                                     **cnf.solver)[-1]
    else:
        end = nodelib.odeint(augmented, state, t, stats=stats, **cnf.solver)[-1]
    return cnf.base.log_prob(end[:, :-1]) - end[:, -1]


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_weights_zero_reproduce_todays_log_prob_and_gradients_bit_for_bit(adjoint, trace):
    """Same log-densities, gradients (in x and θ) and solver steps, forwards and (adjoint) backwards."""
    x = torch.randn(6, 2)
    results = []
    for weights in (None, {}, dict(kinetic_weight=0.0, jacobian_weight=0.0)):
        torch.manual_seed(0)
        cnf = nodelib.CNF(random_field(1.0), trace=trace, adjoint=adjoint, **(weights or {}))
        xi, stats, generator = x.clone().requires_grad_(True), nodelib.SolveStats(), torch.Generator().manual_seed(3)
        if weights is None:
            log_p = todays_log_prob(cnf, xi, generator, stats)
        else:
            log_p, penalties = cnf.log_prob_and_penalties(xi, generator=generator, stats=stats)
            assert penalties == {} and cnf.penalty_weights == {}
        grads = torch.autograd.grad(log_p.sum(), (xi, *cnf.parameters()))
        results.append((log_p.detach(), *grads, torch.tensor([stats.steps_forward, stats.steps_backward])))
    assert results[0][-1][0] > 0 and (results[0][-1][1] > 0) == adjoint
    for got in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(got, results[0]))


def todays_fit(cnf, data, iterations, batch_size, lr, seed):
    """fit_density's loop before the regularisers: Adam with a cosine schedule on -mean(log p) of minibatches."""
    optimizer = torch.optim.Adam(cnf.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        optimizer.zero_grad()
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator)
        (-cnf.log_prob(data[index]).mean()).backward()
        optimizer.step()
        schedule.step()


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_weights_zero_reproduce_todays_fit_bit_for_bit(trace):
    data = toy2d.sample("8gaussians", 300, seed=1)
    fit = dict(iterations=6, batch_size=32, lr=0.02, seed=4)
    models = []
    for weights in (None, {}, dict(kinetic_weight=0.0, jacobian_weight=0.0)):
        torch.manual_seed(0)  # the field's initialisation and Hutchinson's probes
        cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), trace=trace, adjoint=False, rtol=1e-5, atol=1e-5,
                          **(weights or {}))
        if weights is None:
            todays_fit(cnf, data, **fit)
        else:
            history = nodelib.fit_density(cnf, data, log_every=3, verbose=False, **fit)
            assert [parts for _, parts in history.parts] == [{"nll": loss} for _, loss in history.losses]
        models.append(cnf)
    for cnf in models[1:]:
        assert all(torch.equal(a, b) for a, b in zip(cnf.parameters(), models[0].parameters()))


def regularised_fit(kinetic_weight, **fit):
    torch.manual_seed(0)
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), adjoint=False, rtol=1e-5, atol=1e-5,
                      kinetic_weight=kinetic_weight)
    history = nodelib.fit_density(cnf, toy2d.sample("8gaussians", 500, seed=1), batch_size=64, lr=0.02, seed=2,
                                  **fit)
    return cnf, history


def test_a_kinetic_penalty_lowers_the_kinetic_energy_and_the_logged_parts_add_up(capsys):
    fit = dict(iterations=60, log_every=20)
    plain, _ = regularised_fit(0.0, verbose=False, **fit)
    regularised, history = regularised_fit(1.0, verbose=True, **fit)
    test = toy2d.sample("8gaussians", 500, seed=2)
    with torch.no_grad():
        energy = {name: nodelib.CNF(cnf.field, kinetic_weight=1.0, rtol=1e-7, atol=1e-7)
                  .log_prob_and_penalties(test)[1]["kinetic"].mean().item()
                  for name, cnf in (("plain", plain), ("regularised", regularised))}
    assert energy["regularised"] < 0.5 * energy["plain"], energy  # measured 0.49 against 2.27
    assert [i for i, _ in history.parts] == [i for i, _ in history.losses] == [20, 40, 60]
    for (_, loss), (_, parts) in zip(history.losses, history.parts):
        assert list(parts) == ["nll", "kinetic"]
        assert abs(loss - (parts["nll"] + 1.0 * parts["kinetic"])) <= 1e-12 * abs(loss)
    (_, loss), (_, parts) = history.losses[-1], history.parts[-1]
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"iteration    60: minibatch loss {loss:.3f} = nll {parts['nll']:.3f} + 1 × kinetic {parts['kinetic']:.3f} (")


def test_a_regularised_fit_resumes_bit_for_bit_and_refuses_other_weights(tmp_path):
    fit = dict(iterations=12, log_every=4, verbose=False)
    straight, whole = regularised_fit(0.5, **fit)
    path = tmp_path / "fit.pt"
    _, first = regularised_fit(0.5, checkpoint=path, checkpoint_every=4, deadline=time.monotonic() - 1, **fit)
    assert not first.complete and first.iterations_run == 1
    torch.manual_seed(1234)  # the global generator is anywhere when the run resumes
    resumed = nodelib.CNF(nodelib.MLPField(2, hidden=(16,)), adjoint=False, rtol=1e-5, atol=1e-5, kinetic_weight=0.5)
    second = nodelib.fit_density(resumed, toy2d.sample("8gaussians", 500, seed=1), batch_size=64, lr=0.02,
                                 seed=2, checkpoint=path, **fit)
    assert second.complete and second.iterations_run == 11
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))
    assert second.parts == whole.parts and second.losses == whole.losses
    with pytest.raises(ValueError, match=r"written with kinetic_weight=0.5, not kinetic_weight=None"):
        regularised_fit(0.0, checkpoint=path, **fit)


@pytest.mark.parametrize("name", ["kinetic_weight", "jacobian_weight"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_bad_weights_raise(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a non-negative float, got {value!r}"):
        nodelib.CNF(nodelib.MLPField(2, hidden=(4,)), **{name: value})


def test_the_jacobian_penalty_needs_the_jacobian():
    class Divergent(nodelib.MLPField):
        def divergence(self, t, z):
            return z.new_zeros(z.shape[0])

    with pytest.raises(ValueError, match="jacobian_weight=1.0 needs the Jacobian's products"):
        nodelib.CNF(Divergent(2, hidden=(4,)), trace="closed_form", jacobian_weight=1.0)
    cnf = nodelib.CNF(Divergent(2, hidden=(4,)), trace="closed_form", kinetic_weight=1.0)
    assert list(cnf.log_prob_and_penalties(torch.randn(2, 2))[1]) == ["kinetic"]


def test_fit_kl_adds_the_penalties_of_the_samples_trajectories():
    """fit_kl's loss is the KL loss plus the weighted penalties; each part is recomputed from the model's own
    sample_with_log_prob_and_penalties with the fit's generator (seed 0 on the CPU), at the first iteration."""
    def log_target(x):
        return -0.5 * (x - 1.0).pow(2).sum(-1)

    torch.manual_seed(0)
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), adjoint=False, kinetic_weight=0.3, jacobian_weight=0.1)
    torch.manual_seed(0)
    copy = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), adjoint=False, kinetic_weight=0.3, jacobian_weight=0.1)
    history = nodelib.fit_kl(cnf, log_target, iterations=3, batch_size=16, log_every=1, verbose=False)
    with torch.no_grad():
        x, log_q, penalties = copy.sample_with_log_prob_and_penalties(16, generator=torch.Generator().manual_seed(0))
    want = {"kl": (log_q - log_target(x)).mean().item(), "kinetic": penalties["kinetic"].mean().item(),
            "jacobian": penalties["jacobian"].mean().item()}
    (_, loss), (_, parts) = history.losses[0], history.parts[0]
    assert list(parts) == list(want) and all(abs(parts[k] - want[k]) < 1e-12 * abs(want[k]) for k in want)
    assert abs(loss - (want["kl"] + 0.3 * want["kinetic"] + 0.1 * want["jacobian"])) < 1e-12 * abs(loss)
