"""One Redis connection shared by many greenlets: a FIFO of results, one
writer, one reader.

How this works (hiredis's async context, in gevent terms):

* A caller hands :meth:`Connection.submit` a command already packed to bytes.
  ``submit`` appends the caller's result slot to ``_pending`` and the bytes to
  the writer's ``out`` **with no greenlet switch in between**, so slot order is
  wire order, and the caller blocks on its slot.
* The :class:`~geredis.writer.Writer` sends everything queued in one pass of
  the event loop with one non-blocking ``send`` from the hub, and finishes
  partial sends in a writer greenlet. Callers never touch the socket, so a
  caller's timeout or kill can never leave half a command on the wire.
* A greenlet (``_run``) connects and performs the handshake, then hands the
  socket to a :class:`~geredis.receiver.Receiver` (the read side every
  connection kind shares), which feeds the parser and calls ``_on_data``, this
  connection's frame handler: it resolves slots in FIFO order. An error reply
  is a value for its own caller; the connection lives on.
* A caller that gives up leaves its slot in ``_pending``: the late reply still
  pops it, and is dropped there, never handed to the next caller.
* Exactly once: every slot is resolved once, by its reply or, when the stream
  breaks (EOF, reset, garbage, a reply nobody asked for), by ``_fail``, which
  moves the state to CLOSED, closes the socket and fails every pending slot
  with a ConnectionError. A CLOSED connection is never reused; the owner opens
  a new one.

* With a client-side cache (``cache=``, a ``geredis.cache`` store), the
  handshake also starts CLIENT TRACKING, push frames (invalidations) go to the
  store in stream order with the replies, the cache's slots run their hooks
  as their replies are parsed (``ReaderSlot.parsed``), and ``_fail`` empties
  the store before anyone can read it.

State: CONNECTING -> OPEN -> CLOSING -> CLOSED (any state may jump to CLOSED).
Commands may be submitted while CONNECTING (they leave after the handshake)
and while OPEN; CLOSING lets the pending ones finish.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from time import monotonic
from typing import Any, Callable, Deque, List, Optional

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.greenlet import Greenlet

from .caller import Caller, Handoff
from .deadlines import Deadlines
from .exceptions import ClientClosedError, ConnectionClosedError, ProtocolError
from .handshake import open_initialised
from .observability.stats import ClientStats
from .protocol import NEED_DATA, PUSH_TYPES, Packer, make_reader
from . import guards
from .settings import ConnectionSettings
from .receiver import READ_SIZE, Receiver, expected
from .writer import BackgroundGreenlet, Writer
from .slots import MarkerSlot, RawSlot, ReaderSlot, failure_for

__all__ = ["BackgroundGreenlet", "Connection", "READ_SIZE", "State"]

logger = logging.getLogger("geredis.connection")

class State(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "CONNECTING"  #: socket and handshake under way; commands queue
    OPEN = "OPEN"  #: commands flow
    CLOSING = "CLOSING"  #: no new commands; pending ones finish, then CLOSED
    CLOSED = "CLOSED"  #: socket closed, every slot resolved; never reused


_CONNECTING, _OPEN, _CLOSING, _CLOSED = State


class Connection:
    """A multiplexed connection. See the module comment for how it works.

    Args:
        settings: where to connect and how to initialise the connection.
        on_push: called by the reader with each RESP3 push message (pub/sub
            messages, invalidations), in stream order with the replies; on a
            plain socket it runs in the hub and must not block. Pushes are
            dropped when None.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        stats: the owner's counters (``r.stats()``); a private set when None.
        cache: a ``geredis.cache.store.Store`` kept in step with this
            connection (tracking, invalidations, reader hooks), or None.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        on_push: Optional[Callable[[List[Any]], None]] = None,
        parser: str = "auto",
        stats: Optional[ClientStats] = None,
        cache: Optional[Any] = None,
    ) -> None:
        self.settings = settings
        #: The client-side cache store fed by this connection, or None.
        self.cache: Any = cache
        if cache is not None and on_push is None:
            on_push = cache.on_push
        self.stats = stats if stats is not None else ClientStats(settings)

        self.state = _CONNECTING
        self.on_push = on_push
        #: The error that closed the connection, once CLOSED.
        self.error: Optional[BaseException] = None
        self._pending: Deque[Any] = deque()
        #: Callers whose get() returned a reply, for the next callers (one
        #: fewer GC-tracked allocation per command: with thousands of
        #: commands in flight the cyclic GC ran twice as often, and did
        #: full collections). Only a Caller whose ``get()`` returned a reply
        #: goes back here: its reply reached it while its greenlet waited,
        #: which stores nothing in it, and its slot has left the FIFO, so it
        #: is clean. One whose caller gave up (timeout, kill) is never
        #: reused: it is still in the FIFO and its late reply will land in
        #: it. At most one per caller waiting at the same time.
        self.spare_waiters: List[Caller] = []
        #: The answered callers of the last read, resumed one after another
        #: (``caller.py``).
        self.handoff = Handoff(gevent.get_hub())
        self._timeout = settings.socket_timeout
        self._special = 0  # ReaderSlots in _pending: the reader looks at those
        self._sock: Any = None
        decode = settings.encoding if settings.decode_responses else None
        self._reader = make_reader(
            encoding=decode, errors=settings.encoding_errors, parser=parser
        )
        self._packer = Packer(settings.encoding, settings.encoding_errors)
        self._loop = gevent.get_hub().loop
        self._expiry = Deadlines(
            self._loop, self._pending, self._timeout or 0, settings.address, self.stats
        )
        self._deadlines = self._expiry.deadlines  # one per slot when timing out
        self._closed = Event()
        #: At most this many commands in flight; ``room`` is set while below.
        self.max_in_flight = settings.max_in_flight
        self.room = Event()
        self.room.set()
        #: True once the handshake completed: user commands may have been sent.
        self.opened = False
        self._integrity = settings.integrity_check
        self._marker = 0
        self._held: List[Any] = []  # integrity: (slot, reply) awaiting a marker
        self._writer = Writer(
            self._loop, self._fail, self._append_marker if self._integrity else None, self.stats
        )
        self._out = self._writer.out  # never replaced, only cleared
        self._receiver = Receiver(
            self._loop, self._reader, self._on_data, self._fail, settings.address
        )
        self.stats.track(self)  # its bytes received count in r.stats()
        self._health: Optional[Greenlet] = None
        self._greenlet: Greenlet = BackgroundGreenlet.spawn(self._run)
        guards.track(self)

    def __repr__(self) -> str:
        return (
            f"<geredis.Connection {self.settings.address} {self.state.value}"
            f" pending={len(self._pending)}>"
        )

    @property
    def pending(self) -> int:
        """Commands sent or queued whose reply has not arrived yet."""
        return len(self._pending)

    # -- callers' side -----------------------------------------------------

    def submit(self, packed: bytes, slot: Any, raw: bool = False) -> None:
        """Queue one packed command whose reply will resolve ``slot``.

        Never blocks, never switches greenlets and checks nothing: the caller
        must have checked that the state is CONNECTING or OPEN (on a CLOSED
        connection nothing would resolve ``slot`` but its deadline) and, if
        it respects ``max_in_flight``, that there is ``room``. The bytes
        leave with the writer's next flush (in this pass of the event loop,
        or right after the handshake while CONNECTING); with
        ``socket_timeout`` set, the command gets its deadline.

        Args:
            packed: the whole command, RESP-encoded (``Packer.pack``).
            slot: what the outcome resolves, in the hub: a
                :class:`~geredis.caller.Caller` (the blocking caller, from
                :meth:`caller`), a ``gevent.hub.Waiter``, a
                :class:`~geredis.slots.FutureSlot`, a
                :class:`~geredis.slots.ReaderSlot`, or anything with
                ``switch(reply)`` and ``throw(exc)`` (see ``slots.py``). It
                gets the reply (an error reply as the exception object), a
                ``redis.TimeoutError`` at its deadline, or a
                ``redis.ConnectionError`` if the connection breaks first.
            raw: read the reply without decoding it (redis-py's
                NEVER_DECODE); only matters with ``decode_responses``.
        """
        if raw or type(slot) is not Caller:
            slot = self._reader_slot(slot, raw)
        # No greenlet switch from here to the end: slot order is wire order.
        self._pending.append(slot)
        if self._timeout is not None:
            self._deadlines.append(self._loop.now() + self._timeout)
            if self._expiry.timer is None:
                self._expiry.arm(self._timeout)
        self._out.append(packed)
        if not self._writer.scheduled:
            self._writer.schedule()

    def submit_batch(self, packed: bytes, slots: List[Any]) -> None:
        """Queue several commands packed as one byte string, one slot per
        reply, contiguously: no other caller's command lands between them.

        As :meth:`submit`: never blocks, checks nothing (the state and
        ``max_in_flight`` are the caller's to respect; a batch may take the
        pending count past it), and with ``socket_timeout`` set every reply
        of the batch gets the same deadline.

        Args:
            packed: the commands, RESP-encoded back to back.
            slots: one slot per reply, in order, resolved as in
                :meth:`submit` (the same :class:`~geredis.slots.BatchSlot`
                may stand for every reply; wrap one in
                :class:`~geredis.slots.RawSlot` to read it undecoded).
        """
        if not slots:
            return  # nothing expected back, so nothing to send
        for slot in slots:
            if type(slot) is not Caller:
                slot = self._reader_slot(slot, False)
            self._pending.append(slot)
        if self._timeout is not None:
            deadline = self._loop.now() + self._timeout
            self._deadlines.extend([deadline] * len(slots))
            if self._expiry.timer is None:
                self._expiry.arm(self._timeout)
        self._out.append(packed)
        self._writer.extra += len(slots) - 1  # one item, len(slots) commands
        if not self._writer.scheduled:
            self._writer.schedule()

    def _reader_slot(self, slot: Any, raw: bool) -> Any:
        # Count the slots the frame handler must look at (ReaderSlot: read
        # undecoded, or run code as their reply is parsed).
        if raw and type(slot) is not RawSlot:
            slot = RawSlot(slot)
        if type(slot) is RawSlot and not self.settings.decode_responses:
            return slot.target  # every reply is read undecoded anyway
        if isinstance(slot, ReaderSlot):
            self._special += 1
        return slot

    def close(self, timeout: Optional[float] = None) -> None:
        """Refuse new commands, let the pending ones finish, then close.

        Waits at most ``timeout`` seconds (forever when None) for the pending
        replies; those still missing then fail with ClientClosedError. Returns
        once the socket is closed and the connection's greenlets have ended.
        The connection is CLOSED afterwards, for good. Safe to call again.

        Args:
            timeout: the longest to wait for the pending replies, in
                seconds; None waits as long as they take.
        """
        self.close_nowait()
        if not self._closed.wait(timeout):
            self._fail(ClientClosedError("close() timed out waiting for replies"))
        current = getcurrent()
        for greenlet in (
            self._greenlet, self._receiver.greenlet, self._writer.greenlet, self._health
        ):
            if greenlet is not None and greenlet is not current:
                greenlet.join()

    def close_nowait(self) -> None:
        """Start a clean close without waiting for it (safe in ``__del__``)."""
        if self.state is _CONNECTING or self.state is _OPEN:
            self.state = _CLOSING
        if self.state is _CLOSING and not self._pending:
            self._fail(ClientClosedError("connection closed by the client"))

    # -- writing -----------------------------------------------------------

    def _append_marker(self) -> None:
        # Integrity check: an ECHO of a fresh number after the batch in
        # the writer's out; its reply must come back right after the batch's replies.
        self._marker += 1
        expected = b"%d" % self._marker
        self._out.append(self._packer.pack(("ECHO", expected)))
        self._pending.append(MarkerSlot(expected))
        if self._timeout is not None:
            self._deadlines.append(self._loop.now() + self._timeout)

    # -- reading -----------------------------------------------------------

    def _run(self) -> None:
        # The connecting greenlet: connect, handshake, then start the receiver.
        try:
            started = monotonic()
            self._open()
            self.stats.connected(monotonic() - started)
            self.opened = True
            if self.state is _CONNECTING:
                self.state = _OPEN
            if self.settings.health_check_interval:
                self._health = BackgroundGreenlet.spawn(guards.health_check, self)
            self._writer.attach(self._sock)
            self._writer.flush()  # what callers queued while connecting
            self._receiver.start(self._sock)
        except BaseException as exc:  # noqa: B902 - the stream is over
            self._fail(exc)
            if not expected(exc):
                raise

    def _open(self) -> None:
        extra = () if self.cache is None else ((self.cache.settings.tracking_command(), False),)
        self._sock = open_initialised(self.settings, self._reader, self._packer, extra)

    @property
    def bytes_received(self) -> int:
        """Bytes read from the server so far (after the handshake)."""
        return int(self._receiver.bytes_in)

    @property
    def _last_read(self) -> float:
        """Loop time of the last bytes received (for the health check)."""
        return self._receiver.last_read

    def _on_data(self) -> None:
        # The frame handler, called by the receiver after each read: resolve
        # the slots in FIFO order; push frames go to on_push in stream order.
        gets = self._reader.gets_unchecked
        pending = self._pending
        popleft = pending.popleft
        deadlines = self._deadlines
        expiry = self._expiry
        push_types = PUSH_TYPES
        integrity = self._integrity
        stats = self.stats
        woken: List[Any] = []
        popped = 0
        try:
            while True:
                head = None
                if self._special and pending and isinstance(pending[0], ReaderSlot):
                    head = pending[0]
                    decode = head.decode
                else:
                    decode = True
                try:
                    reply = gets(decode)
                except UnicodeDecodeError as exc:
                    if self.cache is not None:  # an invalidation or a reply? cannot tell
                        raise ProtocolError(
                            f"{self.settings.address}: undecodable bytes on a tracking"
                            f" connection ({exc}); see encoding_errors") from exc
                    reply = exc  # this caller's problem, not the stream's
                except Exception as exc:  # noqa: B902 - what hiredis raises on garbage too
                    raise self._reader.garbage(exc)
                if reply is NEED_DATA:
                    break
                if type(reply) in push_types:
                    if self.on_push is not None:
                        self.on_push(reply)
                    continue
                if not pending:
                    raise ProtocolError(
                        f"{self.settings.address} sent a reply nobody asked for: {reply!r:.80}"
                    )
                slot = popleft()
                popped += 1
                if deadlines:
                    deadlines.popleft()
                    if expiry.expired:  # its caller timed out: the reply is dropped
                        expiry.expired -= 1
                        stats.late_replies += 1
                if head is not None:
                    self._special -= 1
                    if not integrity:  # else once the batch's marker proved it
                        reply = _parsed(head, reply)
                if integrity:
                    self._check_integrity(slot, reply, woken)
                else:
                    woken.append(slot)
                    woken.append(reply)
        except BaseException:
            stats.replies += popped
            if woken:  # resume those answered before the stream broke
                self._loop.run_callback(self.handoff.run, woken)
            raise
        stats.replies += popped
        if len(pending) < self.max_in_flight and not self.room.is_set():
            self.room.set()  # callers waiting for the in-flight limit may go on
        if not pending and self.state is _CLOSING:
            self._fail(ClientClosedError("connection closed by the client"))
        if woken:
            if self._receiver.in_hub:
                self.handoff.run(woken)  # we are the hub: resume them now, in FIFO order
            else:
                self._loop.run_callback(self.handoff.run, woken)

    def _check_integrity(self, slot: Any, reply: Any, woken: List[Any]) -> None:
        # Hold a batch's replies until its marker comes back intact, so a
        # desynchronised stream fails its callers instead of misleading them.
        if type(slot) is not MarkerSlot:
            self._held += (slot, reply)
        elif slot.matches(reply):
            held = self._held
            for i in range(0, len(held), 2):
                if isinstance(held[i], ReaderSlot):
                    held[i + 1] = _parsed(held[i], held[i + 1])
            woken += held
            held.clear()
        else:
            raise ProtocolError(
                f"{self.settings.address}: reply stream desynchronised (integrity"
                f" marker {slot.expected!r} answered by {reply!r:.40})"
            )

    def caller(self) -> Caller:
        """A slot for a blocking caller of this connection: a spare one
        (see :attr:`spare_waiters`) or a new one.

        Returns:
            A :class:`~geredis.caller.Caller` to submit, then ``get()``.
        """
        spare = self.spare_waiters
        return spare.pop() if spare else Caller(self.handoff)

    # -- failing -----------------------------------------------------------

    def abort(self, exc: Optional[BaseException] = None) -> None:
        """Close now: pending commands fail with a ConnectionError.

        For a dedicated connection whose caller gave up before its reply (a
        killed BLPOP must not pop an item into nowhere). Never blocks; the
        connection is CLOSED for good. Does nothing if it is CLOSED already.

        Args:
            exc: why, recorded as :attr:`error`; each pending caller gets a
                ``redis.ConnectionError`` made from it (see
                :func:`~geredis.slots.failure_for`). None: a
                :class:`~geredis.exceptions.ClientClosedError`.
        """
        self._fail(exc or ClientClosedError("connection aborted by the client"))

    def _fail(self, exc: BaseException) -> None:
        """Close for good: every pending slot fails with a ConnectionError.

        Never blocks (it runs in hub callbacks too). Safe to call again.
        """
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self.error = exc
        if self.cache is not None:
            self.cache.connection_lost()  # before any caller can read it
        self._writer.stop()
        self._receiver.stop()
        if self._sock is not None:
            self._sock.close()
        self.stats.failed += len(self._pending)
        self.stats.untrack(self)
        pending = self._held[::2] + list(self._pending)
        self._held.clear()
        self._pending.clear()
        self._expiry.clear()
        self._special = 0
        if pending:
            self._loop.run_callback(_throw_all, pending, exc, self.settings.address)
        current = getcurrent()
        for greenlet in (self._greenlet, self._health):
            if greenlet is not None and greenlet is not current:
                greenlet.kill(block=False)
        self.room.set()  # waiters see CLOSED and move to a new connection
        self._closed.set()
        if not isinstance(exc, ClientClosedError):
            logger.debug("connection to %s closed: %r", self.settings.address, exc)


def _parsed(slot: ReaderSlot, reply: Any) -> Any:
    # A ReaderSlot's hook, in stream order; its bug is its own caller's error.
    try:
        return slot.parsed(reply)
    except Exception as exc:  # noqa: B902
        return exc


def _throw_all(slots: List[Any], exc: BaseException, address: str) -> None:
    # Runs in the hub: fail every slot of a broken connection, in FIFO order.
    for slot in slots:
        slot.throw(failure_for(exc, address))
