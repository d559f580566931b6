"""The 2D data sets (nodelib.data.toy2d) against scikit-learn's generators, their exact densities
and the grid integral."""
import math

import numpy as np
import pytest
import torch

from nodelib.data import toy2d


@pytest.mark.parametrize("name", toy2d.NAMES)
def test_sample_shape_dtype_and_seeding(name):
    a = toy2d.sample(name, 500, seed=3, dtype=torch.float32)
    b = toy2d.sample(name, 500, seed=3, dtype=torch.float32)
    c = toy2d.sample(name, 500, seed=4, dtype=torch.float32)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert toy2d.sample(name, 10).dtype == torch.float64  # the default dtype (float64 in tests)
    assert float(a.abs().max()) < 6.0  # the sets live in roughly [-4, 4]^2


def moments(x):
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.mean(0), (x ** 2).mean(0), [(x[:, 0] * x[:, 1]).mean()]])


@pytest.mark.parametrize("name", ["two_moons", "two_circles"])
def test_paper_sets_match_scikit_learn(name):
    """First and second moments agree with scikit-learn's generators, as scaled in the chapters
    (moons: noise 0.1, times 2, shifted by (-1, -0.2); circles: factor 0.5, noise 0.06), within
    5 standard errors of the difference."""
    datasets = pytest.importorskip("sklearn.datasets")
    n = 100_000
    if name == "two_moons":
        ref = 2 * datasets.make_moons(n, noise=0.1, random_state=0)[0] + np.array([-1.0, -0.2])
    else:
        ref = datasets.make_circles(n, noise=0.06, factor=0.5, random_state=0)[0]
    ours = toy2d.sample(name, n, seed=0).numpy()
    feats = lambda x: np.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1]], 1)  # noqa: E731
    se = np.sqrt(feats(ours).var(0) / n + feats(ref).var(0) / n)
    assert (np.abs(moments(ours) - moments(ref)) < 5 * se).all()


@pytest.mark.parametrize("name", ["two_circles", "two_moons", "8gaussians", "checkerboard"])
def test_exact_density_integrates_to_one_and_fits_the_samples(name):
    grid = toy2d.grid_log_density(lambda x: toy2d.log_density(name, x), bounds=(-6, 6, -6, 6),
                                  resolution=192)  # cells align with the checkerboard's squares
    assert abs(grid.integral() - 1.0) < 1e-3
    # Mass of a box from the samples (a binomial proportion) against the density's integral over it.
    x = toy2d.sample(name, 40_000, seed=1)
    box = (x[:, 0] > 0) & (x[:, 1] > 0.5)
    inside = (grid.x[None, :] > 0) & (grid.y[:, None] > 0.5)
    mass = float((grid.density * inside).sum() * grid.cell_area)
    frac = float(box.double().mean())
    assert abs(frac - mass) < 4 * math.sqrt(mass * (1 - mass) / x.shape[0]) + 2e-3


def test_checkerboard_density_is_exact():
    """Uniform on 8 squares of area 4: density 1/32 on the dark squares, zero elsewhere."""
    x = toy2d.sample("checkerboard", 10_000, seed=2)
    assert torch.allclose(toy2d.log_density("checkerboard", x), torch.full((10_000,), -math.log(32.0)))
    assert toy2d.entropy("checkerboard", n=1000)[0] == pytest.approx(math.log(32.0), abs=1e-12)


@pytest.mark.parametrize("name", ["two_moons", "two_circles"])
def test_monte_carlo_entropy_against_grid_quadrature(name):
    """-E[log p] from samples against -∫ p log p by the midpoint rule (2.3939 and 0.7876 nats)."""
    grid = toy2d.grid_log_density(lambda z: toy2d.log_density(name, z), bounds=(-6, 6, -6, 6), resolution=400)
    quadrature = float(-(grid.log_density.exp() * grid.log_density).sum() * grid.cell_area)
    h, se = toy2d.entropy(name, n=20_000)
    assert abs(grid.integral() - 1) < 1e-6
    assert abs(h - quadrature) < 3 * se and se < 0.01


def test_grid_integral_of_a_gaussian():
    var = torch.tensor([0.5, 2.0])
    log_prob = lambda x: (-0.5 * (x ** 2 / var).sum(-1) - 0.5 * torch.log(4 * math.pi ** 2 * var.prod()))  # noqa: E731
    grid = toy2d.grid_log_density(log_prob, bounds=(-8, 8, -9, 9), resolution=100)
    assert abs(grid.integral() - 1.0) < 1e-6
    assert grid.log_density.shape == (100, 100) and grid.extent == (-8.0, 8.0, -9.0, 9.0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="two_moons"):
        toy2d.sample("three_moons", 10)
    with pytest.raises(ValueError, match="n must be"):
        toy2d.sample("two_moons", 0)
    with pytest.raises(ValueError, match="dtype"):
        toy2d.sample("two_moons", 5, dtype=torch.int64)
    with pytest.raises(ValueError, match="expected one of"):
        toy2d.log_density("pinwheel", torch.zeros(3, 2))
    with pytest.raises(ValueError, match="bounds"):
        toy2d.grid_log_density(lambda x: x[:, 0], bounds=(1, 0, 0, 1))
