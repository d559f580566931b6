"""The latent ODE (nodelib.latent), its RNN baselines (nodelib.recurrent), batches of irregular series
(nodelib.series) and the spirals (nodelib.data.spirals), against independent references."""
import math

import pytest
import torch

from nodelib.data.spirals import irregular_observations, spirals
from nodelib.latent import LatentODE, gaussian_kl, gaussian_log_likelihood
from nodelib.recurrent import RNNForecaster
from nodelib.series import check_series, gather_times, random_subsets, union_grid


def _batch(dtype=torch.float64):
    """Three series of 4, 2 and 3 points, padded, with times that interleave across series."""
    times = torch.tensor([[0.1, 0.35, 0.8, 1.3], [0.05, 0.9, 0.0, 0.0], [0.35, 0.6, 2.0, 0.0]], dtype=dtype)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    values = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(3), dtype=dtype)
    return times, values, mask


def _model(**kwargs):
    torch.manual_seed(0)
    return LatentODE(2, rtol=1e-10, atol=1e-12, **kwargs).double()


def test_kl_in_closed_form_equals_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(5, 4, generator=g, dtype=torch.float64), 0.5 * torch.randn(5, 4, generator=g,
                                                                                          dtype=torch.float64)
    q = torch.distributions.Normal(mean, log_std.exp())
    p = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    assert torch.allclose(gaussian_kl(mean, log_std), torch.distributions.kl_divergence(q, p).sum(-1), rtol=1e-12)
    z = q.sample((200_000,))
    samples = (q.log_prob(z) - p.log_prob(z)).sum(-1)           # E_q[log q - log p]
    se = samples.std(0) / math.sqrt(samples.shape[0])
    assert ((samples.mean(0) - gaussian_kl(mean, log_std)).abs() < 4 * se).all()


def test_gaussian_log_likelihood_sums_torch_log_probs_over_the_observed_points():
    times, values, mask = _batch()
    mean = torch.randn_like(values)
    expected = torch.distributions.Normal(mean, 0.3).log_prob(values).sum(-1)
    expected = torch.stack([expected[b][mask[b]].sum() for b in range(3)])
    assert torch.allclose(gaussian_log_likelihood(values, mean, 0.3, mask), expected, rtol=1e-12)


def test_union_grid_and_gather_recover_each_series_times():
    times, _, mask = _batch()
    grid, index = union_grid(times, mask, torch.tensor([0.0]))
    assert grid.tolist() == [0.0, 0.05, 0.1, 0.35, 0.6, 0.8, 0.9, 1.3, 2.0]    # sorted, 0.35 once
    assert torch.equal(grid[index][mask], times[mask])
    states = grid[:, None, None].expand(-1, 3, 1)                              # z(t) = t
    assert torch.equal(gather_times(states, index)[..., 0][mask], times[mask])


def test_random_subsets_draw_every_subset_equally_often_in_time_order():
    B, N, size = 20000, 5, 2
    times = torch.linspace(0.0, 1.0, N, dtype=torch.float64).expand(B, N)
    values = torch.stack([times, times + torch.arange(B)[:, None]], dim=-1)        # row-specific values
    sub_times, sub_values = random_subsets(times, values, size, generator=torch.Generator().manual_seed(3))
    assert sub_times.shape == (B, size) and sub_values.shape == (B, size, 2)
    assert bool((sub_times[:, 1:] > sub_times[:, :-1]).all())                      # distinct, in time order
    assert torch.equal(sub_values[..., 0], sub_times)                                # values follow their times
    assert torch.equal(sub_values[..., 1] - sub_times, torch.arange(B, dtype=torch.float64)[:, None].expand(B, size))
    # each of the C(5, 2) = 10 subsets has probability 1/10; binomial standard error over B draws
    position = (sub_times * (N - 1)).round().long()
    counts = torch.bincount(position[:, 0] * N + position[:, 1], minlength=N * N).double() / B
    pairs = [a * N + b for a in range(N) for b in range(a + 1, N)]
    se = math.sqrt(0.1 * 0.9 / B)
    assert (counts[pairs] - 0.1).abs().max() < 5 * se and counts.sum() == 1.0
    assert torch.equal(random_subsets(times[:3], values[:3], N)[0], times[:3])     # size N keeps all
    with pytest.raises(ValueError, match=r"size must be an int in \[1, N = 5\], got 6"):
        random_subsets(times, values, 6)


def test_a_padded_batch_equals_each_series_alone():
    model = _model()
    times, values, mask = _batch()
    mean, log_std = model.encode(times, values, mask)
    z0 = mean.detach()
    together = model._states_at(z0, times, mask, None)
    for b in range(3):
        k = int(mask[b].sum())
        alone_mean, alone_log_std = model.encode(times[b:b + 1, :k], values[b:b + 1, :k])
        assert torch.allclose(mean[b], alone_mean[0], rtol=1e-12, atol=1e-14)
        assert torch.allclose(log_std[b], alone_log_std[0], rtol=1e-12, atol=1e-14)
        alone = model._states_at(z0[b:b + 1], times[b:b + 1, :k], mask[b:b + 1, :k], None)
        assert torch.allclose(together[b, :k], alone[0], rtol=1e-8, atol=1e-10)


def test_the_encoder_reads_the_series_backwards_in_time():
    """The GRU's last input is the first observation: changing it moves q, and a GRU run by hand over
    the reversed series gives the same posterior."""
    model = _model()
    times, values, _ = _batch()
    t, x = times[:1], values[:1]
    h = torch.zeros(1, model.encoder.hidden_size, dtype=torch.float64)
    for i in (3, 2, 1, 0):
        h = model.encoder(torch.cat([x[:, i], t[:, i, None]], -1), h)
    mean, log_std = model.to_posterior(h).chunk(2, -1)
    got_mean, got_log_std = model.encode(t, x)
    assert torch.allclose(got_mean, mean, rtol=1e-14) and torch.allclose(got_log_std, log_std, rtol=1e-14)


def test_elbo_is_log_likelihood_minus_kl_of_one_reparameterised_sample():
    model = _model()
    times, values, mask = _batch()
    parts = model.elbo(times, values, mask, generator=torch.Generator().manual_seed(5))
    mean, log_std = model.encode(times, values, mask)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z0 = mean + log_std.exp() * eps
    states = model._states_at(z0, times, mask, None)
    expected = gaussian_log_likelihood(values, model.decoder(states), model.obs_std, mask) - gaussian_kl(mean, log_std)
    assert torch.allclose(parts.elbo, expected, rtol=1e-12)


def test_elbo_gradients_by_the_adjoint_equal_direct_backpropagation():
    times, values, mask = _batch()
    grads = []
    for adjoint in (True, False):
        model = _model(adjoint=adjoint)
        model.elbo(times, values, mask, generator=torch.Generator().manual_seed(1)).elbo.sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for by_adjoint, direct in zip(*grads):
        assert torch.allclose(by_adjoint, direct, rtol=1e-7, atol=1e-9)
    assert all(g.abs().sum() > 0 for g in grads[0])     # every parameter takes part


def test_latent_ode_elbo_gradient_matches_finite_differences():
    model = _model(adjoint=True)
    times, values, mask = _batch()

    def elbo():
        return model.elbo(times, values, mask, generator=torch.Generator().manual_seed(2)).elbo.sum()

    elbo().backward()
    weight = model.field.net[0].weight
    analytic = weight.grad[1, 2].item()
    eps = 1e-6
    with torch.no_grad():
        weight[1, 2] += eps
        up = elbo().item()
        weight[1, 2] -= 2 * eps
        down = elbo().item()
        weight[1, 2] += eps
    assert math.isclose(analytic, (up - down) / (2 * eps), rel_tol=1e-5)


def test_predict_decodes_the_posterior_mean_trajectory():
    model = _model()
    times, values, mask = _batch()
    query = torch.tensor([2.5, 3.0], dtype=torch.float64)
    mean, _ = model.encode(times, values, mask)
    from torchdiffeq import odeint
    z = odeint(model.field, mean, torch.tensor([0.0, 2.5, 3.0], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    expected = model.decoder(z[1:]).transpose(0, 1)
    assert torch.allclose(model.predict(times, values, query, mask), expected, rtol=1e-8, atol=1e-10)


def _nll_by_hand(rnn, t, x):
    """The RNN's negative log-likelihood of one unpadded series, step by step with torch.distributions."""
    h, total = torch.zeros(1, rnn.cell.hidden_size, dtype=x.dtype), 0.0
    for i in range(x.shape[1] - 1):
        inputs = torch.cat([x[:, i], (t[:, i + 1] - t[:, i])[:, None]], -1) if rnn.time_input else x[:, i]
        h = rnn.cell(inputs, h)
        mean, log_std = rnn.head(h).chunk(2, -1)
        total = total - torch.distributions.Normal(mean, log_std.exp()).log_prob(x[:, i + 1]).sum()
    return total


@pytest.mark.parametrize("time_input", [False, True])
def test_rnn_nll_and_forecast_of_a_padded_batch_equal_each_series_by_hand(time_input):
    torch.manual_seed(0)
    rnn = RNNForecaster(2, time_input=time_input).double()
    times, values, mask = _batch()
    nll = rnn.nll(times, values, mask)
    query = torch.tensor([2.5, 2.7], dtype=torch.float64)
    forecast = rnn.forecast(times, values, query, mask)
    for b in range(3):
        k = int(mask[b].sum())
        t, x = times[b:b + 1, :k], values[b:b + 1, :k]
        assert torch.allclose(nll[b], _nll_by_hand(rnn, t, x), rtol=1e-12)
        assert torch.allclose(forecast[b], rnn.forecast(t, x, query)[0], rtol=1e-12)
    # the forecast feeds its own prediction back, with the gap to the next query time
    t, x = times[:1], values[:1]
    h = torch.zeros(1, rnn.cell.hidden_size, dtype=torch.float64)
    for i in range(3):
        h = rnn._step(x[:, i], t[:, i + 1] - t[:, i], h)
    first = rnn.head(rnn._step(x[:, 3], query[:1] - t[:, 3], h))[:, :2]
    assert torch.allclose(forecast[0, 0], first[0], rtol=1e-12)


def test_the_time_difference_is_what_the_second_rnn_sees():
    """Only the RNN with time differences tells a gap of 0.1 from one of 1.0."""
    x = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(0))
    for time_input, differs in ((False, False), (True, True)):
        torch.manual_seed(0)
        rnn = RNNForecaster(2, time_input=time_input)
        near = rnn.forecast(torch.tensor([[0.0, 0.1, 0.2]]), x, torch.tensor([0.3]))
        far = rnn.forecast(torch.tensor([[0.0, 1.0, 2.0]]), x, torch.tensor([3.0]))
        assert (not torch.allclose(near, far)) == differs


def test_spirals_follow_their_closed_form_and_direction():
    data = spirals(6, noise=0.0, dtype=torch.float64)
    radius = data.clean.norm(dim=-1)
    assert torch.allclose(radius - radius[:, :1], 0.15 * data.times, atol=1e-12)    # r = r_min + v (s0 + t)
    start = (radius[:, 0] - 0.5) / 0.15                                             # s0, in [0, 20]
    assert ((start >= 0) & (start <= 20)).all()
    x, y = data.clean[:, :-1].unbind(-1)
    dx, dy = (data.clean[:, 1:] - data.clean[:, :-1]).unbind(-1)
    turning = torch.sign(x * dy - y * dx)                                           # + counter-clockwise
    assert (turning == torch.where(data.counter_clockwise, 1.0, -1.0)[:, None].double()).all()
    angle = torch.atan2(x[:, :-1] * y[:, 1:] - y[:, :-1] * x[:, 1:], x[:, :-1] * x[:, 1:] + y[:, :-1] * y[:, 1:])
    assert torch.allclose(angle.abs(), torch.full_like(angle, 0.05), atol=1e-12)    # unit angular speed
    # every spiral lies on one curve per direction: its start angle is ±s0 (mod 2π), s0 from its radius
    sign = torch.where(data.counter_clockwise, 1.0, -1.0).double()
    expected = torch.stack([torch.cos(start), sign * torch.sin(start)], -1)
    assert torch.allclose(data.clean[:, 0] / radius[:, :1], expected, atol=1e-12)
    noisy = spirals(6, noise=0.1, dtype=torch.float64)
    assert torch.equal(noisy.clean, data.clean)
    assert abs(float((noisy.observed - noisy.clean).std()) - 0.1) < 0.01


def test_irregular_observations_are_distinct_window_points_in_time_order():
    data = spirals(50)
    times, values = irregular_observations(data, 30, seed=4)
    picks = torch.round(times / 0.05).long()
    assert (picks[:, 1:] > picks[:, :-1]).all() and picks.max() < data.n_window
    assert torch.equal(values, data.observed[torch.arange(50)[:, None], picks])
    assert len(set(map(tuple, picks.tolist()))) == 50                              # each spiral its own draw
    assert torch.equal(irregular_observations(data, 30, seed=4)[0], times)          # seeded
    all_times, _ = irregular_observations(data, 100)
    assert torch.equal(all_times, data.times[:100].expand(50, -1))


@pytest.mark.parametrize("bad, match", [
    (dict(times=torch.tensor([[0.1, 0.1, 0.3]])), "increase strictly"),
    (dict(times=torch.tensor([[0.3, 0.2, 0.4]])), "increase strictly"),
    (dict(times=torch.tensor([[0.1, float("nan"), 0.3]])), "finite"),
    (dict(values=torch.tensor([[[0.0, 0.0], [float("nan"), 0.0], [0.0, 0.0]]])), "mask=False"),
    (dict(values=torch.zeros(1, 3, 3)), r"\(B, N, d\)"),
    (dict(values=torch.zeros(3, 2)), r"\(B, N, d\)"),
    (dict(mask=torch.tensor([[False, True, True]])), "at least one observation"),
    (dict(mask=torch.tensor([[True, False, True]])), "padding after"),
    (dict(times=torch.tensor([[-0.1, 0.2, 0.3]])), "t0"),
])
def test_bad_series_are_refused_with_the_argument_named(bad, match):
    torch.manual_seed(0)
    model = LatentODE(2)
    args = dict(times=torch.tensor([[0.1, 0.2, 0.3]]), values=torch.zeros(1, 3, 2), mask=None, **{})
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        model.elbo(args["times"], args["values"], args["mask"])
    if match != "t0":
        with pytest.raises(ValueError, match=match):
            RNNForecaster(2).nll(args["times"], args["values"], args["mask"])


def test_check_series_names_shapes():
    with pytest.raises(ValueError, match="times must be a tensor of shape"):
        check_series(torch.zeros(3))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        check_series(torch.zeros(1, 2), mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="query must be strictly increasing"):
        RNNForecaster(2).forecast(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2, 2), torch.tensor([0.5]))


def test_the_field_has_the_layers_and_activation_asked_for_and_refuses_others():
    """f(z) by hand from the weights: two ELU layers, as in the authors' example code."""
    torch.manual_seed(0)
    model = LatentODE(2, ode_layers=2, ode_activation="elu")
    first, second, last = [m for m in model.field.net if isinstance(m, torch.nn.Linear)]
    z = torch.randn(5, 4)
    elu = lambda a: torch.where(a > 0, a, torch.expm1(a))
    by_hand = elu(elu(z @ first.weight.T + first.bias) @ second.weight.T + second.bias) @ last.weight.T + last.bias
    assert torch.allclose(model.field(torch.tensor(0.0), z), by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="layers must be a positive int, got 0"):
        LatentODE(2, ode_layers=0)
    with pytest.raises(ValueError, match=r"activation must be one of \['elu', 'tanh'\], got 'relu'"):
        LatentODE(2, ode_activation="relu")
