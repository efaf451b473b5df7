"""OpenTelemetry metrics and spans for a geredis client, printed to the console.

    pip install 'geredis[otel]' opentelemetry-instrumentation-redis
    REDIS_URL=redis://localhost:6379/0 python examples/otel_metrics.py

Sets up an SDK MeterProvider with an in-memory reader and a TracerProvider
with the console exporter (in your application these are your exporters:
OTLP, Prometheus...), turns on geredis's metrics with one call and tracing
the way opentelemetry-instrumentation-redis is always turned on, runs a small
fan-out workload, then prints the spans, the command-duration histogram, the
multiplexer's batch sizes and ``r.stats()``.
"""

from __future__ import annotations

import os

import gevent
import redis
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import geredis
from geredis.observability import enable_metrics


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        formatter=lambda span: f"span {span.name!r} {dict(span.attributes or {})}\n")))

    r = geredis.from_url(url)
    enable_metrics(r, meter_provider=meters)  # or enable_metrics() for every client
    RedisInstrumentor().instrument(tracer_provider=tracer)
    try:
        r.set("otel:counter", 0)
        with r.pipeline() as pipe:
            pipe.incr("otel:counter").expire("otel:counter", 60)
            pipe.execute()
    finally:
        RedisInstrumentor().uninstrument()  # spans for the part above only

    # 200 greenlets share one connection: their commands leave in batches.
    workers = [gevent.spawn(r.incr, "otel:counter") for _ in range(200)]
    gevent.joinall(workers, raise_error=True)
    try:
        r.hget("otel:counter", "field")  # an error reply: WRONGTYPE
    except redis.ResponseError as exc:
        print(f"error reply: {type(exc).__name__}")

    data = reader.get_metrics_data()
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:  # type: ignore[union-attr]
        for point in metric.data.data_points:
            attrs = dict(point.attributes or {})
            label = attrs.get("db.operation.name") or attrs.get("error.type") or ""
            if hasattr(point, "bucket_counts"):
                print(f"{metric.name:40} {label:8} count={point.count} sum={point.sum:.4f}"
                      f" max={point.max:.4f}")
            else:
                print(f"{metric.name:40} {label:8} {point.value}")
    print(r.stats())
    r.delete("otel:counter")
    r.close()


if __name__ == "__main__":
    main()
