"""A chapter copied alone into an empty folder runs against nodelib installed from a built wheel.

This is what Colab does: it has the notebook and nothing else of the repository, and imports nodelib
as an installed package. The test builds a wheel of this checkout, installs it into a folder of its
own, puts that folder first on the kernel's path, and executes chapter 1 there; its last cell reports
where nodelib was imported from.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "01_resnets_to_odes.ipynb"


def test_chapter_runs_alone_against_the_wheel(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True)
    wheel, = wheels.glob("nodelib-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True)
    assert not (site / "nodelib" / "__init__.py").is_symlink()

    empty = tmp_path / "reader"
    empty.mkdir()
    notebook_path = empty / CHAPTER.name
    shutil.copy(CHAPTER, notebook_path)
    nb = nbformat.read(notebook_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import nodelib, pathlib\nprint(pathlib.Path(nodelib.__file__).resolve())"))

    monkeypatch.setenv("PYTHONPATH", str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    NotebookClient(nb, timeout=300, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(empty)}}).execute()

    origin = pathlib.Path(nb.cells[-1].outputs[0]["text"].strip())
    assert origin == (site / "nodelib" / "__init__.py").resolve()
    assert sorted(p.name for p in empty.iterdir()) == [CHAPTER.name]  # the chapter needed nothing beside it
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert errors == []
