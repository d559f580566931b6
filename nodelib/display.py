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
    text = frame.astype(str).to_markdown(index=False, disable_numparse=True,
                                         colalign=["right" if n else "left" for n in numeric])
    return Markdown(text if caption is None else f"**{caption}**\n\n{text}")


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
