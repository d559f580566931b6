"""Link each chapter's first mention of a documented nodelib name to the Library reference.

``python tools/link_reference.py book/NN_x.ipynb ...`` rewrites, in each chapter's Markdown, the first
```nodelib.name``` code span of every name documented on a reference page (book/api/) into a
``{py:func}``, ``{py:class}``, ``{py:meth}`` or ``{py:mod}`` role, which the built book turns into a link
(Colab shows the role as text). Later mentions stay code spans. tests/test_notebooks.py checks it.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\.\. auto(function|class|data|module):: ([\w.]+)", re.M)
SPAN = re.compile(r"(?<![}\w])`(nodelib(?:\.\w+)+)`")


def _resolve(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        head, _, name = dotted.rpartition(".")
        return getattr(_resolve(head), name, None)


def role(dotted: str) -> str | None:
    """The role that links ``dotted`` to its reference entry, or None if no page documents it."""
    documented = {name for page in (ROOT / "book" / "api").glob("*.md")
                  for _, name in DIRECTIVE.findall(page.read_text())}
    obj = _resolve(dotted)
    if obj is None:
        return None
    if inspect.ismodule(obj):
        return "py:mod" if dotted in documented else None
    owner = dotted.rpartition(".")[0]
    if dotted not in documented and owner not in documented and not any(
            getattr(_resolve(d), "__name__", None) == getattr(obj, "__name__", "") and _resolve(d) is obj
            for d in documented):
        return None
    if inspect.isclass(obj):
        return "py:class"
    return "py:meth" if inspect.isclass(_resolve(owner)) else "py:func"


def link_first_mentions(nb) -> int:
    """Rewrite the first code-span mention of each documented name; returns how many were linked."""
    seen, linked = set(), 0
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        seen |= set(re.findall(r"\{py:\w+\}`~?(nodelib[\w.]*)`", cell.source))

        def replace(match: re.Match) -> str:
            nonlocal linked
            name = match.group(1)
            if name in seen:
                return match.group(0)
            kind = role(name)
            if kind is None:
                return match.group(0)
            seen.add(name)
            linked += 1
            return f"{{{kind}}}`{name}`"

        cell.source = SPAN.sub(replace, cell.source)
    return linked


def main(paths: list[str]) -> int:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if link_first_mentions(nb):
            nbformat.write(nb, path)
            print(f"linked {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
