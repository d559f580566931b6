"""Figs. 4 and 5 of Chen et al. (2018) as the chapter "CNF against NF" shows them.

The recorded full-scale results of :mod:`nodelib.experiments.density` collected into tables
(:func:`kl_rows`, :func:`fig5_runs`, :func:`kl_frame`, :func:`ml_frame`, :func:`paired_frame`), and
the figures: one per Fig. 4 target (the target once, a row of NFs and a row of CNFs, one column per
size), one per Fig. 5 data set, and the divergences against the size over all targets
(:func:`plot_kl_against_size`). What the paper itself did is :data:`~nodelib.experiments.density.PAPER`.

A full-scale run keeps its numbers in ``results.json`` and its figures as PNG files beside it
(``fig4-<target>.png``, ``fig5.png``); its checkpoints stay with the run and are not in the
repository. So the full-scale figures are composed from the panels of the recorded PNG files
(:func:`png_panels` finds each panel's frame and crops inside it), and the quick run's from its live
models (:func:`live_fig4_panels`, :func:`live_fig5_panels`); both go through the same layouts
(:func:`plot_fig4`, :func:`plot_fig5`).

matplotlib, pandas and IPython (the book's extras) are imported where they are used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import pathlib
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..data import energies, toy2d
from . import density
from .runs import beside, read_png

__all__ = ["PAPER_FIG4_TARGETS", "run_quietly", "kl_rows", "fig5_runs", "kl_text", "difference", "kl_frame",
           "ml_frame", "paired_frame", "Panel", "png_panels", "recorded_fig4_panels", "recorded_fig5_panels",
           "live_fig4_panels", "live_fig5_panels", "plot_fig4", "plot_fig5", "plot_kl_against_size",
           "FIG4_BOUNDS", "FIG5_BOUNDS"]

#: The paper's Fig. 4 shows three target densities (rows 1 to 3 of the figure; its text does not
#: name them), beside :data:`~nodelib.experiments.density.PAPER`'s sizes and iterations. Neither of its figures states
#: the sizes of the CNF's hypernetwork.
PAPER_FIG4_TARGETS = 3

#: The square in which Fig. 4's samples are drawn (that of :func:`~nodelib.experiments.density.plot_density_matching`).
FIG4_BOUNDS = (-4.0, 4.0, -4.0, 4.0)
#: Fig. 5's squares per data set (those of :func:`~nodelib.experiments.density.plot_maximum_likelihood`).
FIG5_BOUNDS = {"two_circles": (-1.6, 1.6, -1.6, 1.6), "two_moons": (-3.5, 3.5, -3.5, 3.5)}

_TARGET_NAMES = {"u1": "a ring in two lobes", "u2": "a sine-shaped band", "u3": "the band split in two",
                 "u4": "the band with a branch"}
_DATASET_NAMES = {"two_circles": "two circles", "two_moons": "two moons"}


# ------------------------------------------------------------------------------------------ runs
def run_quietly(preset: str = "quick", **kwargs):
    """``density.run(preset, return_models=True, verbose=False, **kwargs)`` without its progress lines.

    Returns ``(results, models)`` as :func:`~nodelib.experiments.density.run` does. The lines a run prints belong to the
    command line; a chapter shows the results instead.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return density.run(preset, return_models=True, verbose=False, **kwargs)


# ---------------------------------------------------------------------------------------- tables
def kl_rows(recorded: Sequence[Tuple[pathlib.Path, dict]]) -> Dict[Tuple[str, int], dict]:
    """The Fig. 4 rows of every complete recorded run, by ``(target, size)``.

    ``recorded`` is :func:`nodelib.experiments.runs.recorded_results`'s list for ``"cnf-vs-nf"``;
    runs over different sizes of one target add up. Each row is one of :func:`~nodelib.experiments.density.kl_table`'s,
    with the run's folder added as ``"run"``.

    Raises:
        ValueError: two complete runs hold different results for the same target and size.
    """
    rows: Dict[Tuple[str, int], dict] = {}
    for path, results in recorded:
        if results.get("status") != "complete":
            continue
        for row in density.kl_table(results):
            key = (row["target"], row["size"])
            row = {**row, "run": pathlib.Path(path).parent.name}
            if key in rows and {k: v for k, v in rows[key].items() if k != "run"} != \
                    {k: v for k, v in row.items() if k != "run"}:
                raise ValueError(f"the runs {rows[key]['run']} and {row['run']} both hold Fig. 4 on "
                                 f"{key[0]} at K = M = {key[1]}, with different results.")
            rows.setdefault(key, row)
    return rows


def fig5_runs(recorded: Sequence[Tuple[pathlib.Path, dict]], *, paper: bool = False,
              regularised: bool = False) -> list:
    """The complete recorded runs with Fig. 5 results: those of the book's configuration (the NF's
    depth matched to the CNF's parameter count), or with ``paper=True`` those of the paper's (an NF
    of a given depth, ``config["ml_nf_layers"]``, against a CNF of ``config["ml_width"]`` units);
    unregularised CNFs, or with ``regularised=True`` CNFs trained with a penalty (chapter
    "Regularised dynamics")."""
    def penalised(config: dict) -> bool:
        return bool(config.get("kinetic_weight") or config.get("jacobian_weight"))

    return [(path, r) for path, r in recorded
            if r.get("status") == "complete" and r.get("maximum_likelihood")
            and (r.get("config", {}).get("ml_nf_layers") is not None) == paper
            and penalised(r.get("config", {})) == regularised]


def kl_text(value: float, se: float) -> str:
    """``value ± se`` with the decimals that show the standard error's first digit (at least 3)."""
    digits = 3 if se <= 0 else max(3, -math.floor(math.log10(se)))
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def difference(row: Mapping) -> Tuple[float, float]:
    """NF minus CNF ``KL(q‖p)`` of a Fig. 4 row, and that difference in standard errors (the two
    estimates are independent, so their errors add in quadrature). Positive: the CNF is closer."""
    diff = row["nf_kl"] - row["cnf_kl"]
    return diff, diff / math.hypot(row["nf_kl_se"], row["cnf_kl_se"])


def kl_frame(rows: Sequence[Mapping], *, differences: bool = True, params: bool = True):
    """Fig. 4 rows (one target, by size) as a ``pandas.DataFrame`` for :func:`nodelib.display.table`:
    ``K = M``, the parameter counts, both divergences with their standard errors and, if
    ``differences``, the NF's minus the CNF's in nats and in standard errors."""
    import pandas

    columns: Dict[str, list] = {"K = M": [r["size"] for r in rows]}
    if params:
        columns["NF parameters"] = [r["nf_params"] for r in rows]
    columns["NF KL (nats)"] = [kl_text(r["nf_kl"], r["nf_kl_se"]) for r in rows]
    if params:
        columns["CNF parameters"] = [r["cnf_params"] for r in rows]
    columns["CNF KL (nats)"] = [kl_text(r["cnf_kl"], r["cnf_kl_se"]) for r in rows]
    if differences:
        columns["NF − CNF (nats)"] = [_signed(difference(r)[0]) for r in rows]
        columns["NF − CNF (s.e.)"] = [f"{difference(r)[1]:+.1f}".replace("-", "−") for r in rows]
    return pandas.DataFrame(columns)


def _signed(value: float) -> str:
    """A difference with 3 decimals, or 4 when it is below 0.01 in size."""
    return f"{value:+.{3 if abs(value) >= 0.01 else 4}f}".replace("-", "−")


def _short(value: float) -> str:
    """A divergence for a panel title: 3 decimals, or 4 below 0.01."""
    return f"{value:.{3 if abs(value) >= 0.01 else 4}f}"


def ml_frame(results: dict, name: str):
    """Fig. 5 on data set ``name``: one row per repeat (numbered from 1) with both models' test NLL
    and its standard error (nats), as a ``pandas.DataFrame`` for :func:`nodelib.display.table`.
    (Repeat ``i`` of the NF and of the CNF share nothing but their data; :func:`paired_frame`
    compares every CNF with every NF.)"""
    import pandas

    slot = results["maximum_likelihood"][name]
    repeats = sorted(int(k) for k in slot["nf"] if k in slot["cnf"])
    nf = [slot["nf"][str(r)] for r in repeats]
    cnf = [slot["cnf"][str(r)] for r in repeats]
    return pandas.DataFrame({
        "repeat": [r + 1 for r in repeats],
        "NF test NLL (nats)": [f"{v['test_nll']:.3f} ± {v['test_nll_se']:.3f}" for v in nf],
        "CNF test NLL (nats)": [f"{v['test_nll']:.3f} ± {v['test_nll_se']:.3f}" for v in cnf],
    })


def paired_frame(results: dict, name: str):
    """Every CNF repeat against every NF repeat of Fig. 5 on ``name``: the difference of their test
    NLLs on the same test points and its paired standard error (``results["maximum_likelihood"]
    [name]["paired"]``), as a ``pandas.DataFrame``."""
    import pandas

    paired = results["maximum_likelihood"][name]["paired"]
    keys = sorted(paired, key=lambda k: tuple(int(part.split("-r")[1]) for part in k.split(" - ")))
    return pandas.DataFrame({
        "CNF repeat": [int(k.split(" - ")[0].split("-r")[1]) + 1 for k in keys],
        "NF repeat": [int(k.split(" - ")[1].split("-r")[1]) + 1 for k in keys],
        "CNF − NF (nats)": [f"{paired[k]['difference']:+.4f}".replace("-", "−") for k in keys],
        "paired s.e. (nats)": [f"{paired[k]['se']:.4f}" for k in keys],
        "in s.e.": [f"{paired[k]['difference'] / paired[k]['se']:+.1f}".replace("-", "−") for k in keys],
    })


# ------------------------------------------------------------------------- panels of recorded PNGs
@dataclasses.dataclass
class Panel:
    """The inside of one framed panel of a recorded figure.

    ``image`` is the pixels inside the frame (rows top to bottom); ``inset`` the fractions
    ``(left, right, bottom, top)`` of the framed box that the crop spans, so that a panel drawn over
    ``bounds = (x0, x1, y0, y1)`` is shown over ``extent``.
    """

    image: np.ndarray
    inset: Tuple[float, float, float, float]

    def extent(self, bounds: Sequence[float]) -> Tuple[float, float, float, float]:
        x0, x1, y0, y1 = (float(b) for b in bounds)
        left, right, bottom, top = self.inset
        return (x0 + left * (x1 - x0), x0 + right * (x1 - x0), y0 + bottom * (y1 - y0), y0 + top * (y1 - y0))


def _runs(mask_line: np.ndarray, least: int) -> list:
    """``(start, end)`` (end exclusive) of the runs of True in a 1D mask at least ``least`` long."""
    padded = np.concatenate([[False], mask_line, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2]) if e - s >= least]


def png_panels(path: Union[str, pathlib.Path], *, least: int = 60, inset_px: int = 3) -> list:
    """The square framed panels of a PNG figure (a path or an address), as rows (top to bottom) of
    :class:`Panel` (left to right).

    A frame is a square of dark lines (the axes' spines): a horizontal dark run at its top, one of
    the same extent at its bottom, as far below as the run is long. Thick lines count once. Each
    panel is cropped ``inset_px`` pixels inside its frame.

    Raises:
        ValueError: the file has no framed square panels.
    """
    pixels = read_png(path)
    rgb = pixels[..., :3].astype(float)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    dark = rgb.sum(axis=-1) < 0.5
    lines = [(r, s, e) for r in range(dark.shape[0]) for s, e in _runs(dark[r], least)]
    boxes = []
    for top, s, e in lines:
        side = e - 1 - s
        for bottom, s2, e2 in lines:
            if abs(s2 - s) <= 2 and abs(e2 - e) <= 2 and abs((bottom - top) - side) <= 3 and bottom > top:
                boxes.append((top, bottom, s, e - 1))
    # thick lines give near-duplicate boxes: keep the outermost of each cluster
    merged: list = []
    for box in sorted(boxes):
        for i, other in enumerate(merged):
            if all(abs(a - b) <= 3 for a, b in zip(box, other)):
                merged[i] = (min(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]),
                             max(box[3], other[3]))
                break
        else:
            merged.append(box)
    if not merged:
        raise ValueError(f"{path}: no framed square panels found.")
    rows: list = []
    for box in sorted(merged):
        if rows and abs(rows[-1][0][0] - box[0]) <= 5:
            rows[-1].append(box)
        else:
            rows.append([box])
    panels = []
    for row in rows:
        panels.append([])
        for top, bottom, left, right in sorted(row, key=lambda b: b[2]):
            r0, r1, c0, c1 = top + inset_px, bottom - inset_px, left + inset_px, right - inset_px
            width, height = right - left, bottom - top
            inset = ((c0 - left) / width, (c1 + 1 - left) / width, (bottom - r1 - 1) / height, (bottom - r0) / height)
            panels[-1].append(Panel(pixels[r0:r1 + 1, c0:c1 + 1, :3].copy(), inset))
    return panels


def recorded_fig4_panels(recorded: Sequence[Tuple[pathlib.Path, dict]], target: str) -> Dict[Tuple[str, int], Panel]:
    """The NF's and the CNF's samples on Fig. 4's ``target``, by ``(kind, size)``, cut from the
    ``fig4-<target>.png`` of every complete recorded run (rows: target, NF, CNF; one column per size).

    Raises:
        ValueError: a run's figure does not have one column per size of its results.
    """
    found: Dict[Tuple[str, int], Panel] = {}
    for path, results in recorded:
        slot = results.get("density_matching", {}).get(target)
        if results.get("status") != "complete" or slot is None:
            continue
        sizes = sorted(int(s) for s in slot["nf"] if s in slot["cnf"])
        figure = beside(path, f"fig4-{target}.png")
        grid = png_panels(figure)
        if len(grid) != 3 or any(len(row) != len(sizes) for row in grid):
            raise ValueError(f"{figure}: expected 3 rows of {len(sizes)} panels (sizes {sizes}), found "
                             f"{[len(row) for row in grid]}.")
        for column, size in enumerate(sizes):
            found.setdefault(("nf", size), grid[1][column])
            found.setdefault(("cnf", size), grid[2][column])
    return found


def recorded_fig5_panels(recorded: Sequence[Tuple[pathlib.Path, dict]], name: str, *,
                         paper: bool = False) -> Dict[Tuple[str, str], Panel]:
    """Fig. 5 on data set ``name`` from the ``fig5.png`` of the first of :func:`fig5_runs` that holds
    it (one row per data set: data, NF samples, NF density, CNF samples, CNF density), by
    ``(kind, "samples" | "density")``.

    Raises:
        ValueError: no complete run holds the data set, or its figure does not have that layout.
    """
    for path, results in fig5_runs(recorded, paper=paper):
        names = list(results["maximum_likelihood"])
        if name not in names:
            continue
        figure = beside(path, "fig5.png")
        grid = png_panels(figure)
        if len(grid) != len(names) or any(len(row) != 5 for row in grid):
            raise ValueError(f"{figure}: expected {len(names)} rows of 5 panels, found {[len(r) for r in grid]}.")
        row = grid[names.index(name)]
        return {("nf", "samples"): row[1], ("nf", "density"): row[2],
                ("cnf", "samples"): row[3], ("cnf", "density"): row[4]}
    raise ValueError(f"no complete recorded run holds Fig. 5 on {name!r}.")


# ----------------------------------------------------------------------------- panels of live models
def live_fig4_panels(models: Mapping, target: str, sizes: Sequence[int], *, n: int = 2000,
                     seed: int = 3) -> Dict[Tuple[str, int], Tensor]:
    """``n`` samples of each trained Fig. 4 model of ``density.run(..., return_models=True)`` on
    ``target``, by ``(kind, size)``."""
    panels = {}
    for size in sizes:
        for kind in ("nf", "cnf"):
            model = models[("kl", target, kind, size)]
            device = next(iter(model.parameters())).device
            with torch.no_grad():
                x = model.sample_with_log_prob(n, generator=torch.Generator(device=device).manual_seed(seed))[0]
            panels[(kind, size)] = x.detach().cpu()
    return panels


def live_fig5_panels(results: dict, models: Mapping, name: str, *, repeat: int = 0, n: int = 2000, seed: int = 3,
                     resolution: int = 80) -> dict:
    """Samples and a density grid of each trained Fig. 5 model on ``name`` (one repeat), by
    ``(kind, "samples" | "density")``; the CNF is solved at the run's evaluation tolerance."""
    bounds = FIG5_BOUNDS.get(name, FIG4_BOUNDS)
    panels = {}
    for kind in ("nf", "cnf"):
        model = density.evaluation_copy(models[("ml", name, kind, repeat)], results["config"]["eval_tol"])
        param = next(iter(model.parameters()))
        with torch.no_grad():
            panels[(kind, "samples")] = model.sample(
                n, generator=torch.Generator(device=param.device).manual_seed(seed)).cpu()
        panels[(kind, "density")] = toy2d.grid_log_density(
            lambda z: model.log_prob(z.to(device=param.device, dtype=param.dtype)).cpu(),
            bounds=bounds, resolution=resolution, dtype=param.dtype)
    return panels


# ------------------------------------------------------------------------------------------ layouts
def _draw(ax, panel, bounds: Sequence[float], color: str) -> None:
    """A panel: a recorded crop, a density grid, or samples ``(N, 2)``, over ``bounds``."""
    limits = tuple(bounds)
    if isinstance(panel, Panel):   # the crop lies just inside the recorded frame: show it edge to edge
        limits = panel.extent(bounds)
        ax.imshow(panel.image, extent=limits, interpolation="antialiased")
    elif isinstance(panel, toy2d.GridDensity):
        ax.imshow(panel.density.numpy(), extent=panel.extent, origin="lower", cmap="viridis")
    else:
        points = np.asarray(panel)
        ax.scatter(points[:, 0], points[:, 1], s=0.5, color=color, rasterized=True)
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_aspect("equal")


def _label(ax, title: str, *, xlabel: bool = True, ylabel: bool = True) -> None:
    """Title a panel; its axes are the coordinates of the state, ``z_1`` and ``z_2``, as in the book."""
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    if xlabel:
        ax.set_xlabel("$z_1$")
    if ylabel:
        ax.set_ylabel("$z_2$")


def plot_fig4(target: str, panels: Mapping, kl: Mapping[Tuple[str, int], float], sizes: Sequence[int], *,
              scale: str = "", bounds: Sequence[float] = FIG4_BOUNDS):
    """Fig. 4 on one target: the target density once (top), then a row of NFs with ``K`` layers and a
    row of CNFs with ``M`` units, one column per size (at most 3), each titled with its
    ``KL(q‖p)``. ``panels`` maps ``(kind, size)`` to samples or a recorded :class:`Panel`;
    ``kl`` maps the same keys to divergences in nats; ``scale`` names the run in the title."""
    import matplotlib.pyplot as plt

    if not 1 <= len(sizes) <= 3:
        raise ValueError(f"sizes must hold 1 to 3 sizes (at most 3 panels per row), got {list(sizes)}.")
    columns = len(sizes)
    fig, axes = plt.subplots(3, columns, figsize=(3.0 * columns, 9.2), squeeze=False)
    grid = toy2d.grid_log_density(lambda z: energies.unnormalised_log_density(target, z), bounds=tuple(bounds),
                                  resolution=200, dtype=torch.float64)
    for j in range(columns):
        if j != columns // 2:
            axes[0, j].axis("off")
    top = axes[0, columns // 2]
    _draw(top, grid, bounds, "k")
    _label(top, f"target {target.upper()}: {_TARGET_NAMES.get(target, target)}")
    for j, size in enumerate(sizes):
        for row, kind, symbol, color in ((1, "nf", "K", "C0"), (2, "cnf", "M", "C1")):
            ax = axes[row, j]
            _draw(ax, panels[(kind, size)], bounds, color)
            _label(ax, f"{kind.upper()}, {symbol} = {size}: KL {_short(kl[(kind, size)])}", xlabel=row == 2,
                   ylabel=j == 0)
    fig.suptitle(f"Fig. 4 on {target.upper()}{', ' + scale if scale else ''}: samples of q, KL(q‖p) in nats",
                 fontsize=11)
    fig.tight_layout()
    return fig


def plot_fig5(name: str, data: Tensor, panels: Mapping, nll: Mapping[str, float], params: Mapping[str, int], *,
              scale: str = ""):
    """Fig. 5 on one data set: the data (left), then the NF's samples and density (top row) and the
    CNF's (bottom row), each titled with its parameter count or test NLL (nats)."""
    import matplotlib.pyplot as plt

    bounds = FIG5_BOUNDS.get(name, FIG4_BOUNDS)
    fig = plt.figure(figsize=(9.0, 6.2))
    grid = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid[:, 0])
    _draw(ax, data, bounds, "k")
    _label(ax, f"{_DATASET_NAMES.get(name, name)}: data")
    for row, kind in enumerate(("nf", "cnf")):
        color = f"C{row}"
        ax = fig.add_subplot(grid[row, 1])
        _draw(ax, panels[(kind, "samples")], bounds, color)
        _label(ax, f"{kind.upper()} samples ({params[kind]:,} parameters)", xlabel=row == 1)
        ax = fig.add_subplot(grid[row, 2])
        _draw(ax, panels[(kind, "density")], bounds, color)
        _label(ax, f"{kind.upper()} density: test NLL {nll[kind]:.3f}", xlabel=row == 1, ylabel=False)
    fig.suptitle(f"Fig. 5 on {_DATASET_NAMES.get(name, name)}{', ' + scale if scale else ''}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_kl_against_size(rows: Mapping[Tuple[str, int], Mapping], *, marked: Sequence[int] = density.PAPER["sizes"],
                         title: str = ""):
    """``KL(q‖p)`` against ``K = M`` for the NF and the CNF, one panel per target (two per row), with
    error bars of one standard error; the sizes ``marked`` (the paper's) are shaded."""
    import matplotlib.pyplot as plt

    targets = sorted({target for target, _ in rows})
    n_rows = math.ceil(len(targets) / 2)
    fig, axes = plt.subplots(n_rows, 2, figsize=(9.0, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    for ax, target in zip(axes.flat, targets):
        sizes = sorted(size for name, size in rows if name == target)
        for size in marked:
            ax.axvspan(size / 1.25, size * 1.25, color="0.9", zorder=0)
        for kind, symbol, marker, color in (("nf", "NF, K layers", "o", "C0"), ("cnf", "CNF, M units", "s", "C1")):
            values = np.array([rows[(target, s)][f"{kind}_kl"] for s in sizes])
            errors = np.array([rows[(target, s)][f"{kind}_kl_se"] for s in sizes])
            lower = np.minimum(errors, values * 0.999)   # a log axis: keep the bar above 0
            ax.errorbar(sizes, values, yerr=[lower, errors], marker=marker, color=color, label=symbol,
                        capsize=3, markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.set_xlabel("K = M")
        ax.set_ylabel("KL(q‖p) (nats)")
        ax.set_title(f"{target.upper()}: {_TARGET_NAMES.get(target, target)}", fontsize=10)
        ax.grid(True, which="major", axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=8, title="shaded: the paper's sizes", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
