"""Job functions for the RQ and huey tests (importable by name)."""

from __future__ import annotations


def double(value: int) -> int:
    return value * 2


def greet(name: str) -> str:
    return f"hello {name}"
