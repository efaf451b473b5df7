"""``r.cache``: a client's cache, and the command path of a caching client.

How this works: a client built with ``cache_config=`` (or ``cache=``)
carries that option in its ``connection_pool``; the
:class:`~geredis.server.ServerConnections` it attaches to (shared by the
clients of equal settings *and* equal cache options in this thread) owns one
:class:`ClientCache` (``r.cache``). Each shared connection it opens gets a
fresh :class:`~geredis.cache.store.Store` from :meth:`ClientCache.new_store`
(so a reconnect starts empty), and sends ``CLIENT TRACKING ON ...`` in its
handshake; the connection applies push frames and the cache slots' hooks in
its reader (``flight.py``) and empties the store the moment it breaks. Hits
and misses are counted in the owner's ``ClientStats`` (``r.stats()``, the
OpenTelemetry metrics) as well as in :meth:`ClientCache.stats`.

``geredis.Redis.execute_command`` (after routing) asks the client's cache:

* a cacheable read (a command in :attr:`ClientCache.reads`: allow-listed,
  transparent modes only; keys inside the ``bcast`` prefixes) goes to
  :meth:`ClientCache.read`: answered from the store when it can, else it
  joins the read of the same entry already in flight or sends one
  (:class:`~geredis.cache.flight.Flight`), with redis-py's response callback
  either way. Connection errors are retried like any read-only command
  (``retry=``), each attempt looking in the cache again;
* any other command goes out on the client's own path, with the slot
  :meth:`ClientCache.slot` gives. A write of keys geredis can name
  (``keys.WRITE_KEY_SPECS``: SET, INCR, HSET, DEL...) first drops them from
  the store and detaches their reads in flight: every later read of them is
  queued after the write, so the server answers it with the written value or
  newer. A write whose keys are unknown (EVAL...) gets a
  :class:`~geredis.cache.flight.WriteSlot` that fences the store until its
  invalidation has come. Either way: read-your-writes.

``r.cached`` (:class:`CachedCommands`) is the per-call opt-in: every read
method (``r.cached.get(key, ttl=5)``, ``r.cached(ttl=5).hgetall(key)``) is
cached whatever the mode; in ``"optin"`` mode ``CLIENT CACHING YES`` goes
out in the same contiguous batch as the read. A command that cannot be
cached raises ``DataError`` before anything is sent.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

import gevent
from gevent.event import AsyncResult
from gevent.hub import Waiter
from redis.cache import CacheConfigurationInterface, CacheInterface
from redis.client import NEVER_DECODE
from redis.exceptions import DataError

from ..connection import State
from ..guards import check_thread, real_thread_id
from ..retry import READ_ONLY_COMMANDS
from ..settings import ConnectionSettings
from ..routing import command_name
from ..slots import FutureSlot
from .config import CacheConfig, CacheSettings, settings_from_config
from .flight import BarrierSlot, Flight, OptinSlot, PttlSlot, WriteSlot
from .keys import FIRST_KEY_WRITES, KEY_SPECS, WRITE_KEY_SPECS, KeyEncoder, entry_key
from .store import COUNTERS, MISS, Store

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Redis

__all__ = ["ClientCache", "cache_for", "cache_option", "check", "share_key"]

_OPEN = State.OPEN
_LIVE = (State.CONNECTING, State.OPEN)
_CACHING_YES = b"*3\r\n$6\r\nCLIENT\r\n$7\r\nCACHING\r\n$3\r\nYES\r\n"
_PING = b"*1\r\n$4\r\nPING\r\n"
#: Commands outside READ_ONLY_COMMANDS that change no key.
_NO_KEY_WRITES = frozenset(("PUBLISH", "SPUBLISH", "CLIENT SETNAME", "CLIENT SETINFO"))
_dict_get = dict.get
#: ``ClientCache.read``'s answer when a call cannot be cached.
NOT_CACHED: Any = object()


def _pttl(key: bytes) -> bytes:
    return b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (len(key), key)


class ClientCache:
    """The client-side cache of one set of shared connections: ``r.cache``.

    Args:
        config: redis-py's ``CacheConfig`` or geredis's
            :class:`~geredis.cache.CacheConfig` (default: ``CacheConfig()``).

    Usually made by geredis from ``cache_config=``. One made yourself and
    passed as ``geredis.Redis(cache=...)`` serves the connections of the
    clients given that object (and equal settings) only.
    """

    def __init__(self, config: Optional[CacheConfigurationInterface] = None) -> None:
        self.config = config if config is not None else CacheConfig()
        self.settings = CacheSettings()
        self.encoder = KeyEncoder()
        self._encoding, self._errors = "utf-8", "strict"
        self._counters: Any = None  # its ServerConnections' ClientStats, once bound
        self._store: Optional[Store] = None
        self._retired: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._get_cached = False
        self._specs: Dict[str, Any] = {}
        #: The commands ``execute_command`` hands to :meth:`read`.
        self.reads: frozenset[str] = frozenset()
        self._no_write = READ_ONLY_COMMANDS | _NO_KEY_WRITES

    def __repr__(self) -> str:
        return f"<geredis.cache.ClientCache mode={self.settings.mode} entries={len(self)}>"

    def bind(self, settings: ConnectionSettings, counters: Any) -> None:
        """Serve the connections opened from ``settings`` (done by their
        :class:`~geredis.server.ServerConnections`), counting hits and misses
        in ``counters`` (its ``ClientStats``).

        Raises:
            ValueError: already serving other connections, or the config
                cannot work with these settings (see :func:`check`).
        """
        if self._counters is not None and self._counters is not counters:
            raise ValueError(
                "a geredis ClientCache serves one set of connections: give each client"
                " its own, or pass cache_config= (clients with equal settings share one)"
            )
        self.settings = check(self.config, settings)
        self.encoder = KeyEncoder(settings.encoding, settings.encoding_errors)
        self._encoding, self._errors = settings.encoding, settings.encoding_errors
        self._get_cached = self.settings.transparent and "GET" in self.settings.commands
        self._specs = {name: KEY_SPECS[name] for name in self.settings.commands}
        self.reads = frozenset(self._specs) if self.settings.transparent else frozenset()
        self._counters = counters

    def new_store(self) -> Store:
        """A store for a new shared connection (the last one's counters are
        kept for :meth:`stats`)."""
        old = self._store
        if old is not None:
            for name, value in old.counters().items():
                self._retired[name] += value
        self._store = Store(self.settings, self.encoder, self._counters)
        return self._store

    # -- the public API -----------------------------------------------------------

    def __len__(self) -> int:
        return 0 if self._store is None else len(self._store)

    def stats(self) -> Dict[str, int]:
        """Counters since these connections were set up: ``hits``, ``misses``
        (reads sent), ``joins`` (misses that waited for a read already in flight),
        ``invalidations`` (entries dropped by invalidations and by this
        client's own writes),
        ``evictions`` (LRU), ``expirations`` (TTL), ``flushes``; and now:
        ``entries``, ``bytes`` (estimated)."""
        stats = {"hits": 0 if self._counters is None else self._counters.cache_hits}
        stats.update(self._retired)
        store = self._store
        if store is not None:
            for name, value in store.counters().items():
                stats[name] += value
        stats["entries"] = 0 if store is None else len(store)
        stats["bytes"] = 0 if store is None else store.nbytes
        return stats

    def flush(self) -> int:
        """Drop every entry (reads in flight are not inserted); the count."""
        return 0 if self._store is None else self._store.flush()

    # -- the command path -------------------------------------------------------

    def get(self, client: "Redis", name: Any) -> Any:
        """``r.get(name)``: the hit path kept short (``Store.lookup`` inlined;
        a GET reply is never a container, so never copied)."""
        kind = type(name)
        if self._get_cached and (kind is str or kind is bytes):
            key = ("GET", name)
            conn = client._connection
            if conn is not None and conn.state is _OPEN:  # not one being dropped
                store = conn.cache
                entry = store.entries.get(key)
                if (entry is not None and not (store.fenced or store.barriers)
                        and entry.deadline > monotonic() and entry.copy is None):
                    if real_thread_id() != client._owner_thread:
                        check_thread(client._owner_thread)
                    entry.used = True
                    store.client_stats.cache_hits += 1
                    callback = _dict_get(client.response_callbacks, "GET")
                    return entry.value if callback is None else callback(entry.value)
            rkeys = self._rkeys(key[1:])
            if rkeys is not None:  # a miss: straight to the read, no routing to do
                return self._read(client, "GET", key, {}, (key, rkeys), self.settings.ttl)
        return client.execute_command("GET", name)

    def read(self, client: "Redis", command: str, args: Tuple[Any, ...],
             options: Dict[str, Any]) -> Any:
        """A command in :attr:`reads`, through the cache; ``NOT_CACHED`` if
        these arguments cannot be cached (the caller sends it as usual)."""
        target = self._target(command, args, options, explicit=False)
        if target is None:
            return NOT_CACHED
        return self._read(client, command, args, options, target, self.settings.ttl)

    def slot(self, conn: Any, command: str, args: Tuple[Any, ...], waiter: Any,
             options: Dict[str, Any]) -> Any:
        """The slot to queue on ``conn`` for a command not served from the
        cache: ``waiter`` itself, after dropping the keys a known write
        changes, or a fencing :class:`WriteSlot` around it."""
        if command in self._no_write:
            return waiter
        if command == "SWAPDB":  # Redis sends no invalidation for it
            conn.cache.flush()
            conn.cache.detach_flights()
            return waiter
        if command in FIRST_KEY_WRITES and len(args) > 1:  # the common case, inlined
            key = args[1]
            kind = type(key)
            if kind is str or kind is bytes:
                rkey = key if kind is bytes else key.encode(self._encoding, self._errors)
                store = conn.cache
                if rkey in store.index or rkey in store.flight_index:
                    store.drop(rkey)
                return waiter
        spec = WRITE_KEY_SPECS.get(command)
        names = None if spec is None else spec(args)
        if names is not None:
            rkeys = self._rkeys(names, bcast=False)
            if rkeys is not None:
                drop = conn.cache.drop
                for rkey in rkeys:
                    drop(rkey)
                return waiter
        return WriteSlot(conn.cache, waiter, NEVER_DECODE in options)

    def slot_for(self, command: str, args: Tuple[Any, ...], options: Dict[str, Any]) -> Any:
        """:meth:`slot` for a connection and a waiter to come (retries)."""
        return lambda conn, waiter: self.slot(conn, command, args, waiter, options)

    def execute_cached(self, client: "Redis", args: Tuple[Any, ...], options: Dict[str, Any],
                       ttl: Optional[float]) -> Any:
        """A read through ``r.cached``: cached whatever the mode."""
        name = args[0]
        command = name.upper() if type(name) is str else command_name(name)
        target = self._target(command, args, options, explicit=True)
        assert target is not None
        limit = self.settings.ttl if ttl is None else min(float(ttl), self.settings.ttl)
        return self._read(client, command, args, options, target, limit, explicit=True)

    def read_async(self, client: "Redis", command: str, args: Tuple[Any, ...],
                   options: Dict[str, Any]) -> Any:
        """:meth:`read` for ``execute_async``: an AsyncResult (ready on a hit),
        or ``NOT_CACHED``."""
        target = self._target(command, args, options, explicit=False)
        if target is None:
            return NOT_CACHED
        slot = FutureSlot()
        conn = client._connection
        value = MISS if conn is None or conn.state is not _OPEN else conn.cache.lookup(target[0])
        if value is not MISS:
            slot.set(value)
        else:
            self._fetch(client, args, target, self.settings.ttl, False, slot)
        return client._future(command, options, slot)

    def after_write(self, client: "Redis", commands: Iterable[str]) -> None:
        """Writes went out on another connection of ``client`` (pipeline,
        transaction, blocking command, ``r.client()``): refuse hits until a
        PING sent now on the shared connection comes back."""
        conn = client._connection
        if conn is None or conn.state not in _LIVE:
            return  # its store was emptied when it closed
        if any(command not in self._no_write for command in commands):
            conn.cache.detach_flights()  # reads queued before: maybe older than the writes
            conn.submit(_PING, BarrierSlot(conn.cache))

    # -- internals ------------------------------------------------------------------

    def _target(self, command: str, args: Tuple[Any, ...], options: Dict[str, Any],
                explicit: bool) -> Optional[Tuple[Any, Tuple[bytes, ...]]]:
        """``(entry key, Redis keys)`` if this call can be cached, else None
        (``DataError`` instead when ``explicit``)."""
        spec = self._specs.get(command)
        if spec is not None and NEVER_DECODE not in options:
            key = entry_key(command, args)
            names = spec(args)
            if key is not None and names is not None:
                rkeys = self._rkeys(names)
                if rkeys is not None:
                    return key, rkeys
        if explicit:
            if spec is None:
                why = "is not a cacheable read"
            elif NEVER_DECODE in options:
                why = "asks for undecoded replies"
            elif self.settings.prefixes:
                why = "reads keys outside the BCAST prefixes, or arguments that cannot be cached"
            else:
                why = "has arguments that cannot be cached"
            raise DataError(f"{command} {why}; r.cached serves: "
                            f"{', '.join(sorted(self.settings.commands))}")
        return None

    def _rkeys(self, names: Any, bcast: bool = True) -> Optional[Tuple[bytes, ...]]:
        """Redis keys as bytes, or None if one cannot be a key or (``bcast``)
        lies outside the BCAST prefixes."""
        key_bytes = self.encoder.key_bytes
        try:
            if len(names) == 1:
                rkeys: Tuple[bytes, ...] = (key_bytes(names[0]),)
            else:
                rkeys = tuple(dict.fromkeys([key_bytes(name) for name in names]))
        except ValueError:
            return None
        prefixes = self.settings.prefixes
        if not rkeys or bcast and prefixes and not all(r.startswith(prefixes) for r in rkeys):
            return None
        return rkeys

    def _read(self, client: "Redis", command: str, args: Tuple[Any, ...],
              options: Dict[str, Any], target: Tuple[Any, Tuple[bytes, ...]], ttl: float,
              explicit: bool = False) -> Any:
        optin = explicit and self.settings.mode == "optin"
        retry = client._retry
        failures = 0
        while True:
            if real_thread_id() != client._owner_thread:
                check_thread(client._owner_thread)
            conn = client._connection
            if conn is None or conn.state is not _OPEN:
                # The shared connection may be open already (another client
                # of the same settings opened it): its store serves us too.
                conn = client._shared.connection
                if conn is not None and conn.state is _OPEN:
                    client._connection = conn
            if conn is None or conn.state is not _OPEN:
                value = MISS
            else:
                value = conn.cache.lookup(target[0])
            if value is not MISS:
                return client._finish(command, value, options)
            waiter = Waiter()
            self._fetch(client, args, target, ttl, optin, waiter)
            try:
                reply = waiter.get()
            except retry.errors as exc:
                failures += 1
                if not retry.should_retry(command, exc, failures, True):
                    raise
                gevent.sleep(retry.delay(failures))
                continue
            return client._finish(command, reply, options)

    def _fetch(self, client: "Redis", args: Tuple[Any, ...],
               target: Tuple[Any, Tuple[bytes, ...]], ttl: float, optin: bool,
               waiter: Any) -> None:
        """Resolve ``waiter`` with the read's reply: from the flight of the
        same entry, or from a new one."""
        key, rkeys = target
        conn = client._connection
        if conn is None or conn.state is not _OPEN or len(conn._pending) >= conn.max_in_flight:
            conn = client._usable_connection()
        store = conn.cache
        flight = store.flights.get(key)
        store.client_stats.cache_misses += 1
        if flight is not None:
            store.joins += 1
            if flight.ready:  # parsed, PTTLs still coming: the value is good
                copy = flight.copy
                waiter.switch(flight.value if copy is None else copy(flight.value))
            else:
                flight.waiters.append(waiter)
            return
        packed = client._packer.pack(args)  # DataError here: nothing queued
        pttls = len(rkeys) if self.settings.fetch_ttl else 0
        flight = Flight(store, key, rkeys, ttl, pttls, waiter)
        store.misses += 1
        store.add_flight(flight)
        if not pttls and not optin:
            conn.submit(packed, flight)
            return
        slots: List[Any] = [flight]
        if pttls == 1:
            packed += _pttl(rkeys[0])
            slots.append(PttlSlot(flight))
        elif pttls:
            packed += b"".join([_pttl(rkey) for rkey in rkeys])
            slots += [PttlSlot(flight) for _ in range(pttls)]
        if optin:
            packed = _CACHING_YES + packed
            slots.insert(0, OptinSlot(flight))
        conn.submit_batch(packed, slots)


def cache_option(cache_config: Any, cache: Any) -> Any:
    """What a client's ``cache_config=``/``cache=`` arguments make its pool
    carry: None (no caching), a ``ClientCache`` given as it is, or the
    config (each set of shared connections makes its own ``ClientCache``).

    Raises:
        ValueError: a redis-py cache object, something else, or both.
    """
    if cache is None:
        if cache_config is None:
            return None
        if not isinstance(cache_config, CacheConfigurationInterface):
            raise ValueError(f"cache_config must be a redis.cache.CacheConfig, not"
                             f" {type(cache_config).__name__}")
        return cache_config
    if cache_config is not None:
        raise ValueError("pass cache= or cache_config=, not both")
    if isinstance(cache, ClientCache):
        return cache
    if isinstance(cache, CacheInterface):
        raise ValueError(
            "geredis keeps its own cache per connection, updated in stream order;"
            " pass cache_config=your_cache.config instead of a redis-py cache object"
        )
    raise ValueError(f"cache must be a geredis.cache.ClientCache, not {type(cache).__name__}")


def check(option: Any, settings: ConnectionSettings) -> CacheSettings:
    """The cache settings ``option`` (see :func:`cache_option`) resolves to
    for connections opened from ``settings``.

    Raises:
        ValueError: RESP2 (geredis applies invalidations in stream order on
            the connection that read the key, which needs RESP3 push
            messages; the RESP2 ``REDIRECT`` scheme is not implemented), or
            a config that cannot work (``config.settings_from_config``).
    """
    if settings.wire_protocol == 2:
        raise ValueError(
            "client-side caching needs RESP3 (protocol=3, or leave protocol unset):"
            " geredis applies invalidations in stream order on the connection that"
            " read the key, which RESP2 cannot carry (REDIRECT is not supported)"
        )
    config = option.config if isinstance(option, ClientCache) else option
    return settings_from_config(config, settings.encoding)


def share_key(option: Any, settings: ConnectionSettings) -> Any:
    """What decides which clients share connections (and their cache): the
    resolved settings of a config, or the identity of a ClientCache."""
    if option is None:
        return None
    if isinstance(option, ClientCache):
        return ("object", id(option))
    return ("config", check(option, settings))


def cache_for(option: Any) -> Optional[ClientCache]:
    """The ClientCache a new set of shared connections uses for ``option``."""
    if option is None:
        return None
    return option if isinstance(option, ClientCache) else ClientCache(option)

