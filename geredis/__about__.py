"""The package version, importable without importing the rest of geredis."""

__version__ = "0.1.0"
