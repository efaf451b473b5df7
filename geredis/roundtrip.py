"""The shared connection's round trip, and the two commands every program
runs most: the part of ``geredis.Redis`` that Cython compiles.

How this works: :class:`SharedRoundTrip` is a base class of
``geredis.Redis`` (``client.py``) holding what a command crosses on its way
to the shared connection and back, after ``execute_command`` has routed it:

* :func:`round_trip` (``_round_trip`` to ``execute_command``) takes a packed
  command, queues it on the client's shared
  :class:`~geredis.connection.Connection` with a
  :class:`~geredis.caller.Caller` slot, waits, retries when that is safe,
  and applies redis-py's response callback;
* :meth:`SharedRoundTrip.get` and :meth:`SharedRoundTrip.set` without
  options go there directly, skipping ``execute_command``'s routing
  prelude, for as long as nothing replaced ``execute_command`` (a subclass,
  observers, a mock, a wrapt wrapper, an instrumented ``redis.Redis``) and
  no cache is on; otherwise they call it as redis-py's would.

This module, ``caller.py`` and ``connection.py`` are compiled by ``setup.py``
when it can (``geredis/speedups.py``); the code is the same either way, and
``roundtrip.pxd`` gives :func:`round_trip`'s locals C types (the round trip
is a module function for that: a Python class's methods cannot have them).
Its functions then are Cython functions: ``mock.patch.object(geredis.Redis,
"get", autospec=True)`` makes a mock that is not passed ``self`` (patch
without ``autospec``, or set ``GEREDIS_PURE_PYTHON=1``). Everything else of
``geredis.Redis``, ``execute_command`` first, stays plain Python in
``client.py``.
"""

from __future__ import annotations

from types import MethodType
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, cast

import redis
from redis.client import NEVER_DECODE
from redis.exceptions import ReadOnlyError, RedisError

from .caller import Caller
from .connection import Connection, State
from .guards import check_thread, real_thread_id
from .observability.tracing import PLAIN_EXECUTE_COMMAND, REDIS
from .protocol.pack import GET_TEMPLATE, SET_TEMPLATE

if TYPE_CHECKING:
    from .cache.client_cache import ClientCache
    from .client import Redis
    from .observability.stats import ClientStats
    from .protocol import Packer
    from .retry import RetryPolicy
    from .settings import ConnectionSettings

__all__ = ["SharedRoundTrip", "round_trip"]

_OPEN = State.OPEN
_dict_get = dict.get
#: The options of a plain ``get``/``set``: empty, so never written to
#: (``finish_reply`` pops from a non-empty dict only).
_NO_OPTIONS: Dict[str, Any] = {}

#: ``geredis.Redis.execute_command`` as ``client.py`` defines it (it sets
#: this after the class): ``get`` and ``set`` skip it only while nothing
#: replaced it, on the class or the instance (a subclass, observers, a mock,
#: a wrapt wrapper such as OpenTelemetry's ``instrument_client``, which
#: forwards ``__func__``: hence the type check).
EXECUTE_COMMAND: Any = None


def round_trip(client: SharedRoundTrip, command: str, packed: bytes, options: Dict[str, Any],
               cache: Optional[ClientCache], args: Tuple[Any, ...]) -> Any:
    """The shared connection's part of ``execute_command`` (which calls it
    as ``client._round_trip``): queue the packed command, wait for its
    reply, retry when safe, apply the response callback. ``get`` and ``set``
    come here directly (one Python call and redis-py's per-call option dict
    fewer, the command name known). ``cache`` and ``args`` matter only with
    client-side caching. Compiled, ``roundtrip.pxd`` gives its locals C
    types: the connection's attributes are read from its struct, and
    ``submit`` and the caller's ``get`` are C calls.

    Args:
        client: the ``geredis.Redis`` sending it.
        command: the command's name, upper case (``"GET"``).
        packed: the whole command, RESP-encoded.
        options: redis-py's per-command options (empty for ``get``/``set``).
        cache: the client's ``ClientCache``, or None.
        args: the command and its arguments, for the cache.

    Returns:
        The reply after redis-py's response callback, as
        ``execute_command`` returns it.
    """
    if real_thread_id() != client._owner_thread:
        check_thread(client._owner_thread)
    conn = client._connection
    if conn is None or conn.state is not _OPEN or len(conn._pending) >= conn.max_in_flight:
        conn = client._usable_connection()
    spare = conn.spare_waiters
    waiter = spare.pop() if spare else Caller(conn.handoff)
    slot = waiter if cache is None else cache.slot(conn, command, args, waiter, options)
    conn.submit(packed, slot, NEVER_DECODE in options and slot is waiter)
    try:
        reply = waiter.get()  # TimeoutError after socket_timeout
        spare.append(waiter)  # see Connection.spare_waiters
    except client._retry.errors as exc:
        reply = client._retry_command(command, packed, options, conn.opened, exc, None
                                      if cache is None else cache.slot_for(command, args, options))
    except RedisError as exc:  # free in the success path (3.11 exception tables)
        client._stats.error(exc)
        raise
    if options or isinstance(reply, Exception):
        if type(reply) is ReadOnlyError and client.settings.address_resolver is not None:
            reply = client._after_demotion(command, packed, options, conn, reply)
        return client._finish(command, reply, options)
    callback = _dict_get(client.response_callbacks, command)
    if callback is not None:
        return callback(reply)
    return reply


def _execute_command_replaced(client: SharedRoundTrip) -> bool:
    """Whether ``client``'s ``execute_command`` is not the one ``client.py``
    defines: then ``get`` and ``set`` call it, so that what replaced it sees
    them. Its bound method lives only while this runs, so a caller waiting
    for its reply keeps no GC-tracked object alive (see
    ``Connection.spare_waiters``). Compiled, a C function (``roundtrip.pxd``).

    Args:
        client: the ``geredis.Redis`` about to send GET or SET.

    Returns:
        True when ``redis.Redis`` is instrumented, or ``execute_command`` is
        replaced on the client's class or on the client itself.
    """
    own = client.execute_command
    return (REDIS.execute_command is not PLAIN_EXECUTE_COMMAND
            or type(own) is not MethodType or own.__func__ is not EXECUTE_COMMAND)


class SharedRoundTrip(redis.Redis):  # type: ignore[misc]
    """The round trip of ``geredis.Redis`` on its shared connection (see the
    module's comment); ``client.py``'s ``Redis`` provides the rest."""

    if TYPE_CHECKING:  # set by Redis.__init__, or Redis's own methods
        settings: ConnectionSettings
        _connection: Optional[Connection]
        _owner_thread: int
        _cache: Optional[ClientCache]
        _packer: Packer
        _retry: RetryPolicy

        @property
        def _stats(self) -> ClientStats: ...
        def execute_command(self, *args: Any, **options: Any) -> Any: ...
        def _usable_connection(self) -> Connection: ...
        def _retry_command(
            self, command: str, packed: bytes, options: Dict[str, Any], sent: bool,
            exc: BaseException, slot_for: Optional[Callable[[Connection, Caller], Any]] = None,
        ) -> Any: ...
        def _after_demotion(self, command: str, packed: bytes, options: Dict[str, Any],
                            conn: Connection, reply: ReadOnlyError) -> Any: ...
        def _finish(self, command: str, reply: Any, options: Dict[str, Any]) -> Any: ...

    _round_trip = round_trip  # execute_command's way there

    def get(self, name: Any) -> Any:
        """``GET name`` (redis-py's ``get``, minus its per-call option dict).
        With client-side caching, answered from the cache when it holds
        the key.

        Args:
            name: the key.

        Returns:
            The value (``bytes``, or ``str`` with ``decode_responses``), or
            None when the key does not exist.

        Raises:
            redis.ResponseError: ``WRONGTYPE``: the key holds another type.
            redis.TimeoutError: as for :meth:`execute_command`, which this
                calls (and which lists what else it raises).
        """
        if self._cache is not None:
            return self._cache.get(cast("Redis", self), name)
        if _execute_command_replaced(self):
            return self.execute_command("GET", name)  # wrapped or overridden: let it see GET
        packer = self._packer
        key = name.encode() if type(name) is str and packer.utf8_strict else name
        if type(key) is bytes:
            packed = GET_TEMPLATE % (len(key), key)
        else:
            packed = packer.pack(("GET", name))  # other types, or DataError
        return round_trip(self, "GET", packed, _NO_OPTIONS, None, ())

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``SET name value [...]``: redis-py's ``set``. The plain two-argument
        form skips redis-py's option checks, which cost more than the rest of
        the command (measured 2.8 us of Python per call).

        Args:
            name: the key.
            value: the value (``bytes``, ``str``, ``int`` or ``float``).
            *args: redis-py's ``set`` options by position (``ex``, ``px``,
                ``nx``, ``xx``, ``keepttl``, ``get``, ``exat``, ``pxat``...).
            **kwargs: the same options by name.

        Returns:
            True when the value was set; None when ``nx``/``xx`` prevented
            it; with ``get=True``, the old value (or None).

        Raises:
            redis.DataError: a value of a type that cannot be sent, or
                options redis-py's ``set`` refuses (``ex`` with ``px``...).
            redis.TimeoutError: as for :meth:`execute_command`, which this
                calls (and which lists what else it raises).
        """
        if args or kwargs or self._cache is not None or _execute_command_replaced(self):
            return super().set(name, value, *args, **kwargs)  # ends in execute_command
        packer = self._packer
        utf8 = packer.utf8_strict
        key = name.encode() if type(name) is str and utf8 else name
        data = value.encode() if type(value) is str and utf8 else value
        if type(key) is bytes and type(data) is bytes:
            packed = SET_TEMPLATE % (len(key), key, len(data), data)
        else:
            packed = packer.pack(("SET", name, value))  # other types, or DataError
        return round_trip(self, "SET", packed, _NO_OPTIONS, None, ())
