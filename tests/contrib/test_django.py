"""Django's cache framework on geredis: our backend, Django's own backend
with redis-py patched, and django-redis through ``REDIS_CLIENT_CLASS``.

Django keeps a cache backend per thread, which under gevent is per greenlet:
200 concurrent "requests" each get their own backend (and, with redis-py, their
own connection pool). On geredis the server must see one data connection."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

django = pytest.importorskip("django")
pytest.importorskip("django_redis")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(CACHES={}, USE_TZ=True, STATIC_URL="/static/")
    django.setup()

from django.core.cache import caches  # noqa: E402
from django.test import override_settings  # noqa: E402

from ..conftest import RedisServer  # noqa: E402
from .conftest import in_flight_together  # noqa: E402


@pytest.fixture
def cache_settings(server: RedisServer) -> Iterator[Dict[str, Any]]:
    """CACHES for three aliases on the test's server; applied by each test."""
    yield {
        "geredis": {
            "BACKEND": "geredis.contrib.django.RedisCache",
            "LOCATION": f"{server.url}/0",
            "OPTIONS": {"socket_timeout": 10},
        },
        "django": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{server.url}/1",
        },
        "django_redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"{server.url}/2",
            "OPTIONS": {"REDIS_CLIENT_CLASS": "geredis.Redis"},
        },
    }


def exercise(alias: str, i: int) -> None:
    """What a request does with the cache; every value is the greenlet's own."""
    cache = caches[alias]
    key, value = f"user:{i}", {"id": i, "name": f"user-{i}", "tags": ["a", str(i)]}
    cache.set(key, value, timeout=60)
    assert cache.get(key) == value
    assert cache.add(key, "other") is False
    cache.set(f"hits:{i}", i)
    assert cache.incr(f"hits:{i}", 5) == i + 5
    cache.set_many({f"frag:{i}:a": f"<a{i}>", f"frag:{i}:b": f"<b{i}>"}, timeout=60)
    assert cache.get_many([f"frag:{i}:a", f"frag:{i}:b", "missing"]) == {
        f"frag:{i}:a": f"<a{i}>", f"frag:{i}:b": f"<b{i}>",
    }
    assert cache.has_key(key)
    cache.delete(key)
    assert cache.get(key, "gone") == "gone"


def test_geredis_backend_serves_200_greenlets_on_one_connection(
    server: RedisServer, cache_settings: Dict[str, Any],
) -> None:
    with override_settings(CACHES=cache_settings):
        seen = in_flight_together(lambda i: exercise("geredis", i), server.port)
    assert len(seen) == 1, seen


def test_django_backend_with_redis_patched_uses_one_connection(
    server: RedisServer, cache_settings: Dict[str, Any], patched_redis: None,
) -> None:
    # Django builds a redis-py pool per backend (per greenlet) and a
    # redis.Redis per call: patched, each is a geredis client on one connection.
    with override_settings(CACHES=cache_settings):
        seen = in_flight_together(lambda i: exercise("django", i), server.port)
    assert len(seen) == 1, seen


def test_django_redis_with_geredis_client_class(
    server: RedisServer, cache_settings: Dict[str, Any],
) -> None:
    def request(i: int) -> None:
        exercise("django_redis", i)
        cache = caches["django_redis"]
        cache.set(f"ttl:{i}", i, timeout=100)
        assert 0 < cache.ttl(f"ttl:{i}") <= 100
        with cache.lock(f"lock:{i}", timeout=5):
            cache.set(f"locked:{i}", i)
        assert sorted(cache.keys(f"frag:{i}:*")) == [f"frag:{i}:a", f"frag:{i}:b"]
        assert cache.delete_pattern(f"frag:{i}:*") == 2

    with override_settings(CACHES=cache_settings):
        seen = in_flight_together(request, server.port)
        from django_redis import get_redis_connection

        raw = get_redis_connection("django_redis")
        assert type(raw).__module__ == "geredis.client"
    assert len(seen) == 1, seen


def test_django_redis_close_connection_reconnects(
    server: RedisServer, cache_settings: Dict[str, Any],
) -> None:
    # CLOSE_CONNECTION: django-redis calls connection_pool.disconnect() when
    # each request ends; the other requests' commands must not fail for it.
    cache_settings["django_redis"]["OPTIONS"]["CLOSE_CONNECTION"] = True

    def request(i: int) -> None:
        exercise("django_redis", i)
        caches["django_redis"].close()
        assert caches["django_redis"].get(f"hits:{i}") == i + 5  # reconnects

    with override_settings(CACHES=cache_settings):
        in_flight_together(request, server.port)
