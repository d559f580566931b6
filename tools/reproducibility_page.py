"""Write book/reproducibility.md and results/index.json from the recorded results:
``python tools/reproducibility_page.py``.

The index lists every recorded ``results.json``, so that a chapter opened outside the repository
(Colab) can read them from the repository's raw files. tests/test_reproducibility.py checks that
both committed files are what this writes.
"""
from __future__ import annotations

import pathlib
import sys

from nodelib.experiments.reproducibility import index, page
from nodelib.experiments.runs import RESULTS_INDEX

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "reproducibility.md"
INDEX = ROOT / "results" / RESULTS_INDEX


def main() -> int:
    for path, text in ((PAGE, page(ROOT / "results")), (INDEX, index(ROOT / "results"))):
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
