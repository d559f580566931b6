"""Write book/reproducibility.md from the recorded results: ``python tools/reproducibility_page.py``.

tests/test_reproducibility.py checks that the committed page is what this writes.
"""
from __future__ import annotations

import pathlib
import sys

from nodelib.experiments.reproducibility import page

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "reproducibility.md"


def main() -> int:
    text = page(ROOT / "results")
    if not PAGE.is_file() or PAGE.read_text() != text:
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
