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
