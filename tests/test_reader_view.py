"""The reader's view of every page, as the published book shows it (tools/reader_view.py measures it):
no visible code or output line over 88 characters, no builder phrases, no equation cited by an
internal label, no table printed as text, one output box per cell, and prose within the word limit."""
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reader_view  # noqa: E402

PAGES = reader_view.chapters()
LABELS = reader_view.book_labels()


#: The one page whose subject is how and where runs were made (provenance belongs there).
PROVENANCE_PAGE = "reproducibility"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
@pytest.mark.parametrize("check", list(reader_view.CHECKS))
def test_what_the_reader_sees(path, check):
    if path.stem == PROVENANCE_PAGE and check == "builder":
        pytest.skip("the Reproducibility page is where provenance goes")
    found = reader_view.check(path, LABELS)[check]
    assert not found, "\n".join(f"cell {v.cell} {v.part} line {v.line}: {v.text}" for v in found)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_prose_within_the_word_limit(path):
    words = reader_view.prose_words(reader_view.load(path))
    assert words <= reader_view.word_limit(path.stem), words
