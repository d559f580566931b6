"""Keep each chapter's first code cell, the Colab install cell, in step with _config.yml.

The repository URL and branch are configured once, in ``_config.yml``; this tool writes the install
cell of every chapter from them (``python tools/install_cell.py``), and ``tests/test_notebooks.py``
checks that every chapter's first code cell is exactly what it would write. The cell is tagged
``remove-cell``: it runs in Colab and Jupyter (and under nbval), and the published book leaves it out.
"""
from __future__ import annotations

import pathlib
import sys

import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def install_source(config_path: pathlib.Path = ROOT / "_config.yml") -> str:
    """The source of the install cell for the repository named in ``_config.yml``."""
    repo = yaml.safe_load(config_path.read_text())["repository"]
    url = repo["url"].rstrip("/")
    return (
        "# Where nodelib is missing (Colab, a fresh Jupyter), install it from the book's repository.\n"
        "try:\n"
        "    import nodelib\n"
        "except ModuleNotFoundError:\n"
        f'    %pip install -q "nodelib @ git+{url}@{repo["branch"]}"\n'
        "    import nodelib"
    )


def chapters() -> list[pathlib.Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


def first_code_cell(nb):
    return next(cell for cell in nb.cells if cell.cell_type == "code")


#: The install cell's tags: hidden in the published book.
TAGS = ["remove-cell"]


def main() -> int:
    source = install_source()
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        cell = first_code_cell(nb)
        if cell.source != source or cell.metadata.get("tags") != TAGS:
            cell.source = source
            cell.metadata["tags"] = list(TAGS)
            nbformat.write(nb, path)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
