"""A Griffe extension: Sphinx roles in geredis docstrings, read as code.

geredis's docstrings use Google-style sections with Sphinx cross-reference
roles inside (``:class:`~geredis.connection.Connection```, ``:meth:`close```),
which mkdocstrings would print as they are. This extension rewrites each role
to inline code before the docstring is rendered: the target as written, or
its last component when it starts with ``~`` (Sphinx's own rule).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|exc|obj|const):`(~?)([^`]+)`")


def _as_code(match: "re.Match[str]") -> str:
    target = match.group(2)
    if match.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite ``:role:`target``` to ```target``` in every docstring."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)


def _comment_docstring(lines: "list[str]", lineno: int) -> "tuple[str, int] | None":
    """The ``#:`` comment documenting the assignment on line ``lineno`` (1-based):
    a block of ``#:`` lines right above it, or one after it on the same line."""
    line = lines[lineno - 1]
    code, sep, trailing = line.partition("  #: ")
    if sep and code.strip():
        return trailing.strip(), lineno
    block: "list[str]" = []
    index = lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        block.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if not block:
        return None
    return "\n".join(block), index + 2


class SphinxCommentsAsDocstrings(griffe.Extension):
    """Read Sphinx's ``#:`` attribute comments as the attributes' docstrings.

    geredis documents constants, dataclass fields and instance attributes the
    way Sphinx's autodoc reads them (a ``#:`` comment block above the
    assignment, or ``x = 0  #: what x counts`` on its line); Griffe reads only
    string literals below an assignment, so without this the reference would
    show none of them. An attribute with a docstring of its own keeps it.
    """

    def on_attribute_instance(self, *, attr: Any, **kwargs: Any) -> None:
        if attr.docstring is not None or not attr.lineno:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, AttributeError, TypeError):
            return
        found = _comment_docstring(lines, attr.lineno)
        if found is not None:
            text, lineno = found
            attr.docstring = griffe.Docstring(
                _ROLE.sub(_as_code, text), lineno=lineno, parent=attr
            )
