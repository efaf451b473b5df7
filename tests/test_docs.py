"""The documentation against the code: what the pages show must exist.

How this works: every Markdown page (``docs/*.md``, ``README.md``,
``CHANGELOG.md``) is read as text. Each fenced ``python`` block must compile,
and every dotted name under ``geredis`` written in backticks
(```geredis.pubsub.ReconnectInfo```, ```geredis.Redis(db=...)```) must
import and resolve. So a renamed class, a removed module or a typo in an
example fails here, in the suite, not in a reader's terminal. (The strict
docs build checks links and the API reference; running the examples needs
servers they do not describe, so they are compiled, not run.)
"""

from __future__ import annotations

import importlib
import pathlib
import re
from typing import Any, List, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted(
    [p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts]
    + [ROOT / "README.md", ROOT / "CHANGELOG.md"]
)
_PYTHON_BLOCK = re.compile(r"^( *)```python[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_GEREDIS_NAME = re.compile(r"\bgeredis(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _name(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


def _python_blocks() -> List[Tuple[str, int, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _PYTHON_BLOCK.finditer(text):
            indent = len(match.group(1))
            code = "\n".join(line[indent:] for line in match.group(2).splitlines())
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((_name(page), line, code))
    return blocks


def _geredis_names() -> List[Tuple[str, str]]:
    names = set()
    for page in PAGES:
        for span in _CODE_SPAN.findall(page.read_text(encoding="utf-8")):
            for name in _GEREDIS_NAME.findall(span):
                names.add((_name(page), name))
    return sorted(names)


def _resolve(dotted: str) -> Any:
    """Import the longest importable module prefix, then getattr the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_pages_are_found() -> None:
    assert len(PAGES) > 10
    assert len(_python_blocks()) > 20
    assert len(_geredis_names()) > 20


def test_python_examples_compile() -> None:
    failures = []
    for page, line, code in _python_blocks():
        try:
            compile(code, f"{page}:{line}", "exec")
        except SyntaxError as exc:
            failures.append(f"{page}, the python block at line {line}: {exc}")
    assert not failures, "\n".join(failures)


def test_geredis_names_exist() -> None:
    failures = []
    for page, name in _geredis_names():
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            failures.append(f"{page} names {name}, which does not exist: {exc!r}")
    assert not failures, "\n".join(failures)
