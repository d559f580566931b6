"""Author-year labels in the bibliography: "Chen et al. 2018" instead of pybtex's alpha labels.

sphinxcontrib-bibtex writes the citations in the text in author-year form (``bibtex_reference_style:
author_year``), but labels the entries of the bibliography with pybtex's default label style, which
gives labels such as ``[HNorsettW93]`` and ``[Wikipediacontributors22]``. This extension registers a
pybtex formatting style, ``authoryear``, that is pybtex's ``plain`` style with readable labels: the
last name of a single author, "A and B" for two, "A et al." for more, then the year, with a letter
appended where two entries would otherwise share a label.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def _last_name(person) -> str:
    return " ".join(person.last_names).replace("{", "").replace("}", "") or str(person)


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Last Year", "Last and Other Year", "Last et al. Year", made unique with a, b, ..."""

    def format_labels(self, sorted_entries):
        labels = [self._label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield f"{label}{'abcdefghijklmnopqrstuvwxyz'[seen[label] - 1]}"
            else:
                yield label

    @staticmethod
    def _label(entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_last_name(p) for p in people]
        if not names:
            who = entry.fields.get("title", entry.key).replace("{", "").replace("}", "")
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who} {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app: Sphinx) -> dict:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
