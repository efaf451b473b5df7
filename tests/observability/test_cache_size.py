"""The client-side cache's size in ``r.stats()`` (``cache_entries``,
``cache_bytes``) and in the metrics (``redis.client.csc.items``,
``geredis.client.csc.bytes``): up on misses, down on invalidations and
flushes, 0 for a client without a cache."""

from __future__ import annotations

from typing import Iterator

import pytest

import geredis
from geredis.cache import CacheConfig
from geredis.observability import disable_metrics, enable_metrics

from ..conftest import RedisServer
from .conftest import Meter, value

DB = 6


@pytest.fixture
def caching(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    c = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=DB, protocol=3,
                      socket_timeout=5, cache_config=CacheConfig())
    c.flushdb()
    yield c
    c.close()


def test_cache_size_in_stats_and_metrics(redis_server: RedisServer, caching: geredis.Redis,
                                         client: geredis.Redis, meter: Meter) -> None:
    provider, reader = meter
    writer = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=DB, socket_timeout=5)
    metrics = enable_metrics(caching, meter_provider=provider, histograms=False)
    attrs = {"server.port": redis_server.port, "db.namespace": str(DB)}
    cache = caching.cache
    assert cache is not None
    try:
        writer.mset({"a": "1" * 100, "b": "2" * 200, "c": "3"})
        s = caching.stats()
        assert (s.cache_entries, s.cache_bytes) == (0, 0)
        assert value(reader, "redis.client.csc.items", attrs) == 0

        assert [caching.get(k) for k in "abc"] == [b"1" * 100, b"2" * 200, b"3"]  # misses
        s = caching.stats()
        assert (s.cache_misses, s.cache_entries) == (3, 3)
        full = cache.stats()["bytes"]
        assert s.cache_bytes == full > 300  # the values and the keys, at least
        assert value(reader, "redis.client.csc.items", attrs) == 3
        assert value(reader, "geredis.client.csc.bytes", attrs) == full

        assert caching.get("a") == b"1" * 100  # a hit: the size stays
        assert (caching.stats().cache_hits, caching.stats().cache_entries) == (1, 3)

        writer.set("b", "changed")  # another connection's write: the server invalidates
        caching.ping()  # the invalidation comes before this reply, on the same connection
        s = caching.stats()
        assert s.cache_entries == 2 and s.cache_evictions == {"invalidation": 1}
        assert s.cache_bytes == cache.stats()["bytes"] < full - 200
        assert value(reader, "redis.client.csc.items", attrs) == 2
        assert value(reader, "geredis.client.csc.bytes", attrs) == s.cache_bytes

        caching.set("a", "own write")  # the client's own write drops its entry too
        assert caching.stats().cache_entries == 1

        assert cache.flush() == 1
        s = caching.stats()
        assert (s.cache_entries, s.cache_bytes) == (0, 0)
        assert value(reader, "redis.client.csc.items", attrs) == 0
        assert value(reader, "geredis.client.csc.bytes", attrs) == 0

        # A client without a cache reports 0 (db 2: the plain client fixture's).
        client.set("x", 1)
        assert client.get("x") == b"1"
        assert (client.stats().cache_entries, client.stats().cache_bytes) == (0, 0)
    finally:
        disable_metrics(metrics)
        writer.close()


def test_cache_size_of_every_client_metric_sums_per_database(
        redis_server: RedisServer, caching: geredis.Redis, meter: Meter) -> None:
    provider, reader = meter
    metrics = enable_metrics(meter_provider=provider, histograms=False)
    try:
        caching.set("k", "v")
        caching.get("k")
        caching.get("missing")  # a nil reply is cached too
        attrs = {"server.port": redis_server.port, "db.namespace": str(DB)}
        assert value(reader, "redis.client.csc.items", attrs) == caching.stats().cache_entries == 2
        caching.flushdb()  # FLUSHDB: the server invalidates every entry
        caching.ping()
        assert value(reader, "redis.client.csc.items", attrs) == 0
    finally:
        disable_metrics(metrics)
