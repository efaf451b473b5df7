"""Spans for geredis clients from opentelemetry-instrumentation-redis, both
ways: ``RedisInstrumentor().instrument()`` (it patches redis-py's classes,
which geredis follows) and ``RedisInstrumentor.instrument_client(r)``."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import pytest
import redis
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import geredis
from geredis.observability import disable_metrics, enable_metrics

from ..conftest import RedisServer
from .conftest import Meter, value


def _spans(exporter: InMemorySpanExporter) -> List[Tuple[str, Dict[str, Any]]]:
    return [(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()]


def _connection_attributes(server: RedisServer, db: int) -> Dict[str, Any]:
    return {"db.system": "redis", "db.redis.database_index": db,
            "net.peer.name": "127.0.0.1", "net.peer.port": server.port,
            "net.transport": "ip_tcp"}


def test_global_instrumentation_traces_commands(redis_server: RedisServer, client: geredis.Redis,
                                                instrumented: InMemorySpanExporter) -> None:
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.hset("h", mapping={"a": 1, "b": 2})
    spans = _spans(instrumented)
    assert [name for name, _ in spans] == ["SET", "GET", "HSET"]
    base = _connection_attributes(redis_server, 2)
    assert spans[0][1] == {**base, "db.statement": "SET ? ?", "db.redis.args_length": 3}
    assert spans[1][1] == {**base, "db.statement": "GET ?", "db.redis.args_length": 2}
    assert spans[2][1]["db.statement"] == "HSET ? ? ? ? ?"


def test_global_instrumentation_traces_pipelines_and_transactions(
        redis_server: RedisServer, client: geredis.Redis,
        instrumented: InMemorySpanExporter) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.set("a", 1).incr("a").get("a")
        assert pipe.execute() == [True, 2, b"2"]
    with client.pipeline() as pipe:  # MULTI ... EXEC
        pipe.incr("a").incr("a")
        assert pipe.execute() == [3, 4]
    spans = instrumented.get_finished_spans()
    assert [s.name for s in spans] == ["SET INCRBY GET", "INCRBY INCRBY"]
    base = _connection_attributes(redis_server, 2)
    assert dict(spans[0].attributes or {}) == {
        **base, "db.statement": "SET ? ?\nINCRBY ? ?\nGET ?", "db.redis.pipeline_length": 3}
    assert dict(spans[1].attributes or {})["db.redis.pipeline_length"] == 2


def test_watch_and_transaction_helper_are_traced(client: geredis.Redis,
                                                 instrumented: InMemorySpanExporter) -> None:
    client.set("n", 1)

    def double(pipe: Any) -> None:
        n = int(pipe.get("n"))  # immediate, on the WATCH connection
        pipe.multi()
        pipe.set("n", n * 2)

    assert client.transaction(double, "n") == [True]
    names = [s.name for s in instrumented.get_finished_spans()]
    assert names == ["SET", "WATCH", "GET", "SET"]  # the last one is the MULTI batch


def test_error_reply_marks_the_span(client: geredis.Redis,
                                    instrumented: InMemorySpanExporter) -> None:
    client.set("s", "text")
    with pytest.raises(redis.ResponseError):
        client.incr("s")
    span = instrumented.get_finished_spans()[-1]
    assert span.name == "INCRBY"
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].name == "exception"


def test_uninstrument_stops_spans_and_other_clients_are_not_doubled(
        redis_server: RedisServer, client: geredis.Redis,
        tracing: Tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    instrumentor = RedisInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client.ping()
        pinned = client.client()  # a client with its own execute_command
        pinned.select(3)
        pinned.close()
    finally:
        instrumentor.uninstrument()
    client.ping()
    assert [name for name, _ in _spans(exporter)] == ["PING", "SELECT"]


def test_instrument_client_traces_one_client(redis_server: RedisServer, client: geredis.Redis,
                                             tracing: Tuple[TracerProvider, InMemorySpanExporter]
                                             ) -> None:
    provider, exporter = tracing
    other = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=2)
    RedisInstrumentor.instrument_client(client, tracer_provider=provider)
    try:
        client.set("k", "v")
        other.get("k")  # not instrumented
        with client.pipeline() as pipe:
            pipe.get("k").delete("k")
            pipe.execute()
        spans = _spans(exporter)
        base = _connection_attributes(redis_server, 2)
        assert spans == [
            ("SET", {**base, "db.statement": "SET ? ?", "db.redis.args_length": 3}),
            ("GET DEL", {**base, "db.statement": "GET ?\nDEL ?", "db.redis.pipeline_length": 2}),
        ]
    finally:
        RedisInstrumentor.uninstrument_client(client)
        other.close()
    client.get("k")
    assert len(exporter.get_finished_spans()) == 2


def test_instrumentation_patching_redis_py_still_traces_redis_py(
        redis_server: RedisServer, instrumented: InMemorySpanExporter) -> None:
    plain = redis.Redis(host="127.0.0.1", port=redis_server.port)
    plain.ping()
    plain.close()
    assert [s.name for s in instrumented.get_finished_spans()] == ["PING"]


@pytest.mark.parametrize("metrics_first", [False, True])
def test_instrument_client_and_metrics_on_one_client(
        client: geredis.Redis, tracing: Tuple[TracerProvider, InMemorySpanExporter],
        meter: Meter, metrics_first: bool) -> None:
    provider, exporter = tracing
    if metrics_first:
        metrics = enable_metrics(client, meter_provider=meter[0])
    RedisInstrumentor.instrument_client(client, tracer_provider=provider)
    if not metrics_first:
        metrics = enable_metrics(client, meter_provider=meter[0])
    client.get("k")
    client.get("k")
    disable_metrics(metrics)
    RedisInstrumentor.uninstrument_client(client)
    client.get("k")
    assert [s.name for s in exporter.get_finished_spans()] == ["GET", "GET"]
    assert value(meter[1], "db.client.operation.duration", {"db.operation.name": "GET"}).count == 2
