"""``r.stats()``: exact figures after a known workload."""

from __future__ import annotations

import gc
import subprocess
import sys
from typing import Iterator

import gevent
import pytest
import redis

import geredis
from geredis.dedicated import MAX_DEDICATED

from ..conftest import RedisServer

OK, V, NULL = b"+OK\r\n", b"$1\r\nv\r\n", b"_\r\n"
WRONGTYPE = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"


@pytest.fixture
def c(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=6, socket_timeout=5)
    yield client
    client.close()


def test_counts_after_a_known_workload(c: geredis.Redis) -> None:
    pack = c._packer.pack
    sent = received = 0
    for _ in range(10):  # ten round trips: ten sends of one command
        assert c.set("k", "v") is True
    sent += 10 * len(pack(("SET", "k", "v")))
    received += 10 * len(OK)
    getters = [gevent.spawn(c.get, "k") for _ in range(50)]  # queued in one loop pass
    gevent.joinall(getters, raise_error=True)
    sent += 50 * len(pack(("GET", "k")))
    received += 50 * len(V)
    with pytest.raises(redis.ResponseError):
        c.hget("k", "f")
    sent += len(pack(("HGET", "k", "f")))
    received += len(WRONGTYPE)
    with c.pipeline(transaction=False) as pipe:
        pipe.set("a", 1).incr("a").get("a").delete("a").exists("a")
        assert pipe.execute() == [True, 2, b"2", 1, 0]
    sent += len(c._packer.pack_commands([("SET", "a", 1), ("INCRBY", "a", 1), ("GET", "a"),
                                         ("DEL", "a"), ("EXISTS", "a")]))
    received += len(OK + b":2\r\n" + b"$1\r\n2\r\n" + b":1\r\n" + b":0\r\n")
    assert c.blpop(["nothing"], timeout=0.05) is None  # on a dedicated connection
    sent += len(pack(("BLPOP", "nothing", 0.05)))
    received += len(NULL)

    s = c.stats()
    assert (s.commands, s.replies, s.failed, s.in_flight) == (67, 67, 0, 0)
    assert (s.batches, s.batched, s.mean_batch_size) == (10 + 1 + 1 + 1 + 1, 67, 67 / 14)
    assert (s.bytes_sent, s.bytes_received) == (sent, received)
    assert s.errors == {"ResponseError": 1}
    assert (s.connects, s.reconnects, s.timeouts, s.late_replies) == (2, 0, 0, 0)
    assert (s.dedicated_leases, s.dedicated_in_use, s.dedicated_idle, s.dedicated_max) == (
        1, 0, 1, MAX_DEDICATED)
    assert s.connected == 1
    flat = s.as_dict()
    assert flat["errors.ResponseError"] == 1 and flat["commands"] == 67


def test_timeouts_late_replies_and_reconnects(own_server: RedisServer) -> None:
    c = geredis.Redis(host="127.0.0.1", port=own_server.port, socket_timeout=0.2, retry=None)
    try:
        c.ping()
        with pytest.raises(redis.TimeoutError):
            c.execute_command("DEBUG", "SLEEP", "0.5")
        with gevent.Timeout(5):
            while c.stats().late_replies == 0:
                gevent.sleep(0.02)
        s = c.stats()
        assert (s.timeouts, s.late_replies, s.replies, s.in_flight) == (1, 1, 2, 0)
        assert s.errors == {"TimeoutError": 1}
        own_server.stop()
        with pytest.raises(redis.ConnectionError):
            for _ in range(100):  # the EOF may land just after a command
                c.ping()
                gevent.sleep(0.01)
        own_server.start()
        assert c.ping() is True
        s = c.stats()
        assert s.reconnects >= 1 and s.connects == s.reconnects + 1
        assert sum(s.errors.values()) == 2
    finally:
        c.close()


def test_dedicated_pool_and_pubsub_figures(redis_server: RedisServer) -> None:
    c = geredis.Redis(host="127.0.0.1", port=redis_server.port, max_dedicated=1,
                      dedicated_timeout=0.05)
    try:
        blocker = gevent.spawn(c.blpop, ["empty"], timeout=0.5)
        gevent.sleep(0.05)
        assert c.stats().dedicated_in_use == 1
        with pytest.raises(geredis.PoolExhaustedError):
            c.blpop(["empty"], timeout=0.1)
        blocker.join()
        s = c.stats()
        # A blocking command does not wait for a dedicated connection.
        assert (s.dedicated_leases, s.dedicated_waits, s.dedicated_exhausted) == (1, 0, 1)
        assert s.errors == {"PoolExhaustedError": 1}

        p = c.pubsub(max_queued=2)
        p.subscribe("chan")
        for i in range(5):
            c.publish("chan", f"m{i}")
        with gevent.Timeout(5):
            while c.stats().pubsub_received < 5:
                gevent.sleep(0.01)
        s = c.stats()
        assert (s.pubsub_subscribed, s.pubsub_received) == (1, 5)
        assert s.pubsub_queued == 2 and s.pubsub_dropped == 4  # the confirmation too
        p.close()
        del p
        gc.collect()
        s = c.stats()  # a collected pub/sub keeps its counts in the totals
        assert (s.pubsub_subscribed, s.pubsub_received, s.pubsub_dropped) == (0, 5, 4)
    finally:
        c.close()


def test_reporting_interface_for_cluster_sentinel_and_caching(c: geredis.Redis) -> None:
    stats = c._stats
    stats.redirected("MOVED")
    stats.redirected("ASK")
    stats.failed_over()
    stats.cache_lookup(hit=True, n=4)
    stats.cache_lookup(hit=False)
    stats.cache_evicted(2, reason="invalidation")
    stats.count("topology_refreshes")
    s = c.stats()
    assert s.redirections == {"MOVED": 1, "ASK": 1}
    assert (s.failovers, s.cache_hits, s.cache_misses) == (1, 4, 1)
    assert s.cache_evictions == {"invalidation": 2}
    assert s.extra == {"topology_refreshes": 1}


def test_geredis_runs_without_opentelemetry(redis_server: RedisServer) -> None:
    script = f"""
import sys
for name in list(sys.modules):
    if name.startswith("opentelemetry"):
        del sys.modules[name]
sys.modules["opentelemetry"] = None  # as if not installed
import geredis
from geredis.observability import enable_metrics, enable_slow_log
r = geredis.Redis(port={redis_server.port})
r.set("k", "v")
assert r.stats().commands == 1
try:
    enable_metrics(r)
except ImportError as exc:
    assert "geredis[otel]" in str(exc), exc
else:
    raise AssertionError("enable_metrics without opentelemetry")
r.close()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
