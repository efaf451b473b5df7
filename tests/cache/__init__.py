"""Client-side caching tests (real servers; see conftest.py)."""
