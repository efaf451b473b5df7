"""``r.connection_pool``: the face of redis-py's ``ConnectionPool`` that
libraries use, over geredis's shared connections.

How this works:

* A :class:`ConnectionPool` holds a client's connection settings and the
  geredis options (parser, dedicated pool bound and timeout). It does not pool
  redis-py connections: for the calling OS thread it hands out the
  :class:`~geredis.server.ServerConnections` for those settings
  (:meth:`ConnectionPool.connections`), shared with every other client and
  pool of the same settings, so 200 greenlets that each build
  ``Redis(connection_pool=...)`` still use one connection.
* :func:`pool_for` turns what ``geredis.Redis(connection_pool=...)`` was given
  into one: a geredis pool is used as it is; a redis-py ``ConnectionPool`` or
  ``BlockingConnectionPool`` is read (its ``connection_kwargs`` and
  ``connection_class``: TCP, TLS or unix socket) once, and every client built
  from the same redis-py pool shares one geredis pool, as redis-py clients
  share theirs. A connection class geredis cannot stand in for (Sentinel's,
  a custom one) is refused with a ``ValueError`` naming it.
* ``connection_kwargs`` is a live dict, shaped as redis-py's (``path`` for a
  unix socket, ``ssl_*`` only over TLS): a change to it (RQ raises
  ``socket_timeout`` this way) is checked like a constructor argument and
  applies to every client of the pool from its next command on.
* The pool holds each OS thread's ServerConnections in a real thread-local,
  so a thread that ends lets go of its connections.
* ``disconnect()``/``reset()`` drop this thread's connections for these
  settings (commands in flight finish); the next command reconnects.
  ``get_connection()``/``release()`` refuse with a clear error: geredis has
  no redis-py connection objects to lend (kombu drives sockets itself).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Type

import redis
from gevent.monkey import get_original
from redis._parsers.encoders import Encoder

from .cache.client_cache import check as check_cache
from .compat import settings_from_kwargs
from .dedicated import MAX_DEDICATED
from .server import ServerConnections, shared_connections
from .settings import ConnectionSettings, geredis_option

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = ["ConnectionPool", "pool_for"]

#: The OS thread's own thread-local class (monkey-patching makes
#: ``threading.local`` greenlet-local; connections belong to a thread).
_ThreadLocal = get_original("_thread", "_local")

#: redis-py connection classes geredis stands in for, and what they mean.
_CLASSES: Dict[type, str] = {
    redis.Connection: "tcp",
    redis.SSLConnection: "ssl",
    redis.UnixDomainSocketConnection: "unix",
}
#: redis-py pool kwargs that describe redis-py's own machinery; meaningless here.
_IGNORED = frozenset(
    """parser_class socket_read_size himport_registry maint_notifications_pool_handler
    maint_notifications_config orig_host_address orig_socket_timeout
    orig_socket_connect_timeout driver_info event_dispatcher maintenance_state
    maintenance_notification_hash oss_cluster_maint_notifications_handler
    command_packer""".split()
)
#: redis-py pool kwargs that are client options in geredis.
_CLIENT_OPTIONS = ("retry", "retry_on_timeout", "retry_on_error")


def _settings_of(kwargs: Dict[str, Any], kind: str) -> ConnectionSettings:
    """ConnectionSettings from redis-py-shaped connection kwargs."""
    kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED}
    if kind == "unix" and "path" in kwargs:
        kwargs["unix_socket_path"] = kwargs.pop("path")
    if kind == "ssl":
        kwargs["ssl"] = True
    for name in _CLIENT_OPTIONS:
        kwargs.pop(name, None)
    if kwargs.get("redis_connect_func") is None:
        kwargs.pop("redis_connect_func", None)
    if kwargs.get("socket_type", 0) == 0:
        kwargs.pop("socket_type", None)
    return settings_from_kwargs(kwargs)


class ConnectionKwargs(Dict[str, Any]):
    """``connection_pool.connection_kwargs``: a dict whose changes reach the
    pool (checked first: a bad value raises and changes nothing).

    Every change (``kw[k] = v``, ``del kw[k]``, :meth:`update`, :meth:`pop`,
    :meth:`setdefault`, :meth:`clear`) is applied to a copy, handed to
    ``on_change``, and kept only when that returns.

    Args:
        data: the pool's connection kwargs, in redis-py's shape.
        on_change: called with the whole new dict before a change is kept;
            it raises (``ValueError``, ``TypeError``) to refuse it.

    Raises:
        ValueError: from a change, when ``on_change`` refuses a value (the
            dict is left as it was).
        TypeError: from a change, when ``on_change`` refuses a value's type.
    """

    def __init__(self, data: Dict[str, Any], on_change: Callable[[Dict[str, Any]], None]) -> None:
        super().__init__(data)
        self._on_change = on_change

    def _change(self, op: Callable[[Dict[str, Any]], Any]) -> Any:
        new = dict(self)
        result = op(new)
        self._on_change(new)  # raises on a bad value, before anything changes
        dict.clear(self)
        dict.update(self, new)
        return result

    def __setitem__(self, key: str, value: Any) -> None:
        self._change(lambda d: d.__setitem__(key, value))

    def __delitem__(self, key: str) -> None:
        self._change(lambda d: d.__delitem__(key))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """As ``dict.update``, checked by the pool first.

        Args:
            *args: a mapping or an iterable of pairs, as for ``dict.update``.
            **kwargs: more keys and values.
        """
        self._change(lambda d: d.update(*args, **kwargs))

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        """As ``dict.pop``, checked by the pool first.

        Args:
            key: the kwarg to remove.
            *default: returned when ``key`` is missing.

        Returns:
            The value removed, or the default.

        Raises:
            KeyError: ``key`` is missing and no default was given.
        """
        return self._change(lambda d: d.pop(key, *default))

    def setdefault(self, key: str, default: Any = None) -> Any:
        """As ``dict.setdefault``, checked by the pool first when it adds.

        Args:
            key: the kwarg.
            default: its value when missing.

        Returns:
            The value of ``key`` (``default`` when it was missing).
        """
        if key in self:
            return self[key]
        return self._change(lambda d: d.setdefault(key, default))

    def clear(self) -> None:
        """As ``dict.clear``, checked by the pool first (back to the defaults)."""
        self._change(lambda d: d.clear())

    def copy(self) -> Dict[str, Any]:  # type: ignore[override]
        """A plain ``dict`` copy: its changes do not reach the pool.

        Returns:
            The kwargs, as a new ``dict``.
        """
        return dict(self)


class ConnectionPool:
    """``r.connection_pool`` of a geredis client: redis-py's pool API over
    :class:`~geredis.server.ServerConnections` (see the module comment).

    Args:
        settings: the connection settings.
        parser: as for ``geredis.Redis``.
        max_dedicated: as for ``geredis.Redis``.
        dedicated_timeout: as for ``geredis.Redis``.
        shared: share the connections with every client and pool of equal
            settings (the registry in ``server.py``); False gives this pool
            connections of its own (a cluster client's nodes: they live and
            die with that client).
        cache: client-side caching (``geredis.cache.client_cache.cache_option``:
            a cache config or a ``ClientCache``), or None.

    Raises:
        ValueError: a cache option that cannot work with these settings, or
            a ``parser``, ``max_dedicated`` or ``dedicated_timeout`` that
            cannot work (``parser="bogus"``, ``max_dedicated=0``...).
    """

    def __init__(self, settings: ConnectionSettings, *, parser: str = "auto",
                 max_dedicated: int = MAX_DEDICATED,
                 dedicated_timeout: Optional[float] = None, shared: bool = True,
                 cache: Any = None) -> None:
        self.parser: str = geredis_option("parser", parser)
        self.max_dedicated: int = geredis_option("max_dedicated", max_dedicated)
        self.dedicated_timeout: Optional[float] = geredis_option(
            "dedicated_timeout", dedicated_timeout)
        self.shared = shared
        self.cache = cache
        self._local = _ThreadLocal()  # .owner: this OS thread's ServerConnections
        self._clients: "weakref.WeakSet[Redis]" = weakref.WeakSet()
        self._set_settings(settings)

    def __repr__(self) -> str:
        return f"<geredis.ConnectionPool {self.settings.address} db={self.settings.db}>"

    def _set_settings(self, settings: ConnectionSettings) -> None:
        if self.cache is not None:
            check_cache(self.cache, settings)  # ValueError before anything changes
        self.settings = settings
        self._local = _ThreadLocal()  # every thread looks its connections up again
        self.connection_kwargs = ConnectionKwargs(settings.connection_kwargs(), self._kwargs_changed)

    def _kwargs_changed(self, new: Dict[str, Any]) -> None:
        self._set_settings(_settings_of(new, _CLASSES[self.connection_class]))
        for client in list(self._clients):
            client._settings_changed()

    def connections(self) -> ServerConnections:
        """The shared connections for these settings in the calling thread
        (held in a real thread-local: a thread that ends lets go of them).

        Returns:
            This OS thread's :class:`~geredis.server.ServerConnections`,
            created (or found in the shared registry) on first use.
        """
        owner: Optional[ServerConnections] = getattr(self._local, "owner", None)
        if owner is None:
            make = shared_connections if self.shared else ServerConnections
            owner = self._local.owner = make(
                self.settings, parser=self.parser, max_dedicated=self.max_dedicated,
                dedicated_timeout=self.dedicated_timeout, cache=self.cache,
            )
        return owner

    # -- what redis-py code reads ------------------------------------------------

    @property
    def connection_class(self) -> Type[redis.connection.AbstractConnection]:
        """redis-py's class for these settings: ``Connection``,
        ``SSLConnection`` or ``UnixDomainSocketConnection``."""
        if self.settings.unix_socket_path:
            return redis.UnixDomainSocketConnection
        return redis.SSLConnection if self.settings.ssl else redis.Connection

    @property
    def max_connections(self) -> int:
        """The shared connection plus the dedicated ones (``max_dedicated``)."""
        return self.max_dedicated + 1

    def get_encoder(self) -> Encoder:
        """redis-py's ``Encoder`` for these settings (what ``Lock``, scripts
        and modules use to encode and decode).

        Returns:
            A new ``redis._parsers.encoders.Encoder`` with the settings'
            encoding, errors and ``decode_responses``.
        """
        s = self.settings
        return Encoder(s.encoding, s.encoding_errors, s.decode_responses)  # type: ignore[no-untyped-call]

    def get_protocol(self) -> Optional[int]:
        """The protocol asked for.

        Returns:
            None (RESP3, redis-py 8's default), 2 or 3.
        """
        return self.settings.protocol

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Drop this thread's connections for these settings; the next command
        reconnects. Commands in flight finish on the old connections.

        Args:
            inuse_connections: accepted for redis-py's signature and ignored:
                in-flight commands always finish.
        """
        owner = getattr(self._local, "owner", None)
        if owner is not None:
            owner.disconnect()

    def reset(self) -> None:
        """As :meth:`disconnect` (redis-py's ``reset()`` after a fork)."""
        self.disconnect()

    def close(self) -> None:
        """As :meth:`disconnect`."""
        self.disconnect()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: there are no redis-py connection objects to lend.

        ``make_connection`` and ``release`` are the same method.

        Args:
            *args: ignored (redis-py's ``command_name, *keys``).
            **kwargs: ignored.

        Returns:
            Nothing; it always raises.

        Raises:
            NotImplementedError: always, naming what to use instead.
        """
        raise NotImplementedError(
            "geredis has no redis-py Connection objects to lend: its clients share"
            " one multiplexed connection. Use the client's commands, pipeline(),"
            " pubsub() or client() (a connection of your own), or a redis.Redis client"
            " for code that drives connections itself"
        )

    make_connection = release = get_connection


#: Clients built from one redis-py pool share one geredis pool.
_from_redis_py: "weakref.WeakKeyDictionary[Any, Dict[Tuple[Any, ...], ConnectionPool]]" = (
    weakref.WeakKeyDictionary()
)


def pool_for(source: Any, options: Dict[str, Any]) -> Tuple[ConnectionPool, Dict[str, Any]]:
    """The geredis pool for ``geredis.Redis(connection_pool=source)``, and the
    client options (``retry``...) a redis-py pool carries.

    ``options`` are the geredis options given to the client (parser,
    max_dedicated, dedicated_timeout); a geredis pool given with other
    options is copied with them.

    Args:
        source: a geredis :class:`ConnectionPool`, or a redis-py
            ``ConnectionPool``/``BlockingConnectionPool`` of
            ``redis.Connection``, ``redis.SSLConnection`` or
            ``redis.UnixDomainSocketConnection``.
        options: the geredis options given to the client.

    Returns:
        The pool, and the client options read from a redis-py pool
        (``retry``, ``retry_on_timeout``, ``retry_on_error``; empty for a
        geredis pool).

    Raises:
        ValueError: ``source`` is neither, or has a connection class geredis
            cannot stand in for (Sentinel's, a custom one); the message
            names it.
        TypeError: a redis-py pool's kwargs hold an argument geredis does not
            take (from :func:`~geredis.compat.settings_from_kwargs`).
    """
    if isinstance(source, ConnectionPool):
        same = all(getattr(source, k) == v for k, v in options.items())
        if same:
            return source, {}
        merged = {"parser": source.parser, "max_dedicated": source.max_dedicated,
                  "dedicated_timeout": source.dedicated_timeout, "cache": source.cache,
                  **options}
        return ConnectionPool(source.settings, **merged), {}
    cls = getattr(source, "connection_class", None)
    kind = _CLASSES.get(cls) if isinstance(cls, type) else None
    kwargs = getattr(source, "connection_kwargs", None)
    if kind is None or not isinstance(kwargs, dict):
        raise ValueError(
            f"geredis.Redis(connection_pool=...) takes a redis-py ConnectionPool or"
            f" BlockingConnectionPool of redis.Connection, redis.SSLConnection or"
            f" redis.UnixDomainSocketConnection, or a geredis pool; not {source!r}"
            f" (connection class {cls!r})"
        )
    client_options = {k: kwargs[k] for k in _CLIENT_OPTIONS if kwargs.get(k) is not None}
    key = tuple(sorted(options.items()))
    views = _from_redis_py.setdefault(source, {})
    view = views.get(key)
    if view is None:
        view = views[key] = ConnectionPool(_settings_of(dict(kwargs), kind), **options)
    return view, client_options
