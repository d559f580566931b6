"""benchmarks/regularisation.py --quick, in-process, against recomputations from its saved models."""
import importlib.util
import json
import math
import pathlib
import sys

import pytest
import torch

import nodelib
from nodelib.data import toy2d
from nodelib.storage import load_checkpoint

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "regularisation.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("regularisation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(benchmark, tmp_path_factory):
    directory = tmp_path_factory.mktemp("regularisation")
    old_dtype, old_threads = torch.get_default_dtype(), torch.get_num_threads()
    try:
        returned = benchmark.main(["--quick", "--out", str(directory / "out.json"),
                                   "--checkpoints", str(directory / "checkpoints")])
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_num_threads(old_threads)
    saved = json.loads((directory / "out.json").read_text())
    return saved, returned, directory / "checkpoints"


def saved_model(benchmark, checkpoints, name, model):
    """The fitted field of ``model`` on ``name``, from its checkpoint, in a plain evaluation CNF."""
    config = benchmark.QUICK
    cnf = nodelib.CNF(nodelib.MLPField(2, hidden=config.hidden).float(), adjoint=False, rtol=config.eval_tol,
                      atol=config.eval_tol)
    cnf.load_state_dict(load_checkpoint(checkpoints / f"{name}-{model}.pt")["model"])
    return cnf


def test_quick_run_matches_independent_recomputations(benchmark, quick_run):
    saved, returned, checkpoints = quick_run
    config = benchmark.QUICK
    assert saved == json.loads(json.dumps(returned))
    assert set(saved["datasets"]) == set(config.datasets)
    assert saved["config"]["iterations"] == config.iterations
    for name, result in saved["datasets"].items():
        test = toy2d.sample(name, config.n_test, seed=config.seeds[2], dtype=torch.float32)
        nll = {}
        for model in benchmark.MODELS:
            reported = result["models"][model]
            cnf = saved_model(benchmark, checkpoints, name, model)
            stats, chunks = nodelib.SolveStats(), test.split(config.eval_batch)
            with torch.no_grad():
                for chunk in chunks:
                    cnf.log_prob(chunk, stats=stats)
            assert reported["eval_nfe_per_solve"] == stats.nfe_forward / len(chunks)
            nll[model] = reported["test_nll"]["mean"]
            recomputed = nodelib.mean_nll(cnf, test, batch_size=config.eval_batch)
            assert nll[model] == pytest.approx(recomputed, abs=1e-5)
            curves = reported["curves"]
            assert curves["iteration"][-1] == config.iterations
            assert len(curves["nfe_forward"]) == len(curves["iteration"]) == len(curves["seconds"])
            logged = zip(curves["iteration"], curves["nfe_forward"], curves["nfe_backward"])
            end = [f + b for i, f, b in logged if i > 0.9 * config.iterations]
            assert reported["train_nfe_end"]["total"] == pytest.approx(sum(end) / len(end))
            assert curves["test_subset_iteration"] == list(range(config.evaluate_every, config.iterations + 1,
                                                                 config.evaluate_every))
            assert all(math.isfinite(v) for v in curves["test_subset_nll"])
            assert ("kinetic" in curves) == (model == "regularised")
        difference = result["paired_difference"]["test"]["mean"]
        assert difference == pytest.approx(nll["regularised"] - nll["unregularised"], abs=1e-9)
        models = result["models"]
        assert result["ratios"]["training time ratio"] == pytest.approx(
            models["regularised"]["training_seconds"] / models["unregularised"]["training_seconds"])
        assert result["targets"]["eval NFE ratio"]["met"] == (result["ratios"]["eval NFE ratio"] <= 0.5)


def test_time_slices_reproduce_an_uninterrupted_fit(benchmark, quick_run):
    """The interleaved, sliced fit is the uninterrupted one: the same losses and NFE at each logged step."""
    saved, _, _ = quick_run
    config = benchmark.QUICK
    name = config.datasets[0]
    train = toy2d.sample(name, config.n_train, seed=config.seeds[0], dtype=torch.float32)
    cnf = benchmark.make_cnf(config, benchmark.make_field(config), regularised=True)
    history = nodelib.fit_density(cnf, train, iterations=config.iterations, batch_size=config.batch_size,
                                  lr=config.lr, seed=config.minibatch_seed, log_every=config.log_every,
                                  verbose=False)
    curves = saved["datasets"][name]["models"]["regularised"]["curves"]
    assert curves["loss"] == [loss for _, loss in history.losses]
    assert curves["nfe_forward"] == [f for _, f, _ in history.nfe]
    assert curves["nfe_backward"] == [b for _, _, b in history.nfe]
