"""nodelib.experiments.density (Figs. 4 and 5): parameter matching against the built models, the KL
objective and estimate against closed-form Gaussian divergences, fit_kl against the closed-form
minimiser, a resumed run against an uninterrupted one, the paired NLL differences against the models'
log-densities computed here, the command line against the same run in-process, and its --compile against
the default path."""
import json
import math
import pathlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import nodelib.compiled
from nodelib import CNF, PlanarFlow, fit_kl
from nodelib.dynamics import HyperPlanarField
from nodelib.data import toy2d
from nodelib.experiments import density
from nodelib.experiments.__main__ import main
from nodelib.experiments.measure import count_parameters

from fields import Linear

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: A run small enough for a unit test: one size, a few iterations, small evaluation sets.
TINY = dict(sizes=(2,), kl_iterations_nf=7, kl_iterations_cnf=5, ml_iterations=5, kl_batch=32, ml_batch=32,
            kl_eval_samples=500, entropy_samples=2000, n_train=300, n_test=300, checkpoint_every=2)


class Gaussian(nn.Module):
    """q = N(μ, diag σ²) with reparameterised samples: x = μ + σ ε."""

    def __init__(self, mean, log_std):
        super().__init__()
        self.mean = nn.Parameter(torch.as_tensor(mean, dtype=torch.float64).clone())
        self.log_std = nn.Parameter(torch.as_tensor(log_std, dtype=torch.float64).clone())

    def sample_with_log_prob(self, n, *, generator=None):
        eps = torch.randn(n, self.mean.shape[0], generator=generator, dtype=self.mean.dtype)
        log_q = (-0.5 * eps ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return self.mean + self.log_std.exp() * eps, log_q


def gaussian_kl(m1, S1, m2, S2):
    """KL(N(m1, S1) ‖ N(m2, S2)) in closed form."""
    d = m1.shape[0]
    S2inv = torch.linalg.inv(S2)
    diff = m2 - m1
    return 0.5 * (torch.trace(S2inv @ S1) + diff @ S2inv @ diff - d + torch.logdet(S2) - torch.logdet(S1))


def gaussian_target(m2, S2):
    """log p̃ of N(m2, S2) without its constant, and the constant log Z."""
    P = torch.linalg.inv(S2)
    return (lambda x: -0.5 * (((x - m2) @ P) * (x - m2)).sum(-1)), 0.5 * torch.logdet(2 * math.pi * S2).item()


@pytest.mark.parametrize("dim,width,hidden", [(2, 8, (8, 8)), (2, 64, (32, 32)), (2, 1, ()), (3, 5, (4,))])
def test_matched_nf_has_the_cnf_parameter_count_within_dim(dim, width, hidden):
    """K = round(P / (2n + 1)) layers give |5K - P| <= n in 2D, checked on the built models."""
    cnf_params = count_parameters(HyperPlanarField(dim, width, hidden))
    layers = density.matched_nf_layers(cnf_params, dim)
    nf_params = count_parameters(PlanarFlow(dim, layers))
    assert nf_params == layers * (2 * dim + 1)
    assert abs(nf_params - cnf_params) <= dim
    assert abs(nf_params - cnf_params) <= min(abs((layers + s) * (2 * dim + 1) - cnf_params) for s in (-1, 1))
    quick = density.get_preset("quick")
    p = HyperPlanarField.count_parameters(2, quick.ml_width, quick.hidden)
    assert abs(density.matched_nf_layers(p) * 5 - p) <= 2


def test_kl_estimate_against_closed_form_gaussians():
    m1, s1 = torch.tensor([0.3, -1.0]), torch.tensor([0.7, 1.6])
    m2, S2 = torch.tensor([1.0, 0.5]), torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    log_target, log_z = gaussian_target(m2, S2)
    kl, se = density.kl_estimate(Gaussian(m1, s1.log()), log_target, log_z, 200_000, batch=50_000)
    want = gaussian_kl(m1, torch.diag(s1 ** 2), m2, S2).item()
    assert abs(kl - want) < 4 * se and se < 0.01, (kl, want, se)
    # A CNF with dz/dt = Az: q = N(0, e^A e^Aᵀ); its samples and log-densities come from the augmented solve.
    A = torch.tensor([[0.2, -0.5], [0.3, -0.1]])
    cnf = CNF(Linear(A.clone()), dim=2, trace="exact", rtol=1e-9, atol=1e-9)
    kl, se = density.kl_estimate(cnf, log_target, log_z, 20_000)
    E = torch.linalg.matrix_exp(A)
    want = gaussian_kl(torch.zeros(2), E @ E.T, m2, S2).item()
    assert abs(kl - want) < 4 * se, (kl, want, se)


def test_fit_kl_reaches_the_closed_form_minimiser():
    """A diagonal Gaussian q fitted to a diagonal Gaussian p: the minimiser is q = p, KL = 0."""
    m2, s2 = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5])
    log_target, log_z = gaussian_target(m2, torch.diag(s2 ** 2))
    q = Gaussian([0.0, 0.0], [0.0, 0.0])
    history = fit_kl(q, log_target, iterations=600, batch_size=256, lr=0.05, anneal_iterations=100, verbose=False)
    assert torch.allclose(q.mean, m2, atol=0.05) and torch.allclose(q.log_std.exp(), s2, atol=0.05)
    assert history.complete and history.iterations_run == 600
    kl = gaussian_kl(q.mean.detach(), torch.diag(q.log_std.detach().exp() ** 2), m2, torch.diag(s2 ** 2)).item()
    assert 0 <= kl < 2e-3, kl
    # The objective at β = 1 is KL - log Z: its Monte Carlo mean at the fit equals the closed form.
    x, log_q = q.sample_with_log_prob(100_000, generator=torch.Generator().manual_seed(1))
    assert abs((log_q - log_target(x)).mean().item() + log_z - kl) < 0.01


def numbers(results):
    """The measured numbers of a run (no times, paths or provenance)."""
    keep = {}
    for target, slot in results["density_matching"].items():
        for kind in ("nf", "cnf"):
            for size, r in slot[kind].items():
                keep[target, kind, size] = (r["params"], r["kl"], r["kl_se"], r["final_loss"])
    for name, slot in results["maximum_likelihood"].items():
        for kind in ("nf", "cnf"):
            for repeat, r in slot[kind].items():
                keep[name, kind, repeat] = (r["params"], r["test_nll"], r["test_nll_se"], r["final_loss"],
                                            r["grid_mass"])
    return keep


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    straight = density.run("quick", out=str(tmp_path / "a"), datasets=("two_moons",), verbose=False, **TINY)
    assert straight["status"] == "complete"
    # budget 0: every call stops after one more iteration (with a checkpoint); rerun until complete.
    calls = 0
    while True:
        calls += 1
        resumed = density.run("quick", out=str(tmp_path / "b"), datasets=("two_moons",), verbose=False,
                              budget_s=0.0, **TINY)
        on_disk = json.loads((tmp_path / "b" / "results.json").read_text())
        assert on_disk["status"] == resumed["status"]
        if resumed["status"] == "complete":
            break
        assert calls < 40
    assert calls > 5
    assert resumed["provenance"]["wall_time_total_s"] > resumed["provenance"]["wall_time_s"] > 0
    assert numbers(resumed) == numbers(straight)
    for name in ("kl-u1-cnf-2", "ml-two_moons-nf-r0"):
        a = torch.load(tmp_path / "a" / "checkpoints" / f"{name}.pt", weights_only=True)["model"]
        b = torch.load(tmp_path / "b" / "checkpoints" / f"{name}.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"another configuration \(kl_iterations_nf: \d+ → 8\); use another --out"):
        density.run("quick", out=str(tmp_path / "a"), datasets=("two_moons",), verbose=False,
                    **{**TINY, "kl_iterations_nf": 8})


def test_paired_nll_differences_against_the_models_log_densities(tmp_path):
    """Each CNF-minus-NF entry is the mean and standard error of the per-point differences of the two
    models' log-densities on the test points; a rerun of a finished run that lacks them adds the same."""
    small = {**TINY, "ml_repeats": 2}
    results, models = density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",),
                                  return_models=True, verbose=False, **small)
    slot = results["maximum_likelihood"]["two_moons"]
    assert sorted(slot["paired"]) == ["cnf-r0 - nf-r0", "cnf-r0 - nf-r1", "cnf-r1 - nf-r0", "cnf-r1 - nf-r1"]
    device = next(models[("ml", "two_moons", "cnf", 0)].parameters()).device    # the run's device
    test = toy2d.sample("two_moons", small["n_test"], seed=2).to(device)
    eval_tol = density.get_preset("quick").eval_tol
    for i in range(2):
        cnf = models[("ml", "two_moons", "cnf", i)]
        with torch.no_grad():
            log_cnf = CNF(cnf.field, trace=cnf.trace, adjoint=False, rtol=eval_tol, atol=eval_tol).log_prob(test)
        for j in range(2):
            with torch.no_grad():
                d = (models[("ml", "two_moons", "nf", j)].log_prob(test) - log_cnf).double()
            entry = slot["paired"][f"cnf-r{i} - nf-r{j}"]
            assert entry["difference"] == pytest.approx(float(d.mean()), abs=1e-6)
            assert entry["difference"] == pytest.approx(slot["cnf"][str(i)]["test_nll"] - slot["nf"][str(j)]["test_nll"],
                                                        abs=1e-12)
            assert entry["se"] == pytest.approx(float(d.std()) / math.sqrt(len(d)), rel=1e-4)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["maximum_likelihood"]["two_moons"]["paired"] == slot["paired"]
    del on_disk["maximum_likelihood"]["two_moons"]["paired"]
    (tmp_path / "results.json").write_text(json.dumps(on_disk))
    again = density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",), verbose=False, **small)
    assert again["maximum_likelihood"]["two_moons"]["paired"] == slot["paired"]


def test_command_line_writes_the_run_as_json(tmp_path):
    out = tmp_path / "cli"
    small = dict(kl_eval_samples=500, entropy_samples=2000, n_train=300, n_test=300, kl_batch=32, ml_batch=32)
    command = [sys.executable, "-m", "nodelib.experiments", "density", "--preset", "quick", "--out", str(out),
               "--sizes", "1", "--datasets", "two_moons", "--iterations", "3", "--threads", "1", "--quiet",
               *[f"--set={k}={v}" for k, v in small.items()]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["preset"] == "quick"
    assert list(results["maximum_likelihood"]) == ["two_moons"] and results["config"]["datasets"] == ["two_moons"]
    for key in ("device", "torch", "date", "wall_time_s", "command"):
        assert results["provenance"][key] is not None, key
    assert results["provenance"]["command"].startswith("python -m nodelib.experiments density")
    assert results["provenance"]["device"] == "cpu"            # by default even where CUDA exists (density.run)
    assert sorted(p.name for p in out.glob("*.png")) == ["fig4-u1.png", "fig5.png"]
    # The same configuration in-process gives the same numbers.
    same = density.run("quick", sizes=(1,), datasets=("two_moons",), kl_iterations_nf=3, kl_iterations_cnf=3, ml_iterations=3, verbose=False,
                       **small)
    assert numbers(results) == numbers(json.loads(json.dumps(same)))
    assert all(math.isfinite(v) for values in numbers(results).values() for v in values)


def test_a_run_over_leading_sizes_repeats_the_first_models_of_the_run_over_all(tmp_path):
    """Splitting Fig. 4's sizes over runs: a run over a leading part of the sizes gives, bit for bit, the
    models that the run over all sizes trains first (same job order, hence the same seeds)."""
    small = {**TINY, "sizes": (1, 2)}
    both = density.run("quick", out=str(tmp_path / "both"), parts=("kl",), verbose=False, **small)
    first = density.run("quick", out=str(tmp_path / "first"), parts=("kl",), verbose=False, **{**small, "sizes": (1,)})
    for kind in ("nf", "cnf"):
        a, b = (r["density_matching"]["u1"][kind]["1"] for r in (both, first))
        assert (a["kl"], a["kl_se"], a["final_loss"]) == (b["kl"], b["kl_se"], b["final_loss"])
        sa = torch.load(tmp_path / "both" / "checkpoints" / f"kl-u1-{kind}-1.pt", weights_only=True)["model"]
        sb = torch.load(tmp_path / "first" / "checkpoints" / f"kl-u1-{kind}-1.pt", weights_only=True)["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _record(status, fig4=(), fig5=()):
    """A recorded run holding both Fig. 4 models at each (target, size) of fig4 and Fig. 5 on fig5."""
    kl = {}
    for target, size in fig4:
        slot = kl.setdefault(target, {"nf": {}, "cnf": {}})
        for kind in ("nf", "cnf"):
            slot[kind][str(size)] = {"params": 5 * size, "kl": 0.1, "kl_se": 0.01}
    ml = {name: {"entropy": 1.0, "nf": {"0": {"params": 5, "test_nll": 1.1}}, "cnf": {"0": {"params": 5, "test_nll": 1.05}}}
          for name in fig5}
    return pathlib.Path("results/x/results.json"), {"status": status, "density_matching": kl, "maximum_likelihood": ml}


def test_still_to_run_lists_the_missing_pieces_as_commands_that_cover_them():
    full = density.PRESETS["full"]
    assert [what for what, _ in density.still_to_run([])] == [
        "Fig. 4 on u1, u2, u3, u4", "Fig. 5 on two_circles", "Fig. 5 on two_moons"]
    recorded = [_record("complete", [("u1", s) for s in (1, 2, 8)], ["two_moons"]),
                _record("complete", [("u1", s) for s in (32, 64)] + [("u2", s) for s in (1, 2, 8)]),
                _record("incomplete", [("u3", s) for s in full.sizes], ["two_circles"])]   # incomplete: not counted
    todo = density.still_to_run(recorded)
    assert [what for what, _ in todo] == ["Fig. 4 on u2, K = M = 32, 64", "Fig. 4 on u3, u4", "Fig. 5 on two_circles"]
    # Each command, parsed by the command line, asks for exactly the missing targets, sizes and data sets.
    from nodelib.experiments.__main__ import parser
    asked = []
    for _, command in todo:
        args = parser().parse_args(command.split()[3:])
        assert args.preset == "full" and args.out.startswith("results/density-full-")
        asked.append((args.parts, args.targets, args.sizes, args.datasets))
    assert asked == [("kl", "u2", "32,64", None), ("kl", "u3,u4", None, None), ("ml", None, None, "two_circles")]
    done = [_record("complete", [(t, s) for t in full.targets for s in full.sizes], full.datasets)]
    assert density.still_to_run(done) == []
    paper = _record("complete", [], full.datasets)  # Fig. 5 in the paper's configuration is another experiment
    paper[1]["config"] = {"ml_width": 64, "ml_nf_layers": 64}
    assert [what for what, _ in density.still_to_run([paper])][-2:] == ["Fig. 5 on two_circles", "Fig. 5 on two_moons"]


def test_fig5_in_the_papers_configuration_has_64_planar_layers_against_64_units(tmp_path):
    """Chen et al.'s Fig. 5: a CNF with 64 units against an NF of 64 one-unit (planar) layers."""
    assert (density.PAPER["ml_cnf_width"], density.PAPER["ml_nf_layers"], density.PAPER["sizes"]) == (64, 64, (2, 8, 32))
    results = density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",), verbose=False,
                          **{**TINY, "ml_width": 64, "ml_nf_layers": 64, "ml_repeats": 1})
    slot = results["maximum_likelihood"]["two_moons"]
    assert slot["nf"]["0"]["params"] == 64 * 5   # u, w in R^2 and b per layer
    assert slot["nf"]["0"]["layers"] == 64
    assert slot["cnf"]["0"]["params"] == HyperPlanarField.count_parameters(2, 64, density.get_preset("quick").hidden)


def test_bad_arguments():
    with pytest.raises(ValueError, match="preset"):
        density.get_preset("huge")
    with pytest.raises(ValueError, match="targets"):
        density.get_preset("quick", targets=("u9",))
    with pytest.raises(ValueError, match="datasets"):
        density.get_preset("quick", datasets=("two_moon",))
    # One name given as a string selects that name (not its letters).
    assert density.get_preset("quick", datasets="two_moons").datasets == ("two_moons",)
    assert density.get_preset("quick", targets="u2").targets == ("u2",)
    with pytest.raises(ValueError, match="not fields"):
        density.get_preset("quick", layers=3)
    with pytest.raises(ValueError, match="parts"):
        density.run("quick", parts=("fig4",))
    with pytest.raises(ValueError, match="params"):
        density.matched_nf_layers(0)
    with pytest.raises(ValueError, match=r"^compiled must be False, True or 'eager', got 'yes'"):
        density.get_preset("quick", compiled="yes")


def test_a_truncated_results_file_is_named(tmp_path):
    """A rerun reads the previous results.json: a truncated one gives an error naming it, before any fit."""
    path = tmp_path / "results.json"
    path.write_text('{"experiment": "cnf-vs-nf", "config": {')
    with pytest.raises(ValueError, match="is not valid JSON") as info:
        density.run("quick", out=str(tmp_path), verbose=False, **TINY)
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_regularised_run_trains_its_cnfs_on_the_penalised_loss_and_reports_them_unregularised(tmp_path):
    """``--set kinetic_weight=...``: the CNF's recorded loss is its NLL plus the weighted kinetic energy;
    its test NLL comes from the same field without the penalty, at the evaluation tolerance; the NF,
    trained first with the same seeds, is the unregularised run's bit for bit."""
    small = {**TINY, "log_every": 1}
    plain = density.run("quick", parts=("ml",), datasets=("two_moons",), verbose=False, **small)
    results, models = density.run("quick", parts=("ml",), datasets=("two_moons",), verbose=False,
                                  return_models=True, kinetic_weight=0.5, **small)
    slot = results["maximum_likelihood"]["two_moons"]
    cnf, record = models[("ml", "two_moons", "cnf", 0)], slot["cnf"]["0"]
    assert cnf.penalty_weights == {"kinetic": 0.5}
    for (i, loss), (j, parts) in zip(record["losses"], record["parts"]):
        assert i == j and loss == pytest.approx(parts["nll"] + 0.5 * parts["kinetic"], rel=1e-6)
    assert [row[0] for row in record["train_nfe"]] == list(range(1, small["ml_iterations"] + 1))
    eval_tol = density.get_preset("quick").eval_tol
    test = toy2d.sample("two_moons", small["n_test"], seed=2)
    with torch.no_grad():
        reference = -CNF(cnf.field, trace="closed_form", adjoint=False, rtol=eval_tol, atol=eval_tol
                         ).log_prob(test).double().mean()
    assert record["test_nll"] == pytest.approx(float(reference), abs=1e-9)
    assert slot["nf"]["0"]["test_nll"] == plain["maximum_likelihood"]["two_moons"]["nf"]["0"]["test_nll"]
    assert record["test_nll"] != plain["maximum_likelihood"]["two_moons"]["cnf"]["0"]["test_nll"]


def test_a_jacobian_penalty_needs_the_exact_trace():
    with pytest.raises(ValueError, match=r"jacobian_weight=0.1 needs trace='exact'.*--set trace=exact"):
        density.get_preset("quick", jacobian_weight=0.1)
    with pytest.raises(ValueError, match=r"trace='hutch' must be 'closed_form' or 'exact'"):
        density.get_preset("quick", trace="hutch")
    cnf = density.build_cnf(4, density.get_preset("quick", jacobian_weight=0.1, trace="exact"),
                            device=torch.device("cpu"))
    assert cnf.penalty_weights == {"jacobian": 0.1} and cnf.trace == "exact"


def test_a_run_recorded_before_a_field_existed_resumes_and_reads_as_the_default(tmp_path):
    """Fields added to the preset since a run was recorded (the regularisation weights, the trace,
    log_every, compiled) take their defaults, which is how that run behaved: it still resumes, and its
    configuration compares equal to the preset's."""
    small = {**TINY, "ml_iterations": 2}
    first = density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",), verbose=False,
                        **small)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for field in ("kinetic_weight", "jacobian_weight", "trace", "log_every", "compiled"):
        del on_disk["config"][field]
    (tmp_path / "results.json").write_text(json.dumps(on_disk))
    assert density.recorded_config(on_disk["config"]) == first["config"]
    again = density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",), verbose=False,
                        **small)
    assert numbers(again) == numbers(first)
    with pytest.raises(ValueError, match=r"another configuration \(kinetic_weight: 0.0 → 0.1\)"):
        density.run("quick", out=str(tmp_path), parts=("ml",), datasets=("two_moons",), verbose=False,
                    kinetic_weight=0.1, **small)


def test_the_compile_flag_trains_the_cnfs_compiled_with_the_default_training(tmp_path, monkeypatch):
    """``--compile``: Fig. 4's CNF trains on nodelib's compiled path, its solver step compiled by torch.compile
    (tens of seconds on a small CPU), with the default path's losses, counts and KL, to rounding."""
    monkeypatch.setattr(nodelib.compiled, "_compiled", {})  # (the compiled steps of this process, by method)
    command = ["density", "--preset", "quick", "--parts", "kl", "--sizes", "2", "--iterations", "3", "--threads",
               "1", "--quiet", "--set", "kl_batch=32", "--set", "kl_eval_samples=500"]
    runs = {}
    for flag in ([], ["--compile"]):
        out = tmp_path / ("compiled" if flag else "default")
        assert main([*command, "--out", str(out), *flag]) == 0
        runs[bool(flag)] = json.loads((out / "results.json").read_text())
    assert list(nodelib.compiled._compiled) == ["dopri5"]
    assert runs[True]["config"]["compiled"] is True and runs[False]["config"]["compiled"] is False
    ours, theirs = (runs[flag]["density_matching"]["u1"]["cnf"]["2"] for flag in (True, False))
    assert [loss for _, loss in ours["losses"]] == pytest.approx([loss for _, loss in theirs["losses"]], rel=1e-12)
    assert ours["train_nfe"] == theirs["train_nfe"]
    assert ours["kl"] == pytest.approx(theirs["kl"], rel=1e-12)
    nf = (runs[flag]["density_matching"]["u1"]["nf"]["2"]["kl"] for flag in (True, False))
    assert next(nf) == next(nf)  # the NF is never compiled
