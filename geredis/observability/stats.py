"""Live statistics: the counters every geredis client keeps, and ``r.stats()``.

How this works: each client owns one :class:`ClientStats`, a ``__slots__``
object of plain integers that the pieces of the client bump where the event
already costs something, never once per command on the fast path:

* the connection's frame handler adds the replies of each read (the
  receiver counts the bytes itself: an open connection is read at snapshot
  time, a closed one folded in), the writer the commands and bytes of each
  send (one batch); a broken connection adds the commands it fails, the
  deadline timer the callers it times out, the frame handler every late
  reply it drops;
* the client adds error replies and errors raised to callers (on their own
  paths), reconnects of its shared connection, and the dedicated pool its
  leases, waits and refusals;
* what is built on top reports through the small methods below:
  :meth:`ClientStats.redirected` (cluster MOVED/ASK),
  :meth:`ClientStats.failed_over` (sentinel),
  :meth:`ClientStats.cache_lookup` / :meth:`ClientStats.cache_evicted`
  (client-side caching), :meth:`ClientStats.count` for anything else.

``r.stats()`` (:func:`snapshot`) reads those counters plus the gauges that
are cheaper to read than to keep (commands in flight, the dedicated pool,
pub/sub queues, the client-side cache's entries and bytes, which its store
keeps anyway) into a frozen :class:`Stats`: a few dozen attribute reads, so
polling it every second costs nothing measurable. ``Stats.as_dict()`` is the
flat form for logs and JSON. The OpenTelemetry metrics (``otel.py``) read
the same counters at collection time: enabling them adds no work per event.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import ConnectionSettings

__all__ = ["ClientStats", "Stats", "combine", "live_stats", "snapshot"]

#: Every ClientStats alive, for metrics enabled for all clients at once.
_LIVE: "weakref.WeakSet[ClientStats]" = weakref.WeakSet()
#: Called with each new client and its ClientStats (metrics enabled for every
#: client listen here).
ON_NEW_CLIENT: List[Callable[[Any, "ClientStats"], None]] = []


def live_stats() -> Iterable["ClientStats"]:
    """The ClientStats of every geredis client alive now.

    Returns:
        A list (a copy: clients may come and go meanwhile).
    """
    return list(_LIVE)


class ClientStats:
    """The counters of one client (see the module comment). Integers only;
    bump them with ``+=`` from the hub or any greenlet of the client's thread.

    Args:
        settings: the client's connection settings (server address, database).
        owner: the client (held weakly), whose ``stats()`` adds the gauges.
    """

    #: ``redis.client.errors.category`` (as redis-py 8 sets it) by error class name.
    categories: Dict[str, str] = {}

    __slots__ = (
        "replies", "failed", "batches", "batched", "bytes_sent", "bytes_received",
        "timeouts", "late_replies", "connects", "connect_seconds", "reconnects",
        "errors", "dedicated_leases", "dedicated_waits", "dedicated_exhausted",
        "redirections", "failovers", "cache_hits", "cache_misses", "cache_evictions",
        "extra", "on_batch", "on_connect", "server", "port", "db", "pubsubs",
        "pubsub_gone", "owner", "live", "__weakref__",
    )  # fmt: skip

    def __init__(self, settings: "ConnectionSettings", owner: Any = None) -> None:
        self.replies = 0  #: replies received (late ones too)
        self.failed = 0  #: commands failed unanswered by a broken connection
        self.batches = 0  #: sends (each one batch of commands)
        self.batched = 0  #: commands in those sends
        self.bytes_sent = 0
        #: Bytes received by connections already closed; open ones count
        #: their own (``received()`` adds them), so reads cost nothing more.
        self.bytes_received = 0
        self.live: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.timeouts = 0  #: callers that stopped waiting at socket_timeout
        self.late_replies = 0  #: replies that arrived after their caller left
        self.connects = 0  #: connections opened (handshake done)
        self.connect_seconds = 0.0  #: total time spent opening them
        self.reconnects = 0  #: shared connections opened to replace a broken one
        self.errors: Dict[str, int] = {}  #: errors by exception class name
        self.dedicated_leases = 0
        self.dedicated_waits = 0  #: leases that had to wait for a permit
        self.dedicated_exhausted = 0  #: PoolExhaustedError raised
        self.redirections: Dict[str, int] = {}  #: cluster redirections by kind
        self.failovers = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_evictions: Dict[str, int] = {}  #: by reason
        self.extra: Dict[str, int] = {}  #: count(name) counters
        #: The client's PubSub objects still alive, and the final counters
        #: (received, dropped, reconnects) of those collected since.
        self.pubsubs: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.pubsub_gone = [0, 0, 0]
        #: Called with each send's command count / each connect's seconds when
        #: histograms are recorded (OpenTelemetry metrics on); None otherwise.
        self.on_batch: Optional[Callable[[int], None]] = None
        self.on_connect: Optional[Callable[[float], None]] = None
        if settings.unix_socket_path:
            self.server, self.port = settings.unix_socket_path, None
        else:
            self.server, self.port = settings.host, settings.port
        self.db = settings.db
        self.owner: Optional[Callable[[], Any]] = None if owner is None else weakref.ref(owner)
        _LIVE.add(self)
        if owner is not None:
            for hook in ON_NEW_CLIENT:
                hook(owner, self)

    def __repr__(self) -> str:
        return (f"<geredis.ClientStats {self.server}:{self.port}/{self.db}"
                f" replies={self.replies} batches={self.batches}>")

    # -- what the client and its connections report ------------------------

    def error(self, exc: BaseException) -> None:
        """Count an error raised to a caller, or an error reply.

        Args:
            exc: the error; counted under its class name.
        """
        name = type(exc).__name__
        count = self.errors.get(name)
        if count is None:
            count = 0
            if name not in self.categories:
                kind = getattr(exc, "error_type", None)
                self.categories[name] = getattr(kind, "value", "other")
        self.errors[name] = count + 1

    def track(self, conn: Any) -> None:
        """Count an open connection's bytes (``conn.bytes_received``).

        Args:
            conn: a connection reporting into these counters.
        """
        self.live.add(conn)

    def untrack(self, conn: Any) -> None:
        """Keep a closing connection's bytes in the totals.

        Args:
            conn: a connection given to :meth:`track`.
        """
        if conn in self.live:
            self.live.discard(conn)
            self.bytes_received += conn.bytes_received

    def received(self) -> int:
        """Bytes received by every connection, open or closed.

        Returns:
            The total.
        """
        return int(self.bytes_received + sum(c.bytes_received for c in list(self.live)))

    def connected(self, seconds: float) -> None:
        """Count a connection that finished its handshake.

        Args:
            seconds: how long connecting and the handshake took.
        """
        self.connects += 1
        self.connect_seconds += seconds
        if self.on_connect is not None:
            self.on_connect(seconds)

    def track_pubsub(self, pubsub: Any) -> None:
        """Count a pub/sub object in this client's figures, also after it is
        garbage collected.

        Args:
            pubsub: a ``geredis.pubsub.PubSub`` from ``r.pubsub()``.
        """
        self.pubsubs.add(pubsub)
        weakref.finalize(pubsub, _pubsub_gone, self.pubsub_gone, pubsub._delivery,
                         pubsub._subscriber)

    def pubsub_totals(self) -> List[int]:
        """Totals over every pub/sub object of the client.

        Returns:
            ``[received, dropped, reconnects]``.
        """
        totals = list(self.pubsub_gone)
        for pubsub in list(self.pubsubs):
            totals[0] += pubsub._delivery.received
            totals[1] += pubsub.dropped
            totals[2] += pubsub.reconnects
        return totals

    # -- what cluster, sentinel and caching report -------------------------

    def redirected(self, kind: str) -> None:
        """Count a cluster redirection that was followed.

        Args:
            kind: ``"MOVED"`` or ``"ASK"``.
        """
        self.redirections[kind] = self.redirections.get(kind, 0) + 1

    def failed_over(self) -> None:
        """The client moved to a new master (sentinel, or a cluster failover)."""
        self.failovers += 1

    def cache_lookup(self, hit: bool, n: int = 1) -> None:
        """Count client-side cache lookups.

        Args:
            hit: True for hits, False for misses.
            n: how many.
        """
        if hit:
            self.cache_hits += n
        else:
            self.cache_misses += n

    def cache_evicted(self, n: int = 1, reason: str = "full") -> None:
        """Count cache entries dropped.

        Args:
            n: how many.
            reason: ``"full"`` (LRU, by entries or bytes), ``"expired"``
                (its TTL ran out), ``"invalidation"`` (the server or the
                client's own write) or ``"flush"`` (``FLUSHDB``, a lost
                connection, ``r.cache.flush()``).
        """
        self.cache_evictions[reason] = self.cache_evictions.get(reason, 0) + n

    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter of your own, shown in ``Stats.extra``.

        Args:
            name: the counter.
            n: how much.
        """
        self.extra[name] = self.extra.get(name, 0) + n


def _pubsub_gone(gone: List[int], delivery: Any, subscriber: Any) -> None:
    gone[0] += delivery.received
    gone[1] += delivery.dropped
    gone[2] += subscriber.reconnects


@dataclasses.dataclass(frozen=True)
class Stats:
    """One reading of a client's counters and gauges (``r.stats()``).

    Counters count since the client was created; gauges are the state now.
    """

    #: Commands sent (or queued) on the client's connections, shared and
    #: dedicated: ``replies + failed + in_flight``; health-check PINGs count.
    commands: int
    #: Replies received (late ones too).
    replies: int
    #: Commands failed without a reply because their connection broke.
    failed: int
    #: Gauge: commands sent or queued whose reply has not arrived yet.
    in_flight: int
    #: Gauge: 1 while the shared connection is open (or opening), else 0.
    connected: int
    #: Errors by class name: error replies and errors raised to callers
    #: (``{"ResponseError": 2, "TimeoutError": 1}``).
    errors: Dict[str, int]
    #: Sends on the client's connections (each one batch of commands).
    batches: int
    #: Commands carried by those sends.
    batched: int
    #: ``batched / batches``: how well auto-pipelining batches (0.0 before
    #: the first send).
    mean_batch_size: float
    #: Bytes written, after the handshake.
    bytes_sent: int
    #: Bytes read, after the handshake.
    bytes_received: int
    #: Connections opened, shared and dedicated (handshake done).
    connects: int
    #: Shared connections opened to replace a broken one.
    reconnects: int
    #: Callers that stopped waiting at ``socket_timeout``.
    timeouts: int
    #: Replies that arrived after their caller left (dropped).
    late_replies: int
    #: Gauge: dedicated connections leased or held now (blocking commands,
    #: WATCH, big pipelines, pinned clients, monitors).
    dedicated_in_use: int
    #: Gauge: idle dedicated connections kept for reuse.
    dedicated_idle: int
    #: Gauge: callers waiting for a dedicated connection.
    dedicated_waiting: int
    #: The dedicated pool's bound (``max_dedicated``).
    dedicated_max: int
    #: Dedicated connections leased.
    dedicated_leases: int
    #: Leases that had to wait for a free permit.
    dedicated_waits: int
    #: ``PoolExhaustedError``s raised.
    dedicated_exhausted: int
    #: Gauge: pub/sub objects from ``r.pubsub()`` subscribed now.
    pubsub_subscribed: int
    #: Gauge: messages waiting in those pub/sub objects' queues.
    pubsub_queued: int
    #: Messages received, over every pub/sub object the client made.
    pubsub_received: int
    #: Messages dropped by the overflow policy, over every pub/sub object.
    pubsub_dropped: int
    #: Pub/sub reconnects, over every pub/sub object.
    pubsub_reconnects: int
    #: Cluster redirections by kind (``{"MOVED": 1, "ASK": 0}``).
    redirections: Dict[str, int]
    #: Moves of the primary a Sentinel client followed.
    failovers: int
    #: Client-side cache hits.
    cache_hits: int
    #: Client-side cache misses.
    cache_misses: int
    #: Client-side cache entries evicted, by reason.
    cache_evictions: Dict[str, int]
    #: Gauge: entries in the client-side cache now (0 without caching).
    cache_entries: int
    #: Gauge: the estimated bytes of those entries (0 without caching).
    cache_bytes: int
    #: Your own counters (``ClientStats.count(name)``).
    extra: Dict[str, int]

    def as_dict(self) -> Dict[str, Any]:
        """The figures as one flat dict.

        Returns:
            ``{"commands": ..., "errors.ResponseError": ...}``: nested counters
            become ``<field>.<key>``.
        """
        flat: Dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                for key, count in value.items():
                    flat[f"{name}.{key}"] = count
            else:
                flat[name] = value
        return flat


def snapshot(stats: ClientStats, in_flight: int = 0, dedicated: Any = None,
             connected: bool = False, cache: Any = None) -> Stats:
    """Read ``stats`` and the gauges into a :class:`Stats`.

    Args:
        stats: the client's counters.
        in_flight: commands pending on its connections now.
        dedicated: its ``DedicatedPool`` (or None).
        connected: whether its shared connection is open now.
        cache: its ``geredis.cache.ClientCache`` (or None), whose size is
            read now (``ClientCache.stats()``: entries and bytes).

    Returns:
        The frozen reading.
    """
    subscribed = [p for p in list(stats.pubsubs) if p.subscribed]
    received, dropped, reconnects = stats.pubsub_totals()
    batches = stats.batches
    cached = cache.stats() if cache is not None else None
    return Stats(
        commands=stats.replies + stats.failed + in_flight,
        replies=stats.replies,
        failed=stats.failed,
        in_flight=in_flight,
        connected=int(connected),
        errors=dict(stats.errors),
        batches=batches,
        batched=stats.batched,
        mean_batch_size=stats.batched / batches if batches else 0.0,
        bytes_sent=stats.bytes_sent,
        bytes_received=stats.received(),
        connects=stats.connects,
        reconnects=stats.reconnects,
        timeouts=stats.timeouts,
        late_replies=stats.late_replies,
        dedicated_in_use=dedicated.in_use if dedicated is not None else 0,
        dedicated_idle=dedicated.idle if dedicated is not None else 0,
        dedicated_waiting=dedicated.waiting if dedicated is not None else 0,
        dedicated_max=dedicated.max_size if dedicated is not None else 0,
        dedicated_leases=stats.dedicated_leases,
        dedicated_waits=stats.dedicated_waits,
        dedicated_exhausted=stats.dedicated_exhausted,
        pubsub_subscribed=len(subscribed),
        pubsub_queued=sum(p._delivery.queued for p in subscribed),
        pubsub_received=received,
        pubsub_dropped=dropped,
        pubsub_reconnects=reconnects,
        redirections=dict(stats.redirections),
        failovers=stats.failovers,
        cache_hits=stats.cache_hits,
        cache_misses=stats.cache_misses,
        cache_evictions=dict(stats.cache_evictions),
        cache_entries=cached["entries"] if cached is not None else 0,
        cache_bytes=cached["bytes"] if cached is not None else 0,
        extra=dict(stats.extra),
    )


def combine(readings: Iterable[Stats]) -> Stats:
    """One reading for a client made of several (a cluster's nodes): every
    count, gauge and dict summed; ``mean_batch_size`` recomputed.

    Args:
        readings: the parts' ``stats()``.

    Returns:
        The sum (all zero for no parts).
    """
    total: Dict[str, Any] = {}
    for reading in readings:
        for name, value in dataclasses.asdict(reading).items():
            if isinstance(value, dict):
                into = total.setdefault(name, {})
                for key, count in value.items():
                    into[key] = into.get(key, 0) + count
            else:
                total[name] = total.get(name, 0) + value
    for field in dataclasses.fields(Stats):
        total.setdefault(field.name, {} if field.type in ("Dict[str, int]",) else 0)
    total["mean_batch_size"] = total["batched"] / total["batches"] if total["batches"] else 0.0
    return Stats(**total)
