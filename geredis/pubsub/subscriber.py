"""The subscriber: the subscription tables, and the connection that serves
them across drops and reconnects.

How this works (hiredis's subscribed async context, in gevent terms):

* ``tables`` (``channels``, ``patterns``, ``shard_channels``) map each name to
  its handler or None. They hold the *wanted* state: ``subscribe()`` adds a
  name at once, and a name goes away when the server confirms its
  unsubscribe (names waiting for that are in ``pending``). This follows
  hiredis's channel and pattern dictionaries. Every connection starts by
  replaying the tables, so a reconnect resubscribes everything.
* One reader greenlet runs one :class:`~geredis.pubsub.stream.Stream` at a
  time: open, replay, read. Callers' commands go to the current stream when
  OPEN. Otherwise a subscribe is already covered by the coming replay, and
  an unsubscribe just edits the tables.
* When a stream ends and something is still subscribed, the state becomes
  RECONNECTING. Its in-flight subscribes wait for the next replay,
  its unsubscribes are done (the server forgot everything) and its pings fail.
  Retries wait ``min(cap, base * 2**n)`` seconds times a random factor in
  [0.5, 1), until ``close()``. Once the replay is confirmed, the application
  is told that a gap may exist (``Delivery.reconnected``).
* If nothing is subscribed, or the very first connection fails, the state
  goes back to IDLE and waiting callers get the error. A first connection
  that fails also forgets the names that were waiting for it.

State: IDLE -> CONNECTING -> OPEN <-> RECONNECTING; back to IDLE when nothing
is subscribed; CLOSED after ``close()`` (a later subscribe starts over).
"""

from __future__ import annotations

import enum
import logging
import random
from typing import Any, Callable, Dict, Optional, Sequence, Set, Tuple

import gevent
from gevent import getcurrent
from gevent.event import AsyncResult
from gevent.greenlet import Greenlet
from redis.exceptions import DataError, RedisError

from ..connection import BackgroundGreenlet
from ..exceptions import ClientClosedError
from ..protocol import make_reader
from ..settings import ConnectionSettings
from ..slots import failure_for
from .delivery import Delivery, ReconnectInfo
from .stream import PING, SUBSCRIBE, UNSUBSCRIBE, Fence, Stream

__all__ = ["Subscriber", "SubscriberState"]

logger = logging.getLogger("geredis.pubsub")


class SubscriberState(enum.Enum):
    """Where a PubSub's connection is."""

    IDLE = "IDLE"  #: no connection: nothing subscribed yet (or any more)
    CONNECTING = "CONNECTING"  #: first connection and handshake under way
    OPEN = "OPEN"  #: subscribed traffic flows
    RECONNECTING = "RECONNECTING"  #: the connection dropped; retrying with backoff
    CLOSED = "CLOSED"  #: closed by the application


_IDLE, _CONNECTING, _OPEN, _RECONNECTING, _CLOSED = SubscriberState
_EXPECTED = (OSError, RedisError)  # how a stream ends; anything else is a bug


class Subscriber:
    """The subscription tables and the reader greenlet that serves them.

    Args:
        settings: where to connect and how to initialise the connection.
        delivery: where messages go.
        normalize: turns a name as the user gave it into the table key (the
            type received frames carry: str with decode_responses, else bytes).
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        health_check_interval: seconds of silence before a PING; 0 disables.
        backoff: ``(base, cap)`` seconds for reconnect delays.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        delivery: Delivery,
        normalize: Callable[[Any], Any],
        *,
        parser: str = "auto",
        health_check_interval: float = 30.0,
        backoff: Tuple[float, float] = (0.05, 5.0),
    ) -> None:
        make_reader(parser=parser)  # a bad parser name fails here, not in the reader
        self.settings = settings
        self.delivery = delivery
        self.normalize = normalize
        self.parser = parser
        self.health_check_interval = health_check_interval
        self.backoff = backoff
        self.state = _IDLE
        self.tables: Tuple[Dict[Any, Any], ...] = ({}, {}, {})
        self.pending: Tuple[Set[Any], ...] = (set(), set(), set())
        #: Reconnects so far.
        self.reconnects = 0
        self._stream: Optional[Stream] = None  # the one being opened or read
        self._replay: Optional[Fence] = None  # the next replay's fence, callers wait on it
        self._greenlet: Optional[Greenlet] = None

    @property
    def subscribed(self) -> bool:
        """True while any table holds a name."""
        return bool(self.tables[0] or self.tables[1] or self.tables[2])

    # -- callers' side -----------------------------------------------------

    def subscribe(self, kind: int, subscriptions: Dict[Any, Any]) -> AsyncResult:
        """Add subscriptions, and ask the server for them when connected.

        Args:
            kind: the table: 0 channels, 1 patterns, 2 shard channels.
            subscriptions: ``{name: handler or None}``; names as the user gave
                them (normalised to the table's key type here).

        Returns:
            What to wait on: its value is None once the server confirmed, or
            the exception to raise (an error reply, which also rolls the
            names back; a failed first connection).

        Raises:
            redis.DataError: no names were given.
        """
        if not subscriptions:
            raise DataError(f"{SUBSCRIBE[kind]} needs at least one name")
        table, pending = self.tables[kind], self.pending[kind]
        added = []
        for name, handler in subscriptions.items():
            key = self.normalize(name)
            if key not in table:
                added.append(key)
            table[key] = handler
            pending.discard(key)
        stream = self._stream
        if self.state is _OPEN and stream is not None:
            fence = Fence(Fence.SUB, AsyncResult())
            fence.rollback = (table, added)
            stream.send(stream.pack((SUBSCRIBE[kind], *subscriptions)) + PING, fence)
            return fence.result
        return self.connected()

    def unsubscribe(self, kind: int, names: Sequence[Any]) -> Optional[AsyncResult]:
        """Unsubscribe from names of one table.

        Args:
            kind: the table: 0 channels, 1 patterns, 2 shard channels.
            names: the names to drop; empty drops every name of the table.

        Returns:
            What to wait on for the server's confirmation (the names leave
            the table when it comes), or None when there was no open
            connection to tell: the names were dropped at once.
        """
        table, pending = self.tables[kind], self.pending[kind]
        keys = [self.normalize(name) for name in names] if names else list(table)
        stream = self._stream
        if self.state is _OPEN and stream is not None:
            pending.update(keys)
            fence = Fence(Fence.UNSUB, AsyncResult())
            stream.send(stream.pack((UNSUBSCRIBE[kind], *names)) + PING, fence)
            return fence.result
        for key in keys:
            table.pop(key, None)
            pending.discard(key)
        if not self.subscribed:
            self.delivery.wake()
        return None

    def ping(self, message: Any = None) -> Optional[AsyncResult]:
        """Send a PING on the subscription connection.

        Args:
            message: the PING's optional argument, echoed in the pong.

        Returns:
            What to wait on for the pong (which also becomes a ``'pong'``
            message for ``get_message()``), or None when not OPEN: wait for
            :meth:`connected`, then try again.
        """
        stream = self._stream
        if self.state is not _OPEN or stream is None:
            return None
        fence = Fence(Fence.USER_PING, AsyncResult())
        fence.ping = message
        stream.send(PING if message is None else stream.pack(("PING", message)), fence)
        return fence.result

    def connected(self) -> AsyncResult:
        """What to wait on until the next connection has replayed the tables,
        starting the reader greenlet when IDLE or CLOSED.

        Returns:
            An ``AsyncResult`` whose value is None once every table is
            subscribed on the new connection, or the exception that made the
            first connection fail.
        """
        if self.state is _IDLE or self.state is _CLOSED:
            self.state = _CONNECTING
            self._replay = Fence(Fence.REPLAY, AsyncResult())
            self._greenlet = BackgroundGreenlet.spawn(self._run)
        assert self._replay is not None and self._replay.result is not None
        return self._replay.result

    # -- the reader greenlet -------------------------------------------------

    def _run(self) -> None:
        me = getcurrent()  # a closed-and-reopened subscriber runs a newer reader
        error: Optional[BaseException] = None  # what ended the last stream
        down_since = 0.0
        failures = 0
        loop = gevent.get_hub().loop
        while self._greenlet is me:
            if error is not None:
                self.state = _RECONNECTING
                base, cap = self.backoff
                gevent.sleep(min(cap, base * 2 ** min(failures, 32)) * random.uniform(0.5, 1.0))
                if not self.subscribed:
                    self._stop(error, forget=False)
                    return
            stream = self._stream = Stream(
                self.settings, self.delivery, self.tables, self.pending,
                parser=self.parser, health_check_interval=self.health_check_interval,
            )  # fmt: skip
            try:
                stream.open()
            except _EXPECTED as exc:
                stream.close()
                if self._greenlet is not me:
                    return
                if error is None:  # the first connection: its callers get the error
                    self._stop(exc, forget=True)
                    return
                failures += 1
                if failures & (failures - 1) == 0:  # 1, 2, 4, 8...: not every time
                    logger.warning(
                        "pub/sub reconnect to %s failed %d time(s): %r",
                        self.settings.address, failures, exc,
                    )
                continue
            replay, self._replay = self._replay or Fence(Fence.REPLAY), None
            if error is not None:
                self.reconnects += 1
                loop.update_now()
                replay.info = ReconnectInfo(
                    error, loop.now() - down_since, failures + 1, self.reconnects
                )
            self.state = _OPEN
            stream.replay(replay)
            failures = 0
            try:
                stream.run()
            except _EXPECTED as exc:
                if self._greenlet is not me:
                    return
                error = exc
                loop.update_now()
                down_since = loop.now()
                self._teardown(stream, error)

    def _teardown(self, stream: Stream, error: BaseException) -> None:
        # The stream broke: what was in flight waits for the next replay,
        # which makes the tables true again; unsubscribes are done (the
        # server forgot everything); pings fail.
        self._stream = None
        replay = self._replay = Fence(Fence.REPLAY, AsyncResult())
        for fence in stream.close():
            if fence.kind == Fence.SUB or fence.kind == Fence.REPLAY:
                fence.info = None  # the next replay brings its own notice
                replay.followers.append(fence)
            elif fence.kind == Fence.UNSUB:
                fence.finish(None)
            elif fence.kind == Fence.USER_PING:
                fence.finish(failure_for(error, self.settings.address))
        for table, pending in zip(self.tables, self.pending):
            for key in pending:
                table.pop(key, None)
            pending.clear()
        if self.subscribed:
            logger.warning(
                "pub/sub connection to %s lost (%r); reconnecting", self.settings.address, error
            )
        else:
            self.delivery.wake()

    def _stop(self, error: BaseException, forget: bool) -> None:
        # Back to IDLE; callers waiting for a connection get the error.
        self.state = _IDLE
        self._greenlet = self._stream = None
        if forget:
            for table, pending in zip(self.tables, self.pending):
                table.clear()
                pending.clear()
            self.delivery.wake()
        replay, self._replay = self._replay, None
        if replay is not None:
            replay.finish(failure_for(error, self.settings.address))

    def close(self, block: bool = True) -> None:
        """Close the connection and stop the reader: waiting callers get
        ClientClosedError and the tables are emptied. A later subscribe
        starts over from IDLE.

        Args:
            block: wait for the reader greenlet to end; False (``__del__``)
                never blocks.
        """
        self.state = _CLOSED
        greenlet, self._greenlet = self._greenlet, None
        stream, self._stream = self._stream, None
        if greenlet is not None and greenlet is not getcurrent():
            greenlet.kill(block=False)  # before the socket's cancel reaches it
        fences = stream.close() if stream is not None else []
        replay, self._replay = self._replay, None
        if replay is not None:
            fences.append(replay)
        error = ClientClosedError("the PubSub was closed")
        for fence in fences:
            fence.finish(error)
        for table, pending in zip(self.tables, self.pending):
            table.clear()
            pending.clear()
        if block and greenlet is not None and greenlet is not getcurrent():
            greenlet.join()
