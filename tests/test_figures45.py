"""nodelib.experiments.figures45: the tables and figures of chapter 12, checked against the data given."""
import json
import math
import pathlib

import matplotlib
import numpy as np
import pytest
import torch

from nodelib.data import toy2d
from nodelib.experiments import density, figures45, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def kl_run(target, sizes, status="complete", shift=0.0):
    """A recorded Fig. 4 run in the shape density.run writes."""
    slot = {"log_normaliser": 1.0, "nf": {}, "cnf": {}}
    for size in sizes:
        slot["nf"][str(size)] = {"params": 5 * size, "kl": 1.0 / size + shift, "kl_se": 0.01}
        slot["cnf"][str(size)] = {"params": 100 * size, "kl": 0.5 / size, "kl_se": 0.02}
    return {"status": status, "parts": ["kl"], "config": {}, "density_matching": {target: slot},
            "maximum_likelihood": {}}


def ml_run(name, nf_layers=None, status="complete"):
    slot = {"entropy": 2.0, "entropy_se": 0.01, "nf": {}, "cnf": {}, "paired": {}}
    for r in range(2):
        slot["nf"][str(r)] = {"params": 250, "test_nll": 2.5 + r / 10, "test_nll_se": 0.01}
        slot["cnf"][str(r)] = {"params": 248, "test_nll": 2.3 + r / 100, "test_nll_se": 0.012}
        for j in range(2):
            slot["paired"][f"cnf-r{r} - nf-r{j}"] = {"difference": -0.1 - r - j, "se": 0.01}
    return {"status": status, "parts": ["ml"], "config": {"ml_nf_layers": nf_layers},
            "density_matching": {}, "maximum_likelihood": {name: slot}}


def test_kl_text_shows_the_first_digit_of_the_error():
    assert figures45.kl_text(0.81787, 0.00706) == "0.818 ± 0.007"
    assert figures45.kl_text(0.70776, 0.00061) == "0.7078 ± 0.0006"
    assert figures45.kl_text(0.00038, 0.00009) == "0.00038 ± 0.00009"
    assert figures45.kl_text(1.5, 0.0) == "1.500 ± 0.000"


def test_difference_adds_independent_errors_in_quadrature():
    row = {"nf_kl": 0.5, "nf_kl_se": 0.03, "cnf_kl": 0.1, "cnf_kl_se": 0.04}
    diff, in_se = figures45.difference(row)
    assert diff == pytest.approx(0.4) and in_se == pytest.approx(0.4 / 0.05)


def test_kl_rows_adds_up_runs_skips_unfinished_ones_and_refuses_conflicts():
    recorded = [(pathlib.Path("a/results.json"), kl_run("u1", (1, 2))),
                (pathlib.Path("b/results.json"), kl_run("u1", (8,))),
                (pathlib.Path("c/results.json"), kl_run("u2", (1,), status="running"))]
    rows = figures45.kl_rows(recorded)
    assert sorted(rows) == [("u1", 1), ("u1", 2), ("u1", 8)]
    assert rows[("u1", 8)]["run"] == "b" and rows[("u1", 2)]["nf_kl"] == 0.5
    same = recorded + [(pathlib.Path("d/results.json"), kl_run("u1", (2,)))]
    assert figures45.kl_rows(same)[("u1", 2)]["run"] == "a"
    clash = recorded + [(pathlib.Path("d/results.json"), kl_run("u1", (2,), shift=0.1))]
    with pytest.raises(ValueError, match="the runs a and d both hold Fig. 4 on u1 at K = M = 2"):
        figures45.kl_rows(clash)


def test_kl_frame_shows_what_the_rows_hold():
    rows = [kl_run("u1", (2, 8))["density_matching"]["u1"]]
    table = density.kl_table({"density_matching": {"u1": rows[0]}})
    frame = figures45.kl_frame(table)
    assert list(frame.columns) == ["K = M", "NF parameters", "NF KL (nats)", "CNF parameters", "CNF KL (nats)",
                                   "NF − CNF (nats)", "NF − CNF (s.e.)"]
    assert list(frame["NF parameters"]) == [10, 40] and list(frame["CNF parameters"]) == [200, 800]
    assert list(frame["NF KL (nats)"]) == ["0.500 ± 0.010", "0.125 ± 0.010"]
    assert list(frame["NF − CNF (nats)"]) == ["+0.250", "+0.062"]
    assert frame["NF − CNF (s.e.)"].iloc[0] == f"+{0.25 / math.hypot(0.01, 0.02):.1f}"
    negative = dict(table[0], nf_kl=0.1, cnf_kl=0.105)
    shown = figures45.kl_frame([negative], params=False)
    assert list(shown.columns) == ["K = M", "NF KL (nats)", "CNF KL (nats)", "NF − CNF (nats)", "NF − CNF (s.e.)"]
    assert shown["NF − CNF (nats)"].iloc[0] == "−0.0050" and shown["NF − CNF (s.e.)"].iloc[0].startswith("−")
    assert list(figures45.kl_frame(table, differences=False).columns)[-1] == "CNF KL (nats)"


def test_fig5_runs_keep_the_book_and_the_paper_configurations_apart():
    book, paper, running = ml_run("two_moons"), ml_run("two_moons", nf_layers=64), ml_run("two_moons", status="x")
    recorded = [("a", book), ("b", paper), ("c", running), ("d", kl_run("u1", (1,)))]
    assert figures45.fig5_runs(recorded) == [("a", book)]
    assert figures45.fig5_runs(recorded, paper=True) == [("b", paper)]
    regularised = ml_run("two_moons")
    regularised["config"].update(kinetic_weight=0.05, jacobian_weight=0.0)
    recorded.insert(0, ("a-regularised", regularised))  # sorted before "a/results.json"
    assert figures45.fig5_runs(recorded) == [("a", book)]
    assert figures45.fig5_runs(recorded, regularised=True) == [("a-regularised", regularised)]


def test_ml_and_paired_frames():
    run = ml_run("two_moons")
    frame = figures45.ml_frame(run, "two_moons")
    assert list(frame["repeat"]) == [1, 2]
    assert list(frame["NF test NLL (nats)"]) == ["2.500 ± 0.010", "2.600 ± 0.010"]
    assert list(frame["CNF test NLL (nats)"]) == ["2.300 ± 0.012", "2.310 ± 0.012"]
    paired = figures45.paired_frame(run, "two_moons")
    assert list(zip(paired["CNF repeat"], paired["NF repeat"])) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert list(paired["CNF − NF (nats)"]) == ["−0.1000", "−1.1000", "−1.1000", "−2.1000"]
    assert list(paired["in s.e."]) == ["−10.0", "−110.0", "−110.0", "−210.0"]


def framed_figure(path, rows, columns, bounds=(-4, 4, -4, 4)):
    """A figure of framed square panels like density's, each with a red square over [0, 2] x [1, 3]."""
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.fill([0, 2, 2, 0], [1, 1, 3, 3], color="red")
        ax.set_xlim(*bounds[:2])
        ax.set_ylim(*bounds[2:])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_title("a title", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def test_png_panels_finds_every_frame_and_places_its_crop(tmp_path):
    framed_figure(tmp_path / "grid.png", 3, 2)
    grid = figures45.png_panels(tmp_path / "grid.png")
    assert [len(row) for row in grid] == [2, 2, 2]
    bounds = (-4, 4, -4, 4)
    for panel in (p for row in grid for p in row):
        x0, x1, y0, y1 = panel.extent(bounds)
        assert -4 < x0 < -3.8 and 3.8 < x1 < 4 and -4 < y0 < -3.8 and 3.8 < y1 < 4
        red = (panel.image[..., 0] > 0.8) & (panel.image[..., 1] < 0.2)
        rows, cols = np.nonzero(red)
        height, width = red.shape
        xs = x0 + (np.array([cols.min(), cols.max() + 1]) / width) * (x1 - x0)
        ys = y1 - (np.array([rows.max() + 1, rows.min()]) / height) * (y1 - y0)
        assert np.allclose(xs, [0, 2], atol=0.08) and np.allclose(ys, [1, 3], atol=0.08)
    (tmp_path / "blank.png").write_bytes(b"")
    plt.imsave(tmp_path / "blank.png", np.ones((50, 50, 3)))
    with pytest.raises(ValueError, match="no framed square panels"):
        figures45.png_panels(tmp_path / "blank.png")


def test_recorded_panels_are_cut_from_the_files_beside_the_results(tmp_path):
    run4 = tmp_path / "kl"
    run4.mkdir()
    framed_figure(run4 / "fig4-u1.png", 3, 2)
    run5 = tmp_path / "ml"
    run5.mkdir()
    framed_figure(run5 / "fig5.png", 1, 5)
    recorded = [(run4 / "results.json", kl_run("u1", (2, 8))), (run5 / "results.json", ml_run("two_moons"))]
    panels = figures45.recorded_fig4_panels(recorded, "u1")
    assert sorted(panels) == [("cnf", 2), ("cnf", 8), ("nf", 2), ("nf", 8)]
    five = figures45.recorded_fig5_panels(recorded, "two_moons")
    assert sorted(five) == [("cnf", "density"), ("cnf", "samples"), ("nf", "density"), ("nf", "samples")]
    with pytest.raises(ValueError, match="no complete recorded run holds Fig. 5 on 'two_circles'"):
        figures45.recorded_fig5_panels(recorded, "two_circles")
    with pytest.raises(ValueError, match="expected 3 rows of 3 panels"):
        figures45.recorded_fig4_panels([(run4 / "results.json", kl_run("u1", (1, 2, 8)))], "u1")
    # results read from the book's repository name their files by address
    address = (run4 / "results.json").as_uri()
    assert runs.beside(address, "fig4-u1.png") == (run4 / "fig4-u1.png").as_uri()
    assert sorted(figures45.recorded_fig4_panels([(address, kl_run("u1", (2, 8)))], "u1")) == sorted(panels)


@pytest.mark.skipif(not (ROOT / "results").is_dir(), reason="the repository's recorded results")
def test_the_recorded_figures_have_a_panel_for_every_model():
    from nodelib.experiments.runs import recorded_results

    recorded = recorded_results("cnf-vs-nf", folders=(str(ROOT / "results"),))
    rows = figures45.kl_rows(recorded)
    for target in {t for t, _ in rows}:
        panels = figures45.recorded_fig4_panels(recorded, target)
        assert sorted(panels) == sorted((k, s) for k in ("nf", "cnf") for t, s in rows if t == target)
    for _, run in figures45.fig5_runs(recorded):
        for name in run["maximum_likelihood"]:
            assert len(figures45.recorded_fig5_panels(recorded, name)) == 4


def test_layouts_title_every_panel():
    samples = {(k, s): torch.randn(50, 2) for k in ("nf", "cnf") for s in (2, 8)}
    kl = {key: 0.5 for key in samples}
    fig = figures45.plot_fig4("u1", samples, kl, (2, 8), scale="test")
    titled = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titled == ["target U1: a ring in two lobes", "NF, K = 2: KL 0.500", "NF, K = 8: KL 0.500",
                      "CNF, M = 2: KL 0.500", "CNF, M = 8: KL 0.500"]
    shown = [ax for ax in fig.axes if ax.axison]      # the state's coordinates, as in chapters 6-10
    assert [ax.get_xlabel() for ax in shown] == ["$z_1$", "", "", "$z_1$", "$z_1$"]
    assert [ax.get_ylabel() for ax in shown] == ["$z_2$", "$z_2$", "", "$z_2$", ""]
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 3 panels per row"):
        figures45.plot_fig4("u1", samples, kl, (1, 2, 8, 32))
    grid = toy2d.grid_log_density(lambda x: toy2d.log_density("two_moons", x), bounds=(-3.5, 3.5, -3.5, 3.5),
                                  resolution=10)
    panels = {(k, "samples"): torch.randn(50, 2) for k in ("nf", "cnf")}
    panels.update({(k, "density"): grid for k in ("nf", "cnf")})
    fig = figures45.plot_fig5("two_moons", torch.randn(50, 2), panels, {"nf": 2.5, "cnf": 2.4},
                              {"nf": 250, "cnf": 248})
    assert [ax.get_title() for ax in fig.axes] == [
        "two moons: data", "NF samples (250 parameters)", "NF density: test NLL 2.500",
        "CNF samples (248 parameters)", "CNF density: test NLL 2.400"]
    assert {ax.get_xlabel() for ax in fig.axes} - {""} == {"$z_1$"}
    assert {ax.get_ylabel() for ax in fig.axes} - {""} == {"$z_2$"}
    plt.close(fig)
    rows = figures45.kl_rows([("a/results.json", kl_run("u1", (1, 2, 8))), ("b/results.json", kl_run("u2", (1, 2)))])
    fig = figures45.plot_kl_against_size(rows, title="KL")
    axes = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in axes] == ["U1: a ring in two lobes", "U2: a sine-shaped band"]
    assert [len(ax.get_lines()) >= 2 for ax in axes] == [True, True]
    plt.close(fig)


def test_a_quiet_run_returns_models_whose_panels_the_layouts_draw(capsys):
    results, models = figures45.run_quietly("quick", sizes=(2,), kl_iterations_nf=2, kl_iterations_cnf=2,
                                            kl_eval_samples=100, datasets=("two_moons",), ml_repeats=1,
                                            ml_iterations=2, n_train=200, n_test=200, entropy_samples=200)
    assert capsys.readouterr().out == ""
    assert results["status"] == "complete"
    samples = figures45.live_fig4_panels(models, "u1", (2,), n=30)
    assert sorted(samples) == [("cnf", 2), ("nf", 2)] and samples[("cnf", 2)].shape == (30, 2)
    five = figures45.live_fig5_panels(results, models, "two_moons", n=30, resolution=8)
    assert five[("nf", "samples")].shape == (30, 2) and five[("cnf", "density")].density.shape == (8, 8)


def test_the_paper_had_three_targets_and_density_says_the_rest():
    assert figures45.PAPER_FIG4_TARGETS == 3
    assert density.PAPER["sizes"] == (2, 8, 32)
    json.dumps(density.PAPER)
