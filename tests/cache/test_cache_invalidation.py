"""Client-side caching: invalidation by another client's write, by expiry,
FLUSHDB and eviction; the OPTIN and BCAST modes; read-your-writes after the
client's own writes, pipelines, transactions, blocking commands and
``r.client()`` (real servers)."""

from __future__ import annotations

from typing import List

import gevent
import redis

import geredis

from ..conftest import RedisServer
from .conftest import make_cached, round_trip, settle


def test_another_clients_write(cached: geredis.Redis, writer: geredis.Redis) -> None:
    writer.set("k", "old")
    cached.hset("h", "f", "1")
    assert cached.get("k") == b"old" and cached.hget("h", "f") == b"1"
    writer.set("k", "new")
    writer.hset("h", "f", "2")
    round_trip(cached)  # the invalidations came before this reply
    assert cached.get("k") == b"new"
    assert cached.hget("h", "f") == b"2"
    assert cached.cache.stats()["invalidations"] == 2


def test_expiry_sends_an_invalidation(redis_server: RedisServer,
                                      clients: List[geredis.Redis]) -> None:
    r = make_cached(redis_server, config=dict(fetch_ttl=False))  # trust the server's push
    clients.append(r)
    r.set("k", "v", px=100)
    assert r.get("k") == b"v" and r.get("k") == b"v"
    settle(lambda: r.cache.stats()["invalidations"] == 1)  # active expiry's push
    assert r.get("k") is None


def test_flushdb_empties_the_cache(cached: geredis.Redis, writer: geredis.Redis) -> None:
    for i in range(10):
        writer.set(f"k{i}", i)
        cached.get(f"k{i}")
    assert len(cached.cache) == 10
    flushes = cached.cache.stats()["flushes"]
    writer.flushdb()
    round_trip(cached)
    assert len(cached.cache) == 0 and cached.cache.stats()["flushes"] == flushes + 1
    assert cached.get("k1") is None


def test_own_swapdb_empties_the_cache(cached: geredis.Redis, writer: geredis.Redis) -> None:
    # Redis invalidates nothing on SWAPDB; the client knows its own.
    writer.set("k", "db0")
    with geredis.Redis(port=writer.settings.port, db=1) as db1:
        db1.set("k", "db1")
        assert cached.get("k") == b"db0" and cached.get("k") == b"db0"
        assert cached.swapdb(0, 1) is True
        assert cached.get("k") == b"db1"
        cached.swapdb(0, 1)
        db1.flushdb()


def test_eviction_sends_an_invalidation(own_server: RedisServer,
                                        clients: List[geredis.Redis]) -> None:
    r = make_cached(own_server)
    w = geredis.Redis(port=own_server.port)
    clients += [r, w]
    w.config_set("maxmemory-policy", "volatile-lru")  # only keys with a TTL go
    w.set("victim", "v", ex=3600)
    assert r.get("victim") == b"v" and r.get("victim") == b"v"
    used = int(w.info("memory")["used_memory"])
    w.config_set("maxmemory", used + 200_000)
    blob = "x" * 10_000
    for i in range(100):
        try:
            w.set(f"filler{i}", blob)  # no TTL: only the victim can be evicted
        except redis.OutOfMemoryError:
            break  # the victim went, and nothing else can
        if not w.exists("victim"):
            break
    assert not w.exists("victim")
    round_trip(r)
    assert r.get("victim") is None
    assert r.cache.stats()["invalidations"] == 1


def test_optin_caches_only_what_is_asked(redis_server: RedisServer, writer: geredis.Redis,
                                         clients: List[geredis.Redis]) -> None:
    r = make_cached(redis_server, config=dict(mode="optin"))
    clients.append(r)
    writer.set("plain", "1")
    writer.set("chosen", "1")
    assert r.get("plain") == b"1" and r.get("plain") == b"1"
    assert r.cache.stats()["entries"] == 0  # plain reads are neither cached nor tracked
    assert r.cached.get("chosen") == b"1" and r.cached.get("chosen") == b"1"
    assert r.cache.stats()["hits"] == 1
    info = r.execute_command("CLIENT", "TRACKINGINFO")
    flags = info[b"flags"] if b"flags" in info else info["flags"]
    assert b"optin" in flags
    writer.set("chosen", "2")
    round_trip(r)
    assert r.cached.get("chosen") == b"2"


def test_bcast_with_prefixes(redis_server: RedisServer, writer: geredis.Redis,
                             clients: List[geredis.Redis]) -> None:
    r = make_cached(redis_server, config=dict(mode="bcast", prefixes=["user:", b"cfg:"]))
    clients.append(r)
    writer.mset({"user:1": "a", "cfg:x": "b", "other": "c"})
    for _ in range(2):
        assert r.get("user:1") == b"a" and r.get("cfg:x") == b"b" and r.get("other") == b"c"
    stats = r.cache.stats()
    assert stats["entries"] == 2 and stats["hits"] == 2  # "other" is outside the prefixes
    writer.set("user:1", "a2")
    writer.set("user:2", "never read")  # BCAST reports it too; nothing to drop
    round_trip(r)
    assert r.get("user:1") == b"a2"
    assert r.cache.stats()["invalidations"] == 1


def test_read_your_own_writes(cached: geredis.Redis) -> None:
    cached.set("k", 0)
    assert cached.get("k") == b"0"
    for i in range(1, 200):
        assert cached.set("k", i) is True
        assert cached.get("k") == str(i).encode()  # never the cached older value
        assert cached.get("k") == str(i).encode()
    assert cached.cache.stats()["hits"] > 100


def test_read_your_writes_after_other_connections(cached: geredis.Redis) -> None:
    cached.set("k", "0")
    cached.rpush("q", "item")
    assert cached.get("k") == b"0" and cached.llen("q") == 1
    with cached.pipeline() as pipe:
        pipe.set("k", "1").execute()
    assert cached.get("k") == b"1"
    cached.transaction(lambda pipe: (pipe.multi(), pipe.set("k", "2")), "k")
    assert cached.get("k") == b"2"
    with cached.pipeline() as pipe:
        pipe.watch("k")
        pipe.set("k", "2.5")  # immediate, on the WATCH connection
        assert cached.get("k") == b"2.5"
    assert list(cached.blpop(["q"], timeout=1)) == [b"q", b"item"]  # a dedicated connection
    assert cached.llen("q") == 0
    with cached.client() as pinned:
        pinned.set("k", "3")
    assert cached.get("k") == b"3"
    with cached.pipeline(transaction=False, threshold=1) as pipe:  # dedicated, in chunks
        pipe.set("k", "4").set("other", "x").execute()
    assert cached.get("k") == b"4"


def test_many_greenlets_share_one_read(cached: geredis.Redis, writer: geredis.Redis) -> None:
    writer.set("hot", "v")
    calls = cached.info("commandstats")["cmdstat_get"]["calls"]
    greenlets = [gevent.spawn(cached.get, "hot") for _ in range(200)]
    gevent.joinall(greenlets, raise_error=True)
    assert all(g.value == b"v" for g in greenlets)
    stats = cached.cache.stats()
    assert stats["misses"] == 1 and stats["joins"] == 199
    assert cached.info("commandstats")["cmdstat_get"]["calls"] == calls + 1
