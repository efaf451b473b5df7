"""A gevent web app that serves its geredis metrics to Prometheus.

    pip install 'geredis[otel]' prometheus_client opentelemetry-exporter-prometheus
    REDIS_URL=redis://localhost:6379/0 python examples/prometheus_app.py [port]

Two ways, both on ``/metrics`` of the same WSGI app (gevent's WSGIServer,
as under gunicorn's gevent worker):

* with ``opentelemetry-exporter-prometheus`` installed, geredis's
  OpenTelemetry metrics (``enable_metrics()``) go through the OpenTelemetry
  Prometheus reader into ``prometheus_client``'s registry;
* without it, ``r.stats()`` (no dependency at all) is exported by a small
  ``prometheus_client`` collector, read at each scrape.

``/`` increments a counter in Redis: load it with any HTTP tool
(``curl localhost:8000/`` in a loop) and watch ``/metrics``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable, Iterable, Iterator, List  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402
from prometheus_client import REGISTRY, make_wsgi_app  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

import geredis  # noqa: E402
from geredis.observability import enable_metrics  # noqa: E402

r = geredis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


class StatsCollector:
    """Exports ``r.stats()`` at each scrape (counters and gauges)."""

    COUNTERS = ("commands", "replies", "failed", "batches", "bytes_sent", "bytes_received",
                "connects", "reconnects", "timeouts", "late_replies", "dedicated_leases",
                "pubsub_received", "pubsub_dropped")
    GAUGES = ("in_flight", "connected", "mean_batch_size", "dedicated_in_use", "pubsub_queued")

    def __init__(self, client: geredis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[Any]:
        stats = self.client.stats()
        for name in self.COUNTERS:
            yield CounterMetricFamily(f"geredis_{name}", f"geredis r.stats().{name}",
                                      value=getattr(stats, name))
        for name in self.GAUGES:
            yield GaugeMetricFamily(f"geredis_{name}", f"geredis r.stats().{name}",
                                    value=getattr(stats, name))
        errors = CounterMetricFamily("geredis_errors", "Errors by type", labels=["type"])
        for kind, count in stats.errors.items():
            errors.add_metric([kind], count)
        yield errors


def setup_metrics() -> str:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        REGISTRY.register(StatsCollector(r))  # type: ignore[arg-type]
        return "r.stats() through a prometheus_client collector"
    enable_metrics(meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return "OpenTelemetry metrics through the Prometheus reader"


metrics_app = make_wsgi_app()


def app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:  # type: ignore[type-arg]
    if environ["PATH_INFO"] == "/metrics":
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]
    hits = r.incr("prometheus_app:hits")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"hit {hits}\n".encode()]


def main(argv: List[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else 8000
    how = setup_metrics()
    print(f"serving on http://127.0.0.1:{port}/ and /metrics ({how})")
    WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
