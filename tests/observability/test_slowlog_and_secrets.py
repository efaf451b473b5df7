"""The slow-command log, and no secret in any span, metric attribute or log
line with everything turned on."""

from __future__ import annotations

import logging
from typing import Any, Iterator, List

import gevent
import pytest
import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import geredis
from geredis.observability import (
    disable_metrics, disable_slow_log, enable_metrics, enable_slow_log, key_count,
)

from ..conftest import RedisServer
from .conftest import Meter, points


@pytest.fixture
def c(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    client.close()


def _slow_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "geredis.slow"]


def test_slow_log_names_commands_and_counts_keys(c: geredis.Redis,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="geredis.slow")
    slow = enable_slow_log(0.0, c)  # everything is slow
    try:
        c.mset({"a": "one", "b": "two"})
        c.get("a")
        with c.pipeline() as pipe:
            pipe.get("a").get("b").execute()
    finally:
        disable_slow_log(slow, c)
    c.get("a")  # no longer logged
    lines = _slow_lines(caplog)
    assert len(lines) == 3
    assert lines[0].startswith("slow command MSET (2 keys) took ")
    assert lines[1].startswith("slow command GET (1 key) took ")
    assert lines[2].startswith("slow transaction of 2 commands took ")
    assert all(f"127.0.0.1:{c.settings.port} db 0" in line for line in lines)
    assert "execute_command" not in vars(c)


def test_slow_log_threshold_for_every_client(redis_server: RedisServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="geredis.slow")
    slow = enable_slow_log(0.15)
    try:
        c = geredis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=0.1)
        c.ping()
        with pytest.raises(redis.TimeoutError):
            c.execute_command("DEBUG", "SLEEP", "0.3")
        c.close()
    finally:
        disable_slow_log(slow)
    # The timed-out command waited 0.1 s: under the threshold, not logged.
    assert _slow_lines(caplog) == []


def test_key_count() -> None:
    assert key_count("GET", ("GET", "k")) == 1
    assert key_count("DEL", ("DEL", "a", "b", "c")) == 3
    assert key_count("MSET", ("MSET", "a", 1, "b", 2)) == 2
    assert key_count("EVAL", ("EVAL", "return 1", 2, "a", "b", "arg")) == 2
    assert key_count("BLPOP", ("BLPOP", "a", "b", 0)) == 2
    assert key_count("PING", ("PING",)) == 0
    assert key_count("AUTH", ("AUTH", "user", "pw")) == 0


def _strings(value: Any) -> List[str]:
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def test_no_secret_in_spans_metrics_or_logs(instrumented: InMemorySpanExporter, meter: Meter,
                                            caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-s3cret-1"
    server = RedisServer(None, "--requirepass", password).start()
    provider, reader = meter
    caplog.set_level(logging.DEBUG)
    c = geredis.Redis(host="127.0.0.1", port=server.port, password=password,
                      client_name="observed", socket_timeout=0.2, retry=None)
    metrics = enable_metrics(c, meter_provider=provider)
    slow = enable_slow_log(0.0, c)
    try:
        c.set("k", "value-s3cret-2")
        with pytest.raises(geredis.SharedConnectionError):
            c.execute_command("AUTH", password)  # refused on the shared connection
        with c.client() as pinned:
            pinned.execute_command("AUTH", password)
            with pytest.raises(redis.AuthenticationError):  # WRONGPASS
                pinned.execute_command("AUTH", "default", "wrong-s3cret-3")
        c.config_set("requirepass", password)
        c.hset("h", mapping={"field": "value-s3cret-4"})
        with c.pipeline() as pipe:
            pipe.set("k2", "value-s3cret-5").get("k2").execute()
        with pytest.raises(redis.TimeoutError):
            c.execute_command("DEBUG", "SLEEP", "0.3")
        admin = redis.Redis(port=server.port, password=password)
        admin.client_kill_filter(_type="normal", skipme=True)  # handshake again, with AUTH
        admin.close()
        with gevent.Timeout(5):
            while True:
                try:
                    assert c.get("k") == b"value-s3cret-2"
                    break
                except redis.ConnectionError:
                    gevent.sleep(0.01)
        texts: List[str] = []
        for span in instrumented.get_finished_spans():
            texts.append(span.name)
            for attrs in [span.attributes or {}, *(e.attributes or {} for e in span.events)]:
                for value in attrs.values():
                    texts += _strings(value)
        data = reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        texts += [str(v) for v in (point.attributes or {}).values()]
        texts += [record.getMessage() for record in caplog.records]
        texts.append(repr(c.stats()))
        assert len(instrumented.get_finished_spans()) >= 8
        assert points(reader, "db.client.operation.duration")
        assert any("slow command AUTH (0 keys)" in t for t in texts)
        assert not [t for t in texts if "s3cret" in t]
    finally:
        disable_slow_log(slow, c)
        disable_metrics(metrics)
        c.close()
        server.cleanup()
