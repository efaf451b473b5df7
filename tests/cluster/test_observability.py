"""Observability for the cluster client: spans from both ways of turning on
opentelemetry-instrumentation-redis, ``rc.stats()`` summed over the nodes,
redirections counted, metrics for every node (``enable_metrics()``) or for
one cluster client's nodes (``enable_metrics(rc)``), the slow-command log."""

from __future__ import annotations

import logging
from typing import Dict, Tuple

import pytest
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import geredis
from geredis.observability import disable_metrics, disable_slow_log, enable_metrics, enable_slow_log

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


def test_enable_metrics_on_the_cluster_client(rc: geredis.RedisCluster) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = enable_metrics(rc, meter_provider=provider)
    extra = None
    try:
        def per_node(name: str) -> Dict[Tuple[str, int], int]:
            return {(a["server.address"], a["server.port"]): p.value
                    for a, p in points(reader, name)}

        before = per_node("geredis.client.commands")  # only rc's nodes: not other clients
        nodes = {(n.host, n.port) for n in rc.nodes_manager.nodes_cache.values()}
        assert set(before) == {(c.settings.host, c.settings.port) for c in rc.node_clients()}
        for i in range(30):
            rc.set(f"key:{i}", i)
        after = per_node("geredis.client.commands")
        primaries = {(rc.nodes_manager.slots_cache[rc.keyslot(f"key:{i}")][0].host,
                      rc.nodes_manager.slots_cache[rc.keyslot(f"key:{i}")][0].port)
                     for i in range(30)}
        assert {n for n in after if after[n] > before.get(n, 0)} == primaries
        assert sum(after.values()) - sum(before.values()) == 30
        # Durations are timed on the cluster client, attributed to the key's node.
        durations = [(a, p) for a, p in points(reader, "db.client.operation.duration")
                     if a["db.operation.name"] == "SET"]
        assert sum(p.count for _, p in durations) == 30
        assert {(a["server.address"], a["server.port"]) for a, _ in durations} == primaries

        # A node client made later (as a refresh does for a node the map gained)
        # is measured from its first command on.
        replica = next(n for n in rc.nodes_manager.nodes_cache.values() if n.server_type == "replica")
        extra = rc.nodes_manager.create_redis_node(replica.host, replica.port)
        base = per_node("geredis.client.commands").get((replica.host, replica.port), 0)
        for _ in range(3):
            extra.ping()
        assert per_node("geredis.client.commands")[(replica.host, replica.port)] == base + 3
    finally:
        disable_metrics(metrics)
        provider.shutdown()
        if extra is not None:
            extra.close()
    assert rc._node_hooks == () and "execute_command" not in rc.__dict__
    assert rc.get("key:1") == b"1" and rc.stats().cache_entries == 0


def test_slow_log_on_the_cluster_client(rc: geredis.RedisCluster,
                                        caplog: pytest.LogCaptureFixture) -> None:
    slow = enable_slow_log(0, rc)
    try:
        with caplog.at_level(logging.WARNING, logger="geredis.slow"):
            rc.set("{user}name", "secret-value")
            rc.mget("{user}name", "{user}other")
    finally:
        disable_slow_log(slow, rc)
    owner = rc.nodes_manager.slots_cache[rc.keyslot("{user}name")][0]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("slow command SET (1 key) took ")
    assert lines[0].endswith(f"s on {owner.host}:{owner.port} db 0")
    assert lines[1].startswith("slow command MGET (2 keys)") and "on the cluster" in lines[1]
    assert not any("secret" in line for line in lines)
    rc.set("{user}name", "v")
    assert len(caplog.records) == 2  # off again
