"""The seam to the network: open a cooperative socket to a Redis server.

How this works: geredis never monkey-patches; it uses ``gevent.socket``
directly, so it cooperates with other greenlets whether or not the
application patched the standard library. A numeric host is resolved with
``AI_NUMERICHOST`` in the calling thread (microseconds, safe after fork); a
name goes through gevent's resolver once per connect, never per command.

Errors from connecting are translated here, once, from ``OSError`` into :class:`~geredis.exceptions.ConnectionClosedError`
naming the address. Once connected, the socket has no timeout of its own:
per-command timeouts belong to callers, and a broken stream is reported by the
reader (see ``connection.py``).
"""

from __future__ import annotations

import socket as _stdlib_socket
from typing import Any, List, Tuple

from gevent import socket

from .exceptions import ConnectionClosedError
from .settings import ConnectionSettings

__all__ = ["open_socket"]


def _resolve(host: str, port: int) -> List[Tuple[Any, ...]]:
    try:
        return _stdlib_socket.getaddrinfo(
            host, port, 0, socket.SOCK_STREAM, 0, _stdlib_socket.AI_NUMERICHOST
        )
    except _stdlib_socket.gaierror:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)  # type: ignore[no-any-return]


def _connect_tcp(settings: ConnectionSettings) -> Any:
    error: BaseException = OSError("no address")
    for family, socktype, proto, _, addr in _resolve(settings.host, settings.port):
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in (settings.socket_keepalive_options or {}).items():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
            sock.connect(addr)
            return sock
        except BaseException as exc:
            sock.close()
            error = exc
            if not isinstance(exc, OSError):
                raise
    raise error


def _connect_unix(settings: ConnectionSettings) -> Any:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(settings.unix_socket_path)
    except BaseException:
        sock.close()
        raise
    return sock


def open_socket(settings: ConnectionSettings) -> Any:
    """Connect to ``settings``'s address; the caller bounds the time.

    Returns a connected ``gevent.socket.socket`` with no timeout.

    Raises:
        ConnectionClosedError: refused, unreachable or unresolvable.
    """
    connect = _connect_unix if settings.unix_socket_path else _connect_tcp
    try:
        return connect(settings)
    except OSError as exc:
        errno = f"Error {exc.errno} " if exc.errno else ""
        raise ConnectionClosedError(
            f"{errno}connecting to {settings.address}: {exc.strerror or exc}"
        ) from exc
