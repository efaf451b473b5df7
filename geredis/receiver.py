"""The read side of a connection: one piece for every connection kind.

How this works: a :class:`Receiver` moves bytes from one socket into its
parser (``reader.feed``) and then calls its owner's ``on_data()``, which takes
the complete frames out (``reader.gets()`` until ``NEED_DATA``) and handles
them. The frame handling is the only thing that differs between connection
kinds: the multiplexed :class:`~geredis.connection.Connection` resolves its
FIFO of slots, the pub/sub :class:`~geredis.pubsub.stream.Stream` routes
messages and resolves its fences. Everything else is here, once: the receive
buffer, end of stream, socket errors, counters, fairness and stopping.

When the stream ends (EOF, a socket error, or an exception raised by
``on_data``, such as a ``ProtocolError`` for garbage or a reply nobody asked
for), ``on_end(exc)`` is called exactly once and nothing is read any more.
:meth:`stop` ends it from the owner's side (never blocks); ``on_end`` is then
not called.

Reading runs in a reader greenlet: ``recv_into`` a reusable 64 KiB buffer,
``feed``, ``on_data()``. On a plain socket the greenlet parks on the socket's
read watcher and then makes one non-blocking ``recv_into`` (no EAGAIN first).
A TLS socket may hold decrypted bytes the kernel no longer shows as readable
(``pending()``), so it always reads through the SSL object, which waits only
when it has nothing. After 64 KiB read without a pause, or when ``on_data``
returns True (messages queued for another greenlet), the reader yields once
through the event loop (``gevent.idle``) so that timers, other sockets and the
greenlets it woke can run.

Hooks for what is built on it:

* Per-frame work (a client-side cache updated in stream order, a slot whose
  resolution runs as its reply is parsed, push frames) belongs to the owner's
  ``on_data``: it sees every frame, replies and pushes alike, in stream order,
  before anything it wakes can run.
* Counters: ``bytes_in`` and ``reads`` are plain integers updated once per
  read, and ``last_read`` is the loop time of the last bytes (health checks);
  read them at any time, e.g. from a metrics collector.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import gevent
from gevent import getcurrent
from gevent.greenlet import Greenlet
from redis.exceptions import RedisError

from .exceptions import ConnectionClosedError
from .writer import BackgroundGreenlet

__all__ = ["READ_SIZE", "Receiver", "expected"]

#: Size of the reusable receive buffer.
READ_SIZE = 65536


def expected(exc: BaseException) -> bool:
    """True for the ways a stream ends; anything else is a bug worth a report."""
    return isinstance(exc, (OSError, RedisError, gevent.GreenletExit, gevent.Timeout))


class Receiver:
    """Reads one socket into a parser and hands the frames to its owner.

    Args:
        loop: the hub's event loop.
        reader: the parser (``feed(buf, 0, n)``; the owner calls ``gets``).
        on_data: called after each read was fed to ``reader``; drains and
            handles the frames; may return True to ask for a yield to the
            event loop before the next read. Anything it raises ends the
            stream.
        on_end: called once with the exception that ended the stream.
        address: the peer, for error messages.
    """

    __slots__ = (
        "bytes_in", "reads", "last_read", "greenlet", "_loop", "_reader", "_on_data",
        "_on_end", "_address", "_sock", "_stopped",
    )  # fmt: skip

    def __init__(
        self,
        loop: Any,
        reader: Any,
        on_data: Callable[[], Optional[bool]],
        on_end: Callable[[BaseException], None],
        address: str,
    ) -> None:
        #: Bytes and reads received so far (cheap counters for observers).
        self.bytes_in = 0
        self.reads = 0
        #: Loop time of the last read that returned bytes.
        self.last_read: float = loop.now()
        #: The reader greenlet while reading, else None.
        self.greenlet: Optional[Greenlet] = None
        self._loop = loop
        self._reader = reader
        self._on_data = on_data
        self._on_end = on_end
        self._address = address
        self._sock: Any = None
        self._stopped = False

    def start(self, sock: Any) -> None:
        """Start reading ``sock`` (connected, handshake done); returns at once."""
        self._sock = sock
        if not self._stopped:
            self.greenlet = BackgroundGreenlet.spawn(self._run)

    def stop(self) -> None:
        """Stop reading; ``on_end`` will not be called. Never blocks, safe to
        call again. The owner closes the socket afterwards."""
        self._stopped = True
        greenlet = self.greenlet
        if greenlet is not None and greenlet is not getcurrent():
            greenlet.kill(block=False)

    def _end(self, exc: BaseException) -> None:
        if not self._stopped:
            self._stopped = True
            self._on_end(exc)

    def _run(self) -> None:
        # The reader greenlet.
        try:
            self._read_loop()
        except BaseException as exc:  # noqa: B902 - the stream is over, whatever ended it
            self._end(exc)
            if not expected(exc):
                raise  # a bug worth a report from the hub
        finally:
            if self.greenlet is getcurrent():
                self.greenlet = None

    def _read_loop(self) -> None:
        sock = self._sock
        buf = bytearray(READ_SIZE)
        feed = self._reader.feed
        on_data = self._on_data
        now = self._loop.now
        if hasattr(sock, "_sslobj"):  # TLS: the SSL object may hold decrypted bytes
            recv_into = sock.recv_into
            wait = read_event = None
        else:
            recv_into = sock._sock.recv_into  # non-blocking; called once readable
            wait, read_event = sock._wait, sock._read_event
        unyielded = 0
        while not self._stopped:
            if wait is not None:
                wait(read_event)
                try:
                    n = recv_into(buf)
                except BlockingIOError:  # woken, but nothing after all
                    continue
            else:
                n = recv_into(buf)
            if not n:
                raise ConnectionClosedError(f"{self._address} closed the connection")
            self.bytes_in += n
            self.reads += 1
            self.last_read = now()
            feed(buf, 0, n)
            unyielded += n
            if on_data() or unyielded >= READ_SIZE:
                # A long reply or a burst is arriving, or messages wait for
                # another greenlet: let it, the woken callers and the timers
                # run (TLS reads return 16 KiB at most, so count bytes).
                unyielded = 0
                gevent.idle()
