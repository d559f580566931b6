"""What the book's chapters show a reader: tables rendered as tables, training curves, vector fields.

The plumbing that chapters share, kept out of their pages. pandas, tabulate, IPython and matplotlib
(the book's extras) are imported where they are used, so the core of nodelib never needs them.

Tables are Markdown (``IPython.display.Markdown``), which Jupyter, Colab and the built book all
render as tables, and whose stored text is exactly what the chapter computed: nbval compares it
strictly, so a table of mathematical facts is checked on every run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

if TYPE_CHECKING:  # (imported for type hints only)
    import pandas
    from IPython.display import Markdown
    from matplotlib.axes import Axes

__all__ = ["table", "plot_curves", "plot_field"]

Curve = Sequence[Tuple[float, float]]


def table(frame: "pandas.DataFrame", *, caption: Optional[str] = None,
          formats: Optional[Mapping[str, Union[str, Callable]]] = None) -> "Markdown":
    """``frame`` as a Markdown table (its index left out), with an optional caption above it.

    Args:
        frame: the table; column names are the header (units belong there, e.g. ``"time (ms)"``).
        caption: a sentence shown in bold above the table.
        formats: per column, a format spec (``".3f"``, ``".1e"``, ``",d"``) or a function of the value;
            other columns are shown with ``str``. Numeric columns are right-aligned.

    Returns:
        An ``IPython.display.Markdown`` object: the last expression of a cell renders it.
    """
    from IPython.display import Markdown

    import pandas

    frame = frame.copy()
    numeric = [pandas.api.types.is_numeric_dtype(frame[c]) and not pandas.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    for column, spec in (formats or {}).items():
        if column not in frame.columns:
            raise ValueError(f"formats names the column {column!r}, which the table lacks; its columns are "
                             f"{list(frame.columns)}.")
        frame[column] = [spec(v) if callable(spec) else format(v, spec) for v in frame[column]]
    frame = frame.astype(str).map(_escape_bars)  # a "|" in a cell or a name would split its row
    frame.columns = [_escape_bars(str(c)) for c in frame.columns]
    text = frame.to_markdown(index=False, disable_numparse=True,
                                         colalign=["right" if n else "left" for n in numeric])
    return Markdown(text if caption is None else f"**{caption}**\n\n{text}")


def _escape_bars(text: str) -> str:
    return text.replace("|", "\\|")


def plot_curves(ax: "Axes", curves: Mapping[str, Union[Curve, object]], *, ylabel: str,
                xlabel: str = "iteration", title: Optional[str] = None, logy: bool = False) -> "Axes":
    """One line per training run: ``curves`` maps a label to ``(x, y)`` pairs, or to a
    :class:`nodelib.FitHistory`, whose recorded ``(iteration, loss)`` pairs are drawn."""
    for label, curve in curves.items():
        points = getattr(curve, "losses", curve)
        if len(points) == 0:
            raise ValueError(f"the curve {label!r} has no points.")
        xs, ys = zip(*points)
        ax.plot(xs, ys, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title is not None:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    return ax


def plot_field(ax: "Axes", field: Callable[[Tensor, Tensor], Tensor], *, t: float = 0.0,
               bounds: Tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0), resolution: int = 25,
               color: str = "0.6") -> "Axes":
    """Streamlines of a 2D vector field ``field(t, z)`` at time ``t`` over ``bounds = (x0, x1, y0, y1)``,
    drawn under whatever the axes show next (trajectories, samples, a density)."""
    param = next(iter(getattr(field, "parameters", lambda: iter(()))()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    x0, x1, y0, y1 = bounds
    xs, ys = torch.linspace(x0, x1, resolution, dtype=dtype), torch.linspace(y0, y1, resolution, dtype=dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        velocity = field(torch.tensor(t, dtype=dtype), grid).reshape(resolution, resolution, 2)
    ax.streamplot(xs.numpy(), ys.numpy(), velocity[..., 0].numpy(), velocity[..., 1].numpy(), color=color,
                  density=0.8, linewidth=0.7, arrowsize=0.8, zorder=0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return ax


# -- a 2D continuous normalizing flow from its base density to its data density, in snapshots ------
import dataclasses  # noqa: E402  (used by the snapshot helpers below only)

__all__ += ["FlowSnapshots", "flow_snapshots", "plot_snapshots"]


@dataclasses.dataclass
class FlowSnapshots:
    """A 2D CNF seen at several times: ``grids[i]`` is its density ``p_t`` at ``times[i]`` on a grid
    (a :class:`nodelib.data.toy2d.GridDensity`) and ``samples[i]`` the same base points carried to
    ``times[i]``, so ``samples`` has shape ``(len(times), n_samples, 2)``."""

    times: Tuple[float, ...]
    grids: list
    samples: Tensor


def flow_snapshots(cnf, times: Sequence[float], *, bounds: Tuple[float, float, float, float],
                   resolution: int = 80, n_samples: int = 2000,
                   generator: Optional[torch.Generator] = None) -> FlowSnapshots:
    """The density and samples of a 2D :class:`nodelib.CNF` at each of ``times``, from ``cnf.t0``.

    The density at a time ``t`` is that of the CNF sharing the field, the base density and the solver
    settings but ending at ``t`` (at ``t = t0`` it is the base density), evaluated on a grid over
    ``bounds = (x0, x1, y0, y1)``. The samples are ``n_samples`` base points drawn from ``generator``
    and carried forwards by one solve that reports every time in ``times``; when the last time is
    ``t1`` they are ``cnf.sample(n_samples, generator=...)`` for a generator in the same state.

    Args:
        cnf: the flow, of dimension 2.
        times: increasing from ``cnf.t0`` towards ``cnf.t1`` (decreasing if ``t1 < t0``), none beyond ``t1``.
        bounds, resolution: the grid (``resolution`` cells along each side).
        n_samples, generator: the number of samples and the generator of their base points.
    """
    from .cnf import CNF
    from .data.toy2d import grid_log_density
    from .solve import odeint

    if getattr(cnf, "dim", None) != 2:
        raise ValueError(f"flow_snapshots draws 2D flows; this model has dimension {getattr(cnf, 'dim', None)}.")
    times = tuple(float(t) for t in times)
    sign = 1.0 if cnf.t1 > cnf.t0 else -1.0
    if not times or times[0] != cnf.t0 or any(sign * (b - a) <= 0 for a, b in zip(times, times[1:])) \
            or sign * (cnf.t1 - times[-1]) < 0:
        raise ValueError(f"times must start at t0 = {cnf.t0} and move towards t1 = {cnf.t1} without passing "
                         f"it, got {times}.")
    dtype, device = cnf._dtype_device()
    grids = []
    for t in times:
        log_prob = cnf.base.log_prob if t == cnf.t0 else CNF(
            cnf.field, dim=cnf.dim, t0=cnf.t0, t1=t, trace=cnf.trace, noise=cnf.noise, base=cnf.base,
            adjoint=False, **cnf.solver).log_prob
        grids.append(grid_log_density(log_prob, bounds=bounds, resolution=resolution, dtype=dtype))
    z0 = cnf._sample_base(n_samples, generator, dtype, device)
    with torch.no_grad():
        samples = odeint(cnf.field, z0, torch.tensor(times, dtype=dtype, device=device), **cnf.solver)
    return FlowSnapshots(times, grids, samples)


def plot_snapshots(snapshots: FlowSnapshots, *, title: str, data: Tensor, data_grid=None,
                   columns: int = 3, data_label: str = "data"):
    """Draw :func:`flow_snapshots`: one panel per time, then the data, in rows of at most ``columns``
    panels, each row of densities above the row of samples at the same times.

    Every density panel shares one colour scale, from 0 to the largest density of the flow, shown by
    one colour bar; the data's density ``data_grid`` (a ``GridDensity``, if given) is drawn on the
    same scale, and its title says "clipped" where it exceeds it. ``data`` are points drawn in the
    last sample panel. Returns the figure; ``title`` names the model and the data set.
    """
    import matplotlib.pyplot as plt

    panels = len(snapshots.times) + 1
    rows = -(-panels // columns)
    fig, axes = plt.subplots(2 * rows, columns, figsize=(3 * columns, 2.9 * 2 * rows), sharex=True,
                             sharey=True, layout="constrained", squeeze=False)
    grids = list(snapshots.grids) + [data_grid]
    vmax = max(float(g.density.max()) for g in snapshots.grids)
    clipped = data_grid is not None and float(data_grid.density.max()) > vmax
    x0, x1, y0, y1 = snapshots.grids[0].extent
    image = None
    for i in range(rows * columns):
        top, bottom = axes[2 * (i // columns), i % columns], axes[2 * (i // columns) + 1, i % columns]
        if i >= panels:
            top.axis("off")
            bottom.axis("off")
            continue
        last = i == panels - 1
        if grids[i] is None:
            top.axis("off")
        else:
            image = top.imshow(grids[i].density.cpu().numpy(), origin="lower", extent=grids[i].extent,
                               cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
            top.set_title((f"{data_label} density" + (", clipped" if clipped else "")) if last
                          else f"density at t = {snapshots.times[i]:g}")
        points = (data if last else snapshots.samples[i]).detach().cpu()
        bottom.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.5, color="k" if last else "C1")
        bottom.set_title(f"{data_label} points" if last else f"samples at t = {snapshots.times[i]:g}")
        for ax in (top, bottom):
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xlabel("$z_1$")
            ax.set_ylabel("$z_2$")
    if image is not None:
        fig.colorbar(image, ax=axes[0::2, :].ravel().tolist(), label="density", shrink=0.6)
    fig.suptitle(title)
    return fig


# -- particle paths of a 2D flow, to see how straight they are ---------------------------------------
__all__ += ["flow_paths", "plot_paths"]


def flow_paths(cnf, n: int, *, steps: int = 41, generator: Optional[torch.Generator] = None) -> Tensor:
    """The paths of ``n`` base samples of a 2D :class:`nodelib.CNF` from ``t0`` to ``t1``: shape
    ``(steps, n, 2)``, the states at ``steps`` equally spaced times, from one solve at the CNF's
    solver settings (the last row is ``cnf.transform`` of the first)."""
    from .solve import odeint

    if getattr(cnf, "dim", None) != 2:
        raise ValueError(f"flow_paths draws 2D flows; this model has dimension {getattr(cnf, 'dim', None)}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (the times t0 and t1 at least), got {steps!r}.")
    dtype, device = cnf._dtype_device()
    z0 = cnf._sample_base(n, generator, dtype, device)
    times = torch.linspace(cnf.t0, cnf.t1, steps, dtype=dtype, device=device)
    with torch.no_grad():
        return odeint(cnf.field, z0, times, **cnf.solver)


def plot_paths(ax: "Axes", paths: Tensor, *, title: Optional[str] = None, color: str = "C0") -> "Axes":
    """Draw :func:`flow_paths`: each path as a thin line, its start (base sample) as a grey dot and
    its end (sample of the flow) as a coloured one, labelled for a legend."""
    paths = paths.detach().cpu()
    ax.plot(paths[..., 0].numpy(), paths[..., 1].numpy(), color=color, linewidth=0.5, alpha=0.5)
    ax.scatter(paths[0, :, 0].numpy(), paths[0, :, 1].numpy(), s=4, color="0.5", zorder=3,
               label="base sample, $t_0$")
    ax.scatter(paths[-1, :, 0].numpy(), paths[-1, :, 1].numpy(), s=4, color=color, zorder=3,
               label="flow sample, $t_1$")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title)
    return ax


def path_straightness(paths: Tensor) -> Tensor:
    """For each path of :func:`flow_paths`, the distance between its ends over its length (polyline
    through the recorded states): 1 for a straight path, smaller the more it bends; shape ``(n,)``."""
    length = (paths[1:] - paths[:-1]).norm(dim=-1).sum(dim=0)
    return (paths[-1] - paths[0]).norm(dim=-1) / length


__all__ += ["path_straightness"]
