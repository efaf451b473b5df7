"""The public API's docstrings are complete enough for the API reference.

How this works: every public module under ``geredis/`` (no path part starting
with ``_``) is parsed with ``ast`` (nothing is imported, so this costs a few
tens of milliseconds). For every public function, class and method defined
there (names without a leading ``_``; ``__init__`` counts, documented on its
class as mkdocstrings merges them) it checks what the reference needs:

* a docstring, and a module docstring for the module;
* an entry in ``Args:`` (or ``Keyword Args:``) for each parameter, one name
  per entry (``*args``/``**kwargs`` as ``*args:``/``**kwargs:`` or without
  the stars); an ``__init__``'s in its class's docstring or its own;
* a ``Returns:`` (or ``Yields:``) section when the return annotation is not
  ``None`` (properties, setters and dunders excepted: they read as values).

``Raises:`` cannot be checked reliably without running the code (a ``raise``
may be caught, a call may raise); ``docs/hooks/docstring_scan.py`` reports
the likely gaps for a human to judge. Dataclass fields are documented with
``#:`` comments, which the docs build reads (``docs/hooks/griffe_roles.py``).

``KNOWN_GAPS`` lists what was missing when this test was written in modules
other engineers were changing at the time. Complete one and remove it from
the list (the test says so when an entry is stale); never add to it.
"""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "geredis"

Function = Union[ast.FunctionDef, ast.AsyncFunctionDef]

#: qualified name -> what it lacks (``docstring``, ``args``, ``returns``).
KNOWN_GAPS: Dict[str, Set[str]] = {}

_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
_ARG_SECTIONS = {"Args", "Arguments", "Keyword Args", "Keyword Arguments", "Parameters",
                 "Other Parameters"}
_RETURN_SECTIONS = {"Returns", "Return", "Yields", "Yield"}
_ENTRY = re.compile(r"^\s*(\*{0,2}[A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*:")


def _modules() -> Iterator[Tuple[str, pathlib.Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        yield ".".join(parts), path


def _sections(doc: Optional[str]) -> Dict[str, List[str]]:
    """Google-style section title -> the entry names at its first indent."""
    found: Dict[str, List[str]] = {}
    if not doc:
        return found
    lines = doc.expandtabs().splitlines()
    current: Optional[List[str]] = None
    title_indent = entry_indent = -1
    for line in lines:
        match = _SECTION.match(line)
        if match and match.group(2) in _ARG_SECTIONS | _RETURN_SECTIONS | {"Raises"}:
            current = found.setdefault(match.group(2), [])
            title_indent, entry_indent = len(match.group(1)), -1
            continue
        if current is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= title_indent:
            current = None
            continue
        if entry_indent < 0:
            entry_indent = indent
        if indent == entry_indent:
            entry = _ENTRY.match(line)
            current.append(entry.group(1).lstrip("*") if entry else "")
    return found


def _decorators(fn: Function) -> Set[str]:
    names = set()
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        names.add(ast.unparse(target).rsplit(".", 1)[-1])
    return names


def _parameters(fn: Function) -> List[str]:
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    if a.vararg is not None:
        names.append(a.vararg.arg)
    if a.kwarg is not None:
        names.append(a.kwarg.arg)
    return [n for n in names if n not in ("self", "cls")]


def _check_function(qualname: str, fn: Function, owner: Optional[ast.ClassDef],
                    problems: Dict[str, Set[str]]) -> None:
    decorators = _decorators(fn)
    if "overload" in decorators or "setter" in decorators or "deleter" in decorators:
        return
    doc = ast.get_docstring(fn)
    if fn.name == "__init__":
        assert owner is not None
        sections = _sections(ast.get_docstring(owner))
        for title, names in _sections(doc).items():
            sections.setdefault(title, []).extend(names)
    else:
        if not doc:
            problems.setdefault(qualname, set()).add("docstring")
            return
        sections = _sections(doc)
    documented = {name for title in _ARG_SECTIONS for name in sections.get(title, [])}
    if any(name not in documented for name in _parameters(fn)):
        problems.setdefault(qualname, set()).add("args")
    if fn.name.startswith("__") or decorators & {"property", "cached_property"}:
        return
    returns = fn.returns
    if returns is None:
        return
    text = ast.unparse(returns).strip("'\"")
    if text not in ("None", "NoReturn") and not (_RETURN_SECTIONS & sections.keys()):
        problems.setdefault(qualname, set()).add("returns")


def _check_class(qualname: str, cls: ast.ClassDef, problems: Dict[str, Set[str]]) -> None:
    if not ast.get_docstring(cls):
        problems.setdefault(qualname, set()).add("docstring")
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_") or node.name == "__init__":
                _check_function(f"{qualname}.{node.name}", node, cls, problems)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            _check_class(f"{qualname}.{node.name}", node, problems)


def _problems() -> Dict[str, Set[str]]:
    problems: Dict[str, Set[str]] = {}
    for module, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if not ast.get_docstring(tree):
            problems.setdefault(module, set()).add("docstring")
        for node in tree.body:
            if getattr(node, "name", "_").startswith("_"):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _check_function(f"{module}.{node.name}", node, None, problems)
            elif isinstance(node, ast.ClassDef):
                _check_class(f"{module}.{node.name}", node, problems)
    return problems


def test_sections_parser_reads_google_style() -> None:
    doc = """Summary.

    Args:
        name: the key.
        *args: more, wrapping
            onto a second line: not an entry.
        count (int): how many.

    Returns:
        The value: a str.
    """
    sections = _sections(doc)
    assert sections["Args"] == ["name", "args", "count"]
    assert "Returns" in sections


def test_checker_flags_each_gap() -> None:
    source = '''
class Thing:
    """A thing.

    Args:
        size: how big.
    """

    def __init__(self, size: int, colour: str) -> None:
        pass

    def bare(self) -> None:
        pass

    def value(self, key: str) -> int:
        """The value.

        Args:
            key: the key.
        """

    @property
    def width(self) -> int:
        """The width."""
'''
    problems: Dict[str, Set[str]] = {}
    cls = ast.parse(source).body[0]
    assert isinstance(cls, ast.ClassDef)
    _check_class("m.Thing", cls, problems)
    assert problems == {
        "m.Thing.__init__": {"args"},
        "m.Thing.bare": {"docstring"},
        "m.Thing.value": {"returns"},
    }


def test_public_api_docstrings_are_complete() -> None:
    problems = _problems()
    missing = {
        name: sorted(kinds - KNOWN_GAPS.get(name, set()))
        for name, kinds in sorted(problems.items())
        if kinds - KNOWN_GAPS.get(name, set())
    }
    assert not missing, (
        "public API without what the reference needs (docstring, an Args entry for each"
        " parameter, Returns for a value; see docs/about-docs.md):\n"
        + "\n".join(f"  {name}: {', '.join(kinds)}" for name, kinds in missing.items())
    )


def test_known_gaps_are_still_gaps() -> None:
    problems = _problems()
    stale = {
        name: sorted(kinds - problems.get(name, set()))
        for name, kinds in sorted(KNOWN_GAPS.items())
        if kinds - problems.get(name, set())
    }
    assert not stale, (
        "documented now, remove from KNOWN_GAPS in tests/test_docstrings.py:\n"
        + "\n".join(f"  {name}: {', '.join(kinds)}" for name, kinds in stale.items())
    )
