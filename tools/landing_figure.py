"""Copy the landing page's figure out of chapter 8's stored outputs: ``python tools/landing_figure.py``.

Chapter 8 trains a CNF on two moons and, in a cell hidden from the book, draws it at three times (the
cell's source holds the marker ``landing-flow``). This writes that stored PNG to
``book/_static/landing-flow.png``, which book/intro.md shows; tests/test_notebooks.py checks that the
two are the same picture.
"""
from __future__ import annotations

import base64
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "08_cnf_generative_modelling.ipynb"
FIGURE = ROOT / "book" / "_static" / "landing-flow.png"


def stored_png() -> bytes:
    """The PNG that chapter 8's landing-figure cell stored."""
    nb = nbformat.read(CHAPTER, as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "landing-flow" in c.source]
    (png,) = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    return base64.b64decode(png)


def main() -> int:
    png = stored_png()
    if not FIGURE.is_file() or FIGURE.read_bytes() != png:
        FIGURE.write_bytes(png)
        print(f"wrote {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
