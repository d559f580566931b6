"""The Reproducibility page: generated from the recorded results, and in step with them."""
import json
import pathlib
import sys

from nodelib.experiments.reproducibility import describe, page, recorded_runs, training_seconds

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
        assert f"`results/{path.parent.name}`" in text
        assert results["provenance"]["command"].split(" --")[0] in text
        assert all(len(line) <= 88 for line in text.split("```bash")[1].split("```")[0].splitlines())


def test_describe_and_training_time_on_synthetic_runs(tmp_path):
    mnist = {"experiment": "mnist-table1", "dataset": "fashion", "models_requested": ["resnet", "odenet"],
             "config": {"seed": 1}, "models": {"resnet": {"train_time_s": 60.0}, "odenet": {"train_time_s": 30.0}}}
    density = {"experiment": "cnf-vs-nf", "parts": ["kl", "ml"],
               "config": {"targets": ["u1", "u3"], "sizes": [2, 8], "datasets": ["two_moons"]},
               "density_matching": {"u1": {"nf": {"2": {"train_time_s": 5.0}}, "cnf": {"2": {"train_time_s": 7.0}}}},
               "maximum_likelihood": {"two_moons": {"nf": {"0": {"train_time_s": 1.5}}, "cnf": {}}}}
    assert describe(mnist) == "Table 1 on Fashion-MNIST: ResNet, ODE-Net, seed 1"
    assert describe(density) == ("Fig. 4 (density matching) on U1, U3, K = M = 2, 8; "
                                 "Fig. 5 (maximum likelihood) on two moons")
    assert (training_seconds(mnist), training_seconds(density)) == (90.0, 13.5)
    for name, results in (("a", mnist), ("b", density)):
        (tmp_path / name).mkdir()
        provenance = {"device": "cpu", "device_name": "CPU X", "cpu_threads": 2, "python": "3.11", "torch": "2",
                      "torchdiffeq": "0.2.5", "nodelib": "0.1.0", "date": "2026-01-02T03:04:05",
                      "command": "python -m nodelib.experiments mnist --preset full --out x"}
        (tmp_path / name / "results.json").write_text(json.dumps({**results, "provenance": provenance}))
    text = page(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| Table 1"))
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "Table 1 on Fashion-MNIST: ResNet, ODE-Net, seed 1", "`results/a`", "CPU X, 2 threads", "2026-01-02", "2 min"]
    assert "The 2 recorded runs." in text
