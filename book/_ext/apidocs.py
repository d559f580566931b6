"""The library reference's docstrings as written: no type guessed from a constant's or property's prose.

napoleon reads the first line of an attribute's, a constant's or a property's docstring as
``type: description`` when it holds a colon, so a comment such as ``#: Fixed-grid methods of
torchdiffeq: Runge-Kutta ...`` would render "Fixed-grid methods of torchdiffeq" as a (missing) type.
nodelib's constants and properties carry prose, never an inline type: their docstrings are kept as
written (they hold no Google-style sections for napoleon to translate).
"""
from __future__ import annotations

from sphinx.application import Sphinx

_KINDS = ("data", "attribute", "property")
_AS_WRITTEN: dict = {}


def _remember(app: Sphinx, what: str, name: str, obj, options, lines: list) -> None:
    if what in _KINDS:
        _AS_WRITTEN[name] = list(lines)


def _restore(app: Sphinx, what: str, name: str, obj, options, lines: list) -> None:
    if what in _KINDS and name in _AS_WRITTEN and any(line.startswith(":type:") for line in lines):
        lines[:] = _AS_WRITTEN.pop(name)


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", _remember, priority=100)  # before napoleon (500) ...
    app.connect("autodoc-process-docstring", _restore, priority=900)   # ... and after it
    return {"parallel_read_safe": True, "parallel_write_safe": True}
