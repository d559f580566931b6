"""nodelib.display: what chapters show, checked against the data it was given."""
import math
import re

import matplotlib
import pandas as pd
import pytest
import torch

import nodelib
from nodelib import FitHistory, display
from nodelib.display import plot_curves, plot_field, table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_table_is_markdown_with_formats_caption_and_aligned_numbers():
    frame = pd.DataFrame({"method": ["euler", "rk4"], "error": [1.23456e-3, 4.5e-9], "steps": [1000, 25]})
    shown = table(frame, caption="Errors at t = 1.", formats={"error": ".2e", "steps": ",d"})
    assert shown.data == ("**Errors at t = 1.**\n\n"
                          "| method   |    error |   steps |\n"
                          "|:---------|---------:|--------:|\n"
                          "| euler    | 1.23e-03 |   1,000 |\n"
                          "| rk4      | 4.50e-09 |      25 |")
    assert table(frame).data.startswith("| method")
    with pytest.raises(ValueError, match="formats names the column 'err', which the table lacks"):
        table(frame, formats={"err": ".2e"})


def test_plot_curves_draws_each_history():
    fig, ax = plt.subplots()
    history = FitHistory(losses=[(100, 2.0), (200, 1.5)])
    plot_curves(ax, {"fit": history, "other": [(1, 3.0), (2, 2.5)]}, ylabel="NLL (nats)")
    assert [list(line.get_xydata().ravel()) for line in ax.lines] == [[100, 2.0, 200, 1.5], [1, 3.0, 2, 2.5]]
    assert ax.get_ylabel() == "NLL (nats)" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="the curve 'empty' has no points"):
        plot_curves(ax, {"empty": []}, ylabel="loss")
    plt.close(fig)


def test_plot_field_draws_the_fields_velocities():
    fig, ax = plt.subplots()
    calls = []

    def rotation(t, z):
        calls.append((float(t), z.shape))
        return torch.stack([-z[:, 1], z[:, 0]], dim=-1)

    plot_field(ax, rotation, t=0.5, bounds=(-1, 1, -2, 2), resolution=7)
    assert calls == [(0.5, (49, 2))]
    assert ax.get_xlim() == (-1, 1) and ax.get_ylim() == (-2, 2)
    plt.close(fig)


# -- flow_snapshots / plot_snapshots -----------------------------------------------------------------
class _Stretch(torch.nn.Module):
    """f(z, t) = a * z with a = (a_1, a_2): z(t) = e^{a t} z(0), p_t = N(0, diag(e^{2 a t}))."""

    dim = 2

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([0.5, -0.3], dtype=torch.float64))

    def forward(self, t, z):
        return self.a * z


def _stretch_cnf():
    import nodelib
    return nodelib.CNF(_Stretch(), rtol=1e-9, atol=1e-9)


def test_flow_snapshots_are_the_flow_stopped_at_each_time():
    from nodelib.display import flow_snapshots

    cnf = _stretch_cnf()
    times = (0.0, 0.5, 1.0)
    snaps = flow_snapshots(cnf, times, bounds=(-3, 3, -3, 3), resolution=12, n_samples=50,
                           generator=torch.Generator().manual_seed(0))
    assert snaps.times == times and snaps.samples.shape == (3, 50, 2)
    a = cnf.field.a.detach()
    z0 = snaps.samples[0]
    assert torch.equal(z0, torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    points = torch.stack(torch.meshgrid(snaps.grids[0].x, snaps.grids[0].y, indexing="xy"), -1).reshape(-1, 2)
    for t, grid, z in zip(times, snaps.grids, snaps.samples):
        assert torch.allclose(z, torch.exp(a * t) * z0, atol=1e-7)
        std = torch.exp(a * t)
        closed = (-0.5 * (points / std) ** 2 - torch.log(std) - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
        assert torch.allclose(grid.log_density.reshape(-1), closed.to(grid.log_density), atol=1e-6)
    last = cnf.sample(50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(snaps.samples[-1], last, atol=1e-10)


def test_flow_snapshots_refuses_times_outside_the_flow():
    from nodelib.display import flow_snapshots

    cnf = _stretch_cnf()
    for times in [(0.5, 1.0), (0.0, 1.5), (0.0, 0.5, 0.25), ()]:
        with pytest.raises(ValueError, match="times must start at t0"):
            flow_snapshots(cnf, times, bounds=(-1, 1, -1, 1), resolution=4, n_samples=3)


def test_plot_snapshots_shares_one_colour_scale_and_titles_every_panel():
    from nodelib.data import toy2d
    from nodelib.display import flow_snapshots, plot_snapshots

    cnf = _stretch_cnf()
    snaps = flow_snapshots(cnf, (0.0, 0.25, 0.5, 0.75, 1.0), bounds=(-3, 3, -3, 3), resolution=10,
                           n_samples=30, generator=torch.Generator().manual_seed(1))
    data = torch.randn(20, 2, dtype=torch.float64)
    data_grid = toy2d.grid_log_density(cnf.base.log_prob, bounds=(-3, 3, -3, 3), resolution=10)
    fig = plot_snapshots(snaps, title="stretch", data=data, data_grid=data_grid)
    axes = fig.axes[:-1]  # the last axes is the colour bar
    assert len(axes) == 12 and fig._suptitle.get_text() == "stretch"
    titles = [ax.get_title() for ax in axes]
    assert titles == ["density at t = 0", "density at t = 0.25", "density at t = 0.5",
                      "samples at t = 0", "samples at t = 0.25", "samples at t = 0.5",
                      "density at t = 0.75", "density at t = 1", "data density",
                      "samples at t = 0.75", "samples at t = 1", "data points"]
    limits = {ax.images[0].get_clim() for ax in axes if ax.images}
    vmax = max(float(g.density.max()) for g in snaps.grids)
    assert limits == {(0.0, vmax)}
    # a data density above the flow's largest is drawn on the same scale, and said to be clipped
    sharp = toy2d.grid_log_density(lambda x: cnf.base.log_prob(4 * x) + 2 * torch.log(torch.tensor(4.0)),
                                   bounds=(-3, 3, -3, 3), resolution=10)
    fig2 = plot_snapshots(snaps, title="stretch", data=data, data_grid=sharp)
    assert fig2.axes[8].get_title() == "data density, clipped"
    assert {ax.images[0].get_clim() for ax in fig2.axes[:-1] if ax.images} == {(0.0, vmax)}
    plt.close(fig2)
    assert all(ax.get_xlabel() == "$z_1$" and ax.get_ylabel() == "$z_2$" for ax in axes)
    assert axes[-1].collections[0].get_offsets().shape == (20, 2)
    plt.close(fig)


def test_flow_paths_end_where_the_flow_carries_their_base_samples_and_straight_paths_score_one():
    torch.manual_seed(0)
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), rtol=1e-9, atol=1e-9)
    paths = display.flow_paths(cnf, 5, steps=11, generator=torch.Generator().manual_seed(3))
    z0 = cnf._sample_base(5, torch.Generator().manual_seed(3), *cnf._dtype_device())
    assert paths.shape == (11, 5, 2) and torch.equal(paths[0], z0)
    assert torch.allclose(paths[-1], cnf.transform(z0), atol=1e-7)
    # a constant field moves every point along a straight line: ratio 1; a rotation bends them
    straight = torch.linspace(0, 1, 11)[:, None, None] * torch.tensor([[1.0, 2.0]]) + z0
    assert torch.allclose(display.path_straightness(straight), torch.ones(5), atol=1e-6)
    angle = torch.linspace(0, math.pi, 101)[:, None]
    half_circle = torch.stack([angle.cos(), angle.sin()], dim=-1)            # (101, 1, 2)
    assert abs(display.path_straightness(half_circle).item() - 2 / math.pi) < 1e-3
    fig, ax = plt.subplots()
    display.plot_paths(ax, paths, title="paths")
    assert len(ax.lines) == 5 and ax.get_title() == "paths"
    plt.close(fig)
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        display.flow_paths(cnf, 5, steps=1)


def test_a_bar_in_a_name_or_a_cell_is_escaped_and_the_table_still_parses():
    from markdown_it import MarkdownIt

    frame = pd.DataFrame({"largest |z(1) − Φ(x)|": [2e-14], "flow": ["a|b"]})
    shown = table(frame, formats={"largest |z(1) − Φ(x)|": ".0e"})
    html = MarkdownIt("commonmark").enable("table").render(shown.data)
    assert len(re.findall(r"<th[ >]", html)) == 2 and len(re.findall(r"<td[ >]", html)) == 2
    assert "largest |z(1) − Φ(x)|</th>" in html and ">a|b</td>" in html and ">2e-14</td>" in html
