"""nodelib.experiments.table1: Table 1 beside the recorded runs, checked against hand-made runs.

References: the cells of each frame written out by hand from synthetic results; the paired counts
by set arithmetic; the recorded runs' Table 1 row of the ODE-Net against results/mnist-full itself.
"""
import json
import math
import pathlib

import pytest

from nodelib.experiments.table1 import (MODEL_NAMES, RECORDED_RUNS, in_checkout, nfe_statistics, paired_frame,
                                        percent, quick_frame, recorded_runs, run_name, table1_frame)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def model(params, error, wrong, memory=2**20, time=60.0, nfe=(None, None)):
    return {"params": params, "test_error": error, "test_wrong": wrong, "backward_memory_bytes": memory,
            "train_time_s": time, "nfe_forward": nfe[0], "nfe_backward": nfe[1]}


def run(dataset, seed, models, n=10):
    return {"experiment": "mnist-table1", "preset": "full", "dataset": dataset, "status": "complete",
            "config": {"seed": seed}, "data": {"test": n}, "models": models}


@pytest.fixture
def runs():
    mnist = run("mnist", 0, {
        "mlp": model(238_510, 0.3, [0, 1, 2], memory=2**19, time=6.0),
        "resnet": model(576_778, 0.1, [1], memory=85 * 2**20, time=60.0),
        "rknet": model(208_266, 0.2, [1, 2], memory=186 * 2**20, time=120.0, nfe=(16.0, None)),
        "odenet": model(208_266, 0.2, [2, 3], memory=57 * 2**20, time=282.0, nfe=(26.0, 21.5))})
    fashion = run("fashion", 0, {k: model(1, e, list(range(int(10 * e)))) for k, e in
                                 (("mlp", 0.5), ("resnet", 0.1), ("rknet", 0.2), ("odenet", 0.3))})
    seed1 = run("fashion", 1, {"resnet": model(1, 0.1, [5]), "odenet": model(1, 0.2, [5, 6])})
    return {"mnist-full": mnist, "fashion-full": fashion, "fashion-full-seed1": seed1}


def test_run_name_of_paths_and_addresses():
    assert run_name(pathlib.Path("../results/mnist-full/results.json")) == "mnist-full"
    assert run_name("https://raw.example/o/r/main/results/fashion-full/results.json") == "fashion-full"


def test_percent():
    assert percent(0.0043) == "0.43%" and percent(0.15111, 1) == "15.1%"


def test_table1_frame_sets_each_recorded_value_beside_the_papers(runs):
    frame = table1_frame(runs)
    assert list(frame["model"]) == list(MODEL_NAMES.values())
    ode = frame.iloc[3].to_dict()
    assert ode == {"model": "ODE-Net", "parameters": "208,266 (0.22 M)",
                   "MNIST test error": "20.00% (0.42%)",
                   "Fashion-MNIST, seeds 0 / 1": "30.00% / 20.00%",
                   "backward memory": "57.0 MiB ($O(1)$)",
                   "training time / ResNet's": r"4.70 ($O(\tilde L)$)"}
    mlp = frame.iloc[0].to_dict()
    assert mlp["Fashion-MNIST, seeds 0 / 1"] == "50.00% / –"        # not run with seed 1
    assert mlp["backward memory"] == "0.5 MiB (–)" and mlp["training time / ResNet's"] == "0.10 (–)"
    assert frame.iloc[1]["training time / ResNet's"] == "1.00 ($O(L)$)"


def test_table1_frame_without_results_shows_the_paper():
    frame = table1_frame(None)
    assert frame.iloc[0].to_dict() == {"model": "1-layer MLP", "parameters": "0.24 M", "MNIST test error": "1.60%",
                                       "memory": "–", "time": "–"}
    assert list(frame["MNIST test error"]) == ["1.60%", "0.41%", "0.47%", "0.42%"]


def test_quick_frame_leaves_out_untrained_models_and_dashes_missing_solves(runs):
    results = {"models": {**runs["mnist-full"]["models"], "mlp": {"epochs_done": 3}}}
    frame = quick_frame(results)
    assert list(frame["model"]) == ["ResNet", "RK-Net", "ODE-Net"]
    assert frame.iloc[2].to_dict() == {"model": "ODE-Net", "parameters": "208,266", "test error": "20.00%",
                                       "backward memory (MiB)": "57.00", "NFE forward": "26.0",
                                       "NFE backward": "21.5"}
    assert list(frame["NFE backward"]) == ["–", "–", "21.5"]


def test_paired_frame_counts_by_sets_and_skips_missing_models(runs):
    frame = paired_frame(runs)
    assert list(frame["data"]) == ["MNIST"] * 4 + ["Fashion-MNIST, seed 0"] * 4 + ["Fashion-MNIST, seed 1"]
    row = frame.iloc[2].to_dict()   # MNIST, ODE-Net {2, 3} against ResNet {1}
    se = math.sqrt(2 + 1 - (2 - 1) ** 2 / 10) / 10
    assert row == {"data": "MNIST", "difference": "ODE-Net − ResNet", "points": f"+10.00 ± {100 * se:.2f}",
                   "only the first wrong": "2", "only the second wrong": "1", "both wrong": "0"}
    assert frame.iloc[1]["points"].startswith("+10.00")                      # RK-Net {1, 2} against {1}
    assert frame.iloc[3].to_dict()["both wrong"] == "1"                     # ODE-Net {2, 3} and RK-Net {1, 2}
    negative = paired_frame(runs, pairs=[("resnet", "odenet")]).iloc[0]["points"]
    assert negative.startswith("−10.00 ± ")                                  # a minus sign, not a hyphen
    assert len(paired_frame(None)) == 0 and list(paired_frame(None).columns) == list(frame.columns)


def test_nfe_statistics():
    stats = nfe_statistics({"nfe_forward_iter": [20, 26, 26, 32], "nfe_backward_iter": [19, 19, 19, 25]})
    assert (stats["iterations"], stats["forward"], stats["backward"]) == (4, 26.0, 20.5)
    assert stats["ratio"] == 20.5 / 26 and stats["forward_counts"] == {20: 1, 26: 2, 32: 1}
    assert stats["backward_counts"].most_common(1) == [(19, 3)]
    with pytest.raises(ValueError, match="as many forward as backward counts"):
        nfe_statistics({"nfe_forward_iter": [20], "nfe_backward_iter": []})


def checkout(tmp_path, names):
    root = tmp_path / "repo"
    (root / "nodelib").mkdir(parents=True)
    (root / "_toc.yml").write_text("root: book/intro\n")
    (root / "book").mkdir()
    for name in names:
        (root / "results" / name).mkdir(parents=True)
        (root / "results" / name / "results.json").write_text(json.dumps(run("mnist", 0, {})))
    return root


def test_in_a_checkout_every_recorded_run_must_be_there(tmp_path, monkeypatch):
    root = checkout(tmp_path, RECORDED_RUNS[:2])
    monkeypatch.chdir(root / "book")                                        # where a chapter runs
    assert in_checkout()
    with pytest.raises(FileNotFoundError, match=r"lacks the recorded Table 1 runs \['fashion-full-seed1'\]"):
        recorded_runs()
    assert list(recorded_runs(RECORDED_RUNS[:2])) == list(RECORDED_RUNS[:2])
    (root / "results" / "mnist-full" / "results.json").unlink()
    with pytest.raises(FileNotFoundError, match="mnist-full"):
        recorded_runs(RECORDED_RUNS[:1])


def test_a_checkout_without_results_fails_rather_than_reading_elsewhere(tmp_path, monkeypatch):
    root = checkout(tmp_path, [])
    monkeypatch.chdir(root)                                                 # from the root, as tests run
    with pytest.raises(FileNotFoundError, match="lacks the recorded Table 1 runs"):
        recorded_runs(repository="http://127.0.0.1:9")


def test_outside_a_checkout_and_offline_there_is_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not in_checkout()
    assert recorded_runs(repository=None) is None


def test_the_recorded_runs_give_table1_as_the_chapter_shows_it():
    runs = recorded_runs(roots=(str(ROOT),))
    assert list(runs) == list(RECORDED_RUNS)
    ode = table1_frame(runs).iloc[3]
    assert ode["MNIST test error"] == "0.43% (0.42%)"
    assert ode["parameters"] == "208,266 (0.22 M)"
    assert ode["Fashion-MNIST, seeds 0 / 1"] == "7.23% / 6.93%"
    assert nfe_statistics(runs["mnist-full"]["models"]["odenet"]["history"])["iterations"] == 30 * 469
