"""Observability: live statistics, OpenTelemetry metrics and tracing, the
slow-command log. Off costs nothing; see docs/observability.md.

How this works (one module per part):

* ``stats.py``: every client keeps plain counters (:class:`ClientStats`),
  bumped where the event already costs something (a send, a read, an
  error); ``r.stats()`` reads them with the gauges into a :class:`Stats`.
  Cluster, sentinel and caching report redirections, failovers and cache
  lookups through ``ClientStats`` methods.
* ``observers.py``: per-command timing, attached to one client or to all
  by swapping the method commands go through, so unobserved clients pay
  nothing. :class:`SlowLog` (``slowlog.py``) and the metrics are observers.
* ``otel.py``: OpenTelemetry metrics (redis-py 8's names and attributes),
  read from the counters at collection time; histograms recorded as they
  happen. Imported only by :func:`enable_metrics`: ``opentelemetry-api`` is
  the optional extra ``geredis[otel]``.
* ``tracing.py``: makes ``RedisInstrumentor().instrument()`` (which patches
  redis-py's base classes) produce spans for geredis clients too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from .observers import Observer, attach, attached, detach
from .slowlog import SlowLog, key_count
from .stats import ON_NEW_CLIENT, ClientStats, Stats

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Redis
    from ..cluster import RedisCluster
    from .otel import Metrics

__all__ = [
    "ClientStats", "Observer", "SlowLog", "Stats", "attach", "attached", "detach",
    "disable_metrics", "disable_slow_log", "enable_metrics", "enable_slow_log", "key_count",
]  # fmt: skip


def enable_metrics(client: Optional[Union["Redis", "RedisCluster"]] = None, *, meter_provider: Any = None,
                   histograms: bool = True, include_commands: Optional[Sequence[str]] = None,
                   exclude_commands: Sequence[str] = ()) -> "Metrics":
    """Report OpenTelemetry metrics for ``client``, or for every geredis
    client (existing and future) when None.

    A ``geredis.RedisCluster`` is measured node by node: each node's client
    (those made later too, after a reshard or failover) reports under its
    own ``server.address`` and ``server.port``; command durations are timed
    on the cluster client and carry the node of the command's key.

    Args:
        client: the client to measure (a ``geredis.Redis`` or a
            ``geredis.RedisCluster``); None for all.
        meter_provider: the application's MeterProvider (default: the global
            one, ``opentelemetry.metrics.get_meter_provider()``).
        histograms: also record ``db.client.operation.duration`` per command,
            ``geredis.client.batch.size`` per send and
            ``db.client.connection.create_time`` per connect. Counters and
            gauges cost nothing per command; histograms cost one SDK
            ``record`` each (see docs/observability.md for the figures).
        include_commands: record the durations of these commands only (by
            name; None: every command).
        exclude_commands: do not record these commands' durations (e.g.
            ``["PING"]``).

    Returns:
        The :class:`~geredis.observability.otel.Metrics`; pass it to
        :func:`disable_metrics` to stop.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed
            (``pip install geredis[otel]``).
        TypeError: ``client`` is neither a ``geredis.Redis`` nor a
            ``geredis.RedisCluster``.
    """
    cluster = _is_cluster(client)
    if client is not None and not cluster and not isinstance(
            getattr(client, "_stats", None), ClientStats):  # fmt: skip
        raise TypeError(
            "enable_metrics(client) takes a geredis.Redis or a geredis.RedisCluster,"
            f" not {type(client).__name__}; call enable_metrics() without a client to"
            " measure every geredis client"
        )
    try:
        from .otel import Metrics
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "geredis metrics need OpenTelemetry: pip install 'geredis[otel]'"
            " (or opentelemetry-api and an SDK)"
        ) from exc
    metrics = Metrics(meter_provider, client, histograms, include_commands, exclude_commands)
    if cluster:  # each node's client, and those a reshard or failover adds later
        for node in client.node_clients():  # type: ignore[union-attr]
            metrics.add_source(node)
        client._node_hooks += (metrics.add_source,)  # type: ignore[union-attr]
    elif client is not None:
        metrics.add_source(client)
    else:
        from .stats import live_stats

        for stats in live_stats():
            owner = stats.owner() if stats.owner is not None else None
            if owner is not None:
                metrics.add_source(owner, stats)
        ON_NEW_CLIENT.append(metrics.add_source)
    if histograms:
        attach(metrics, client)
    return metrics


def disable_metrics(metrics: "Metrics") -> None:
    """Stop what :func:`enable_metrics` started. Its instruments stay
    registered with the meter (OpenTelemetry cannot remove them) but report
    nothing more.

    Args:
        metrics: what :func:`enable_metrics` returned.
    """
    if metrics.add_source in ON_NEW_CLIENT:
        ON_NEW_CLIENT.remove(metrics.add_source)
    if _is_cluster(metrics.client):
        hooks = metrics.client._node_hooks
        metrics.client._node_hooks = tuple(h for h in hooks if h != metrics.add_source)
    metrics.close()
    if metrics.histograms:
        detach(metrics, metrics.client)


def _is_cluster(client: Any) -> bool:
    # Without importing the cluster package unless the client is one.
    return client is not None and callable(getattr(client, "node_clients", None))


def enable_slow_log(threshold: float, client: Optional[Union["Redis", "RedisCluster"]] = None, *,
                    logger: Optional[logging.Logger] = None,
                    level: int = logging.WARNING) -> SlowLog:
    """Log the commands that take at least ``threshold`` seconds: name, key
    count, time, server; never arguments or values.

    Args:
        threshold: seconds.
        client: the client to watch (a ``geredis.RedisCluster`` logs the
            node of a command's key); None for every ``geredis.Redis``.
        logger: where to log (default: the ``geredis.slow`` logger).
        level: the log level (default WARNING).

    Returns:
        The :class:`SlowLog`, for :func:`disable_slow_log`.

    Raises:
        ValueError: ``threshold`` is negative.
    """
    slow = SlowLog(threshold, logger, level)
    attach(slow, client)
    return slow


def disable_slow_log(slow: SlowLog,
                     client: Optional[Union["Redis", "RedisCluster"]] = None) -> None:
    """Stop the slow-command log started by :func:`enable_slow_log`.

    Args:
        slow: what :func:`enable_slow_log` returned.
        client: the client it was enabled for (None: every client).
    """
    detach(slow, client)
