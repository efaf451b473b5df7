"""Clients that keep one dedicated connection for themselves: ``r.monitor()``
and ``r.client()``.

How this works:

* Both take a permit from the client's dedicated pool (``dedicated.py``), so
  they count against ``max_dedicated``, and give it back when closed; their
  connection is closed then, never returned to the pool. ``r.close()``
  aborts any still open.
* :class:`Monitor` is redis-py's ``Monitor`` (its ``next_command`` parsing,
  ``listen``, context manager) over :class:`MonitorConnection`: a socket read
  by the caller's own greenlet (a monitor's stream is replies nobody asked
  for, which the multiplexed ``Connection`` treats as a protocol error), with
  the client's handshake. A read waits at most ``socket_timeout`` seconds,
  then raises ``redis.TimeoutError``; the monitor stays usable.
* :class:`PinnedRedis` is a ``geredis.Redis`` whose every command runs on its
  one connection, so connection state works: SELECT (tracked, and restored
  if the connection must be reopened), CLIENT SETNAME, raw MULTI/WATCH,
  blocking commands (bounded by their own timeout; the connection is aborted
  if the caller gives up). Only what would break the connection itself is
  refused (CLIENT REPLY, HELLO, RESET, QUIT, MONITOR, SUBSCRIBE ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import gevent
import redis.client
from gevent.event import AsyncResult
from redis._parsers.encoders import Encoder
from redis.client import NEVER_DECODE

from .client import Redis
from .compat import Futures
from .connection import Connection, State
from .dedicated import call, wait_bound
from .exceptions import ClientClosedError, ConnectionClosedError, SharedConnectionError, TimeoutError
from .handshake import open_initialised
from .observability.tracing import INSIDE, PLAIN_EXECUTE_COMMAND, REDIS, traced_command
from .pool import ConnectionPool
from .pipeline import Pipeline, _name
from .protocol import NEED_DATA, PUSH_TYPES, Packer, make_reader
from .routing import block_seconds, is_blocking
from .settings import ConnectionSettings

from .dedicated import DedicatedPool

__all__ = ["Monitor", "MonitorConnection", "PinnedRedis"]


class MonitorConnection:
    """What ``redis.client.Monitor`` needs of a connection (``send_command``,
    ``read_response``, ``disconnect``, ``encoder``), read in the caller's
    greenlet.

    Args:
        settings: the client's settings (address, credentials, handshake).
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
    """

    def __init__(self, settings: ConnectionSettings, parser: str = "auto") -> None:
        self.settings = settings
        self.encoder = Encoder(  # type: ignore[no-untyped-call]
            settings.encoding, settings.encoding_errors, settings.decode_responses
        )
        self._packer = Packer(settings.encoding, settings.encoding_errors)
        self._reader = make_reader(parser=parser)  # bytes: Monitor decodes
        self._buf = bytearray(65536)
        self._sock: Any = None

    def connect(self) -> None:
        """Connect and run the client's handshake.

        Raises:
            geredis.ConnectionClosedError: cannot connect, or the handshake failed.
            redis.AuthenticationError: wrong credentials.
        """
        self._sock = open_initialised(self.settings, self._reader, self._packer)

    def send_command(self, *args: Any) -> None:
        """Send one command, connecting first if needed.

        Args:
            *args: the command and its arguments.

        Raises:
            geredis.ConnectionClosedError: the connection failed (it is closed).
        """
        if self._sock is None:
            self.connect()
        try:
            self._sock.sendall(self._packer.pack(args))
        except OSError as exc:
            self.disconnect()
            raise ConnectionClosedError(f"connection to {self.settings.address} lost: {exc!r}")

    def read_response(self) -> Any:
        """The next reply (push messages skipped).

        Returns:
            The reply, as bytes: ``Monitor`` decodes it.

        Raises:
            redis.TimeoutError: nothing arrived within ``socket_timeout`` seconds;
                the connection stays usable.
            geredis.ConnectionClosedError: not connected, or the connection failed.
            redis.ResponseError: the reply was an error reply.
        """
        if self._sock is None:
            raise ConnectionClosedError("the monitor is not connected")
        reply = self._read(self.settings.socket_timeout)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _read(self, timeout: Optional[float]) -> Any:
        # The next reply that is not a push message.
        while True:
            reply = self._reader.gets()
            if reply is NEED_DATA:
                self._recv(timeout)
            elif type(reply) not in PUSH_TYPES:
                return reply

    def _recv(self, timeout: Optional[float]) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionClosedError("the monitor was closed")
        error = TimeoutError(f"Timeout reading from {self.settings.address}")
        try:
            with gevent.Timeout(timeout, error):
                n = sock.recv_into(self._buf)
        except OSError as exc:
            self.disconnect()
            raise ConnectionClosedError(
                f"connection to {self.settings.address} lost: {exc!r}"
            ) from exc
        if not n:
            self.disconnect()
            raise ConnectionClosedError(f"{self.settings.address} closed the connection")
        self._reader.feed(self._buf, 0, n)

    def disconnect(self) -> None:
        """Close the socket (safe to call again)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class Monitor(redis.client.Monitor):  # type: ignore[misc]
    """``r.monitor()``: redis-py's Monitor on a dedicated connection.

    ``with r.monitor() as m: for command in m.listen(): ...``; each command
    is a dict (time, db, client_address, client_port, client_type, command).
    ``next_command()`` waits at most ``socket_timeout`` for the next one,
    then raises ``redis.TimeoutError`` (the monitor stays usable).

    It holds one of the client's ``max_dedicated`` permits from construction
    until :meth:`close` (or ``r.close()``, which closes it).

    Args:
        client: the client whose settings and dedicated pool it uses.

    Raises:
        geredis.PoolExhaustedError: no dedicated permit within ``dedicated_timeout``.
        geredis.ClientClosedError: the client was closed.
    """

    def __init__(self, client: Redis) -> None:
        self._holding = False
        self._pool: DedicatedPool = client._dedicated
        self.connection_pool = None
        self.connection = MonitorConnection(client.settings, client._parser)
        self._pool.hold(self)  # may raise PoolExhaustedError
        self._holding = True

    def __enter__(self) -> "Monitor":
        try:
            self._start_monitor()  # type: ignore[no-untyped-call]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_holding", False):
            self.close()

    def close(self) -> None:
        """Close the monitor's connection and give its permit back (safe to
        call again)."""
        self.connection.disconnect()
        if self._holding:
            self._holding = False
            self._pool.unhold(self)

    abort = close


_REFUSED = {
    "HELLO": "would change the protocol replies are parsed with; pass protocol= to"
             " geredis.Redis()",
    "RESET": "would reset the connection to RESP2 and forget its state; close() this"
             " client and open another with r.client()",
    "QUIT": "is not needed: use close()",
    "MONITOR": "turns its connection into a command feed; use r.monitor()",
    "SYNC": "turns its connection into a replication stream; use redis-cli",
    "PSYNC": "turns its connection into a replication stream; use redis-cli",
    "CLIENT REPLY": "OFF/SKIP would suppress replies and desynchronise the connection",
    "CLIENT TRACKING": "(client-side caching) is not supported by geredis",
}
for _name_ in "SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE".split():
    _REFUSED[_name_] = "needs a subscriber connection; use r.pubsub()"


def _full_name(command: str, args: Tuple[Any, ...]) -> str:
    """``"CLIENT", "SETNAME", x`` -> ``"CLIENT SETNAME"``."""
    if command == "CLIENT" and len(args) > 1:
        return "CLIENT " + _name(args[1])
    return command


class PinnedRedis(Redis):
    """``r.client()``: a client pinned to one dedicated connection, for code
    that needs connection state. Close it (or use ``with``) to give the
    connection back; it is closed, not reused.

    Every command runs on the pinned connection in the caller's order:
    SELECT (remembered across a reconnect), CLIENT SETNAME, raw MULTI/WATCH,
    blocking commands. Commands that would break the connection itself are
    refused with ``SharedConnectionError``. ``client()``, ``monitor()`` and
    ``pubsub()`` go to the parent client.

    Args:
        parent: the client whose settings (copied) and dedicated pool it uses.

    Raises:
        geredis.PoolExhaustedError: no dedicated permit within ``dedicated_timeout``.
        geredis.ClientClosedError: the parent client was closed.
    """

    _closed = False  # a plain attribute here, not Redis's property
    _stats: Any = None  # the parent's counters, set in __init__ (not Redis's property)
    _repr_name = "geredis.PinnedRedis"

    def __init__(self, parent: Redis) -> None:  # not Redis.__init__: shares the parent's setup
        self._closed = True
        self._final = True
        self._holding = False
        self._connection: Optional[Connection] = None
        self._parent = parent
        self._pool: DedicatedPool = parent._dedicated
        self._stats = parent._stats
        self.settings = dataclasses.replace(parent.settings)  # SELECT/SETNAME tracked here
        self._parser = parent._parser
        self._timeout = parent._timeout
        self._packer = parent._packer
        self.connection_pool = ConnectionPool(  # type: ignore[assignment]
            self.settings, parser=self._parser, max_dedicated=self._pool.max_size,
            dedicated_timeout=self._pool.timeout,
        )
        self.connection = None
        self.response_callbacks = parent.response_callbacks
        self.pipeline_threshold = parent.pipeline_threshold
        self.futures = Futures(self)
        self._pool.hold(self)  # may raise PoolExhaustedError
        self._holding = True
        self._closed = False

    @property
    def _dedicated(self) -> "DedicatedPool":
        return self._pool

    def _repr_parts(self) -> Tuple[bool, Optional[Connection]]:
        return self._closed, self._connection

    def _refuse(self, command: str, args: Tuple[Any, ...]) -> None:
        full = _full_name(command, args)
        why = _REFUSED.get(full)
        if why is not None:
            raise SharedConnectionError(f"{full} {why}")

    def _usable_connection(self) -> Connection:
        if self._closed:
            raise ClientClosedError("this pinned geredis client was closed")
        conn = self._connection
        if conn is None or conn.state is State.CLOSED or conn.state is State.CLOSING:
            conn = self._connection = self._pool.connect(self.settings)
        return conn

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command on the pinned connection.

        Args:
            *args: the command and its arguments.
            **options: redis-py's per-call options for the response callback.

        Returns:
            What ``redis.Redis.execute_command`` returns for it.

        Raises:
            geredis.SharedConnectionError: a command this connection cannot run
                (nothing sent).
            redis.TimeoutError: no reply within ``socket_timeout`` (plus a blocking
                command's own timeout; such a connection is then closed).
            redis.ConnectionError: the connection failed; the next command reopens
                it on the same database.
            geredis.ClientClosedError: this client was closed.
            redis.ResponseError: the server's error reply.
        """
        if REDIS.execute_command is not PLAIN_EXECUTE_COMMAND and options.pop(INSIDE, None) is None:
            return traced_command(self, args, options)  # instrumentation patched redis.Redis
        command = _name(args[0])
        self._refuse(command, args)
        extra = block_seconds(command, args) if is_blocking(command, args) else 0.0
        packed = self._packer.pack(args)
        conn = self._usable_connection()
        # A timed-out command's late reply is dropped by the connection; only
        # an abandoned blocking command forces the connection closed.
        try:
            reply = call(conn, packed, NEVER_DECODE in options,
                         wait_bound(extra, self._timeout), abort=extra > 0)
        finally:
            self._parent._after_foreign_write((command,))
        if not isinstance(reply, Exception):
            full = _full_name(command, args)
            if full == "SELECT":
                self.settings.db = int(args[1])
            elif full == "CLIENT SETNAME":
                name = args[-1]
                self.settings.client_name = name.decode() if isinstance(name, bytes) else name
        return self._finish(command, reply, options)

    def execute_async(self, *args: Any, **options: Any) -> AsyncResult:
        """Run the command now (a pinned connection serves one caller).

        Args:
            *args: the command and its arguments.
            **options: as for :meth:`execute_command`.

        Returns:
            An ``AsyncResult`` already holding the result or the error.
        """
        result = AsyncResult()
        try:
            result.set(self.execute_command(*args, **options))
        except Exception as exc:
            result.set_exception(exc)
        return result

    def pipeline(self, transaction: bool = True, shard_hint: Any = None, *,
                 threshold: Optional[int] = None) -> Pipeline:
        """A pipeline that runs on this client's connection.

        Args:
            transaction: wrap the batch in MULTI/EXEC.
            shard_hint: accepted for redis-py compatibility; unused.
            threshold: accepted for symmetry; a pinned pipeline always runs
                on the pinned connection.

        Returns:
            A :class:`~geredis.pipeline.Pipeline` bound to this connection.
        """
        return Pipeline(self, transaction, shard_hint, threshold=threshold,
                        pinned=self._usable_connection, refuse=self._refuse)

    def client(self) -> "PinnedRedis":
        """Another pinned client from the parent (its own connection).

        Returns:
            A new :class:`PinnedRedis` holding one more dedicated permit.
        """
        return self._parent.client()

    def _after_foreign_write(self, commands: Any) -> None:
        self._parent._after_foreign_write(commands)

    def monitor(self) -> Monitor:
        """The parent's ``monitor()``: a monitor on a connection of its own.

        Returns:
            A :class:`Monitor` holding one more dedicated permit.
        """
        return self._parent.monitor()

    def pubsub(self, **kwargs: Any) -> Any:
        """The parent's ``pubsub()``: a PubSub on a connection of its own.

        Args:
            **kwargs: as for ``geredis.Redis.pubsub``.

        Returns:
            A ``geredis.pubsub.PubSub`` with the parent's settings.
        """
        return self._parent.pubsub(**kwargs)

    def close(self, timeout: Optional[float] = None, *, final: bool = True) -> None:
        """Let pending commands finish, close the connection, give the
        permit back. Safe to call again. A pinned client cannot be reopened.

        Args:
            timeout: the longest to wait for pending replies (default:
                ``socket_timeout``); those still missing then fail with
                ``ClientClosedError``.
            final: accepted for ``geredis.Redis.close``'s signature; a
                pinned client's close is always final.
        """
        self._closed = True
        conn = self._connection
        if conn is not None:
            conn.close(self._timeout if timeout is None else timeout)
        self._unhold()

    def abort(self) -> None:
        """Close now; pending commands fail (``r.close()`` calls this)."""
        self._closed = True
        conn = self._connection
        if conn is not None:
            conn.abort()
            conn.close(0)  # joins its greenlets
        self._unhold()

    def _unhold(self) -> None:
        if self._holding:
            self._holding = False
            self._pool.unhold(self)

    def __del__(self) -> None:
        if getattr(self, "_holding", False):
            self._closed = True
            if self._connection is not None:
                try:
                    self._connection.abort()
                except Exception:  # interpreter shutdown
                    pass
            self._unhold()
