"""Planar flows (nodelib.flows) against autograd, brute-force change of variables and quadrature."""
import math

import pytest
import torch

from nodelib.data import toy2d
from nodelib.flows import PlanarFlow, PlanarLayer, standard_normal_log_prob


def set_layer(layer, u, w, b):
    with torch.no_grad():
        layer.u.copy_(torch.as_tensor(u))
        layer.w.copy_(torch.as_tensor(w))
        layer.b.fill_(b)


def softplus(x):
    """log(1 + e^x) without overflow, in plain floating point."""
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def brute_logdet(fn, z):
    """log|det| of autograd's full Jacobian of ``fn`` at every point of the batch ``z``."""
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], point) for point in z])
    return torch.linalg.slogdet(jac)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_planar_logdet_equals_autograd_jacobian(dim):
    layer = PlanarLayer(dim, init_scale=1.5)
    with torch.no_grad():
        layer.b.fill_(0.3)
    z = 2 * torch.randn(64, dim)
    _, logdet = layer(z)
    sign, reference = brute_logdet(lambda x: layer(x)[0], z)
    assert torch.all(sign > 0)  # the constraint makes every determinant positive
    assert torch.allclose(logdet, reference, rtol=1e-12, atol=1e-12)


def test_constraint_holds_for_random_raw_parameters():
    for scale in (0.01, 1.0, 30.0):
        for _ in range(200):
            dim = int(torch.randint(1, 6, ()))
            layer = PlanarLayer(dim)
            set_layer(layer, scale * torch.randn(dim), scale * torch.randn(dim), 0.0)
            u, w = layer.u.detach(), layer.w.detach()
            u_hat = layer.u_hat().detach()
            wu, wu_hat = float(w @ u), float(w @ u_hat)
            rounding = 1e-14 * (1 + abs(wu))  # forming û = u + (...) w / ‖w‖² rounds at the scale of wᵀu
            # wᵀû = m(wᵀu) = -1 + softplus(wᵀu) >= -1 ...
            assert wu_hat >= -1.0 - rounding
            assert math.isclose(wu_hat, -1 + softplus(wu), rel_tol=1e-12, abs_tol=rounding)
            # ... and only u's component along w changes.
            orth = lambda v: v - (v @ w) / (w @ w) * w  # noqa: E731
            assert torch.allclose(orth(u_hat), orth(u), atol=1e-9 * (1 + u.norm()))
            # The determinant 1 + h'(a) wᵀû stays positive even at a = 0, where h' = 1 (unless
            # softplus(wᵀu) underflows to 0, below about -745).
            if wu > -740:
                z0 = (-layer.b / (w @ w) * w).expand(1, dim)
                assert torch.isfinite(layer(z0)[1]).all()


def test_constraint_keeps_determinant_positive_where_raw_u_would_not():
    layer = PlanarLayer(2)
    set_layer(layer, [-3.0, 0.0], [1.0, 0.0], 0.0)  # w^T u = -3: raw map would fold the plane
    z = torch.stack([torch.linspace(-3, 3, 601), torch.zeros(601)], 1)
    raw_det = 1 + (1 - torch.tanh(z @ layer.w + layer.b) ** 2) * (layer.w @ layer.u)
    assert raw_det.min() < 0
    sign, _ = brute_logdet(lambda x: layer(x)[0], z.detach())
    assert torch.all(sign > 0)


@pytest.mark.parametrize("direction", ["normalizing", "generative"])
@pytest.mark.parametrize("dim", [2, 5])
def test_inverse_of_forward_is_identity(direction, dim):
    flow = PlanarFlow(dim, 6, direction=direction, init_scale=1.0)
    x = 3 * torch.randn(500, dim)
    z, logdet = flow.to_base(x)
    back, logdet_back = flow.to_data(z)
    assert (back - x).abs().max() < 1e-10
    assert (logdet + logdet_back).abs().max() < 1e-10


@pytest.mark.parametrize("wu_hat", [-0.999, -0.5, 0.0, 3.0, 80.0])
def test_layer_inverse_across_the_constraint_range(wu_hat):
    layer = PlanarLayer(3)
    w = torch.tensor([0.6, -1.2, 0.4])
    raw = math.log(math.expm1(wu_hat + 1))  # m(raw) = wu_hat
    orthogonal = torch.tensor([1.0, 0.5, 0.0])  # w^T orthogonal = 0
    set_layer(layer, raw / (w @ w) * w + orthogonal, w, 0.7)
    assert math.isclose(float(layer.w.detach() @ layer.u_hat().detach()), wu_hat, rel_tol=1e-9, abs_tol=1e-12)
    z = 4 * torch.randn(2000, 3)
    y, _ = layer(z)
    assert (layer.inverse(y)[0] - z).abs().max() < 1e-10


@pytest.mark.parametrize("direction", ["normalizing", "generative"])
def test_stacked_log_prob_equals_brute_force_change_of_variables(direction):
    flow = PlanarFlow(3, 5, direction=direction, init_scale=1.0)
    x = 1.5 * torch.randn(40, 3)
    # Brute force: log p(x) = log N(T(x)) + log|det ∇T(x)| for the whole data-to-base map T.
    _, logabs = brute_logdet(lambda v: flow.to_base(v)[0], x)
    reference = standard_normal_log_prob(flow.to_base(x)[0]) + logabs
    assert torch.allclose(flow.log_prob(x), reference, rtol=1e-10, atol=1e-10)
    # Samples carry log q(x) = log N(z) - log|det ∇G(z)| for the base-to-data map G.
    samples, logq = flow.sample_with_log_prob(30, generator=torch.Generator().manual_seed(1))
    z = torch.randn(30, 3, generator=torch.Generator().manual_seed(1))
    _, logabs_g = brute_logdet(lambda v: flow.to_data(v)[0], z)
    assert torch.allclose(logq, standard_normal_log_prob(z) - logabs_g, rtol=1e-10, atol=1e-10)
    assert torch.allclose(flow.log_prob(samples), logq, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("direction", ["normalizing", "generative"])
def test_gradients_match_finite_differences_in_both_directions(direction):
    """The root-finder paths (log_prob of a generative flow, samples of a normalizing one) too."""
    flow = PlanarFlow(2, 3, direction=direction, init_scale=1.0)
    params = tuple(flow.parameters())
    x = torch.randn(6, 2, requires_grad=True)

    def log_prob(x, *_):
        return flow.log_prob(x)

    def sample_logq(*_):
        x, logq = flow.sample_with_log_prob(5, generator=torch.Generator().manual_seed(2))
        return x, logq

    assert torch.autograd.gradcheck(log_prob, (x,) + params)
    assert torch.autograd.gradcheck(sample_logq, params)


def test_path_to_data_ends_at_the_samples():
    for direction in ("normalizing", "generative"):
        flow = PlanarFlow(2, 4, direction=direction)
        z = torch.randn(10, 2)
        path = flow.path_to_data(z)
        assert path.shape == (5, 10, 2)
        assert torch.equal(path[0], z)
        assert torch.allclose(path[-1], flow.to_data(z)[0], atol=1e-12)


def test_trained_densities_integrate_to_one():
    """Maximum likelihood (normalizing) and KL to an unnormalised target (generative), then quadrature."""
    torch.manual_seed(0)
    data = toy2d.sample("two_moons", 2000, seed=0)
    ml = PlanarFlow(2, 8, direction="normalizing")
    optimizer = torch.optim.Adam(ml.parameters(), lr=2e-2)
    nll_start = -ml.log_prob(data).mean().item()
    for step in range(150):
        loss = -ml.log_prob(data[torch.randint(0, 2000, (256,))]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert -ml.log_prob(data).mean().item() < nll_start - 0.5  # it learned something

    def log_target(x):  # unnormalised: exp(-U) with U a ring of radius 2, off by log Z
        return -0.5 * ((x.norm(dim=-1) - 2.0) / 0.4) ** 2 + 3.0

    kl = PlanarFlow(2, 8, direction="generative")
    optimizer = torch.optim.Adam(kl.parameters(), lr=2e-2)
    for step in range(150):
        x, logq = kl.sample_with_log_prob(256)
        loss = (logq - log_target(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    radius = kl.sample(2000).norm(dim=-1)
    assert abs(radius.median().item() - 2.0) < 0.5  # it moved mass to the ring

    for flow in (ml, kl):
        grid = toy2d.grid_log_density(flow.log_prob, bounds=(-10, 10, -10, 10), resolution=400)
        assert abs(grid.integral() - 1.0) < 1e-2


def test_bad_input_is_rejected_with_clear_errors():
    flow = PlanarFlow(2, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        flow.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="non-finite"):
        flow.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating-point"):
        flow.log_prob(torch.ones(4, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        flow.log_prob([[0.0, 1.0]])
    with pytest.raises(ValueError, match="x has dtype torch.float32 .* parameters have dtype torch.float64"):
        flow.log_prob(torch.randn(4, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="direction must be one of"):
        PlanarFlow(2, 3, direction="forward")
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        PlanarFlow(2, 0)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        PlanarLayer(0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        flow.sample(0)
    with pytest.raises(ValueError, match=r"y must have shape"):
        flow.layers[0].inverse(torch.randn(3))


@pytest.mark.parametrize("w_scale", [0.0, 1e-3])
def test_planar_logdet_at_and_near_w_zero_equals_autograd(w_scale):
    """At w = 0 the layer is the shift z + u tanh(b), whose log-determinant is 0 (the constraint's
    softplus form, taken literally, would say log(log 2)); near w = 0, û is large but the formula
    still matches autograd's Jacobian."""
    layer = PlanarLayer(2)
    set_layer(layer, [0.4, -0.7], w_scale * torch.tensor([0.6, 0.8]), 0.3)
    z = 2 * torch.randn(32, 2)
    mapped, logdet = layer(z)
    sign, reference = brute_logdet(lambda x: layer(x)[0], z)
    assert torch.all(sign > 0)
    assert torch.allclose(logdet, reference, rtol=1e-10, atol=1e-12)
    if w_scale == 0:
        assert torch.equal(logdet, torch.zeros(32))
        assert torch.allclose(mapped, z + math.tanh(0.3) * torch.tensor([0.4, -0.7]))
        back, back_logdet = layer.inverse(mapped)
        assert torch.allclose(back, z, atol=1e-12) and torch.equal(back_logdet, torch.zeros(32))


def test_a_flow_of_shifts_has_the_shifted_base_density():
    flow = PlanarFlow(2, 3)
    shift = torch.zeros(2)
    for k, layer in enumerate(flow.layers):
        set_layer(layer, [0.1 * k, 0.2], [0.0, 0.0], 0.5)
        shift += math.tanh(0.5) * torch.tensor([0.1 * k, 0.2])
    x = torch.randn(16, 2)
    assert torch.allclose(flow.log_prob(x), standard_normal_log_prob(x + shift), rtol=1e-12)


def test_a_layer_cannot_start_at_w_zero():
    with pytest.raises(ValueError, match=r"init_scale must be a positive float, got 0.0: at w = 0"):
        PlanarFlow(2, 3, init_scale=0.0)
