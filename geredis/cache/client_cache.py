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
from .flight import BarrierSlot, Flight, OptinSlot, WriteSlot
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


_TEXT = (str, bytes)
#: A GET and its key's PTTL, packed in one format (the common miss).
_GET_PTTL = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n"


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
        """Serve the connections opened from ``settings``, counting hits and
        misses in ``counters``.

        Done once by the :class:`~geredis.server.ServerConnections` that owns
        this cache, when it is made. Resolves the config into
        :attr:`settings` and sets up :attr:`reads` and the key encoding (the
        connections' ``encoding`` and ``encoding_errors``, as the packer
        encodes keys).

        Args:
            settings: the settings the shared connections are opened from.
            counters: the owner's ``ClientStats`` (``r.stats()``, the
                OpenTelemetry metrics), where hits, misses and evictions are
                counted as well as in :meth:`stats`.

        Raises:
            ValueError: already bound to another owner's counters (a
                ``ClientCache`` given as ``cache=`` to clients of different
                settings), or the config cannot work with these settings
                (see :func:`check`). Nothing was changed.
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
        """A store for a new shared connection (called each time the owner
        opens one, so a reconnect starts empty).

        Returns:
            A new, empty :class:`~geredis.cache.store.Store`, which becomes
            the one :meth:`stats`, :meth:`flush` and ``len()`` look at; the
            previous store's counters are added to the totals :meth:`stats`
            reports.
        """
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
        """This cache's counters, over every connection it has served.

        Returns:
            A new dict: ``hits``, ``misses`` (reads sent to the server),
            ``joins`` (misses that waited for a read of the same entry
            already in flight), ``invalidations`` (entries dropped by
            invalidations and by this client's own writes), ``evictions``
            (LRU), ``expirations`` (TTL), ``flushes`` (of the store, by
            :meth:`flush`, ``FLUSHDB``/``FLUSHALL`` invalidations or a lost
            connection), all counted since the owner was made; and the
            current connection's ``entries`` and ``bytes`` (estimated).
            All 0 before the first connection.
        """
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
        """Drop every entry of the current connection's store.

        Reads in flight whose reply was already parsed are not inserted;
        those still waiting for their reply are (the server runs them after
        this call). The connection and its tracking are untouched.

        Returns:
            How many entries were dropped (0 before the first connection).
        """
        return 0 if self._store is None else self._store.flush()

    # -- the command path -------------------------------------------------------

    def get(self, client: "Redis", name: Any) -> Any:
        """``r.get(name)`` on a caching client, the hit path kept short
        (``Store.lookup`` inlined; a GET reply is never a container, so
        never copied).

        A miss is sent at once, without routing; a key that is not a str or
        bytes, or a cache that does not serve GET transparently (``"optin"``
        mode, GET not allowed, a key outside the ``bcast`` prefixes), goes
        through ``client.execute_command`` as usual.

        Args:
            client: the caching client (``r``) whose shared connection's
                store is looked up.
            name: the key.

        Returns:
            The value after the client's ``GET`` response callback (None for
            a missing key), from the store or from the server.

        Raises:
            redis.ResponseError: the server's error reply to the read
                (``WRONGTYPE``...): nothing is cached; the connection
                survives.
            redis.ConnectionError: the connection broke (a
                ``geredis.ConnectionClosedError``) and the retry policy
                (``retry=``) gave up; its store was emptied with it, and the
                next command reconnects.
            redis.TimeoutError: no reply within ``socket_timeout`` (the
                connection survives; the late reply is not cached), or
                ``max_in_flight`` commands stayed pending that long.
            geredis.ClientClosedError: the client or its connections were
                closed.
            geredis.ThreadAffinityError: called from another OS thread;
                nothing was sent.
        """
        kind = type(name)
        if self._get_cached and (kind is str or kind is bytes):
            key = ("GET", name)
            conn = client._connection
            looked = False
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
                looked = entry is None
            # A miss: straight to the read, no routing to do (``_rkeys``, inlined).
            try:
                rkey = name if kind is bytes else name.encode(self._encoding, self._errors)
            except UnicodeError:  # the ordinary path raises it
                return client.execute_command("GET", name)
            prefixes = self.settings.prefixes
            if not prefixes or rkey.startswith(prefixes):
                return self._read(client, "GET", key, {}, (key, (rkey,)), self.settings.ttl,
                                  looked=looked)
        return client.execute_command("GET", name)

    def read(self, client: "Redis", command: str, args: Tuple[Any, ...],
             options: Dict[str, Any]) -> Any:
        """A command in :attr:`reads`, through the cache
        (``geredis.Redis.execute_command`` calls it after routing).

        A hit is answered from the store; a miss joins the read of the same
        entry already in flight or sends one, whose reply fills the cache.
        Connection errors are retried as for any read-only command, each
        attempt looking in the cache again.

        Args:
            client: the caching client the command was called on.
            command: the command's upper-case name (``"HGET"``).
            args: the command and its arguments, as given to
                ``execute_command``.
            options: ``execute_command``'s options (for the response
                callback; ``NEVER_DECODE`` makes the call uncacheable).

        Returns:
            The result after the client's response callback, or
            ``NOT_CACHED`` when these arguments cannot be cached (a type
            that must not be, a key outside the ``bcast`` prefixes,
            ``NEVER_DECODE``): nothing was sent, and the caller sends the
            command as usual.

        Raises:
            redis.RedisError: as :meth:`get` (an error reply, a broken
                connection, a timeout, a closed client, another thread).
        """
        target = self._target(command, args, options, explicit=False)
        if target is None:
            return NOT_CACHED
        return self._read(client, command, args, options, target, self.settings.ttl)

    def slot(self, conn: Any, command: str, args: Tuple[Any, ...], waiter: Any,
             options: Dict[str, Any]) -> Any:
        """The slot to queue on ``conn`` for a command not served from the
        cache, keeping the cache right about this client's own writes.

        Called just before the command is queued. A read-only command (or
        one that changes no key) is left alone. A write whose keys geredis
        can name (``keys.WRITE_KEY_SPECS``) drops them from ``conn``'s store
        and detaches their reads in flight now, so every later read of them
        is queued after the write. ``SWAPDB`` (for which Redis sends no
        invalidation) empties the store and detaches every read in flight.
        Any other write gets a fencing
        :class:`~geredis.cache.flight.WriteSlot`. Never raises for a command
        it does not know; sends nothing.

        Args:
            conn: the shared connection the command is about to be queued on
                (its ``cache`` store is changed).
            command: the command's upper-case name.
            args: the command and its arguments.
            waiter: the caller's slot (a gevent ``Waiter`` or a
                ``FutureSlot``).
            options: ``execute_command``'s options (``NEVER_DECODE`` is
                passed on to a ``WriteSlot``).

        Returns:
            The slot to queue: ``waiter`` itself, or a ``WriteSlot``
            wrapping it.
        """
        if command in FIRST_KEY_WRITES and len(args) > 1:  # the common case, inlined
            key = args[1]
            kind = type(key)
            if kind is str or kind is bytes:
                rkey = key if kind is bytes else key.encode(self._encoding, self._errors)
                store = conn.cache
                if rkey in store.index or rkey in store.flight_index:
                    store.drop(rkey)
                return waiter
        if command in self._no_write:
            return waiter
        if command == "SWAPDB":  # Redis sends no invalidation for it
            conn.cache.flush()
            conn.cache.detach_flights()
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
        """:meth:`slot` for a connection and a waiter to come (retries).

        Args:
            command: the command's upper-case name.
            args: the command and its arguments.
            options: ``execute_command``'s options.

        Returns:
            A function ``(conn, waiter) -> slot`` that calls :meth:`slot`
            when the command is queued again, on whatever connection the
            retry uses.
        """
        return lambda conn, waiter: self.slot(conn, command, args, waiter, options)

    def execute_cached(self, client: "Redis", args: Tuple[Any, ...], options: Dict[str, Any],
                       ttl: Optional[float]) -> Any:
        """A read through ``r.cached``: cached whatever the mode (in
        ``"optin"`` mode with ``CLIENT CACHING YES`` in the same batch).

        Args:
            client: the caching client ``r.cached`` belongs to.
            args: the command and its arguments (``args[0]`` the name, in
                any case).
            options: ``execute_command``'s options.
            ttl: the longest the entry may live, in seconds (None: the
                cache's ``ttl``; never more than it).

        Returns:
            The result after the client's response callback.

        Raises:
            redis.DataError: the command is not a cacheable read, asks for
                undecoded replies, reads keys outside the ``bcast`` prefixes
                or has arguments that cannot be cached; nothing was sent.
            redis.ResponseError: the server's error reply (nothing cached;
                the connection survives).
            redis.ConnectionError: the connection broke and the retry policy
                gave up; the next command reconnects.
            redis.TimeoutError: no reply within ``socket_timeout`` (the
                connection survives; the late reply is not cached).
            geredis.ClientClosedError: the client or its connections were
                closed.
            geredis.ThreadAffinityError: called from another OS thread;
                nothing was sent.
        """
        name = args[0]
        command = name.upper() if type(name) is str else command_name(name)
        target = self._target(command, args, options, explicit=True)
        assert target is not None
        limit = self.settings.ttl if ttl is None else min(float(ttl), self.settings.ttl)
        return self._read(client, command, args, options, target, limit, explicit=True)

    def read_async(self, client: "Redis", command: str, args: Tuple[Any, ...],
                   options: Dict[str, Any]) -> Any:
        """:meth:`read` for ``execute_async``: never waits.

        Unlike :meth:`read`, a failed read is not retried.

        Args:
            client: the caching client the command was called on.
            command: the command's upper-case name.
            args: the command and its arguments.
            options: ``execute_async``'s options.

        Returns:
            An ``AsyncResult`` holding what :meth:`read` would return or
            raise (ready at once on a hit), or ``NOT_CACHED`` when these
            arguments cannot be cached (nothing was sent).

        Raises:
            redis.TimeoutError: ``max_in_flight`` commands stayed pending for
                ``socket_timeout`` seconds; nothing was sent.
            geredis.ClientClosedError: the client was closed for good.
        """
        target = self._target(command, args, options, explicit=False)
        if target is None:
            return NOT_CACHED
        slot = FutureSlot()
        conn = client._connection
        value = MISS if conn is None or conn.state is not _OPEN else conn.cache.lookup(target[0])
        if value is not MISS:
            slot.set(value)
        else:
            self._fetch(client, command, args, target, self.settings.ttl, False, slot)
        return client._future(command, options, slot)

    def after_write(self, client: "Redis", commands: Iterable[str]) -> None:
        """Writes went out on another connection of ``client`` (pipeline,
        transaction, blocking command, ``r.client()``): refuse hits until a
        PING sent now on the shared connection comes back.

        Their invalidations reach the shared connection before that PING's
        reply. Reads already in flight are detached (answered, never
        inserted, not joined). Nothing happens when every command is
        read-only, or when the shared connection is not open (its store is
        empty). Never waits.

        Args:
            client: the caching client the commands ran for.
            commands: the commands' upper-case names.
        """
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
              explicit: bool = False, looked: bool = False) -> Any:
        # ``looked``: the caller just found no entry on the open connection
        # (``get``): the first attempt need not look again.
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
            elif looked:
                value, looked = MISS, False
            else:
                value = conn.cache.lookup(target[0])
            if value is not MISS:
                return client._finish(command, value, options)
            waiter = Waiter() if conn is None else conn.caller()
            self._fetch(client, command, args, target, ttl, optin, waiter)
            try:
                reply = waiter.get()
                if conn is not None:
                    conn.spare_waiters.append(waiter)  # see Connection.spare_waiters
            except retry.errors as exc:
                failures += 1
                if not retry.should_retry(command, exc, failures, True):
                    raise
                gevent.sleep(retry.delay(failures))
                continue
            if options or isinstance(reply, Exception):
                return client._finish(command, reply, options)
            callback = _dict_get(client.response_callbacks, command)
            return reply if callback is None else callback(reply)

    def _fetch(self, client: "Redis", command: str, args: Tuple[Any, ...],
               target: Tuple[Any, Tuple[bytes, ...]], ttl: float, optin: bool,
               waiter: Any) -> None:
        """Resolve ``waiter`` with the read's reply: from the flight of the
        same entry (at once if its value is already parsed), or from a new
        one."""
        key, rkeys = target
        conn = client._connection
        if conn is None or conn.state is not _OPEN or len(conn._pending) >= conn.max_in_flight:
            conn = client._usable_connection()
        store = conn.cache
        flight = store.flights.get(key)
        store.client_stats.cache_misses += 1
        if flight is not None:
            store.joins += 1
            if flight.answered:  # parsed, PTTLs still coming: the value is good
                copy = flight.copy
                waiter.switch(flight.value if copy is None else copy(flight.value))
            else:
                flight.joiners.append(waiter)
            return
        pttls = len(rkeys) if self.settings.fetch_ttl else 0
        if (pttls == 1 and not optin and command == "GET" and len(args) == 2
                and type(args[1]) in _TEXT):  # the common miss: one format
            rkey = rkeys[0]
            packed = _GET_PTTL % (len(rkey), rkey, len(rkey), rkey)
        else:
            packed = client._packer.pack(args)  # DataError here: nothing queued
            if pttls:
                packed += b"".join([_pttl(rkey) for rkey in rkeys])
            if optin:
                packed = _CACHING_YES + packed
        flight = Flight(store, key, rkeys, ttl, pttls, waiter)  # files itself
        store.misses += 1
        if not pttls and not optin:
            conn.submit(packed, flight)
        else:
            slots: List[Any] = [flight] * (1 + pttls)  # the flight takes its PTTLs' replies too
            if optin:
                slots.insert(0, OptinSlot(flight))
            conn.submit_batch(packed, slots)


def cache_option(cache_config: Any, cache: Any) -> Any:
    """What a client's ``cache_config=``/``cache=`` arguments make its pool
    carry (checked when the client is made).

    Args:
        cache_config: ``geredis.Redis``'s ``cache_config=``: a redis-py or
            geredis ``CacheConfig``, or None.
        cache: ``geredis.Redis``'s ``cache=``: a :class:`ClientCache`, or
            None.

    Returns:
        None (no caching), the ``ClientCache`` as given, or the config (each
        set of shared connections then makes its own ``ClientCache``).

    Raises:
        ValueError: both are given, ``cache_config`` is not a
            ``CacheConfig``, or ``cache`` is a redis-py cache object or
            anything but a ``ClientCache``.
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
    """The cache settings ``option`` resolves to for connections opened from
    ``settings``.

    Args:
        option: what :func:`cache_option` returned (not None): a config or a
            ``ClientCache`` (its ``config`` is used).
        settings: the settings the connections are opened from.

    Returns:
        The resolved, validated settings.

    Raises:
        ValueError: RESP2 (geredis applies invalidations in stream order on
            the connection that read the key, which needs RESP3 push
            messages; the RESP2 ``REDIRECT`` scheme is not implemented),
            ``integrity_check=True`` (it holds replies back until a batch's
            marker is checked, out of step with the invalidations), or a config that cannot work (``config.settings_from_config``).
    """
    if settings.wire_protocol == 2:
        raise ValueError(
            "client-side caching needs RESP3 (protocol=3, or leave protocol unset):"
            " geredis applies invalidations in stream order on the connection that"
            " read the key, which RESP2 cannot carry (REDIRECT is not supported)"
        )
    if settings.integrity_check:
        raise ValueError(
            "client-side caching cannot be combined with integrity_check=True: the"
            " integrity check holds a batch's replies until its marker is back, while"
            " invalidations must be applied in stream order with the replies"
        )
    config = option.config if isinstance(option, ClientCache) else option
    return settings_from_config(config, settings.encoding)


def share_key(option: Any, settings: ConnectionSettings) -> Any:
    """What decides which clients share connections (and their cache).

    Args:
        option: what :func:`cache_option` returned.
        settings: the settings the connections are opened from.

    Returns:
        None without caching; ``("object", id(option))`` for a
        ``ClientCache`` (only the clients given that object share it);
        ``("config", settings)`` for a config: the resolved
        :class:`~geredis.cache.CacheSettings`, so equal configs share.

    Raises:
        ValueError: as for :func:`check` (a config only).
    """
    if option is None:
        return None
    if isinstance(option, ClientCache):
        return ("object", id(option))
    return ("config", check(option, settings))


def cache_for(option: Any) -> Optional[ClientCache]:
    """The ClientCache a new set of shared connections uses for ``option``.

    Args:
        option: what :func:`cache_option` returned.

    Returns:
        None without caching, the ``ClientCache`` given, or a new one made
        from the config.
    """
    if option is None:
        return None
    return option if isinstance(option, ClientCache) else ClientCache(option)

