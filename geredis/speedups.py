"""Which modules of the hot path run compiled, and the switch to run them as
Python.

How this works: ``setup.py`` compiles the modules in :data:`COMPILED_MODULES`
with Cython from their own ``.py`` source (a ``.pxd`` beside a module gives
its classes C attributes; the code is the same). Python imports an extension
module ahead of the ``.py`` beside it, so an installation that has them runs
them compiled. When the environment has ``GEREDIS_PURE_PYTHON=1`` as geredis
is first imported, :func:`install` puts a finder first on ``sys.meta_path``
that loads those modules from their ``.py`` files instead: the same code,
interpreted (to compare the two, or to step through it in a debugger).

``geredis.COMPILED`` tells which one runs. This module imports nothing but
the standard library: ``setup.py`` reads :data:`COMPILED_MODULES` from it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Optional, Sequence, Tuple

__all__ = ["COMPILED_MODULES", "compiled_modules", "install", "pure_python_requested",
           "stale_modules"]

#: What a command crosses between ``r.get()`` and its reply.
COMPILED_MODULES = ("geredis.caller", "geredis.connection", "geredis.roundtrip")

#: The environment variable that makes :func:`install` load the ``.py`` files.
PURE_PYTHON = "GEREDIS_PURE_PYTHON"


class _PythonSource(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of a compiled module, ahead of the
    extension module beside it."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in COMPILED_MODULES:
            return None
        for entry in path or ():
            source = os.path.join(entry, fullname.rpartition(".")[2] + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def pure_python_requested() -> bool:
    """Whether the environment asks for the ``.py`` files.

    Returns:
        True when ``GEREDIS_PURE_PYTHON`` is ``1``, ``true`` or ``yes``.
    """
    return os.environ.get(PURE_PYTHON, "").lower() in ("1", "true", "yes")


def install() -> None:
    """When :func:`pure_python_requested`, load the modules of
    :data:`COMPILED_MODULES` from their ``.py`` files from now on. Called by
    ``geredis/__init__.py`` before it imports them; does nothing otherwise,
    or a second time."""
    if not pure_python_requested():
        return
    if not any(isinstance(finder, _PythonSource) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PythonSource())


def compiled_modules() -> Tuple[str, ...]:
    """Which of the compiled modules run compiled.

    Returns:
        The names, among :data:`COMPILED_MODULES`, of the modules imported
        so far from extension modules: all of them in a compiled
        installation once ``geredis`` is imported, none as Python.
    """
    return tuple(
        name for name in COMPILED_MODULES
        if isinstance(getattr(sys.modules.get(name), "__loader__", None),
                      importlib.machinery.ExtensionFileLoader)
    )


def stale_modules() -> Tuple[str, ...]:
    """The compiled modules whose source changed after they were built in
    place: in a source checkout, Python would run their old code.

    Returns:
        The names, among :data:`COMPILED_MODULES` (imported or not), of
        those whose ``.py`` is newer than the extension module beside it
        (rebuild with ``./dev build``). Only modules with Cython's ``.c``
        beside them count: an installed wheel has none, and its files'
        times are when they were unpacked.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    stale = []
    for name in COMPILED_MODULES:
        base = os.path.join(here, name.rpartition(".")[2])
        if not os.path.exists(base + ".c"):
            continue
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if os.path.exists(base + suffix):
                if os.path.getmtime(base + ".py") > os.path.getmtime(base + suffix):
                    stale.append(name)
                break
    return tuple(stale)
