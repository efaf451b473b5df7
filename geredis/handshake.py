"""Open a socket and initialise it, ready for commands: one function for
every kind of connection (shared, dedicated, subscriber, monitor).

How this works: :func:`open_initialised` connects (``network.open_socket``),
then pipelines the handshake (``settings.handshake()``: HELLO/AUTH, SETNAME,
SETINFO, SELECT) in one write and reads one reply per step with the caller's
parser, all within ``socket_connect_timeout``. An error reply fails the
connection with redis-py's class for it (``AuthenticationError`` for a wrong
password, ``ConnectionError`` for "max number of clients reached"), except for
steps marked optional (CLIENT SETINFO, unknown before Redis 7.2). Whatever
goes wrong, the socket is closed before the error leaves.

With an ``address_resolver`` in the settings (Sentinel), the resolver picks
the node: it gets an ``open_node(host, port, extra_steps)`` function that
does the above for that address, with ``extra_steps`` (``ROLE``) pipelined
after the handshake in the same write, and returns their replies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Sequence, Tuple

import gevent
from redis.exceptions import ConnectionError as RedisConnectionError

from .exceptions import ConnectionClosedError
from .network import open_socket, share_ssl_context
from .protocol import NEED_DATA, Packer
from .settings import ConnectionSettings, HandshakeStep

__all__ = ["open_initialised"]


def open_initialised(settings: ConnectionSettings, reader: Any, packer: Packer,
                     extra: Sequence[HandshakeStep] = ()) -> Any:
    """A connected, initialised gevent socket; ``reader`` has consumed the
    handshake's replies and is ready for the first command's. ``extra``
    steps (CLIENT TRACKING for a client-side cache) follow the settings' own.

    With an ``address_resolver`` in ``settings``, the resolver picks the node
    (and may add its own steps, such as ``ROLE``).

    Args:
        settings: where to connect, and the handshake to run
            (:meth:`~geredis.settings.ConnectionSettings.handshake`); the
            whole of it is bounded by ``socket_connect_timeout``.
        reader: a fresh RESP reader (:func:`~geredis.protocol.make_reader`)
            that goes on reading the connection's replies.
        packer: the :class:`~geredis.protocol.Packer` for the steps.
        extra: more steps, ``(args, optional)`` pairs, sent in the same
            write after the settings' own (and the resolver's): a
            client-side cache's ``CLIENT TRACKING ON ...``. An error reply
            to a step that is not optional fails the connection.

    Returns:
        The connected socket (a ``gevent.ssl.SSLSocket`` over TLS), with no
        timeout of its own.

    Raises:
        geredis.ConnectionClosedError: cannot connect, timed out, or the
            server closed the connection or refused a step.
        redis.AuthenticationError: wrong credentials (a ConnectionError too).
        geredis.network.TLSError: the TLS set-up or handshake failed.
    """
    resolver = settings.address_resolver
    if resolver is None:
        return _open(settings, reader, packer, tuple(extra))[0]

    def open_node(host: str, port: int, own: Sequence[HandshakeStep] = ()) -> Tuple[Any, List[Any]]:
        # The resolver's own steps (ROLE) first; it gets their replies only.
        node = dataclasses.replace(settings, host=host, port=port, address_resolver=None)
        share_ssl_context(settings, node)
        sock, replies = _open(node, reader, packer, tuple(own) + tuple(extra))
        return sock, replies[:len(own)]

    return resolver.connect(open_node)


def _open(settings: ConnectionSettings, reader: Any, packer: Packer,
          extra: Sequence[HandshakeStep]) -> Tuple[Any, List[Any]]:
    timeout = settings.socket_connect_timeout
    timer = gevent.Timeout._start_new_or_dummy(timeout)
    sock = None
    try:
        sock = open_socket(settings)
        return sock, _handshake(sock, settings, reader, packer, extra)
    except BaseException as exc:
        if sock is not None:
            sock.close()
        if exc is timer:
            raise ConnectionClosedError(
                f"Timeout connecting to {settings.address} after {timeout}s"
            ) from None
        raise
    finally:
        timer.close()


def _handshake(sock: Any, settings: ConnectionSettings, reader: Any, packer: Packer,
               extra: Sequence[HandshakeStep]) -> List[Any]:
    # Returns the replies to the ``extra`` steps.
    steps = settings.handshake() + list(extra)
    if not steps:
        return []
    sock.sendall(b"".join(packer.pack(args) for args, _ in steps))
    replies = _read_replies(sock, reader, len(steps), settings.address)
    for (args, optional), reply in zip(steps, replies):
        if isinstance(reply, Exception) and not optional:
            if args[0] == "HELLO" and "unknown command" in str(reply):
                raise ConnectionClosedError(
                    f"{settings.address} does not speak RESP3 (no HELLO); pass protocol=2"
                )
            if isinstance(reply, RedisConnectionError):
                raise reply  # AuthenticationError and friends, as they are
            name = " ".join(str(arg) for arg in args[:2]) if args[0] == "CLIENT" else args[0]
            raise ConnectionClosedError(f"handshake {name} failed: {reply}")
    return replies[len(steps) - len(extra):]


def _read_replies(sock: Any, reader: Any, count: int, address: str) -> List[Any]:
    replies: List[Any] = []
    buf = bytearray(4096)
    while True:
        while len(replies) < count:
            reply = reader.gets()
            if reply is NEED_DATA:
                break
            if isinstance(reply, RedisConnectionError):
                raise reply  # e.g. "max number of clients reached", then EOF
            replies.append(reply)
        if len(replies) == count:
            return replies
        n = sock.recv_into(buf)
        if not n:
            raise ConnectionClosedError(f"{address} closed the connection during the handshake")
        reader.feed(buf, 0, n)
