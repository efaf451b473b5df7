"""Report the gaps in geredis's public docstrings, as the API reference sees them.

    ./dev docs build                                  # installs griffe into .venv
    .venv/bin/python docs/hooks/docstring_scan.py     # from the checkout's root

How this works: Griffe loads the package from source, as mkdocstrings does
(with this folder's extensions, so ``#:`` comments count as docstrings), and
every public object is checked: modules, classes and functions without a
docstring, public constants without a ``#:`` comment, parameters without an
``Args:`` entry (an ``__init__``'s on its class; a dataclass's fields as
documented attributes), a non-None return without ``Returns:``/``Yields:``,
a function whose body has a ``raise X`` but no ``Raises:`` section, and a
``Raises:`` entry that names more than one class or a bare redis-py/geredis
class (write ``redis.TimeoutError``, ``geredis.ClientClosedError``).

It is a report for a human, not a gate: a ``raise`` may be caught in the
same function, and a function may raise through what it calls.
``tests/test_docstrings.py`` enforces the part that can be checked exactly.
Exit status 0 whatever it finds.
"""

from __future__ import annotations

import ast
import pathlib
import sys
import textwrap
from typing import Any, Dict, List, Set

import griffe

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import griffe_roles  # noqa: E402

#: Exception names that must be written qualified in a ``Raises:`` entry:
#: redis-py's (some shadow builtins) and geredis's own.
QUALIFY = {
    "AuthenticationError", "ClientClosedError", "ConnectionClosedError", "ConnectionError",
    "DataError", "ExecAbortError", "MasterNotFoundError", "PoolExhaustedError",
    "ProtocolError", "PubSubError", "RedisClusterException", "RedisError", "ResponseError",
    "SharedConnectionError", "SlaveNotFoundError", "ThreadAffinityError", "TimeoutError",
    "TLSError", "WatchError",
}


def _sections(obj: Any) -> Dict[str, List[Any]]:
    found: Dict[str, List[Any]] = {}
    if obj is not None and obj.docstring is not None:
        for section in obj.docstring.parsed:
            found.setdefault(section.kind.value, []).extend(getattr(section, "value", []) or [])
    return found


def _raised(fn: Any) -> Set[str]:
    try:
        tree = ast.parse(textwrap.dedent(fn.source))
    except (SyntaxError, OSError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            names.add(ast.unparse(exc))
    return names


def _check_function(fn: Any, owner: Any, report: List[str]) -> None:
    if fn.name != "__init__" and fn.docstring is None:
        report.append(f"{fn.path}: no docstring")
        return
    sections = _sections(fn)
    if fn.name == "__init__":
        for kind, items in _sections(owner).items():
            sections.setdefault(kind, []).extend(items)
    documented = {p.name.lstrip("*") for p in
                  sections.get("parameters", []) + sections.get("other parameters", [])}
    if fn.name == "__init__":
        documented |= {a.name for a in sections.get("attributes", [])}
        for klass in [owner, *_mro(owner)]:
            documented |= {name for name, m in klass.members.items()
                           if not m.is_alias and m.is_attribute and m.docstring}
    missing = [p.name for p in fn.parameters
               if p.name not in ("self", "cls") and p.name not in documented]
    if missing:
        report.append(f"{fn.path}: Args missing: {', '.join(missing)}")
    labels = fn.labels
    returns = None if fn.returns is None else str(fn.returns)
    if fn.name != "__init__" and not fn.name.startswith("__") and not labels & {
            "property", "cached_property", "setter"}:
        if returns not in (None, "None", "NoReturn") and not (
                sections.keys() & {"returns", "yields"}):
            report.append(f"{fn.path}: Returns missing (-> {returns})")
    raised = _raised(fn)
    if raised and "raises" not in sections:
        report.append(f"{fn.path}: Raises missing? (raise {', '.join(sorted(raised))})")
    for entry in sections.get("raises", []):
        name = str(entry.annotation)
        if "," in name or " " in name.strip():
            report.append(f"{fn.path}: Raises entry names several classes: {name!r}")
        elif name in QUALIFY:
            report.append(f"{fn.path}: Raises entry {name!r}: write redis.{name} or geredis.{name}")


def _mro(cls: Any) -> List[Any]:
    try:
        return list(cls.mro())
    except Exception:  # a base outside the package
        return []


def _walk(obj: Any, report: List[str]) -> None:
    if obj.is_module and obj.docstring is None:
        report.append(f"{obj.path}: no module docstring")
    for name, member in obj.members.items():
        if member.is_alias or (name.startswith("_") and name != "__init__"):
            continue
        if member.is_module:
            _walk(member, report)
        elif member.is_class:
            if member.docstring is None:
                report.append(f"{member.path}: no docstring")
            _walk(member, report)
        elif member.is_function:
            if name == "__init__" or not name.startswith("_"):
                _check_function(member, obj if obj.is_class else None, report)
        elif member.is_attribute and member.docstring is None and name != "logger":
            if "instance-attribute" not in member.labels:
                report.append(f"{member.path}: attribute without a docstring or #: comment")


def main() -> None:
    extensions = griffe.load_extensions(griffe_roles.SphinxRolesAsCode,
                                        griffe_roles.SphinxCommentsAsDocstrings)
    package = griffe.load("geredis", search_paths=[str(HERE.parent.parent)],
                          docstring_parser="google", extensions=extensions,
                          docstring_options={"warnings": False, "returns_multiple_items": False},
                          resolve_aliases=False)
    report: List[str] = []
    _walk(package, report)
    print("\n".join(report))
    print(f"{len(report)} findings", file=sys.stderr)


if __name__ == "__main__":
    main()
