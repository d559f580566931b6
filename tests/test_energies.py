"""nodelib.data.energies: Rezende and Mohamed's test energies, written out again here from their
formulas, and the normalising constants against independent quadratures."""
import math

import pytest
import torch

from nodelib.data import energies, toy2d


def by_hand(name, z):
    """U(z) from Rezende and Mohamed's Table 1, term by term (plus the soft wall for U2-U4)."""
    z1, z2 = z[:, 0], z[:, 1]
    w1 = torch.sin(2 * math.pi * z1 / 4)
    w2 = 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + torch.exp(-(z1 - 1) / 0.3))
    wall = 0.5 * (torch.clamp(z1.abs() - 4, min=0) / 0.5) ** 2
    if name == "u1":
        return (0.5 * ((torch.sqrt(z1 ** 2 + z2 ** 2) - 2) / 0.4) ** 2
                - torch.log(torch.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + torch.exp(-0.5 * ((z1 + 2) / 0.6) ** 2)))
    if name == "u2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2 + wall
    if name == "u3":
        return -torch.log(torch.exp(-0.5 * ((z2 - w1) / 0.35) ** 2)
                          + torch.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2)) + wall
    return -torch.log(torch.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + torch.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2)) + wall


@pytest.mark.parametrize("name", energies.NAMES)
def test_energies_match_the_formulas(name):
    z = 3 * torch.randn(500, 2)
    z[:5, 0] = torch.tensor([-6.0, -4.5, 4.0, 4.2, 7.0])   # points on and beyond the wall
    assert torch.allclose(energies.energy(name, z), by_hand(name, z), rtol=1e-12, atol=1e-12)
    assert torch.equal(energies.unnormalised_log_density(name, z), -energies.energy(name, z))


@pytest.mark.parametrize("name", energies.NAMES)
def test_log_normaliser_against_grid_quadrature(name):
    """The closed forms (U2-U4) and the polar quadrature (U1) against the midpoint rule on a Cartesian grid."""
    grid = toy2d.grid_log_density(lambda z: energies.unnormalised_log_density(name, z),
                                  bounds=(-7.5, 7.5, -7.5, 7.5), resolution=600)
    assert abs(energies.log_normaliser(name) - math.log(grid.integral())) < 1e-6


def test_u1_quadrature_has_converged():
    assert abs(energies.log_normaliser("u1", resolution=300) - energies.log_normaliser("u1", resolution=1000)) < 1e-10


def test_bad_input():
    with pytest.raises(ValueError, match="not an energy"):
        energies.energy("u5", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        energies.energy("u1", torch.zeros(3, 3))
    with pytest.raises(ValueError, match="resolution"):
        energies.log_normaliser("u1", resolution=3)
