"""Table 2's experiment (nodelib.experiments.latent): presets, results, resume, the command line."""
import json

import pytest
import torch

from nodelib.experiments import latent
from nodelib.experiments.__main__ import main

TINY = dict(n_series=12, n_train=8, observations=(5, 8), iterations=6, batch_size=4, checkpoint_every=2,
            warmup_obs=6, warmup_fraction=0.5)   # N = 8 has a warm-up of 3 iterations on 6-point subsets


def test_the_presets_carry_the_papers_sizes():
    full = latent.get_preset("full")
    for field in ("n_series", "n_window", "latent_dim", "rnn_hidden", "ode_hidden", "decoder_hidden"):
        assert getattr(full, field) == latent.PAPER[field]
    assert full.observations == latent.PAPER["observations"] == (30, 50, 100)


@pytest.mark.parametrize("bad, match", [(dict(observations=(0,)), "observations"),
                                        (dict(observations=(101,)), "observations"),
                                        (dict(n_train=1000), "n_train"), (dict(widths=3), "not fields"),
                                        (dict(warmup_obs=0), "warmup_obs"),
                                        (dict(warmup_fraction=1.5), "warmup_fraction"),
                                        (dict(warmup_fraction="half"), "warmup_fraction"),
                                        (dict(starts=0), "starts"), (dict(start_fraction=0.0), "start_fraction"),
                                        (dict(ode_layers=0), "ode_layers"),
                                        (dict(ode_activation="relu"), "ode_activation must be one of")])
def test_bad_presets_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        latent.get_preset("full", **bad)


def test_the_warmup_shows_each_series_a_random_subset_of_its_own_points(monkeypatch):
    seen = []
    original = latent._loss

    def recording(model, times, values, generator, stats):
        seen.append((type(model).__name__, times.clone(), values.clone()))
        return original(model, times, values, generator, stats)

    monkeypatch.setattr(latent, "_loss", recording)
    cfg = dict(TINY, observations=(8,), iterations=10, warmup_fraction=0.4)
    latent.run("quick", quiet=True, **cfg)
    times, values = latent.make_data(latent.get_preset("quick", **cfg), 8)["train_obs"]
    for kind in ("RNNForecaster", "RNNForecaster", "LatentODE"):
        calls, seen = seen[:10], seen[10:]
        assert calls[0][0] == kind
        assert [c[1].shape[1] for c in calls] == [6] * 4 + [8] * 6     # round(0.4 · 10) warm-up steps
        for _, t, v in calls[:4]:
            for row_t, row_v in zip(t, v):                             # each row: 6 points of one series
                match = [b for b in range(len(times)) if set(row_t.tolist()) <= set(times[b].tolist())
                         and all(torch.equal(row_v[i], values[b][times[b] == row_t[i]][0]) for i in range(6))]
                assert match
    assert not seen


def test_a_run_records_every_model_and_its_paired_comparison(tmp_path):
    results = latent.run("quick", out=str(tmp_path), **TINY)
    assert results["status"] == "complete"
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["runs"] == json.loads(json.dumps(results["runs"]))
    for n in ("5", "8"):
        slot = results["runs"][n]
        for kind in latent.MODELS:
            errors = torch.tensor(slot[kind]["test_errors"], dtype=torch.float64)
            assert errors.numel() == 4                                          # the test spirals
            assert abs(errors.pow(2).mean().sqrt() - slot[kind]["test_rmse"]) < 1e-5
        d = torch.tensor(slot["latent_ode"]["test_errors"]) - torch.tensor(slot["rnn"]["test_errors"])
        assert abs(slot["paired"]["rnn"]["difference"] - float(d.mean())) < 1e-6
        assert abs(slot["paired"]["rnn"]["se"] - float(d.std() / 2)) < 1e-6
    frame = latent.table2_frame(results)
    assert list(frame.columns) == ["model", "source", "N = 5", "N = 8"]
    assert frame.iloc[0, 2] == f"{results['runs']['5']['rnn']['test_rmse']:.4f}"
    assert list(frame.iloc[1]) == ["", "Table 2", "–", "–"]          # the paper has no N = 5, 8
    again = {**results, "config": {**results["config"], "seed": 1}}
    both = latent.table2_frame(results, again)
    assert list(both.iloc[:3, 1]) == ["this book, seed 0", "this book, seed 1", "Table 2"]
    pairs = latent.paired_frame(results, again)
    assert len(pairs) == 8 and list(pairs.columns)[0] == "seed"
    scores = latent.scores_frame([results, again], {"seed": "seed"})
    assert list(scores.columns) == ["seed", "N", "RMSE, training spirals' futures", "RMSE, test spirals"]
    assert list(scores["seed"]) == [0, 0, 1, 1] and list(scores["N"]) == [5, 8, 5, 8]
    assert scores.iloc[1, 2:].tolist() == [results["runs"]["8"]["latent_ode"][k]
                                           for k in ("train_future_rmse", "test_rmse")]
    one = latent.paired_frame(results).iloc[0]
    expected = results["runs"]["5"]["paired"]["rnn"]
    assert one["RMSE per spiral"] == f"{expected['difference']:+.4f} ± {expected['se']:.4f}"


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    whole = latent.run("quick", **TINY)
    first = latent.run("quick", out=str(tmp_path), budget_s=0.0, **TINY)
    assert first["status"] == "incomplete"
    for _ in range(40):
        resumed = latent.run("quick", out=str(tmp_path), budget_s=0.0, **TINY)
        if resumed["status"] == "complete":
            break
    assert resumed["status"] == "complete"
    for n in ("5", "8"):
        for kind in latent.MODELS:
            assert resumed["runs"][n][kind]["test_errors"] == whole["runs"][n][kind]["test_errors"]


def _future_rmse_by_hand(kind, model, data):
    train, (times, values) = data["train"], data["train_obs"]
    with torch.no_grad():
        predicted = (model.predict(times, values, train.future_times) if kind == "latent_ode"
                     else model.forecast(times, values, train.future_times))
    return float((predicted - train.observed[:, train.n_window:]).pow(2).mean().sqrt())


STARTS = dict(TINY, observations=(5,), iterations=10, starts=3, start_fraction=0.3, warmup_fraction=0.0)


def test_each_start_trains_its_share_and_the_best_on_the_training_futures_goes_on(tmp_path):
    results = latent.run("quick", out=str(tmp_path), quiet=True, **STARTS)
    data = latent.make_data(latent.get_preset("quick", **STARTS), 5)
    for kind in latent.MODELS:
        record = results["runs"]["5"][kind]
        by_hand = []
        for start in range(3):
            state = torch.load(tmp_path / "checkpoints" / f"{kind}-n5-start{start}.pt", weights_only=True)
            assert state["iteration"] == 3 and state["settings"]["start"] == start   # round(0.3 · 10)
            model = latent.build(kind, latent.get_preset("quick", **STARTS))
            model.load_state_dict(state["model"])
            by_hand.append(_future_rmse_by_hand(kind, model, data))
        assert record["starts"]["train_future_rmse"] == pytest.approx(by_hand, abs=1e-6)
        assert len(set(by_hand)) == 3                                   # three different initialisations
        chosen = record["starts"]["chosen"]
        assert by_hand[chosen] == min(by_hand)
        final = torch.load(tmp_path / "checkpoints" / f"{kind}-n5.pt", weights_only=True)
        candidate = torch.load(tmp_path / "checkpoints" / f"{kind}-n5-start{chosen}.pt", weights_only=True)
        assert final["iteration"] == 10 and final["settings"]["start"] == chosen
        assert final["losses"][:len(candidate["losses"])] == candidate["losses"]
    table = latent.starts_frame([results], "rnn_dt")
    assert list(table.columns) == ["seed", "N", "start 1", "start 2", "start 3", "chosen",
                                   "RMSE, training spirals' futures", "RMSE, test spirals"]
    record = results["runs"]["5"]["rnn_dt"]
    assert table.iloc[0].tolist() == [0, 5, *record["starts"]["train_future_rmse"], record["starts"]["chosen"] + 1,
                                      record["train_future_rmse"], record["test_rmse"]]


def test_a_run_with_starts_resumes_to_the_same_numbers(tmp_path):
    whole = latent.run("quick", quiet=True, **STARTS)
    for _ in range(60):
        resumed = latent.run("quick", out=str(tmp_path), budget_s=0.0, quiet=True, **STARTS)
        if resumed["status"] == "complete":
            break
    assert resumed["status"] == "complete"
    for kind in latent.MODELS:
        assert resumed["runs"]["5"][kind]["starts"] == whole["runs"]["5"][kind]["starts"]
        assert resumed["runs"]["5"][kind]["test_errors"] == whole["runs"]["5"][kind]["test_errors"]


def test_a_rerun_with_other_settings_names_them(tmp_path):
    latent.run("quick", out=str(tmp_path), **TINY)
    with pytest.raises(ValueError, match="iterations: 6 → 7"):
        latent.run("quick", out=str(tmp_path), **{**TINY, "iterations": 7})


def test_the_command_line_runs_the_preset_with_overrides(tmp_path, capsys):
    assert main(["latent", "--out", str(tmp_path), "--quiet", "--set", "n_series=12", "--set", "n_train=8",
                 "--set", "observations=(5,)", "--set", "iterations=3", "--set", "batch_size=4"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["config"]["observations"] == [5]
    with pytest.raises(SystemExit):
        main(["latent", "--out", str(tmp_path / "x"), "--set", "observations=(500,)"])
    assert "observations must be ints in [1, n_window = 100]" in capsys.readouterr().err


def test_a_quiet_run_prints_nothing(capsys):
    latent.run("quick", quiet=True, **{**TINY, "observations": (5,)})
    assert capsys.readouterr().out == ""


def test_the_training_spirals_future_error_is_the_returned_models_on_the_unseen_times(tmp_path):
    """train_future_rmse: the trained model's predictions of the training spirals' times after the
    window (never used in training), recomputed here from the returned models by hand."""
    results, models = latent.run("quick", quiet=True, return_models=True, **{**TINY, "observations": (5,)})
    data = latent.make_data(latent.get_preset("quick", **{**TINY, "observations": (5,)}), 5)
    for kind in latent.MODELS:
        by_hand = _future_rmse_by_hand(kind, models[(kind, 5)], data)
        assert abs(results["runs"]["5"][kind]["train_future_rmse"] - by_hand) < 1e-6


def test_the_figures_are_drawn_from_the_runs_models(tmp_path):
    results, models = latent.run("quick", out=str(tmp_path), return_models=True, quiet=True,
                                 **{**TINY, "observations": (5,)})
    paths = latent.save_figures(results, models, str(tmp_path), n_obs=5)
    assert [p.name for p in paths] == ["fig8.png", "fig9.png"] and all(p.stat().st_size > 10_000 for p in paths)
    fig = latent.plot_extrapolations(models, latent.make_data(latent.get_preset("quick", **TINY), 5), 5, paths=3)
    assert [ax.get_title() for ax in fig.axes] == ["RNN, time differences, N = 5", "Latent ODE, N = 5",
                                                   "Latent trajectories"]
    assert len(fig.axes[2].lines) == 3


def test_a_subset_of_models_is_trained_alone_and_not_paired(tmp_path):
    results = latent.run("quick", quiet=True, models=("latent_ode",), **{**TINY, "observations": (5,)})
    assert set(results["runs"]["5"]) == {"latent_ode"} and results["models"] == ["latent_ode"]
    whole = latent.run("quick", quiet=True, **{**TINY, "observations": (5,)})
    assert results["runs"]["5"]["latent_ode"]["test_errors"] == whole["runs"]["5"]["latent_ode"]["test_errors"]
    with pytest.raises(ValueError, match="models"):
        latent.run("quick", models=("lstm",), **TINY)


def test_the_reference_predictions_score_the_spirals_size_and_the_noise():
    from nodelib.data.spirals import spirals
    clean = spirals(50, noise=0.0, dtype=torch.float64)
    radius = 0.5 + 0.15 * (((clean.clean[:, 0].norm(dim=-1) - 0.5) / 0.15)[:, None] + clean.times[100:])
    assert abs(latent.reference_rmse(clean)["origin"] - float((radius ** 2 / 2).mean().sqrt())) < 1e-12
    assert latent.reference_rmse(clean)["noiseless"] == 0.0
    noisy = spirals(2000, noise=0.1, dtype=torch.float64)
    assert abs(latent.reference_rmse(noisy)["noiseless"] - 0.1) < 0.001

