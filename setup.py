"""Build geredis, compiling its hot path with Cython when it can.

How this works: everything about the package lives in setup.cfg; this file
only adds the compiled modules. The modules in ``COMPILED`` are plain Python
that Cython compiles as they are (its "pure Python mode"): the ``.pxd`` beside
a module gives its classes C attributes, and nothing else changes. An
extension module is imported ahead of the ``.py`` beside it, so a wheel with
them runs them compiled, and one without them runs the same code as Python.

No compiled modules are built when ``GEREDIS_NO_EXTENSIONS`` is set (a pure
Python wheel, ``py3-none-any``), or when Cython cannot be imported; a module
that fails to compile (no C compiler) is left out with a warning and runs as
Python. ``GEREDIS_PURE_PYTHON=1`` at run time ignores compiled modules that
are installed (``geredis/speedups.py``).
"""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The hot path, as geredis/speedups.py names it (read without importing
#: geredis, whose dependencies a build need not have).
COMPILED = [name.replace(".", "/") + ".py" for name in
            runpy.run_path("geredis/speedups.py")["COMPILED_MODULES"]]

#: Python semantics kept: annotations are not C types (``x: int`` accepts a
#: bool, ``Dict`` a mapping), and functions stay introspectable methods.
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}


class OptionalBuildExt(build_ext):
    """Leave out, with a warning, an extension that fails to build: its
    module then runs as Python."""

    def run(self):  # type: ignore[no-untyped-def]
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no C compiler at all
            print(f"warning: geredis not compiled ({exc}); it runs as Python", file=sys.stderr)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - compiler missing or failing
            print(f"warning: {ext.name} not compiled ({exc}); it runs as Python",
                  file=sys.stderr)


def extensions():  # type: ignore[no-untyped-def]
    if os.environ.get("GEREDIS_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("warning: Cython not found; geredis is built as pure Python", file=sys.stderr)
        return []
    extensions = cythonize(COMPILED, compiler_directives=DIRECTIVES, quiet=True)
    if os.name == "posix":
        for extension in extensions:  # a wheel of a quarter the size
            extension.extra_compile_args.append("-g0")
    return extensions


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
