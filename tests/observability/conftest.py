"""Fixtures for the observability tests: the OpenTelemetry SDK's in-memory
span exporter and metric reader, and the instrumentation undone after each
test so that no test sees another's patches or observers."""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import geredis
from geredis.observability import disable_metrics, enable_metrics, observers

from ..conftest import RedisServer

Point = Tuple[Dict[str, Any], Any]
Meter = Tuple[MeterProvider, InMemoryMetricReader]


@pytest.fixture
def tracing() -> Iterator[Tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def instrumented(tracing: Tuple[TracerProvider, InMemorySpanExporter]
                 ) -> Iterator[InMemorySpanExporter]:
    """``RedisInstrumentor().instrument()``, the global way; undone after."""
    provider, exporter = tracing
    RedisInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    RedisInstrumentor().uninstrument()


@pytest.fixture
def meter() -> Iterator[Tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    """A client on database 2 of the session server, flushed first."""
    c = geredis.Redis(host="127.0.0.1", port=redis_server.port, db=2, socket_timeout=5)
    c.flushdb()
    yield c
    c.close()


@contextlib.contextmanager
def measured(port: int, meter: Meter, **kwargs: Any) -> Iterator[geredis.Redis]:
    """A client on ``port`` with metrics enabled (``histograms=``... in
    ``kwargs`` go to ``enable_metrics``, the rest to the client); both
    closed after."""
    options = {k: kwargs.pop(k) for k in ("histograms",) if k in kwargs}
    c = geredis.Redis(host="127.0.0.1", port=port, **kwargs)
    metrics = enable_metrics(c, meter_provider=meter[0], **options)
    try:
        yield c
    finally:
        disable_metrics(metrics)
        c.close()


@pytest.fixture(autouse=True)
def _no_global_observers() -> Iterator[None]:
    yield
    assert not observers.GLOBAL, "a test left global observers attached"


def points(reader: InMemoryMetricReader, name: str) -> List[Point]:
    """``(attributes, data point)`` for every point of metric ``name``."""
    data = reader.get_metrics_data()
    found: List[Point] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
    return found


def value(reader: InMemoryMetricReader, name: str, attrs: Optional[Dict[str, Any]] = None) -> Any:
    """The one point of ``name`` whose attributes include ``attrs`` (its
    ``value``, or the point itself for a histogram); 0 when there is none."""
    matching = [p for a, p in points(reader, name)
                if all(a.get(k) == v for k, v in (attrs or {}).items())]
    assert len(matching) <= 1, matching
    if not matching:
        return 0
    point = matching[0]
    return getattr(point, "value", point)
