"""nodelib.training.fit_density against the closed-form maximum-likelihood Gaussian, and its
checkpoints against an uninterrupted run."""
import math
import time

import pytest
import torch
from torch import nn

import nodelib

from nodelib.training import fit_density, fit_kl, mean_nll


class DiagonalGaussian(nn.Module):
    """N(μ, diag(σ^2)) with learnable μ and log σ; its MLE is the sample mean and (biased) std."""

    def __init__(self, dim):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_std = nn.Parameter(torch.zeros(dim))

    def log_prob(self, x):
        z = (x - self.mean) / self.log_std.exp()
        return (-0.5 * z ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def data():
    return torch.randn(2000, 2) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -3.0])


def test_fit_reaches_the_closed_form_maximum_likelihood():
    x = data()
    model = DiagonalGaussian(2)
    history = fit_density(model, x, iterations=600, batch_size=500, lr=0.05, log_every=200, verbose=False)
    mle = DiagonalGaussian(2)
    with torch.no_grad():
        mle.mean.copy_(x.mean(0))
        mle.log_std.copy_(x.std(0, unbiased=False).log())
    gap = mean_nll(model, x) - mean_nll(mle, x)
    assert 0 <= gap < 1e-3, gap
    assert [i for i, _ in history.losses] == [200, 400, 600] and history.iterations_run == 600


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run(tmp_path, capsys):
    x = data()
    torch.manual_seed(1)
    straight = DiagonalGaussian(2)
    fit_density(straight, x, iterations=40, lr=0.05, seed=3, log_every=10, verbose=False)

    # A run that fails at iteration 26 leaves the checkpoint of iteration 20; rerunning resumes there.
    torch.manual_seed(1)
    interrupted = DiagonalGaussian(2)
    path = tmp_path / "fit2.pt"

    class Stop(Exception):
        pass

    calls = {"n": 0}
    log_prob = interrupted.log_prob

    def failing(xb):
        calls["n"] += 1
        if calls["n"] > 25:
            raise Stop
        return log_prob(xb)
    interrupted.log_prob = failing
    with pytest.raises(Stop):
        fit_density(interrupted, x, iterations=40, lr=0.05, seed=3, checkpoint=path, checkpoint_every=20,
                    verbose=False)
    assert torch.load(path, weights_only=True)["iteration"] == 20
    interrupted.log_prob = log_prob
    history = fit_density(interrupted, x, iterations=40, lr=0.05, seed=3, checkpoint=path, checkpoint_every=20)
    assert "resumed from" in capsys.readouterr().out and history.iterations_run == 20
    for a, b in zip(straight.parameters(), interrupted.parameters()):
        assert torch.equal(a, b)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="iterations"):
        fit_density(DiagonalGaussian(2), data(), iterations=0)
    with pytest.raises(ValueError, match="data"):
        fit_density(DiagonalGaussian(2), torch.zeros(5), iterations=1)
    with pytest.raises(TypeError, match="log_prob"):
        fit_density(nn.Linear(2, 2), data(), iterations=1)
    with pytest.raises(ValueError, match="lr must be a positive float, got 'a'"):
        fit_density(DiagonalGaussian(2), data(), iterations=1, lr="a")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        mean_nll(DiagonalGaussian(2), data(), batch_size=0)
    with pytest.raises(ValueError, match=r"beta0 must be in \(0, 1\], got 'a'"):
        fit_kl(nodelib.PlanarFlow(2, 1, direction="generative"), lambda z: -z.pow(2).sum(-1), iterations=1,
               beta0="a")


def test_a_deadline_stops_after_a_checkpoint_and_the_rerun_finishes_bit_for_bit(tmp_path):
    x = data()
    torch.manual_seed(1)
    straight = DiagonalGaussian(2)
    fit_density(straight, x, iterations=30, lr=0.05, seed=3, verbose=False)
    torch.manual_seed(1)
    stopped = DiagonalGaussian(2)
    path = tmp_path / "fit.pt"
    first = fit_density(stopped, x, iterations=30, lr=0.05, seed=3, checkpoint=path, checkpoint_every=20,
                        deadline=time.monotonic() - 1, verbose=False)  # already passed: stop after one step
    assert not first.complete and first.iterations_run == 1
    assert torch.load(path, weights_only=True)["iteration"] == 1
    second = fit_density(stopped, x, iterations=30, lr=0.05, seed=3, checkpoint=path, verbose=False)
    assert second.complete and second.iterations_run == 29
    for a, b in zip(straight.parameters(), stopped.parameters()):
        assert torch.equal(a, b)


def test_resuming_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "fit.pt"
    fit_density(DiagonalGaussian(2), data(), iterations=10, lr=0.05, checkpoint=path, verbose=False)
    with pytest.raises(ValueError, match=r"written with iterations=10, lr=0.05, not iterations=20, lr=0.5"):
        fit_density(DiagonalGaussian(2), data(), iterations=20, lr=0.5, checkpoint=path, verbose=False)


HUTCHINSON_FIT = """
import os, signal, sys, torch, nodelib
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), trace="hutchinson", adjoint=False, rtol=1e-4, atol=1e-4)
data = torch.randn(200, 2)
log_prob, calls = cnf.log_prob, [0]
def dying(x, **kw):  # SIGKILL in the middle of iteration 13, after the checkpoint of iteration 10
    calls[0] += 1
    if calls[0] == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return log_prob(x, **kw)
cnf.log_prob = dying
nodelib.fit_density(cnf, data, iterations=20, batch_size=32, lr=0.05, seed=3, checkpoint=sys.argv[1],
                    checkpoint_every=5, verbose=False)
"""


def test_a_killed_hutchinson_fit_resumes_bit_for_bit(tmp_path):
    """Hutchinson's probe comes from PyTorch's global generator, so the checkpoint must hold it."""
    import subprocess
    import sys
    path = tmp_path / "fit.pt"
    killed = subprocess.run([sys.executable, "-c", HUTCHINSON_FIT, str(path)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert torch.load(path, weights_only=True)["iteration"] == 10

    def model():
        torch.manual_seed(0)
        cnf = nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), trace="hutchinson", adjoint=False, rtol=1e-4,
                          atol=1e-4)
        return cnf, torch.randn(200, 2)

    fit = dict(iterations=20, batch_size=32, lr=0.05, seed=3, verbose=False)
    straight, data = model()
    fit_density(straight, data, **fit)
    resumed, data = model()
    torch.manual_seed(1234)  # a new process: the global generator is anywhere
    history = fit_density(resumed, data, checkpoint=path, checkpoint_every=5, **fit)
    assert history.iterations_run == 10
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_objectives_must_be_per_sample():
    flow = nodelib.PlanarFlow(2, 1, direction="generative")
    with pytest.raises(ValueError, match=r"log_target\(x\) must return one value per sample, shape \(16,\), got \(\)"):
        fit_kl(flow, lambda z: -z.pow(2).sum(), iterations=1, batch_size=16, verbose=False)

    class Summed(DiagonalGaussian):
        def log_prob(self, x):
            return super().log_prob(x).sum()

    with pytest.raises(ValueError, match=r"model.log_prob\(x\) must return one value per sample, shape \(8,\)"):
        fit_density(Summed(2), data(), iterations=1, batch_size=8, verbose=False)


def test_a_non_finite_loss_is_warned_about_once():
    class Exploding(DiagonalGaussian):
        def log_prob(self, x):
            return super().log_prob(x) * float("inf")

    with pytest.warns(RuntimeWarning, match=r"the training loss is -?(inf|nan) at iteration 1;") as caught:
        fit_density(Exploding(2), data(), iterations=5, verbose=False)
    assert len([w for w in caught if "training loss" in str(w.message)]) == 1


def _rk4_cnf(adjoint):
    torch.manual_seed(0)
    return nodelib.CNF(nodelib.MLPField(2, hidden=(8,)), method="rk4", options=dict(step_size=0.25),
                       adjoint=adjoint)


@pytest.mark.parametrize("adjoint, backward", [(True, 16), (False, 0)])
def test_the_history_counts_each_iterations_evaluations(adjoint, backward):
    """rk4 on [0, 1] in 4 steps: 4 × 4 = 16 evaluations forwards, as many in the adjoint's backward
    solve on the same grid, none with direct backprop."""
    history = fit_density(_rk4_cnf(adjoint), torch.randn(100, 2), iterations=4, batch_size=16,
                          log_every=2, verbose=False)
    assert history.nfe == [(2, 16, backward), (4, 16, backward)]
    kl = fit_kl(_rk4_cnf(adjoint), lambda x: -x.pow(2).sum(-1), iterations=2, batch_size=16, log_every=1,
                verbose=False)
    assert kl.nfe == [(1, 16, backward), (2, 16, backward)]


def test_a_model_without_solves_records_no_evaluations():
    history = fit_density(DiagonalGaussian(2), data(), iterations=4, log_every=2, verbose=False)
    assert history.nfe == [] and [i for i, _ in history.elapsed] == [2, 4]


def test_evaluations_match_the_model_at_that_iteration_and_are_not_training_time():
    x, test = data(), data()
    torch.manual_seed(0)
    model = DiagonalGaussian(2)
    history = fit_density(model, x, iterations=6, lr=0.05, log_every=3, verbose=False,
                          evaluate=lambda m: (time.sleep(0.3), mean_nll(m, test))[1])
    assert [i for i, _ in history.evaluations] == [3, 6]
    assert history.evaluations[-1][1] == mean_nll(model, test)  # the model after the last iteration
    seconds = [s for _, s in history.elapsed]
    assert seconds == sorted(seconds) and history.total_seconds < 0.3  # the 0.6 s of sleeps excluded
    assert seconds[-1] <= history.total_seconds


def test_the_history_resumes_with_the_fit(tmp_path):
    def fit(**kwargs):
        return fit_density(_rk4_cnf(True), torch.ones(50, 2) * torch.arange(50.0)[:, None] / 50,
                           iterations=4, batch_size=8, log_every=1, checkpoint_every=1, verbose=False,
                           evaluate=lambda m: float(m.log_prob(torch.zeros(1, 2))), **kwargs)
    straight = fit()
    path = tmp_path / "fit.pt"
    first = fit(checkpoint=path, deadline=time.monotonic() - 1)
    assert not first.complete
    resumed = fit(checkpoint=path)
    assert resumed.nfe == straight.nfe and resumed.evaluations == straight.evaluations
    assert [i for i, _ in resumed.elapsed] == [1, 2, 3, 4]


def _linear_fit(model, path, until):
    """A least-squares fit of ``model`` by nodelib.training._optimise, stopping after ``until``."""
    from nodelib.training import _optimise
    x = torch.linspace(-1, 1, 64)[:, None]

    def loss_at(iteration, generator):
        noise = torch.randn(64, 1, generator=generator)
        return (model(x) - 3 * x - 0.1 * noise).pow(2).mean(), {}
    return _optimise(model, loss_at, iterations=30, lr=0.05, generator=torch.Generator().manual_seed(0),
                     log_every=10, checkpoint=path, checkpoint_every=100, verbose=False, deadline=None,
                     describe=lambda i, loss, parts: "", settings={}, until=until)


def test_a_fit_stopped_at_until_resumes_to_the_straight_runs_parameters(tmp_path):
    """``until`` stops early with a checkpoint while the cosine schedule still spans all iterations:
    resuming from it is bit for bit the run that never stopped."""
    torch.manual_seed(4)
    straight = nn.Linear(1, 1)
    _linear_fit(straight, None, None)
    torch.manual_seed(4)
    stopped = nn.Linear(1, 1)
    first = _linear_fit(stopped, tmp_path / "fit.pt", 12)
    assert first.complete and first.iterations_run == 12 and [i for i, _ in first.losses] == [10, 12]
    state = torch.load(tmp_path / "fit.pt", weights_only=True)
    assert state["iteration"] == 12 and state["schedule"]["T_max"] == 30
    rest = _linear_fit(stopped, tmp_path / "fit.pt", None)
    assert rest.iterations_run == 18 and [i for i, _ in rest.losses] == [10, 12, 20, 30]
    for a, b in zip(straight.parameters(), stopped.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="past until = 5"):
        _linear_fit(stopped, tmp_path / "fit.pt", 5)
    for bad in (0, 31, 2.5):
        with pytest.raises(ValueError, match="until must be an int in \\[1, iterations = 30\\]"):
            _linear_fit(nn.Linear(1, 1), None, bad)
