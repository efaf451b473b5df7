"""The write side of a connection: coalesced, and never in a caller's greenlet.

How this works: callers append encoded commands to :attr:`Writer.out` and,
when no flush is scheduled yet, call :meth:`Writer.schedule`, which queues one
:meth:`Writer.flush` as a hub callback. That callback runs after every
greenlet woken in the same pass of the event loop has queued its command, so
all of them leave in one ``send``. The flush must not block (it runs in the
hub): it makes one non-blocking send on the plain socket, and hands what the
kernel did not take (or, for TLS, everything, since TLS bytes must go through
the SSL object) to one writer greenlet that loops ``sendall`` until ``out`` is
empty. Callers never touch the socket, so a caller's timeout or kill can never
leave half a command on the wire.

Until :meth:`attach` gives it a socket (the handshake is done) a writer only
collects; after :meth:`stop` it drops everything. A failed send is reported
once to ``on_error``; whoever owns the connection decides what that means.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from gevent import getcurrent
from gevent.greenlet import Greenlet

__all__ = ["BackgroundGreenlet", "Writer"]


class BackgroundGreenlet(Greenlet):  # type: ignore[misc]
    """A greenlet geredis runs for itself (reader, writer). It handles every
    error it expects; anything reaching gevent's hub from one is a bug."""


class Writer:
    """Coalesced writes to one socket (see the module comment).

    Args:
        loop: the hub's event loop, for the flush callback.
        on_error: called with the exception when a send fails.
        before_send: called before each batch leaves, while ``out`` holds it
            (the integrity check appends its marker there); None for nothing.
        counters: where sends are counted (``bytes_sent``, ``batches``,
            ``batched`` and the ``on_batch`` hook of a
            :class:`~geredis.observability.ClientStats`), or None.
    """

    __slots__ = (
        "out", "scheduled", "greenlet", "stopped", "counters", "extra", "_loop", "_sock",
        "_raw_send", "_on_error", "_before_send",
    )  # fmt: skip

    def __init__(
        self,
        loop: Any,
        on_error: Callable[[BaseException], None],
        before_send: Optional[Callable[[], None]] = None,
        counters: Any = None,
    ) -> None:
        self.out: List[Any] = []
        self.scheduled = False
        #: The writer greenlet while one is finishing a send, else None.
        self.greenlet: Optional[Greenlet] = None
        self.stopped = False
        self._loop = loop
        self._sock: Any = None
        self._raw_send: Any = None
        self._on_error = on_error
        self._before_send = before_send
        self.counters = counters
        #: Commands queued in ``out`` beyond one per item (a pipeline's batch
        #: is one item): whoever appends such an item adds the difference.
        self.extra = 0

    def attach(self, sock: Any) -> None:
        """Start writing to ``sock``. Sends nothing itself: what was
        collected meanwhile leaves at the next :meth:`flush` (the owner calls
        it right after).

        Args:
            sock: the gevent socket, connected and with its handshake done;
                a plain one is flushed with non-blocking sends from the hub,
                a TLS one (through its SSL object) by the writer greenlet.
        """
        self._sock = sock
        # The plain socket's non-blocking send, for flushes from the hub.
        self._raw_send = None if hasattr(sock, "_sslobj") else sock._sock.send

    def schedule(self) -> None:
        """Flush in this pass of the event loop (call when not ``scheduled``)."""
        self.scheduled = True
        self._loop.run_callback(self.flush)

    def flush(self) -> None:
        """Send what ``out`` holds. Never blocks: safe in the hub."""
        self.scheduled = False
        out = self.out
        if self.greenlet is not None or not out or self._sock is None or self.stopped:
            return
        if self._raw_send is None:  # TLS: the writer greenlet sends it all
            self.greenlet = BackgroundGreenlet.spawn(self._drain)
            return
        if self._before_send is not None:
            self._before_send()
        commands = len(out) + self.extra
        self.extra = 0
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            sent = self._raw_send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._on_error(exc)
            return
        counters = self.counters
        if counters is not None:  # counted once per batch, never per command
            counters.bytes_sent += sent
            counters.batches += 1
            counters.batched += commands
            if counters.on_batch is not None:
                counters.on_batch(commands)
        if sent < len(data):
            out.append(memoryview(data)[sent:])
            self.greenlet = BackgroundGreenlet.spawn(self._drain)

    def _drain(self) -> None:
        # The writer greenlet: finishes what one non-blocking send could not.
        out = self.out
        try:
            while out and not self.stopped:
                # A memoryview first is the rest of a batch already prepared
                # (and counted).
                rest = type(out[0]) is memoryview
                if self._before_send is not None and (len(out) > 1 or not rest):
                    self._before_send()
                commands = len(out) - rest + self.extra
                self.extra = 0
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self._sock.sendall(data)
                counters = self.counters
                if counters is not None:
                    counters.bytes_sent += len(data)
                    if commands:
                        counters.batches += 1
                        counters.batched += commands
                        if counters.on_batch is not None:
                            counters.on_batch(commands)
        except BaseException as exc:  # noqa: B902 - any failure ends the stream
            if not self.stopped:
                self._on_error(exc)
        finally:
            if self.greenlet is getcurrent():
                self.greenlet = None

    def stop(self) -> None:
        """Drop what is queued and stop the writer greenlet (never blocks).
        ``greenlet`` stays set until it has ended, for owners that join it."""
        self.stopped = True
        self.out.clear()
        greenlet = self.greenlet
        if greenlet is not None and greenlet is not getcurrent():
            greenlet.kill(block=False)
