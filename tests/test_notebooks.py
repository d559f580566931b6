"""Static checks of the chapters: stored executed, error-free, Colab-ready, with hidden asserts.

nbval (``make notebooks``) re-executes the chapters and compares outputs; these checks make sure
there is something to compare, and that each chapter follows the book's conventions.
"""
import pathlib
import re
import sys

import nbformat
import pytest
import yaml
from nbval.plugin import get_sanitize_patterns

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from install_cell import TAGS, install_source  # noqa: E402

CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_toc_lists_exactly_the_chapters():
    listed = {f for f in toc_files() if (ROOT / f"{f}.ipynb").exists()}
    assert listed == {str(p.relative_to(ROOT).with_suffix("")) for p in CHAPTERS}
    for f in toc_files():
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_stored_executed_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    counts = [c.execution_count for c in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), "execute top to bottom in one kernel (tools/execute.py)"
    for cell in code_cells(nb):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", cell.source[:80]
            assert not any("widget" in key for key in out.get("data", {})), "no widgets"
        assert "sys.path" not in cell.source
        assert "execution" not in cell.metadata, "timing metadata (run tools/execute.py)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_in_colab(path):
    nb = nbformat.read(path, as_version=4)
    assert code_cells(nb)[0].source == install_source(), "run tools/install_cell.py"
    assert code_cells(nb)[0].metadata.get("tags") == TAGS, "run tools/install_cell.py (hidden in the book)"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert "```{" not in cell.source, "backtick-fenced directives do not render in Colab; use :::"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_states_and_proves_its_claim(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**Central claim.**" in text
    hidden = [c for c in code_cells(nb)[1:] if "remove-cell" in c.metadata.get("tags", [])]  # (after the install)
    assert hidden and all("assert" in c.source for c in hidden)
    assert re.search(r"^## Summary", text, re.M) and re.search(r"^## Exercises", text, re.M)
    assert ":class: dropdown" in text


def test_sanitize_rules_all_parse_and_fire():
    patterns = get_sanitize_patterns((ROOT / "book" / "nbval_sanitize.cfg").read_text())
    samples = {
        "0xADDRESS": "<Figure at 0x7f3a2b1c9d80>",
        "IPYKERNEL_FILE": "/tmp/ipykernel_1234/567890.py:3: UserWarning",
        "TIME": "epoch 3 took 12.5 s",
    }
    assert [replace for _, replace in patterns] == list(samples)
    for regex, replace in patterns:
        assert re.sub(regex, replace, samples[replace]) != samples[replace]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_mentions_of_nodelib_link_to_the_library_reference(path):
    from link_reference import link_first_mentions
    nb = nbformat.read(path, as_version=4)
    assert link_first_mentions(nb) == 0, "run tools/link_reference.py on the chapter"


def test_the_landing_figure_is_chapter_8s():
    from landing_figure import FIGURE, stored_png
    assert FIGURE.read_bytes() == stored_png(), "run tools/landing_figure.py"
