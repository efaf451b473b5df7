"""OpenTelemetry metrics with redis-py 8's instrument names, plus the
multiplexer's own. Imported only by :func:`geredis.observability.enable_metrics`
(``opentelemetry-api`` is an optional extra).

How this works: almost everything is an *asynchronous* instrument. Its
callback runs when the application's reader collects (every export
interval), reads each client's :class:`~geredis.observability.stats.Stats`
and reports the totals, summed over clients that share the same server and
database (the same attribute set). So counting costs the clients nothing
beyond the counters they keep anyway. A client that is garbage collected has
its final counters folded into a "retired" total, so cumulative sums never go
backwards.

Histograms cannot be read that way, so they are recorded as things happen,
and only with ``histograms=True``: the command duration (through an
:class:`~geredis.observability.observers.Observer` on the clients, one
``record`` per command or pipeline), the batch size of each send and the
time to open each connection. The OpenTelemetry SDK's ``record`` costs
microseconds per call; that is the cost of metrics being on (see
docs/observability.md for the measured figures).

Attributes follow redis-py 8 (``redis/observability/attributes.py``):
``db.system``, ``redis.client.library``, ``server.address``, ``server.port``,
``db.namespace`` and, per command, ``db.operation.name`` and on failure
``error.type``, ``db.response.status_code``, ``redis.client.errors.category``.
Never an argument, a key, a value or a credential.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .. import __about__
from ..routing import command_name
from .observers import Observer, served_by
from .stats import ClientStats, Stats, live_stats, snapshot

__all__ = ["Metrics"]

#: redis-py 8's default buckets (seconds) for ``db.client.operation.duration``.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1, 2.5)
#: redis-py 8's default buckets for the other durations (connection create time).
SECONDS_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
#: Buckets for ``geredis.client.batch.size``: commands per write.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
#: The ``redis.client.library`` attribute of every metric.
LIBRARY = f"geredis:v{__about__.__version__}"
_ATTR_CACHE_MAX = 4096
#: ``(server, port, db)``: whose metrics a set of attributes describes.
Key = Tuple[Any, Any, Any]


def base_attributes(key: Key) -> Dict[str, Any]:
    """The attributes every geredis metric carries, for one server and database.

    Args:
        key: ``(server, port, db)``; ``port`` is None for a unix socket,
            both are None for a cluster command that is not one node's.

    Returns:
        A new dict: ``db.system``, ``redis.client.library``,
        ``server.address``, ``db.namespace`` and ``server.port``.
    """
    server, port, db = key
    attrs: Dict[str, Any] = {"db.system": "redis", "redis.client.library": LIBRARY,
                             "db.namespace": str(db)}
    if server is not None:  # None: a cluster command that spans nodes
        attrs["server.address"] = server
    if port is not None:
        attrs["server.port"] = port
    return attrs


def error_category(name: str) -> str:
    """redis-py's ``redis.client.errors.category`` for an error class name.

    Args:
        name: the error's class name, such as ``"ConnectionError"``.

    Returns:
        The category (``"network"``, ``"tls"``, ``"auth"``, ``"server"``...),
        ``"other"`` for a class redis-py does not classify.
    """
    return ClientStats.categories.get(name, "other")


# (instrument name, kind, unit, description, how to read it from a flat Stats)
_COUNTERS: List[Tuple[str, str, str, str, Callable[[Dict[str, Any]], Iterable[Tuple[float, Dict[str, Any]]]]]] = [
    ("redis.client.errors", "counter", "{error}",
     "Errors raised to callers and error replies",
     lambda s: [(v, {"error.type": k[7:], "redis.client.errors.category": error_category(k[7:]),
                     "redis.client.errors.internal": False})
                for k, v in s.items() if k.startswith("errors.")]),
    ("db.client.connection.count", "updown", "{connection}",
     "Open connections (the shared one and the dedicated pool's) by state",
     lambda s: [(s["dedicated_in_use"] + (s["connected"] and s["in_flight"] > 0),
                 {"db.client.connection.state": "used"}),
                (s["dedicated_idle"] + (s["connected"] and s["in_flight"] == 0),
                 {"db.client.connection.state": "idle"})]),
    ("db.client.connection.pending_requests", "updown", "{request}",
     "Commands sent or queued whose reply has not arrived", lambda s: [(s["in_flight"], {})]),
    ("db.client.connection.timeouts", "counter", "{timeout}",
     "Callers refused a dedicated connection (PoolExhaustedError)",
     lambda s: [(s["dedicated_exhausted"], {})]),
    ("geredis.client.commands", "counter", "{command}", "Commands sent",
     lambda s: [(s["commands"], {})]),
    ("geredis.client.batches", "counter", "{batch}", "Sends (each a batch of commands)",
     lambda s: [(s["batches"], {})]),
    ("geredis.client.batched_commands", "counter", "{command}", "Commands in those sends",
     lambda s: [(s["batched"], {})]),
    ("geredis.client.io", "counter", "By", "Bytes sent and received",
     lambda s: [(s["bytes_sent"], {"network.io.direction": "transmit"}),
                (s["bytes_received"], {"network.io.direction": "receive"})]),
    ("geredis.client.reconnects", "counter", "{connection}",
     "Shared connections opened to replace a broken one", lambda s: [(s["reconnects"], {})]),
    ("geredis.client.timeouts", "counter", "{timeout}",
     "Callers that stopped waiting at socket_timeout", lambda s: [(s["timeouts"], {})]),
    ("geredis.client.late_replies", "counter", "{reply}",
     "Replies dropped because their caller had left", lambda s: [(s["late_replies"], {})]),
    ("geredis.client.redirections", "counter", "{redirection}", "Cluster redirections followed",
     lambda s: [(v, {"geredis.redirection.kind": k[13:]})
                for k, v in s.items() if k.startswith("redirections.")]),
    ("geredis.client.failovers", "counter", "{failover}", "Moves to a new master",
     lambda s: [(s["failovers"], {})]),
    ("redis.client.pubsub.messages", "counter", "{message}", "Pub/sub messages received",
     lambda s: [(s["pubsub_received"], {"redis.client.pubsub.message.direction": "receive"})]),
    ("geredis.client.pubsub.dropped", "counter", "{message}",
     "Pub/sub messages dropped by the overflow policy", lambda s: [(s["pubsub_dropped"], {})]),
    ("geredis.client.pubsub.queued", "updown", "{message}",
     "Pub/sub messages waiting for a handler or get_message()",
     lambda s: [(s["pubsub_queued"], {})]),
    ("redis.client.csc.requests", "counter", "{request}", "Client-side cache lookups",
     lambda s: [(s["cache_hits"], {"redis.client.csc.result": "hit"}),
                (s["cache_misses"], {"redis.client.csc.result": "miss"})]),
    ("redis.client.csc.evictions", "counter", "{eviction}", "Client-side cache evictions",
     lambda s: [(v, {"redis.client.csc.reason": k[16:]})
                for k, v in s.items() if k.startswith("cache_evictions.")]),
    ("redis.client.csc.items", "gauge", "{item}",
     "The total number of cached responses currently stored", lambda s: [(s["cache_entries"], {})]),
    # redis-py has no size gauge (its csc.network_saved counts bytes not
    # fetched, a different figure): geredis's own name, like the others.
    ("geredis.client.csc.bytes", "gauge", "By",
     "Estimated size of the cached responses currently stored", lambda s: [(s["cache_bytes"], {})]),
]


class Metrics(Observer):
    """The instruments of one :func:`~geredis.observability.enable_metrics` call.

    Args:
        meter_provider: where to create the meter (default: the global one).
        client: the one client to measure, or None for every geredis client.
        histograms: record the duration, batch size and connect time
            histograms (costs one SDK ``record`` per command).
        include_commands: command names whose durations are recorded (None:
            all); the counters see every command.
        exclude_commands: command names whose durations are not recorded.
    """

    def __init__(self, meter_provider: Any = None, client: Any = None, histograms: bool = True,
                 include_commands: Optional[Sequence[str]] = None,
                 exclude_commands: Sequence[str] = ()) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("geredis", __about__.__version__)
        self.client = client
        self.histograms = histograms
        self._include = {c.upper() for c in include_commands} if include_commands else None
        self._exclude = {c.upper() for c in exclude_commands}
        self._sources: Dict[int, Tuple[Callable[[], Any], ClientStats]] = {}
        self._retired: Dict[Key, Dict[str, float]] = {}
        self._lock = threading.Lock()
        # The totals of the collection under way, and the callbacks served
        # from them: a callback asking again means a new collection.
        self._cache: Dict[Key, Dict[str, float]] = {}
        self._served: set[int] = set()
        self._attrs: Dict[Any, Dict[str, Any]] = {}
        self.closed = False
        self.duration = self.batch_size = self.create_time = None
        if histograms:
            self.duration = meter.create_histogram(
                "db.client.operation.duration", unit="s", description="Command execution duration",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
            self.batch_size = meter.create_histogram(
                "geredis.client.batch.size", unit="{command}",
                description="Commands per send on a multiplexed connection",
                explicit_bucket_boundaries_advisory=BATCH_BUCKETS)
            self.create_time = meter.create_histogram(
                "db.client.connection.create_time", unit="s",
                description="Time to open a connection (connect and handshake)",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        for name, kind, unit, description, read in _COUNTERS:
            create = {"counter": meter.create_observable_counter,
                      "updown": meter.create_observable_up_down_counter,
                      "gauge": meter.create_observable_gauge}[kind]
            create(name, callbacks=[self._callback(read)], unit=unit, description=description)

    # -- sources -------------------------------------------------------------

    def add_source(self, client: Any, stats: Optional[ClientStats] = None) -> None:
        """Measure ``client`` (its counters ``stats``, by default
        ``client._stats``) and record its histograms when on.

        Args:
            client: a geredis client (held weakly).
            stats: the counters to read (default: the client's own).
        """
        if stats is None:
            stats = client._stats
        if self.closed:
            return
        self._sources[id(stats)] = (weakref.ref(client), stats)
        if self.histograms:
            key = (stats.server, stats.port, stats.db)
            batch_attrs, connect_attrs = base_attributes(key), base_attributes(key)
            record_batch, record_connect = self.batch_size.record, self.create_time.record  # type: ignore[union-attr]
            stats.on_batch = lambda n: record_batch(n, batch_attrs)
            stats.on_connect = lambda seconds: record_connect(seconds, connect_attrs)

    def close(self) -> None:
        """Report nothing more (see ``disable_metrics``)."""
        self.closed = True
        for _, stats in self._sources.values():
            stats.on_batch = stats.on_connect = None
        self._sources.clear()
        self._retired.clear()

    def _totals(self, callback: int) -> Dict[Key, Dict[str, float]]:
        # One pass over the clients per collection (the callbacks run together).
        with self._lock:
            if self._served and callback not in self._served:
                self._served.add(callback)
                return self._cache
            self._served = {callback}
            if self.client is None:
                for stats in live_stats():
                    owner = stats.owner() if stats.owner is not None else None
                    if id(stats) not in self._sources and owner is not None:
                        self.add_source(owner, stats)
            totals = {key: dict(values) for key, values in self._retired.items()}
            for ident, (ref, stats) in list(self._sources.items()):
                client = ref()
                key = (stats.server, stats.port, stats.db)
                if client is None:  # collected: its final counters stay in the sums
                    del self._sources[ident]
                    _add(self._retired.setdefault(key, {}), snapshot(stats), counters_only=True)
                    _add(totals.setdefault(key, {}), snapshot(stats), counters_only=True)
                else:
                    _add(totals.setdefault(key, {}), client.stats())
            self._cache = totals
            return totals

    def _callback(self, read: Callable[[Dict[str, Any]], Iterable[Tuple[float, Dict[str, Any]]]]
                  ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations: List[Observation] = []
            if self.closed:
                return observations
            for key, values in self._totals(id(read)).items():
                flat = _Flat(values)
                for value, extra in read(flat):
                    observations.append(Observation(value, {**base_attributes(key), **extra}))
            return observations
        return callback

    # -- histograms, per command ---------------------------------------------

    def _attributes(self, client: Any, operation: str, error: Optional[BaseException],
                    args: Tuple[Any, ...] = ()) -> Dict[str, Any]:
        cache_key = (*served_by(client, args), operation, None if error is None else type(error))
        attrs = self._attrs.get(cache_key)
        if attrs is None:
            attrs = base_attributes(cache_key[:3])
            attrs["db.operation.name"] = operation
            if error is not None:
                name = type(error).__name__
                attrs["error.type"] = name
                status = getattr(error, "status_code", None)
                attrs["db.response.status_code"] = status if status is not None else "error"
                attrs["redis.client.errors.category"] = error_category(name)
            if len(self._attrs) >= _ATTR_CACHE_MAX:
                self._attrs.clear()
            self._attrs[cache_key] = attrs
        return attrs

    def command(self, client: Any, args: Tuple[Any, ...], seconds: float,
                error: Optional[BaseException]) -> None:
        """Record ``db.client.operation.duration`` for one command (when
        histograms are on and the command is not excluded).

        Args:
            client: the client that ran it.
            args: the command's arguments, name first.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """
        if self.duration is None:
            return
        raw = args[0]
        operation = raw.upper() if type(raw) is str else command_name(raw)
        if operation in self._exclude or (self._include is not None and operation not in self._include):
            return
        self.duration.record(seconds, self._attributes(client, operation, error, args))

    def pipeline(self, client: Any, operation: str, commands: Sequence[Tuple[Any, ...]],
                 seconds: float, error: Optional[BaseException]) -> None:
        """Record ``db.client.operation.duration`` for one pipeline or
        transaction, as one operation.

        Args:
            client: the client that ran it.
            operation: ``"PIPELINE"`` or ``"MULTI"``.
            commands: each queued command's arguments.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """
        if self.duration is None or operation in self._exclude:
            return
        self.duration.record(seconds, self._attributes(client, operation, error))


class _Flat(dict):  # type: ignore[type-arg]
    """A flat Stats dict that reads 0 for a counter no client has yet."""

    def __missing__(self, key: str) -> int:
        return 0


def _add(into: Dict[str, float], stats: Stats, counters_only: bool = False) -> None:
    for name, value in stats.as_dict().items():
        if isinstance(value, bool):
            value = int(value)
        if counters_only and name in _GAUGES:
            continue
        into[name] = into.get(name, 0) + value


#: Stats fields that are the state now, not a count (a dead client has none).
_GAUGES = frozenset(("in_flight", "connected", "dedicated_in_use", "dedicated_idle",
                     "dedicated_waiting", "dedicated_max", "pubsub_subscribed", "pubsub_queued",
                     "mean_batch_size", "cache_entries", "cache_bytes"))
