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

Where reading runs:

* A plain socket is read **in the hub**, the way hiredis's event-loop
  adapters call ``redisAsyncHandleRead``: an I/O watcher on the descriptor
  calls :meth:`_on_readable`, which makes one non-blocking ``recv_into`` into
  a reusable 64 KiB buffer, feeds the parser and calls ``on_data()``, which
  may switch to the greenlets its frames answer directly (``in_hub`` is
  True). A lone round trip is then two greenlet switches (caller to hub,
  hub to caller), as with a raw socket, instead of four through a reader
  greenlet and a wake-up callback. One read per callback: while bytes remain
  the loop calls again after its other watchers and timers had their turn,
  so a flood never starves anything. ``on_data`` must never block there.
* A TLS socket may hold decrypted bytes that the kernel no longer shows as
  readable (``SSLSocket.pending()``), and a read may need a write (key
  update), so it is read by a reader greenlet through the SSL object, which
  waits only when it has nothing. ``on_data`` then runs in that greenlet
  (``in_hub`` is False) and must wake callers through a hub callback. After
  64 KiB read without a pause, or when ``on_data`` returns True (messages
  queued for another greenlet), it yields once through the event loop
  (``gevent.idle``, not ``sleep(0)``) so timers and other sockets run.

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
    """Whether ``exc`` is one of the ways a stream ends, rather than a bug.

    A :class:`Receiver` (and a connection's connecting greenlet) ends the
    stream with whatever it caught; only an exception this says False for is
    raised again from there, so gevent's hub reports it.

    Args:
        exc: what ended the stream.

    Returns:
        True for a socket error (``OSError``), any ``redis.RedisError`` (end of
        stream, garbage, a reply nobody asked for, a failed handshake),
        ``gevent.GreenletExit`` (the greenlet was killed) and
        ``gevent.Timeout``; False for anything else.
    """
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
        "bytes_in", "reads", "last_read", "greenlet", "in_hub", "_loop", "_reader",
        "_on_data", "_on_end", "_address", "_sock", "_stopped", "_watcher", "_buf",
        "_recv_into",
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
        #: The reader greenlet while reading (TLS), else None.
        self.greenlet: Optional[Greenlet] = None
        #: True when ``on_data`` runs in the hub (plain sockets): it may then
        #: switch to waiting greenlets directly, and must never block.
        self.in_hub = False
        self._loop = loop
        self._reader = reader
        self._on_data = on_data
        self._on_end = on_end
        self._address = address
        self._sock: Any = None
        self._stopped = False
        self._watcher: Any = None
        self._buf = bytearray(READ_SIZE)
        self._recv_into: Any = None

    def start(self, sock: Any) -> None:
        """Start reading ``sock``; returns at once (nothing is read here).

        A plain socket is then read in the hub through an I/O watcher, a TLS
        socket by a reader greenlet (see the module comment). After
        :meth:`stop`, nothing is started.

        Args:
            sock: the gevent socket, connected and with its handshake done.
        """
        self._sock = sock
        if self._stopped:
            return
        if hasattr(sock, "_sslobj"):
            self.greenlet = BackgroundGreenlet.spawn(self._run)
        else:
            self.in_hub = True
            self._recv_into = sock._sock.recv_into  # the non-blocking syscall
            self._watcher = self._loop.io(sock.fileno(), 1)  # 1: readable
            self._watcher.start(self._on_readable)

    def stop(self) -> None:
        """Stop reading; ``on_end`` will not be called. Never blocks, safe to
        call again. The owner closes the socket afterwards."""
        self._stopped = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()  # before the socket closes: never watch a closed fd
        greenlet = self.greenlet
        if greenlet is not None and greenlet is not getcurrent():
            greenlet.kill(block=False)

    def _end(self, exc: BaseException) -> None:
        if not self._stopped:
            self.stop()
            self._on_end(exc)

    def _on_readable(self) -> None:
        # Runs in the hub when the plain socket is readable: one read, then
        # back to the loop (which calls again while bytes remain), so other
        # sockets and timers get their turn between two reads.
        if self._stopped:
            return
        try:
            try:
                n = self._recv_into(self._buf)
            except BlockingIOError:
                return  # readable, but nothing after all
            if not n:
                raise ConnectionClosedError(f"{self._address} closed the connection")
            self.bytes_in += n
            self.reads += 1
            self.last_read = self._loop.now()
            self._reader.feed(self._buf, 0, n)
            self._on_data()  # a BlockingIOError from here (a hook) ends the stream
        except BaseException as exc:  # noqa: B902 - the stream is over, whatever ended it
            self._end(exc)
            if not expected(exc):
                raise  # a bug worth a report from the hub

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
        # TLS: the SSL object may hold decrypted bytes that the kernel no
        # longer shows as readable, so read through it (it waits only when
        # it has nothing) instead of watching the file descriptor.
        recv_into = self._sock.recv_into
        buf = self._buf
        feed = self._reader.feed
        on_data = self._on_data
        now = self._loop.now
        unyielded = 0
        while not self._stopped:
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
