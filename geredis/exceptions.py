"""The errors geredis raises, built on redis-py's exception classes.

How this works: every class here subclasses the redis-py exception a caller
already catches (``except redis.ConnectionError`` keeps working), and each
docstring says what happened to the connection, because that is what decides
the caller's next move:

* the *connection survives*: the command failed on its own (a server error
  reply, a bad argument, a command refused before it was sent);
* the *connection is gone*: every command pending on it failed with the same
  error, and the next command opens a new connection.

Server error replies keep redis-py's own classes (``ResponseError``,
``NoScriptError``, ``WRONGPASS`` -> ``AuthenticationError`` ...): they are
mapped by redis-py's table, see :func:`reply_error`.
"""

from __future__ import annotations

from redis._parsers.base import BaseParser
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    DataError,
    InvalidResponse,
    RedisError,
    ResponseError,
    TimeoutError,
)

__all__ = [
    "AuthenticationError",
    "BusyLoadingError",
    "ClientClosedError",
    "ConnectionClosedError",
    "ConnectionError",
    "DataError",
    "PoolExhaustedError",
    "ProtocolError",
    "RedisError",
    "ResponseError",
    "SharedConnectionError",
    "TimeoutError",
    "reply_error",
]


class ConnectionClosedError(ConnectionError):
    """The connection broke (EOF, reset, refused, handshake failed).

    The connection is gone: every command pending on it failed with this
    error. The next command opens a new connection.
    """


class ProtocolError(ConnectionClosedError, InvalidResponse):
    """The server sent bytes that are not RESP, or a reply nobody asked for.

    The stream can no longer be trusted, so the connection is closed and every
    pending command fails with this error. The next command reconnects.
    """


class ClientClosedError(ConnectionError):
    """The client was closed with ``close()``; it accepts no new commands.

    Commands queued before ``close()`` still complete.
    """


class SharedConnectionError(RedisError):
    """The command cannot run on a shared, multiplexed connection.

    Raised before anything is sent; the connection survives. The message names
    the API to use instead (``Redis(db=...)``, ``pipeline()``, ``pubsub()``...).
    """


def reply_error(message: str) -> ResponseError:
    """Build the exception for an error reply, with redis-py's mapping.

    ``"WRONGTYPE ..."`` gives ``ResponseError``, ``"NOSCRIPT ..."`` gives
    ``NoScriptError``, ``"ERR max number of clients reached"`` gives
    ``ConnectionError``. The connection survives an error reply.

    Args:
        message: the error reply's text, without the leading ``-``.

    Returns:
        The exception object (not raised): the reader hands it to the
        command's caller as its reply, and the caller raises it. A reply
        redis-py's mapping cannot build (``"ASK"`` or ``"MOVED"`` without a
        slot and an address) is a plain ``ResponseError``: an odd error
        text must never break the reader.
    """
    try:
        return BaseParser.parse_error(message)  # type: ignore[no-untyped-call,no-any-return]
    except (ValueError, TypeError, IndexError):
        return ResponseError(message)


class PoolExhaustedError(ConnectionError):
    """Every dedicated connection (``max_dedicated``) stayed in use for
    ``dedicated_timeout`` seconds, so a blocking command, a large pipeline, a
    WATCH, ``client()`` or ``monitor()`` could not get one.

    Nothing was sent; every connection survives. Retry later, or raise
    ``max_dedicated=`` / ``dedicated_timeout=`` on ``geredis.Redis``.
    """
