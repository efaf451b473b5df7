"""MkDocs hooks for the geredis docs (``hooks:`` in mkdocs.yml).

How this works:

* Diagrams: a fenced block whose language is ``dot`` is Graphviz source. It is
  drawn to SVG with ``dot -Tsvg`` while the page is built and inlined in its
  place, so the page and its pictures cannot drift apart. A Graphviz error or
  warning aborts the build (as ``mkdocs build --strict`` does for a broken
  link); ``./dev docs`` installs Graphviz when it is missing.
* Files from outside ``docs/``: the benchmark plot is written by ``bench/``
  into ``bench/throughput.png``; it is added to the site as
  ``images/throughput.png`` rather than copied into ``docs/`` by hand, so
  the published plot is always the one the benchmark last wrote. The same
  goes for ``CHANGELOG.md`` (pulled into ``changelog.md`` by the snippets
  extension, which fails on a missing file).
* The API reference comes from the sources: where ``./dev build`` compiled
  the hot path in place, griffe would otherwise find the extension modules
  beside their ``.py`` files, and read them by inspection, without their
  signatures. Its module finder is told to look at ``.py``/``.pyi`` only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import griffe
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: site path -> file in the repository, added to the site as they are.
EXTERNAL_FILES = {
    "images/throughput.png": "bench/throughput.png",
}

_DOT_FENCE = re.compile(r"^```dot[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def on_startup(command: str, dirty: bool) -> None:
    sources = [ext for ext in griffe.ModuleFinder.accepted_py_module_extensions
               if ext in (".py", ".pyi")]
    griffe.ModuleFinder.accepted_py_module_extensions = sources
    griffe.ModuleFinder.extensions_set = set(sources)


def on_files(files: Files, config: Any) -> Files:
    for site_path, repo_path in EXTERNAL_FILES.items():
        source = os.path.join(ROOT, repo_path)
        if not os.path.exists(source):
            raise PluginError(f"docs: {repo_path} is missing (wanted as {site_path})")
        files.append(File.generated(config, site_path, abs_src_path=source))
    return files


def _render(source: str, where: str) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise PluginError("docs: Graphviz's dot is not installed (./dev docs installs it)")
    done = subprocess.run(
        [dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0 or done.stderr.strip():
        raise PluginError(f"docs: Graphviz failed on a diagram in {where}:\n{done.stderr.decode()}")
    svg = done.stdout.decode()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog, DOCTYPE and comments
    # No blank lines: Markdown would end the raw HTML block there.
    svg = "\n".join(line for line in svg.splitlines() if line.strip())
    return f'<div class="diagram" markdown="0">\n{svg}\n</div>'


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    where = page.file.src_uri
    return _DOT_FENCE.sub(lambda m: _render(m.group(1), where), markdown)
