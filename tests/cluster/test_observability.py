"""Observability for the cluster client: spans from both ways of turning on
opentelemetry-instrumentation-redis, ``rc.stats()`` summed over the nodes,
redirections counted, metrics for every node."""

from __future__ import annotations

from typing import Dict, Tuple

from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import geredis
from geredis.observability import disable_metrics, enable_metrics

from ..observability.conftest import points, tracing  # noqa: F401 - the fixture
from .localcluster import LocalCluster


def test_global_instrumentation_traces_the_cluster_client(
        rc: geredis.RedisCluster, tracing: Tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    RedisInstrumentor().instrument(tracer_provider=provider)
    try:
        rc.set("a", 1)
        assert rc.get("a") == b"1"
        with rc.pipeline() as pipe:
            pipe.set("b", 2).get("b")
            assert pipe.execute() == [True, b"2"]
    finally:
        RedisInstrumentor().uninstrument()
    rc.get("a")
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["SET", "GET", "SET GET"]
    attrs = dict(exporter.get_finished_spans()[2].attributes or {})
    assert attrs["db.statement"] == "SET ? ?\nGET ?" and attrs["db.redis.pipeline_length"] == 2


def test_instrument_client_traces_the_cluster_client(
        rc: geredis.RedisCluster, tracing: Tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    RedisInstrumentor.instrument_client(rc, tracer_provider=provider)
    try:
        rc.set("a", 1)
        rc.mget("{t}a", "{t}b")
    finally:
        RedisInstrumentor.uninstrument_client(rc)
    assert [s.name for s in exporter.get_finished_spans()] == ["SET", "MGET"]


def test_stats_and_redirections(rc: geredis.RedisCluster, cluster: LocalCluster) -> None:
    before = rc.stats()
    for i in range(30):
        rc.set(f"key:{i}", i)
    after = rc.stats()
    assert after.commands - before.commands == 30
    assert after.replies - before.replies == 30
    # A stale map: the slot's entry points at another primary, which answers MOVED.
    slot = rc.keyslot("key:0")
    owner = rc.nodes_manager.slots_cache[slot][0]
    other = next(n for n in rc.nodes_manager.nodes_cache.values()
                 if n.server_type == "primary" and n.name != owner.name)
    rc.nodes_manager.slots_cache[slot] = [other]
    assert rc.get("key:0") == b"0"
    s = rc.stats()
    assert s.redirections == {"MOVED": 1}
    assert rc.nodes_manager.slots_cache[slot][0].name == owner.name


def test_metrics_for_every_node(rc: geredis.RedisCluster) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = enable_metrics(meter_provider=provider, histograms=False)
    try:
        def per_node() -> Dict[Tuple[str, int], int]:
            return {(a["server.address"], a["server.port"]): p.value
                    for a, p in points(reader, "geredis.client.commands")}

        before = per_node()  # every geredis client alive counts: earlier tests' too
        for i in range(30):
            rc.set(f"key:{i}", i)
        after = per_node()
        nodes = {(n.host, n.port) for n in rc.nodes_manager.nodes_cache.values()}
        assert set(after) <= nodes
        grew = {node for node in after if after[node] > before.get(node, 0)}
        assert len(grew) == 3  # the three primaries
        assert sum(after.values()) - sum(before.values()) == 30
    finally:
        disable_metrics(metrics)
        provider.shutdown()
