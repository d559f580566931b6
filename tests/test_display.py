"""nodelib.display: what chapters show, checked against the data it was given."""
import matplotlib
import pandas as pd
import pytest
import torch

from nodelib import FitHistory
from nodelib.display import plot_curves, plot_field, table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_table_is_markdown_with_formats_caption_and_aligned_numbers():
    frame = pd.DataFrame({"method": ["euler", "rk4"], "error": [1.23456e-3, 4.5e-9], "steps": [1000, 25]})
    shown = table(frame, caption="Errors at t = 1.", formats={"error": ".2e", "steps": ",d"})
    assert shown.data == ("**Errors at t = 1.**\n\n"
                          "| method   |    error |   steps |\n"
                          "|:---------|---------:|--------:|\n"
                          "| euler    | 1.23e-03 |   1,000 |\n"
                          "| rk4      | 4.50e-09 |      25 |")
    assert table(frame).data.startswith("| method")
    with pytest.raises(ValueError, match="formats names the column 'err', which the table lacks"):
        table(frame, formats={"err": ".2e"})


def test_plot_curves_draws_each_history():
    fig, ax = plt.subplots()
    history = FitHistory(losses=[(100, 2.0), (200, 1.5)])
    plot_curves(ax, {"fit": history, "other": [(1, 3.0), (2, 2.5)]}, ylabel="NLL (nats)")
    assert [list(line.get_xydata().ravel()) for line in ax.lines] == [[100, 2.0, 200, 1.5], [1, 3.0, 2, 2.5]]
    assert ax.get_ylabel() == "NLL (nats)" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="the curve 'empty' has no points"):
        plot_curves(ax, {"empty": []}, ylabel="loss")
    plt.close(fig)


def test_plot_field_draws_the_fields_velocities():
    fig, ax = plt.subplots()
    calls = []

    def rotation(t, z):
        calls.append((float(t), z.shape))
        return torch.stack([-z[:, 1], z[:, 0]], dim=-1)

    plot_field(ax, rotation, t=0.5, bounds=(-1, 1, -2, 2), resolution=7)
    assert calls == [(0.5, (49, 2))]
    assert ax.get_xlim() == (-1, 1) and ax.get_ylim() == (-2, 2)
    plt.close(fig)
