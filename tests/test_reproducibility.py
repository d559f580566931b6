"""The Reproducibility page: generated from the recorded results, and in step with them."""
import functools
import http.server
import json
import pathlib
import shutil
import socket
import sys
import threading

import pytest
import yaml

from nodelib.experiments.reproducibility import describe, index, page, recorded_runs, training_seconds
from nodelib.experiments.runs import BOOK_BRANCH, BOOK_REPOSITORY, raw_url, recorded_results

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reproducibility_page  # noqa: E402


def test_the_committed_page_is_what_the_recorded_results_give():
    assert reproducibility_page.PAGE.read_text() == page(ROOT / "results"), \
        "run tools/reproducibility_page.py"


def test_every_recorded_run_is_on_the_page_with_its_command():
    text = reproducibility_page.PAGE.read_text()
    runs = recorded_runs(ROOT / "results")
    assert len(runs) >= 13
    for path, results in runs:
        assert f"`{path.parent.name}`" in text
        assert results["provenance"]["command"].split(" --")[0] in text
        assert all(len(line) <= 88 for line in text.split("```bash")[1].split("```")[0].splitlines())


def test_describe_and_training_time_on_synthetic_runs(tmp_path):
    mnist = {"experiment": "mnist-table1", "status": "complete", "dataset": "fashion", "models_requested": ["resnet", "odenet"],
             "config": {"seed": 1}, "models": {"resnet": {"train_time_s": 60.0}, "odenet": {"train_time_s": 30.0}}}
    density = {"experiment": "cnf-vs-nf", "status": "complete", "parts": ["kl", "ml"],
               "config": {"targets": ["u1", "u3"], "sizes": [2, 8], "datasets": ["two_moons"]},
               "density_matching": {"u1": {"nf": {"2": {"train_time_s": 5.0}}, "cnf": {"2": {"train_time_s": 7.0}}}},
               "maximum_likelihood": {"two_moons": {"nf": {"0": {"train_time_s": 1.5}}, "cnf": {}}}}
    assert describe(mnist) == "Table 1 on Fashion-MNIST: ResNet, ODE-Net, seed 1"
    assert describe(density) == ("Fig. 4 (density matching) on U1, U3, K = M = 2, 8; "
                                 "Fig. 5 (maximum likelihood) on two moons")
    assert (training_seconds(mnist), training_seconds(density)) == (90.0, 13.5)
    paper = {**density, "parts": ["ml"], "config": {"datasets": ["two_circles"], "ml_width": 64, "ml_nf_layers": 64,
                                                    "seed": 1}}
    assert describe(paper) == ("Fig. 5 (maximum likelihood) on two circles, CNF of 64 units against NF of 64 "
                               "layers, seed 1")
    regularised = {**density, "parts": ["ml"], "config": {"datasets": ["two_moons"], "kinetic_weight": 0.05,
                                                          "jacobian_weight": 0.0}}
    assert describe(regularised) == "Fig. 5 (maximum likelihood) on two moons, CNF regularised (kinetic 0.05)"
    benchmark = {"experiment": "cnf-regularisation", "status": "complete",
                 "config": {"datasets": ["two_moons", "pinwheel"], "kinetic_weight": 0.05, "jacobian_weight": 0.1},
                 "datasets": {"two_moons": {"models": {"a": {"training_seconds": 2.0}, "b": {"training_seconds": 3.5}}},
                              "pinwheel": {"models": {"a": {"training_seconds": 1.0}}}}}
    assert describe(benchmark) == ("Regularised dynamics: one CNF trained with (kinetic 0.05, Jacobian 0.1) and "
                                   "without penalties, side by side, on two moons, pinwheel")
    assert training_seconds(benchmark) == 6.5
    breakdown = {"experiment": "adjoint-breakdown", "status": "complete",
                 "config": {"method": "dopri5", "rtol": 1e-5, "batch": 512, "repeats": 21}}
    assert describe(breakdown) == ("Where the adjoint's time goes: field, vector-Jacobian products and the rest, "
                                   "dopri5 at 1e-5, batch 512, medians of 21 runs")
    compiled = {"experiment": "compiled-benchmark", "status": "complete",
                "config": {"method": "dopri5", "rtol": 1e-5, "batch": 512, "repeats": 15}}
    assert describe(compiled) == ("The compiled path against the default adjoint, torchdiffeq and diffrax, dopri5 "
                                  "at 1e-5, batch 512, medians of 15 alternating rounds")
    assert describe({**compiled, "rk4": {}}).endswith("medians of 15 alternating rounds (and rk4 at 100 steps)")
    table2 = {"experiment": "latent-ode", "status": "complete", "models": ["latent_ode"],
              "config": {"n_series": 1000, "seed": 1, "observations": [50, 100], "obs_std": 0.3,
                         "warmup_obs": 30, "warmup_fraction": 0.5, "ode_layers": 2, "ode_activation": "elu",
                         "starts": 4}}
    assert describe(table2) == ("Table 2 on 1,000 spirals, seed 1: latent ODE; N = 50, 100; f: 2 ELU layers, "
                                "4 starts; likelihood σ = 0.3; warm-up on 30 points for 50% of the steps")
    one = {**table2["config"], "ode_layers": 1, "ode_activation": "tanh", "starts": 1}
    assert "N = 50, 100; f: 1 tanh layer, 1 start; likelihood" in describe({**table2, "config": one})
    assert describe({**table2, "config": {**table2["config"], "warmup_fraction": 0.0}}).endswith("σ = 0.3; no warm-up")
    for name, results in (("a", mnist), ("b", density)):
        (tmp_path / name).mkdir()
        provenance = {"device": "cpu", "device_name": "CPU X", "cpu_threads": 2, "python": "3.11", "torch": "2",
                      "torchdiffeq": "0.2.5", "nodelib": "0.1.0", "date": "2026-01-02T03:04:05",
                      "command": "python -m nodelib.experiments mnist --preset full --out x"}
        (tmp_path / name / "results.json").write_text(json.dumps({**results, "provenance": provenance}))
    (tmp_path / "c").mkdir()  # a run still going is left out
    (tmp_path / "c" / "results.json").write_text(json.dumps({**mnist, "status": "running", "provenance": provenance}))
    text = page(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| Table 1"))
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "Table 1 on Fashion-MNIST: ResNet, ODE-Net, seed 1", "`a`", "CPU X, 2 threads", "2026-01-02", "2 min"]
    assert "The 2 recorded runs." in text


def test_the_results_index_is_current():
    assert reproducibility_page.INDEX.read_text() == index(ROOT / "results"), "run tools/reproducibility_page.py"


def test_the_recorded_results_that_chapters_11_and_12_show_are_in_the_repository():
    """Chapters 11 and 12 assert every full-scale number they print against results/; without it
    they could not, so its absence fails here rather than passing their checks vacuously."""
    table1 = recorded_results("mnist-table1", folders=(str(ROOT / "results"),), repository=None)
    figures = recorded_results("cnf-vs-nf", folders=(str(ROOT / "results"),), repository=None)
    assert {r["dataset"] for _, r in table1} == {"mnist", "fashion"}
    assert {t for _, r in figures for t in r["density_matching"]} == {"u1", "u2", "u3", "u4"}
    assert {d for _, r in figures for d in r["maximum_likelihood"]} == {"two_circles", "two_moons"}


def test_the_repository_is_the_one_configured_in_config_yml():
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    assert (BOOK_REPOSITORY, BOOK_BRANCH) == (repository["url"].rstrip("/"), repository["branch"])
    assert raw_url("results/index.json") == (
        "https://raw.githubusercontent.com/nodelib/neural-ode-book/main/results/index.json")


@pytest.fixture
def served_repository(tmp_path):
    """A copy of the repository's results/ (two runs) served over HTTP on 127.0.0.1, as raw files are."""
    root = tmp_path / "served"
    for name in ("mnist-full", "density-full-moons"):
        shutil.copytree(ROOT / "results" / name, root / "results" / name,
                        ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    (root / "results" / "index.json").write_text(index(root / "results"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_chapter_without_results_reads_them_from_the_repository(served_repository, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/ here, nor in ../
    remote = recorded_results("mnist-table1", repository=served_repository)
    local = recorded_results("mnist-table1", folders=(str(ROOT / "results"),), repository=None)
    assert [r for _, r in remote] == [r for path, r in local if path.parent.name == "mnist-full"]
    assert remote[0][0] == f"{served_repository}/results/mnist-full/results.json"


def test_offline_it_says_so_in_one_line_and_returns_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert recorded_results("mnist-table1", repository=f"http://127.0.0.1:{port}") is None
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and "could not be read from http://127.0.0.1" in said[0]


def test_the_provenance_of_a_script_names_it_as_run_from_the_repository(monkeypatch, tmp_path):
    import torch

    from nodelib.experiments.runs import provenance

    script = tmp_path / "benchmarks" / "bench.py"
    script.parent.mkdir()
    script.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script), "--quick", "--out", "a b.json"])
    assert provenance(torch.device("cpu"))["command"] == "python benchmarks/bench.py --quick --out 'a b.json'"
