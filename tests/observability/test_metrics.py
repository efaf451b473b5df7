"""OpenTelemetry metrics (``enable_metrics``) read with the SDK's in-memory
reader: the duration histogram and the error counter after successes, error
replies, timeouts and a killed connection; the multiplexer's own metrics."""

from __future__ import annotations

import gc

import gevent
import pytest
import redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import geredis
from geredis import __about__
from geredis.observability import disable_metrics, enable_metrics

from ..conftest import RedisServer
from .conftest import Meter, measured, points, value


def _base(port: int, db: int = 2) -> dict:  # type: ignore[type-arg]
    return {"db.system": "redis", "redis.client.library": f"geredis:v{__about__.__version__}",
            "server.address": "127.0.0.1", "server.port": port, "db.namespace": str(db)}


def test_durations_of_successes_and_error_replies(redis_server: RedisServer,
                                                  client: geredis.Redis, meter: Meter) -> None:
    provider, reader = meter
    metrics = enable_metrics(client, meter_provider=provider)
    try:
        for i in range(5):
            client.set(f"k{i}", i)
        for i in range(3):
            client.get(f"k{i}")
        with pytest.raises(redis.ResponseError):
            client.hget("k0", "field")  # WRONGTYPE
        with client.pipeline() as pipe:
            pipe.incr("n").incr("n").execute()
        _check_durations_and_counters(redis_server, reader)
    finally:
        disable_metrics(metrics)


def _check_durations_and_counters(redis_server: RedisServer, reader: InMemoryMetricReader) -> None:
    base = _base(redis_server.port)
    durations = {(a["db.operation.name"], a.get("error.type")): (a, p)
                 for a, p in points(reader, "db.client.operation.duration")}
    assert {k: p.count for k, (_, p) in durations.items()} == {
        ("SET", None): 5, ("GET", None): 3, ("HGET", "ResponseError"): 1, ("MULTI", None): 1}
    assert durations[("GET", None)][0] == {**base, "db.operation.name": "GET"}
    assert durations[("HGET", "ResponseError")][0] == {
        **base, "db.operation.name": "HGET", "error.type": "ResponseError",
        "db.response.status_code": "error", "redis.client.errors.category": "server"}
    assert all(0 < p.sum < 5 for _, p in durations.values())
    assert value(reader, "redis.client.errors", {"error.type": "ResponseError"}) == 1
    assert value(reader, "geredis.client.commands") == 5 + 3 + 1 + 4 + 1  # + flushdb
    # Every command waited for its reply alone: one send each, except the batch.
    assert value(reader, "geredis.client.batches") == 5 + 3 + 1 + 1 + 1
    assert value(reader, "geredis.client.batched_commands") == 14
    sizes = value(reader, "geredis.client.batch.size")  # recorded from enable_metrics on
    assert (sizes.count, sizes.sum, sizes.max) == (10, 13, 4)


def test_timeout_and_late_reply(redis_server: RedisServer, meter: Meter) -> None:
    reader = meter[1]
    with measured(redis_server.port, meter, socket_timeout=0.2) as c:
        with pytest.raises(redis.TimeoutError):
            c.execute_command("DEBUG", "SLEEP", "0.6")
        with gevent.Timeout(5):
            while c.stats().late_replies == 0:  # the reply arrives, nobody waits for it
                gevent.sleep(0.02)
        assert c.ping() is True
        point = value(reader, "db.client.operation.duration",
                      {"db.operation.name": "DEBUG", "error.type": "TimeoutError"})
        assert point.count == 1 and 0.2 <= point.sum < 0.6
        assert value(reader, "redis.client.errors", {"error.type": "TimeoutError"}) == 1
        assert value(reader, "geredis.client.timeouts") == 1
        assert value(reader, "geredis.client.late_replies") == 1


def test_killed_connection(own_server: RedisServer, meter: Meter) -> None:
    reader = meter[1]
    with measured(own_server.port, meter, socket_timeout=10, retry=None) as c:
        c.set("k", "v")
        sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "5")
        gevent.sleep(0.05)
        getter = gevent.spawn(c.get, "k")
        gevent.sleep(0.05)
        own_server.stop()  # the connection dies with two commands in flight
        gevent.joinall([sleeper, getter], timeout=5)
        assert isinstance(getter.exception, redis.ConnectionError)
        own_server.start()
        assert c.set("k", "again") is True  # a new connection
        errors = {a["error.type"]: v.value for a, v in points(reader, "redis.client.errors")}
        kind = type(getter.exception).__name__
        assert errors == {kind: 2}
        failed = value(reader, "db.client.operation.duration",
                       {"db.operation.name": "GET", "error.type": kind})
        assert failed.count == 1
        assert value(reader, "geredis.client.reconnects") == 1
        assert value(reader, "db.client.connection.create_time").count == 2
        assert value(reader, "db.client.connection.pending_requests") == 0


def test_gauges_while_commands_are_in_flight(redis_server: RedisServer, meter: Meter) -> None:
    reader = meter[1]
    with measured(redis_server.port, meter, socket_timeout=5, histograms=False) as c:
        c.ping()
        sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.3")
        gevent.sleep(0.05)
        getters = [gevent.spawn(c.get, "k") for _ in range(9)]
        gevent.sleep(0.05)
        assert value(reader, "db.client.connection.pending_requests") == 10
        assert value(reader, "db.client.connection.count",
                     {"db.client.connection.state": "used"}) == 1
        gevent.joinall([sleeper, *getters], raise_error=True)
        assert value(reader, "db.client.connection.pending_requests") == 0
        assert value(reader, "db.client.connection.count",
                     {"db.client.connection.state": "idle"}) == 1
        # Without histograms no per-command timing is installed at all.
        assert "execute_command" not in vars(c)
        assert points(reader, "db.client.operation.duration") == []


def test_every_client_and_the_sums_survive_a_collected_client(redis_server: RedisServer,
                                                             meter: Meter) -> None:
    provider, reader = meter
    metrics = enable_metrics(meter_provider=provider)  # every client, even later ones
    try:
        first = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=5)
        first.set("k", "v")
        first.get("k")
        second = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=5)
        second.get("k")
        assert value(reader, "geredis.client.commands", {"db.namespace": "5"}) == 3
        get = value(reader, "db.client.operation.duration",
                    {"db.operation.name": "GET", "db.namespace": "5"})
        assert get.count == 2
        first.close()
        del first
        gc.collect()
        assert value(reader, "geredis.client.commands", {"db.namespace": "5"}) == 3
        second.get("k")
        assert value(reader, "geredis.client.commands", {"db.namespace": "5"}) == 4
        second.close()
    finally:
        disable_metrics(metrics)
    assert not vars(geredis.Redis)["execute_command"].__name__.startswith("_observed")


def test_pubsub_and_cluster_style_counters(redis_server: RedisServer, client: geredis.Redis,
                                           meter: Meter) -> None:
    provider, reader = meter
    metrics = enable_metrics(client, meter_provider=provider, histograms=False)
    try:
        with client.pubsub() as p:
            p.subscribe("news")
            for i in range(3):
                client.publish("news", f"m{i}")
            got = [p.get_message(timeout=2) for _ in range(4)]
            assert [m["type"] for m in got if m] == ["subscribe", "message", "message", "message"]
        # What cluster, sentinel and caching will report through ClientStats.
        client._stats.redirected("MOVED")
        client._stats.redirected("ASK")
        client._stats.redirected("MOVED")
        client._stats.cache_lookup(hit=True, n=3)
        client._stats.cache_lookup(hit=False)
        client._stats.failed_over()
        assert value(reader, "redis.client.pubsub.messages",
                     {"redis.client.pubsub.message.direction": "receive"}) == 3
        assert value(reader, "geredis.client.redirections",
                     {"geredis.redirection.kind": "MOVED"}) == 2
        assert value(reader, "redis.client.csc.requests", {"redis.client.csc.result": "hit"}) == 3
        assert value(reader, "redis.client.csc.requests", {"redis.client.csc.result": "miss"}) == 1
        assert value(reader, "geredis.client.failovers") == 1
    finally:
        disable_metrics(metrics)
