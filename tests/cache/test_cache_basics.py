"""Client-side caching: hits, misses, keying, copies, bounds, the API and
what is refused at construction (real servers)."""

from __future__ import annotations

from typing import List

import gevent
import pytest
import redis
from redis.cache import CacheConfig as RedisPyCacheConfig
from redis.cache import DefaultCache

import geredis
from geredis.cache import CacheConfig, ClientCache

from ..conftest import RedisServer
from .conftest import make_cached, round_trip


def test_hit_after_miss_and_stats(cached: geredis.Redis) -> None:
    cached.set("k", "v")
    assert cached.get("k") == b"v"
    assert cached.get("k") == b"v"
    assert cached.get("missing") is None
    assert cached.get("missing") is None
    stats = cached.cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 2, 2)
    assert stats["bytes"] > 0
    assert len(cached.cache) == 2
    assert cached.get_cache() is cached.cache


def test_redis_py_config_and_other_commands(redis_server: RedisServer,
                                            clients: List[geredis.Redis]) -> None:
    r = geredis.Redis(port=redis_server.port, protocol=3,
                      cache_config=RedisPyCacheConfig(max_size=100))
    clients.append(r)
    r.hset("h", mapping={"f1": "1", "f2": "2"})
    assert r.hget("h", "f1") == b"1"
    assert r.hget("h", "f2") == b"2"  # another entry: not f1's value
    assert r.hget("h", "f1") == b"1"
    r.rpush("l", "a", "b")
    assert r.lrange("l", 0, -1) == [b"a", b"b"]
    assert r.lrange("l", 0, 0) == [b"a"]
    assert r.mget("h", "nope") == [None, None]
    assert r.exists("h", "l", "nope") == 2
    assert r.cache.stats()["entries"] == 6
    assert r.incr("n") == 1 and r.incr("n") == 2  # writes never cached
    assert r.hgetall("h") == {b"f1": b"1", b"f2": b"2"}
    assert r.hgetall("h") == {b"f1": b"1", b"f2": b"2"}
    assert r.cache.stats()["hits"] == 2


def test_keys_by_argument_type(cached: geredis.Redis) -> None:
    cached.set("1", "one")
    cached.set("1.0", "float")
    assert cached.get(1) == b"one"
    assert cached.get(1.0) == b"float"  # 1 == 1.0 in Python, not on the wire
    assert cached.get("1") == b"one"
    assert cached.get(b"1") == b"one"
    with pytest.raises(redis.DataError):
        cached.get(True)  # refused as by redis-py, never found in the cache
    assert cached.get(1) == b"one"


def test_mutable_replies_are_copied(cached: geredis.Redis) -> None:
    cached.hset("h", mapping={"a": "1"})
    cached.rpush("l", "x", "y")
    cached.zadd("z", {"m": 1.5})
    for _ in range(2):
        h = cached.hgetall("h")
        h[b"b"] = b"2"
        lst = cached.lrange("l", 0, -1)
        lst.append(b"z")
        z = cached.zrange("z", 0, -1, withscores=True)
        z.append(("bogus", 0))
    assert cached.hgetall("h") == {b"a": b"1"}
    assert cached.lrange("l", 0, -1) == [b"x", b"y"]
    assert cached.zrange("z", 0, -1, withscores=True) == [[b"m", 1.5]]
    assert cached.cache.stats()["hits"] >= 6


def test_error_replies_are_not_cached(cached: geredis.Redis) -> None:
    cached.rpush("l", "x")
    for _ in range(2):
        with pytest.raises(redis.ResponseError):
            cached.get("l")
    assert cached.cache.stats()["entries"] == 0


def test_lru_by_entries_and_bytes(redis_server: RedisServer, clients: List[geredis.Redis]) -> None:
    r = make_cached(redis_server, config=dict(max_size=10))
    clients.append(r)
    for i in range(20):
        r.set(f"k{i}", i)
        r.get(f"k{i}")
    r.get("k19")  # used: survives the next evictions
    for i in range(20, 25):
        r.get(f"k{i}")
    stats = r.cache.stats()
    assert stats["entries"] == 10 and stats["evictions"] == 15
    hits = stats["hits"]
    r.get("k19")
    assert r.cache.stats()["hits"] == hits + 1
    big = make_cached(redis_server, config=dict(max_bytes=50_000))
    clients.append(big)
    big.set("blob", "x" * 10_000)
    for i in range(20):
        big.getrange("blob", i, 10_000)  # ~10 KB per entry
    stats = big.cache.stats()
    assert 1 <= stats["entries"] <= 5 and stats["bytes"] <= 50_000 and stats["evictions"] > 10


def test_ttl_cap_and_pttl(own_server: RedisServer, clients: List[geredis.Redis]) -> None:
    r = make_cached(own_server, config=dict(ttl=0.2))
    clients.append(r)
    r.set("k", "v")
    assert r.get("k") == b"v" and r.get("k") == b"v"
    gevent.sleep(0.3)
    assert r.get("k") == b"v"
    assert r.cache.stats()["expirations"] == 1
    # The key's own TTL (read with PTTL) caps the entry too: ask for a long
    # client TTL and a short key TTL. With the server's active expiry off, no
    # invalidation comes: the entry must expire by itself.
    slow = make_cached(own_server, config=dict(ttl=60))
    clients.append(slow)
    slow.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    slow.set("short", "v", px=200)
    assert slow.get("short") == b"v" and slow.get("short") == b"v"
    gevent.sleep(0.25)
    assert slow.get("short") is None
    assert slow.cache.stats()["expirations"] == 1
    assert slow.cache.stats()["invalidations"] == 0


def test_cached_view_ttl_and_refusals(cached: geredis.Redis) -> None:
    cached.set("k", "v")
    assert cached.cached.get("k", ttl=0.1) == b"v"
    assert cached.cached.get("k") == b"v"
    assert cached.cache.stats()["hits"] == 1
    gevent.sleep(0.15)
    assert cached.cached(ttl=5).get("k") == b"v"
    assert cached.cache.stats()["expirations"] == 1
    cached.hset("h", "f", "1")
    assert cached.cached.hget("h", "f", ttl=5) == b"1"
    with pytest.raises(redis.DataError, match="not a cacheable read"):
        cached.cached.incr("n")
    assert cached.get("n") is None  # nothing was sent
    with pytest.raises(redis.DataError):
        cached.cached.sort_ro("l", by="w*")  # reads keys the server does not track
    with pytest.raises(redis.DataError):
        cached.cached.xread({"s": "$"}, block=100)  # blocks: never on the shared connection


def test_construction_refusals(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="RESP3"):
        geredis.Redis(port=redis_server.port, protocol=2, cache_config=CacheConfig())
    with pytest.raises(ValueError, match="integrity_check"):
        geredis.Redis(port=redis_server.port, integrity_check=True, cache_config=CacheConfig())
    with pytest.raises(ValueError, match="cache_config=your_cache.config"):
        geredis.Redis(port=redis_server.port, cache=DefaultCache(RedisPyCacheConfig()))
    with pytest.raises(ValueError, match="mode"):
        geredis.Redis(port=redis_server.port, cache_config=CacheConfig(mode="lazy"))
    with pytest.raises(ValueError, match="prefixes"):
        geredis.Redis(port=redis_server.port, cache_config=CacheConfig(prefixes=["a:"]))
    with pytest.raises(ValueError, match="max_size"):
        geredis.Redis(port=redis_server.port, cache_config=CacheConfig(max_size=0))
    shared = ClientCache()
    with geredis.Redis(port=redis_server.port, cache=shared) as first:
        assert first.cache is shared
        with pytest.raises(ValueError, match="one set of connections"):
            geredis.Redis(port=redis_server.port, db=1, cache=shared)
    with geredis.Redis(port=redis_server.port) as plain:
        assert plain.cache is None
        with pytest.raises(redis.RedisError, match="caching client"):
            plain.cached.get("k")


def test_decode_responses_and_futures(redis_server: RedisServer,
                                      clients: List[geredis.Redis]) -> None:
    r = make_cached(redis_server, decode_responses=True)
    w = geredis.Redis(port=redis_server.port)
    clients += [r, w]
    r.set("k", "v")
    assert r.get("k") == "v" and r.get("k") == "v"
    w.set("k", "v2")
    r.ping()
    assert r.get("k") == "v2"  # a decoded invalidation found the entry
    assert r.futures.get("k").get() == "v2"
    assert r.futures.set("k", "v3").get() is True
    assert r.futures.get("k").get() == "v3"
    assert r.execute_async("HGETALL", "nope").get(timeout=5) == {}
    assert r.cache.stats()["hits"] >= 2


def test_pipelines_transactions_and_pinned_clients_bypass(cached: geredis.Redis) -> None:
    cached.set("k", "v")
    assert cached.get("k") == b"v"
    hits = cached.cache.stats()["hits"]
    with cached.pipeline() as pipe:
        assert pipe.get("k").get("k").execute() == [b"v", b"v"]
    with cached.pipeline(transaction=False) as pipe:
        assert pipe.get("k").execute() == [b"v"]
    with cached.client() as pinned:
        assert pinned.get("k") == b"v"
        assert pinned.cache is None
    assert cached.cache.stats()["hits"] == hits
    calls = cached.info("commandstats")["cmdstat_get"]["calls"]
    assert cached.get("k") == b"v"  # a hit again: no GET reaches the server
    assert cached.info("commandstats")["cmdstat_get"]["calls"] == calls


def test_clients_share_connections_and_cache_by_settings(redis_server: RedisServer,
                                                         clients: List[geredis.Redis]) -> None:
    a = make_cached(redis_server)
    b = make_cached(redis_server)  # equal settings and cache config: one connection, one cache
    plain = geredis.Redis(host="127.0.0.1", port=redis_server.port, protocol=3)
    other = make_cached(redis_server, config=dict(ttl=5))
    clients += [a, b, plain, other]
    assert a.cache is b.cache and a.connection_pool.connections() is b.connection_pool.connections()
    assert plain.cache is None
    assert plain.connection_pool.connections() is not a.connection_pool.connections()
    assert other.cache is not a.cache
    plain.set("k", "v")
    assert a.get("k") == b"v"
    round_trip(a)  # the read's PTTL is in: the entry too
    assert b.get("k") == b"v"
    assert a.cache.stats()["hits"] == 1 and a.stats().cache_hits == 1
    a.close()
    assert b.get("k") == b"v"  # b still attached: the cache lives on
    assert b.cache.stats()["hits"] == 2
