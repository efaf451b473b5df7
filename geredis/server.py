"""Everything geredis holds for one server with one set of settings.

How this works:

* A :class:`ServerConnections` owns the connections to one server for one
  :class:`~geredis.settings.ConnectionSettings`: the shared, multiplexed
  :class:`~geredis.connection.Connection` (opened lazily on first use, and
  anew after it broke) and the :class:`~geredis.dedicated.DedicatedPool` for
  what cannot share it. :meth:`~ServerConnections.usable_connection` returns
  the shared connection with room for one more command, waiting (at most
  ``socket_timeout``) while ``max_in_flight`` commands are pending.
* :meth:`~ServerConnections.disconnect` drops all of it without blocking:
  the shared connection takes no more commands and closes once its pending
  replies are in (with ``abort=True`` at once, failing them with a
  ConnectionError); idle dedicated connections close, leased ones close when
  given back (or are aborted). The next command opens new connections from
  ``settings`` *as they are then*: a Sentinel client changes the address in
  ``settings`` and calls ``disconnect()`` when the primary moves.
* :meth:`~ServerConnections.close` is the blocking form, for the last client
  that lets go: it waits (at most ``timeout``) for pending replies and joins
  every greenlet, leaving no socket behind. A later command still reopens.
* Clients with equal settings and the same geredis options (parser,
  dedicated pool bound and timeout) in one OS thread (one event loop) share
  one ServerConnections: :func:`shared_connections` looks it up in a registry
  keyed by those values. The registry holds it weakly; whoever needs it alive
  (a client, a ``connection_pool`` view, a cluster's node table) holds it.
  ``users`` counts the clients attached: the last one's ``close()`` closes
  the connections. When it is collected, its connections are closed without
  waiting.
* :func:`close_all` closes every one of this thread (a shutdown hook).
* After ``os.fork()`` every ServerConnections in the child drops what it
  holds (``guards.py`` already disowned the parent's sockets); the child's
  next command opens connections of its own.

With client-side caching (``cache=``, see ``geredis/cache``), the cache
option is part of what clients must have in common to share, and the
ServerConnections owns the :class:`~geredis.cache.ClientCache`: each shared
connection it opens gets a store of its own and starts CLIENT TRACKING.

A cluster client's node clients each get a ServerConnections of their own
(``ConnectionPool(shared=False)``: built directly, not through the registry),
so they live and die with that cluster client. The whole contract is
``usable_connection()``, ``dedicated``, ``disconnect()``, ``close()``.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from time import monotonic
from typing import Any, Hashable, Mapping, Optional, Tuple

from gevent.monkey import get_original

from .cache.client_cache import cache_for, share_key
from .connection import Connection, State
from .dedicated import MAX_DEDICATED, DedicatedPool
from .observability.stats import ClientStats, Stats, snapshot
from .exceptions import ConnectionClosedError, TimeoutError
from .settings import ConnectionSettings

__all__ = ["ServerConnections", "close_all", "settings_key", "shared_connections"]

_CLOSED = State.CLOSED


class ServerConnections:
    """The shared connection and the dedicated pool for one server and one
    set of settings. See the module comment.

    Args:
        settings: where to connect and how; read anew for every connection
            opened, so changes apply from the next one on.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        max_dedicated: the dedicated pool's bound (see ``dedicated.py``).
        dedicated_timeout: how long a pipeline, transaction, pinned client or
            monitor waits for a free dedicated connection (None: as long as
            it takes).
        cache: the client-side cache option (``cache_option()``), or None.
    """

    def __init__(self, settings: ConnectionSettings, *, parser: str = "auto",
                 max_dedicated: int = MAX_DEDICATED,
                 dedicated_timeout: Optional[float] = None, cache: Any = None) -> None:
        self.settings = settings
        self.parser = parser
        self.max_dedicated = max_dedicated
        self.dedicated_timeout = dedicated_timeout
        #: The shared connection: None until first used or after disconnect().
        self.connection: Optional[Connection] = None
        #: The counters of these connections (``r.stats()``, metrics).
        self.counters = ClientStats(settings, self)
        #: The client-side cache of the shared connections, or None.
        self.cache = cache_for(cache)
        if self.cache is not None:
            self.cache.bind(settings, self.counters)
        self.dedicated = self._new_dedicated_pool()
        #: Clients attached (see ``geredis.Redis.close``).
        self.users = 0
        _live.add(self)

    def __repr__(self) -> str:
        conn = self.connection
        state = "IDLE" if conn is None else conn.state.value
        pending = 0 if conn is None else conn.pending
        return (
            f"<geredis.ServerConnections {self.settings.address} db={self.settings.db}"
            f" {state} pending={pending} users={self.users} dedicated={self.dedicated.in_use}>"
        )

    def _new_dedicated_pool(self) -> DedicatedPool:
        return DedicatedPool(self.settings, parser=self.parser, max_size=self.max_dedicated,
                             timeout=self.dedicated_timeout, stats=self.counters)

    def stats(self) -> Stats:
        """The counters, with the gauges of now (what ``r.stats()`` returns).

        Returns:
            A :class:`geredis.observability.Stats`.
        """
        conn = self.connection
        in_flight = 0 if conn is None else conn.pending
        for dedicated in self.dedicated.connections():
            in_flight += dedicated.pending
        connected = conn is not None and conn.state is not _CLOSED
        return snapshot(self.counters, in_flight, self.dedicated, connected, self.cache)

    def usable_connection(self) -> Connection:
        """The shared connection, opened anew if there is none or it broke,
        with room for one more command.

        Opening is lazy: a connection that cannot connect fails the commands
        submitted to it (``redis.ConnectionError``), not this call.

        Returns:
            A connection that takes one more command now.

        Raises:
            redis.TimeoutError: ``max_in_flight`` commands stayed pending for
                ``socket_timeout`` seconds.
        """
        timeout = self.settings.socket_timeout
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            conn = self.connection
            if conn is None or conn.state is _CLOSED or conn.state is State.CLOSING:
                if conn is not None:
                    self.counters.reconnects += 1
                conn = self.connection = Connection(
                    self.settings, parser=self.parser, stats=self.counters,
                    cache=None if self.cache is None else self.cache.new_store(),
                )
            if conn.pending < conn.max_in_flight:
                return conn
            conn.room.clear()
            remaining = None if deadline is None else deadline - monotonic()
            if (remaining is not None and remaining <= 0) or not conn.room.wait(remaining):
                raise TimeoutError(
                    f"{conn.max_in_flight} commands already in flight to"
                    f" {self.settings.address} for {timeout}s"
                )

    def disconnect(self, abort: bool = False) -> None:
        """Drop every connection; the next command opens new ones. Never
        blocks.

        Commands already sent finish on the old connections (their replies
        are still delivered) unless ``abort`` is true: then they fail with a
        ConnectionError at once, blocking commands on dedicated connections
        included. Pinned clients (``r.client()``) and monitors keep their own
        connection either way.

        Args:
            abort: fail the commands in flight at once with
                :class:`~geredis.exceptions.ConnectionClosedError` instead
                of letting them finish.
        """
        conn, self.connection = self.connection, None
        if conn is not None:
            if abort:
                conn.abort(ConnectionClosedError(
                    f"connection to {self.settings.address} dropped by disconnect()"
                ))
            else:
                conn.close_nowait()
        self.dedicated.disconnect(abort)

    def close(self, timeout: Optional[float] = None) -> None:
        """Close every connection, waiting at most ``timeout`` seconds (None:
        as long as it takes) for pending replies, then join their greenlets.
        Pinned clients and monitors are aborted. A later command reopens.

        Args:
            timeout: the longest to wait for pending replies, in seconds;
                what is still pending then fails with a ConnectionError.
        """
        conn, self.connection = self.connection, None
        pool, self.dedicated = self.dedicated, self._new_dedicated_pool()
        deadline = None if timeout is None else monotonic() + timeout
        if conn is not None:
            conn.close(timeout)
        # One budget for both: what the shared connection used is not
        # given again to the dedicated ones.
        pool.close(None if deadline is None else max(0.0, deadline - monotonic()))

    def close_nowait(self) -> None:
        """Start closing everything without waiting (safe in ``__del__``)."""
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close_nowait()
        self.dedicated.close_nowait()

    def __del__(self) -> None:
        try:
            self.close_nowait()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# -- sharing between clients ------------------------------------------------------

#: Per OS thread (event loop): a real thread-local, not the greenlet-local
#: that monkey-patching makes of ``threading.local``, so a thread that ends
#: takes its registry along, and a new thread never finds a dead one's
#: connections, even when it gets the same thread id.
_threads = get_original("_thread", "_local")()
_live: "weakref.WeakSet[ServerConnections]" = weakref.WeakSet()


def _registry() -> "weakref.WeakValueDictionary[Tuple[Any, ...], ServerConnections]":
    """This thread's registry of shared connections."""
    registry = getattr(_threads, "registry", None)
    if registry is None:
        registry = _threads.registry = weakref.WeakValueDictionary()
    return registry  # type: ignore[no-any-return]


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for a settings value, equal for equal values."""
    if isinstance(value, Mapping):
        return tuple(sorted((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:
        # Held by the settings, so the id cannot be reused while they live.
        return ("id", id(value))
    return value  # type: ignore[no-any-return]


def settings_key(settings: ConnectionSettings) -> Tuple[Any, ...]:
    """The registry key of a settings object.

    Args:
        settings: the connection settings.

    Returns:
        A hashable tuple of every field's value, equal for settings that
        would open identical connections (an unhashable value counts by
        identity).
    """
    return tuple(_frozen(getattr(settings, f.name)) for f in dataclasses.fields(settings))


def shared_connections(settings: ConnectionSettings, *, parser: str = "auto",
                       max_dedicated: int = MAX_DEDICATED,
                       dedicated_timeout: Optional[float] = None,
                       cache: Any = None) -> ServerConnections:
    """The ServerConnections of this OS thread for these settings and
    options, made on first use; see the module comment.

    Args:
        settings: where to connect and how.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        max_dedicated: the dedicated pool's bound.
        dedicated_timeout: how long a pipeline, transaction, pinned client or
            monitor waits for a free dedicated connection (None: as long as
            it takes).
        cache: the client-side cache option
            (:func:`~geredis.cache.client_cache.cache_option`), or None:
            clients share connections only with equal options (equal
            resolved cache settings, or the same ``ClientCache``).

    Returns:
        The one :class:`ServerConnections` of this thread for equal settings
        and options (held weakly by the registry: keep a reference).

    Raises:
        ValueError: the cache option cannot work with these settings
            (RESP2, an invalid config; see
            :func:`~geredis.cache.client_cache.check`), or a ``ClientCache``
            already serves connections of other settings.
    """
    registry = _registry()
    key = (parser, max_dedicated, dedicated_timeout, share_key(cache, settings),
           settings_key(settings))
    owner = registry.get(key)
    if owner is None:
        owner = ServerConnections(settings, parser=parser, max_dedicated=max_dedicated,
                                  dedicated_timeout=dedicated_timeout, cache=cache)
        registry[key] = owner
    return owner


def close_all(timeout: Optional[float] = None) -> None:
    """Close every connection geredis holds in this OS thread, waiting at most
    ``timeout`` seconds for each server's pending replies (a shutdown hook:
    gunicorn's ``worker_exit``, the end of a test). Clients stay usable: a
    later command reconnects.

    Args:
        timeout: the longest to wait for each server's pending replies, in
            seconds (None: as long as it takes).
    """
    for owner in list(_registry().values()):
        owner.close(timeout)


def _after_fork_in_child() -> None:
    for owner in list(_live):
        owner.disconnect(abort=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
