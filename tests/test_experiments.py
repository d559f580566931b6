"""nodelib.experiments: the Table 1 models, their measurements, resumable runs and the command line.

References: parameter counts by hand from the layer shapes; the ODE block against torchdiffeq and
the adjoint gradient against direct backpropagation; backward memory against the states the adjoint keeps;
a resumed run against an uninterrupted one; the command line against the same run in-process.
"""
import json
import pathlib
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import torch
import torchdiffeq
from torch import nn

import nodelib
from nodelib.dynamics import ConvField
from nodelib.data.images import load_images
from nodelib.experiments import (MODELS, PAPER_TABLE1, ODEBlock, SolverSettings, build_classifier, count_parameters,
                                 get_preset, memory_against_steps, paired_error_difference, run_mnist)
from nodelib.experiments import density
from nodelib.experiments.__main__ import main as command_line
from nodelib.experiments.mnist import backward_memory, load_model, random_shift, to_tensors
from nodelib.experiments.runs import pick_device, recorded_results
from nodelib.storage import CheckpointError, load_checkpoint, save_checkpoint, write_json_atomic

from fields import rel

ROOT = pathlib.Path(__file__).resolve().parents[1]


def expected_params(kind, C, side, hidden=300):
    """Parameter counts from the layer shapes (weights + biases; group norms: scale + shift)."""
    n_down = 2 if side >= 16 else 1
    stem = (1 * 9 * C + C) + n_down * (2 * C + 16 * C * C + C)   # 3x3 conv; (norm, 4x4 stride-2 conv) x n
    head = 2 * C + (C * 10 + 10)                                   # norm, linear
    block = 2 * (2 * C) + 2 * (9 * C * C)                          # two norms, two bias-free 3x3 convs
    field = 3 * (2 * C) + 2 * (9 * (C + 1) * C + C)                # three norms, two 3x3 convs on [h, t]
    return {"mlp": (side * side + 1) * hidden + (hidden + 1) * 10, "resnet": stem + 6 * block + head,
            "rknet": stem + field + head, "odenet": stem + field + head}[kind]


@pytest.mark.parametrize("C,side", [(64, 28), (32, 8), (6, 28)])
def test_parameter_counts(C, side):
    for kind in MODELS:
        assert count_parameters(build_classifier(kind, image_size=side, channels=C)) == expected_params(kind, C, side)


def test_table1_scale_and_the_third():
    """At the paper's width the counts are Table 1's (0.24 M, 0.60 M, 0.22 M), and the ODE-Net has
    about a third of the ResNet's parameters; the quick preset keeps the ratio near a third."""
    full = {k: count_parameters(build_classifier(k, image_size=28, channels=64)) for k in MODELS}
    assert full == {"mlp": 238_510, "resnet": 576_778, "rknet": 208_266, "odenet": 208_266}
    for kind in MODELS:
        assert abs(full[kind] / PAPER_TABLE1[kind]["params"] - 1) < 0.06, kind
    assert 0.33 < full["odenet"] / full["resnet"] < 0.40          # paper: 0.22 / 0.60 = 0.37
    quick = get_preset("quick")
    q = {k: count_parameters(build_classifier(k, image_size=8, channels=quick.channels)) for k in MODELS}
    assert 0.25 < q["odenet"] / q["resnet"] < 0.40


def test_conv_field_is_a_convolution_of_state_and_time():
    """K(t, u) = conv([u, t]) equals conv of u with the state kernels plus t times the time kernel
    applied to a ones image (zero-padded): the time channel by linearity."""
    f = ConvField(4, groups=2)
    z, t = torch.randn(3, 4, 5, 5), torch.tensor(0.7)
    conv = f.conv1
    u = torch.relu(f.norm1(z))
    ones = torch.ones(3, 1, 5, 5)
    split = (nn.functional.conv2d(u, conv.weight[:, :4], conv.bias, padding=1)
             + t * nn.functional.conv2d(ones, conv.weight[:, 4:], padding=1))
    assert rel(f._conv(conv, t, u), split) < 1e-12
    assert count_parameters(f) == 2 * (5 * 4 * 9 + 4) + 6 * 4
    assert count_parameters(ConvField(4, groups=2, time_dependent=False)) == 2 * (4 * 4 * 9 + 4) + 6 * 4
    with pytest.raises(ValueError, match="groups"):
        ConvField(6, groups=4)
    with pytest.raises(ValueError, match="z must have shape"):
        f(t, torch.randn(3, 5, 5, 5))


def test_ode_blocks_against_torchdiffeq_and_direct_backprop():
    """RK-Net's block is torchdiffeq's rk4 over [0, 1]; an adjoint ODE block's gradients (input and
    parameters) match direct backpropagation through the same adaptive solve."""
    x = torch.rand(5, 1, 8, 8)
    rk = build_classifier("rknet", image_size=8, channels=4, solver=SolverSettings("rk4", adjoint=False, steps=3))
    z0 = rk[:4](x)
    field = rk[4].field
    expected = torchdiffeq.odeint(field, z0, torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 1 / 3})[-1]
    assert rel(rk[4](z0), expected) < 1e-14
    assert rk[4].stats.nfe_forward == 12                            # rk4: four evaluations per step

    z = torch.randn(6, 3)

    def grads(adjoint):
        torch.manual_seed(3)
        block = ODEBlock(nodelib.MLPField(3, hidden=(16,)),
                         SolverSettings("dopri5", adjoint=adjoint, rtol=1e-10, atol=1e-10))
        z_in = z.clone().requires_grad_(True)
        block(z_in).pow(2).sum().backward()
        return [z_in.grad] + [p.grad for p in block.parameters()], block.stats

    direct, _ = grads(False)
    adjoint, stats = grads(True)
    assert rel(adjoint, direct) < 1e-7
    assert stats.nfe_backward > 0 and stats.nfe_forward > 0


def test_odenet_adjoint_gradient_converges_to_direct_backprop():
    """The ODE-Net's field (ReLU, group norms) is not smooth, so its adjoint gradient differs from
    direct backpropagation by a discretisation error; the error shrinks as the tolerance does."""
    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,))

    def grads(adjoint, tol):
        torch.manual_seed(3)
        model = build_classifier("odenet", image_size=8, channels=4,
                                 solver=SolverSettings("dopri5", adjoint=adjoint, rtol=tol, atol=tol))
        nn.functional.cross_entropy(model(x), y).backward()
        return [p.grad for p in model.parameters()]

    errors = [rel(grads(True, tol), grads(False, tol)) for tol in (1e-5, 1e-7)]
    assert errors[1] < errors[0] / 5 and errors[1] < 0.02


def test_backward_memory_flat_for_the_adjoint_growing_for_direct_backprop():
    steps = (2, 4, 8)
    m = memory_against_steps(steps, channels=4, image_size=8, batch_size=3, dtype=torch.float64)
    assert m["nfe"] == [4 * n for n in steps]
    assert m["odenet"][0] == m["odenet"][1] == m["odenet"][2]        # flat in the number of steps
    growth = np.diff(m["rknet"]) / np.diff(steps)
    assert growth[0] == growth[1]                                   # linear: the same bytes every step
    state = 3 * 4 * 3 * 3 * 8                                       # one (batch, C, 3, 3) float64 state
    assert growth[0] >= 4 * state                                   # at least a state per stage
    # The adjoint keeps z(0), z(1) and t: exactly one state (and t) more than no block at all.
    x, y = torch.rand(3, 1, 8, 8), torch.randint(0, 10, (3,))
    model = build_classifier("odenet", image_size=8, channels=4)
    with_block = backward_memory(model, x, y)
    model[4] = nn.Identity()
    assert with_block - backward_memory(model, x, y) == state + 2 * 8


def test_random_shift_translates_with_zero_fill():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float64).reshape(2, 1, 5, 5) + 1
    out = random_shift(x, 2, torch.Generator().manual_seed(7))
    offsets = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(7)) - 2
    for i in range(2):
        dy, dx = offsets[:, i].tolist()           # output pixel (r, c) is input pixel (r + dy, c + dx)
        expected = torch.zeros(5, 5, dtype=x.dtype)
        for r in range(5):
            for c in range(5):
                if 0 <= r + dy < 5 and 0 <= c + dx < 5:
                    expected[r, c] = x[i, 0, r + dy, c + dx]
        assert torch.equal(out[i, 0], expected)
    assert random_shift(x, 0, torch.Generator()) is x


def test_presets_and_their_checks():
    full = get_preset("full")
    assert (full.channels, full.dataset, full.rk_steps) == (64, "mnist", 4)
    assert [full.lr_at(e) for e in (0, 14, 15, 21, 23, 29)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert [full.lr_at(0, f) for f in (0.25, 0.5)] == pytest.approx([0.025, 0.05])   # one-epoch warm-up
    assert get_preset("quick").lr_at(0, 0.1) == get_preset("quick").lr
    assert get_preset("quick", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="preset='huge'"):
        get_preset("huge")
    with pytest.raises(ValueError, match="not fields of Preset"):
        get_preset("quick", epoch=3)
    with pytest.raises(ValueError, match="dataset='svhn'"):
        get_preset("quick", dataset="svhn")
    with pytest.raises(ValueError, match="kind='vgg'"):
        build_classifier("vgg", image_size=8)
    with pytest.raises(ValueError, match="models="):
        run_mnist("quick", models=["mlp", "vgg"])


TINY = dict(channels=4, train_limit=96, batch_size=32, epochs=3, threads=1)


def test_resume_is_bit_identical(tmp_path):
    """A run stopped by its time budget after one epoch and started again ends exactly where an
    uninterrupted run ends: weights, optimizer state, history and test error. On the CPU: GPU
    convolutions are not bitwise deterministic (run_mnist's docstring)."""
    models = ["resnet", "odenet"]
    whole = run_mnist("quick", out=str(tmp_path / "whole"), models=models, device="cpu", **TINY)
    first = run_mnist("quick", out=str(tmp_path / "parts"), models=models, budget_s=0.0, device="cpu", **TINY)
    assert first["status"] == "incomplete" and first["models"]["resnet"] == {"epochs_done": 1}
    on_disk = json.loads((tmp_path / "parts" / "results.json").read_text())
    assert on_disk["status"] == "incomplete"
    second = run_mnist("quick", out=str(tmp_path / "parts"), models=models, device="cpu", **TINY)
    assert second["status"] == "complete"
    for kind in models:
        a = torch.load(tmp_path / "whole" / "checkpoints" / f"{kind}.pt", weights_only=True)
        b = load_checkpoint(tmp_path / "parts" / "checkpoints" / f"{kind}.pt")
        assert a["epoch"] == b["epoch"] == 3
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), key
        for key, value in a["optimizer"]["state"].items():
            assert torch.equal(value["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
        ra, rb = whole["models"][kind], second["models"][kind]
        assert ra["test_error"] == rb["test_error"] and ra["test_wrong"] == rb["test_wrong"]
        assert ra["backward_memory_bytes"] == rb["backward_memory_bytes"]
        for key in ("train_loss", "test_error", "nfe_forward_iter", "nfe_backward_iter"):
            assert ra["history"].get(key) == rb["history"].get(key)
    with pytest.raises(ValueError, match="another configuration"):
        run_mnist("quick", out=str(tmp_path / "parts"), models=["resnet"], **{**TINY, "channels": 6})


def test_command_line_reproduces_a_quick_run(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "nodelib.experiments", "mnist", "--preset", "quick", "--out", str(out),
           "--models", "mlp,rknet", "--epochs", "2", "--train-limit", "96", "--threads", "1", "--seed", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[rknet] epoch 2/2" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["preset"] == "quick" and results["dataset"] == "digits"
    assert results["config"]["seed"] == 3 and get_preset("quick").seed != 3
    assert results["models_requested"] == ["mlp", "rknet"] and list(results["models"]) == ["mlp", "rknet"]
    prov = results["provenance"]
    assert prov["torch"] == torch.__version__ and prov["nodelib"] == nodelib.__version__
    assert prov["command"].startswith("python -m nodelib.experiments mnist")
    assert prov["device"] == ("cuda" if torch.cuda.is_available() else "cpu")          # chosen automatically
    assert results["models"]["rknet"]["nfe_forward"] == 4 * get_preset("quick").rk_steps
    assert results["models"]["rknet"]["nfe_backward"] is None and results["models"]["mlp"]["nfe_forward"] is None
    same = run_mnist("quick", models=["mlp", "rknet"], epochs=2, train_limit=96, threads=1, seed=3)
    other = run_mnist("quick", models=["mlp"], epochs=2, train_limit=96, threads=1)
    for kind in ("mlp", "rknet"):
        cli, here = results["models"][kind], same["models"][kind]
        assert cli["params"] == here["params"] == count_parameters(build_classifier(kind, image_size=8, channels=32))
        assert cli["test_error"] == here["test_error"]
        assert cli["history"]["train_loss"] == here["history"]["train_loss"]
    assert other["models"]["mlp"]["history"]["train_loss"] != results["models"]["mlp"]["history"]["train_loss"]
    # the recorded misclassified images, against the saved model's predictions computed here (same device)
    data = to_tensors(load_images("digits", seed=3), device=torch.device(prov["device"]))
    for kind in ("mlp", "rknet"):
        with torch.no_grad():
            predicted = load_model(str(out), kind, device=prov["device"])(data.test_x).argmax(dim=1)
        wrong = torch.nonzero(predicted != data.test_y).flatten().tolist()
        assert results["models"][kind]["test_wrong"] == wrong and len(wrong) > 0
        assert results["models"][kind]["test_error"] == len(wrong) / len(data.test_y)


def test_paired_error_difference_against_per_image_differences():
    """Mean and standard error of d_i = [a wrong] - [b wrong], computed from the whole vector d."""
    rng = np.random.default_rng(0)
    n = 1000
    a_wrong, b_wrong = rng.random(n) < 0.08, rng.random(n) < 0.05
    b_wrong[:40] = a_wrong[:40]                                     # correlated, as two models are
    d = a_wrong.astype(float) - b_wrong.astype(float)
    out = paired_error_difference(np.flatnonzero(a_wrong).tolist(), np.flatnonzero(b_wrong).tolist(), n)
    assert out["only_a"] == int((d == 1).sum()) and out["only_b"] == int((d == -1).sum())
    assert out["difference"] == pytest.approx(a_wrong.mean() - b_wrong.mean(), abs=1e-15)
    assert out["se"] == pytest.approx(d.std() / np.sqrt(n), rel=1e-12)
    same = paired_error_difference([3, 5], [5, 3], 10)
    assert same == {"only_a": 0, "only_b": 0, "difference": 0.0, "se": 0.0}
    with pytest.raises(ValueError, match="wrong_b must hold distinct int indices"):
        paired_error_difference([1], [2, 2], 10)
    with pytest.raises(ValueError, match=r"wrong_a must hold distinct int indices of test images in \[0, 10\)"):
        paired_error_difference([10], [], 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        paired_error_difference([], [], 0)


def test_recorded_results_reads_the_first_existing_folder(tmp_path):
    results = tmp_path / "results"
    assert recorded_results("cnf-vs-nf", folders=(str(tmp_path / "missing"),), repository=None) is None
    write_json_atomic(results / "a-run" / "results.json", {"experiment": "cnf-vs-nf", "preset": "full", "n": 1})
    write_json_atomic(results / "b-run" / "results.json", {"experiment": "cnf-vs-nf", "preset": "quick", "n": 2})
    write_json_atomic(results / "c.json", {"experiment": "mnist-table1", "preset": "full", "n": 3})
    write_json_atomic(results / "d.json", {"experiment": "cnf-vs-nf", "preset": "full", "n": 4})
    folders = (str(tmp_path / "missing"), str(results), str(tmp_path))
    found = recorded_results("cnf-vs-nf", folders=folders)
    assert [r["n"] for _, r in found] == [1, 4]
    assert [path for path, _ in found] == [results / "a-run" / "results.json", results / "d.json"]
    assert [r["n"] for _, r in recorded_results("cnf-vs-nf", "quick", folders=folders)] == [2]
    assert [r["n"] for _, r in recorded_results("mnist-table1", folders=folders)] == [3]
    assert recorded_results("other", folders=folders) == []


def test_recorded_results_name_a_truncated_file(tmp_path):
    write_json_atomic(tmp_path / "a-run" / "results.json", {"experiment": "cnf-vs-nf", "preset": "full"})
    path = tmp_path / "a-run" / "results.json"
    path.write_text(path.read_text()[:15])
    with pytest.raises(ValueError, match="is not valid JSON") as info:
        recorded_results("cnf-vs-nf", folders=(str(tmp_path),))
    assert str(path) in str(info.value)


def test_checkpoints_lacking_a_key_give_checkpoint_error(tmp_path):
    """load_model and a resumed run check the keys they read: a CheckpointError naming the key, not a KeyError."""
    out = tmp_path / "run"
    run_mnist("quick", out=str(out), models=["mlp"], device="cpu", **{**TINY, "epochs": 1})
    path = out / "checkpoints" / "mlp.pt"
    state = load_checkpoint(path)
    save_checkpoint(path, {k: v for k, v in state.items() if k != "optimizer"})
    with pytest.raises(CheckpointError, match=r"lacks \['optimizer'\]"):
        run_mnist("quick", out=str(out), models=["mlp"], device="cpu", **{**TINY, "epochs": 1})
    save_checkpoint(path, {k: v for k, v in state.items() if k != "model"})
    with pytest.raises(CheckpointError, match=r"lacks \['model'\]"):
        load_model(str(out), "mlp")


#: Command-line options for a run of a second or less: one model, one epoch, 96 images.
FAST = ["--models", "mlp", "--epochs", "1", "--train-limit", "96", "--threads", "1"]


def command_line_error(capsys, argv) -> tuple:
    """Run the command line in-process; it must stop as ``parser.error`` does: exit code 2, no traceback.
    Returns its stdout and stderr."""
    with pytest.raises(SystemExit) as info:
        command_line(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert err.startswith("usage: ") and "Traceback" not in err
    return out, err


def test_command_line_reports_invalid_values_as_usage_errors(tmp_path, capsys):
    out = tmp_path / "out"
    for option, value, message in (("--epochs", "0", "epochs must be a positive int, got 0"),
                                   ("--threads", "0", "threads must be a positive int, got 0"),
                                   ("--train-limit", "5", "train_limit must be an int of at least 10")):
        argv = ["mnist", "--out", str(out), "--device", "cpu", *FAST, option, value]
        assert message in command_line_error(capsys, argv)[1]
    assert not out.exists()


def test_command_line_creates_no_root_when_the_data_are_missing(tmp_path, monkeypatch):
    """MNIST is downloaded into --root only once the mirror answers: an unreachable one leaves no folder."""
    monkeypatch.setenv("NODELIB_MNIST_MIRROR", (tmp_path / "no-mirror").as_uri())
    root, out = tmp_path / "new" / "mnist", tmp_path / "out"
    with pytest.raises(urllib.error.URLError):
        command_line(["mnist", "--dataset", "mnist", "--root", str(root), "--out", str(out), "--device", "cpu", *FAST])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cuda_asked_for_without_cuda_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, err = command_line_error(capsys, ["mnist", "--out", str(tmp_path / "out"), "--device", "cuda", *FAST])
    assert "device='cuda' needs CUDA, which is not available" in err
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"device='{device}' needs CUDA, which is not available"):
            pick_device(device)
    with pytest.raises(ValueError, match="needs CUDA"):
        density.run("quick", device="cuda")
    assert pick_device() == pick_device("cpu") == torch.device("cpu")


def test_command_line_checks_out_before_loading_data(tmp_path, capsys):
    """An --out that is a file, or lies under one, is refused at once: nothing is loaded or trained."""
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    for out in (taken, taken / "run"):
        stdout, err = command_line_error(capsys, ["mnist", "--out", str(out), "--device", "cpu", *FAST])
        assert f"out='{out}': {taken} is a file, not a folder" in err and stdout == ""
    assert taken.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_resume_with_other_settings_names_the_changed_fields(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert command_line(["mnist", "--out", out, "--device", "cpu", *FAST]) == 0
    capsys.readouterr()
    _, err = command_line_error(capsys, ["mnist", "--out", out, "--device", "cpu", *FAST, "--epochs", "2",
                                         "--seed", "5"])
    assert "another configuration (epochs: 1 → 2, seed: 0 → 5); use another --out or the same settings" in err
    assert "channels" not in err


def test_command_line_refuses_root_for_the_digits(tmp_path, capsys):
    for dataset in ([], ["--dataset", "digits"]):
        argv = ["mnist", *dataset, "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "cpu", *FAST]
        _, err = command_line_error(capsys, argv)
        assert "root=" in err and "'digits' takes none" in err
    assert list(tmp_path.iterdir()) == []


def test_provenance_records_a_command_a_shell_can_run(monkeypatch):
    import shlex
    import sys
    from nodelib.experiments.runs import provenance
    argv = ["/x/nodelib/experiments/__main__.py", "density", "--set", "ml_hidden=(32, 32)", "--out", "a b"]
    monkeypatch.setattr(sys, "argv", argv)
    command = provenance(torch.device("cpu"))["command"]
    assert command == "python -m nodelib.experiments density --set 'ml_hidden=(32, 32)' --out 'a b'"
    assert shlex.split(command)[3:] == argv[1:]


@pytest.mark.parametrize("kind, solver", [("odenet", dict(method="dopri5", adjoint=True, rtol=1e-6, atol=1e-6)),
                                          ("rknet", dict(method="rk4", adjoint=False, steps=3))])
def test_an_ode_block_on_the_own_stepping_gives_the_default_logits_gradients_and_counts(kind, solver):
    """SolverSettings(compiled="eager"): nodelib's own steps (the compiled path, uncompiled) against
    torchdiffeq's, in float64: the same logits, parameter gradients and evaluation counts."""
    x, y = torch.rand(3, 1, 8, 8, dtype=torch.float64), torch.tensor([1, 4, 7])

    def run(compiled):
        torch.manual_seed(5)
        model = build_classifier(kind, image_size=8, channels=4,
                                 solver=SolverSettings(**solver, compiled=compiled)).double()
        logits = model(x)
        nn.functional.cross_entropy(logits, y).backward()
        block = next(m for m in model if isinstance(m, ODEBlock))
        return logits, [p.grad for p in model.parameters()], block.stats

    (logits, grads, stats), (own_logits, own_grads, own_stats) = run(False), run("eager")
    assert rel(own_logits, logits) < 1e-12 and rel(own_grads, grads) < 1e-10
    assert (own_stats.nfe_forward, own_stats.nfe_backward) == (stats.nfe_forward, stats.nfe_backward)
    assert stats.nfe_forward > 0 and (stats.nfe_backward > 0) == solver["adjoint"]


def test_solver_settings_refuse_a_bad_compiled_flag():
    with pytest.raises(ValueError, match="compiled must be False, True or 'eager'"):
        SolverSettings("dopri5", adjoint=True, compiled="yes")


def test_table1_on_the_own_stepping_trains_the_same_models(tmp_path):
    """run(compiled="eager"): the RK-Net and the ODE-Net on nodelib's own steps (the compiled path,
    uncompiled) train as on torchdiffeq's, to float32 rounding, with the same evaluation counts."""
    options = dict(models=["rknet", "odenet"], epochs=1, train_limit=96, threads=1, seed=3, verbose=False)
    default, own = run_mnist("quick", **options), run_mnist("quick", compiled="eager", **options)
    assert default["compiled"] is False and own["compiled"] == "eager"
    for kind in ("rknet", "odenet"):
        a, b = default["models"][kind], own["models"][kind]
        assert a["nfe_forward"] == b["nfe_forward"] and a["nfe_backward"] == b["nfe_backward"]
        losses_a, losses_b = np.array(a["history"]["train_loss"]), np.array(b["history"]["train_loss"])
        assert np.abs(losses_a - losses_b).max() < 1e-4 * np.abs(losses_a).max(), (losses_a, losses_b)
    with pytest.raises(ValueError, match="compiled must be False, True or 'eager'"):
        run_mnist("quick", compiled=1, **options)


def test_the_command_line_passes_compile_to_table1(monkeypatch, tmp_path):
    import nodelib.experiments.__main__ as cli
    seen = {}
    monkeypatch.setattr(cli, "run", lambda *a, **k: seen.update(k) or {"status": "complete"})
    for flag, expected in (([], False), (["--compile"], True)):
        assert command_line(["mnist", "--out", str(tmp_path / "out"), *flag]) == 0
        assert seen["compiled"] is expected
