"""One subscription connection, from connect to its end; never reused.

How this works:

* :meth:`Stream.open` connects and runs the handshake within
  ``socket_connect_timeout`` (``handshake.open_initialised``, as for every
  connection geredis opens). :meth:`Stream.replay` then subscribes every
  name of the subscriber's tables.
* Confirmations arrive as messages, and an error reply has no success
  counterpart, so each command goes out followed by a ``PING``: its fence.
  Fences wait in a FIFO. A pong resolves the head fence; an error reply is
  attached to it. This is how a caller learns that the server confirmed its
  command, or refused it.
* Writes are queued like the shared connection's: the caller appends the
  bytes and the fence with no switch in between, a hub callback makes one
  non-blocking send, and a writer greenlet sends what the kernel did not take.
* :meth:`Stream.run` starts a :class:`~geredis.receiver.Receiver` (the read
  side every connection kind shares) and waits for the stream's end; the
  receiver calls ``_on_data``, this stream's frame handler: a RESP3 push, or
  with RESP2 an array, is a pub/sub frame. It becomes a redis-py message dict and goes to
  ``Delivery``: to the handler queue when its table entry has a handler, else
  to the inbox. Anything else is a reply for the fences. Unsubscribe
  confirmations remove names from the tables (only those the application
  asked to drop: hiredis's and redis-py's rule).
* Health check: with ``health_check_interval``, an interval without a
  single read sends a PING. A second such interval with the PING unanswered
  ends the stream.

``run`` returns only by raising the error that ended the stream; the owner
then calls :meth:`close` and gets back the fences still unresolved.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import gevent
from gevent.event import AsyncResult
from redis.crc import key_slot

from ..exceptions import ConnectionClosedError, ProtocolError
from ..handshake import open_initialised
from ..protocol import NEED_DATA, PUSH_TYPES, Packer, make_reader
from ..receiver import Receiver
from ..settings import ConnectionSettings
from ..writer import Writer
from .delivery import Delivery, ReconnectInfo

__all__ = ["Fence", "PING", "Stream", "SUBSCRIBE", "UNSUBSCRIBE", "shard_groups"]

logger = logging.getLogger("geredis.pubsub")

#: A packed PING: the fence written after each command.
PING = b"*1\r\n$4\r\nPING\r\n"
#: The subscribe command of each table, by table index (channels, patterns,
#: shard channels).
SUBSCRIBE = ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE")
#: The unsubscribe command of each table, by table index.
UNSUBSCRIBE = ("UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE")

# Frame kinds, as bytes and as str (decode_responses): one dict lookup each.
MESSAGE, PMESSAGE, SMESSAGE, PONG = "message", "pmessage", "smessage", "pong"
_CONFIRM = {"subscribe": 0, "psubscribe": 1, "ssubscribe": 2}
_UNCONFIRM = {"unsubscribe": 0, "punsubscribe": 1, "sunsubscribe": 2}
_KINDS: Dict[Any, str] = {}
for _kind in (MESSAGE, PMESSAGE, SMESSAGE, PONG, *_CONFIRM, *_UNCONFIRM):
    _KINDS[_kind] = _kind
    _KINDS[_kind.encode()] = _kind


def shard_groups(names: Iterable[Any], encoding: str = "utf-8") -> List[List[Any]]:
    """``names`` grouped by cluster hash slot, in first-seen order.

    Args:
        names: shard channel names (``str`` or ``bytes``).
        encoding: how ``str`` names are encoded to hash them.

    Returns:
        One list of names per hash slot.
    """
    groups: Dict[int, List[Any]] = {}
    for name in names:
        raw = name.encode(encoding) if isinstance(name, str) else bytes(name)
        groups.setdefault(key_slot(raw), []).append(name)
    return list(groups.values())


class Fence:
    """A PING's place in the FIFO: resolves the command sent before it.

    Args:
        kind: ``Fence.SUB``, ``UNSUB``, ``USER_PING``, ``HEALTH`` or
            ``REPLAY``.
        result: set when the fence's PING is answered (None: nobody waits).
    """

    SUB, UNSUB, USER_PING, HEALTH, REPLAY = range(5)

    __slots__ = ("kind", "result", "errors", "rollback", "parent", "followers", "ping", "info")

    def __init__(self, kind: int, result: Optional[AsyncResult] = None) -> None:
        self.kind = kind
        self.result = result
        self.errors: List[BaseException] = []
        #: On an error reply: (table, names) to remove again.
        self.rollback: Optional[Tuple[Dict[Any, Any], Sequence[Any]]] = None
        #: Gets this fence's errors (a replayed command's fence -> the replay's).
        self.parent: Optional[Fence] = None
        #: Resolved with this fence (callers carried over from a dead stream).
        self.followers: List[Fence] = []
        self.ping: Any = None  # a user PING's message
        self.info: Optional[ReconnectInfo] = None  # the replay's reconnect notice

    def finish(self, value: Any) -> None:
        """Wake the waiters, this fence's and its followers'.

        Args:
            value: None, or the exception the waiters raise.
        """
        if self.result is not None and not self.result.ready():
            self.result.set(value)
        for follower in self.followers:
            follower.finish(value)


class Stream:
    """One connection of a subscriber. See the module comment.

    Args:
        settings: the client's connection settings.
        delivery: where messages go.
        tables: the subscriber's channel, pattern and shard channel tables
            (name -> handler), shared.
        pending: per table, the names unsubscribed but not yet confirmed.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        health_check_interval: seconds of silence after which a PING checks
            the connection (0: never).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        delivery: Delivery,
        tables: Tuple[Dict[Any, Any], ...],
        pending: Tuple[Set[Any], ...],
        *,
        parser: str,
        health_check_interval: float,
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        self.tables = tables
        self.pending = pending
        self.parser = parser
        self.health_check_interval = health_check_interval
        self.fences: Deque[Fence] = deque()
        self.closed = False
        self._packer = Packer(settings.encoding, settings.encoding_errors)
        self._sock: Any = None
        self._reader: Any = None
        self._write_error: Optional[BaseException] = None
        self._health_sent = False
        self._loop = gevent.get_hub().loop
        self._writer = Writer(self._loop, self._break)
        self._receiver: Optional[Receiver] = None
        self._ended = AsyncResult()  # the error that ended the stream

    # -- opening -------------------------------------------------------------

    def open(self) -> None:
        """Connect and run the handshake (``handshake.open_initialised``,
        within ``socket_connect_timeout``).

        Raises:
            redis.ConnectionError: the connection or handshake failed
                (:class:`~geredis.exceptions.ConnectionClosedError` also when
                the stream was closed meanwhile).
            redis.AuthenticationError: wrong credentials.
        """
        settings = self.settings
        decode = settings.encoding if settings.decode_responses else None
        self._reader = make_reader(
            encoding=decode, errors=settings.encoding_errors, parser=self.parser
        )
        sock = open_initialised(settings, self._reader, self._packer)
        if self.closed:  # closed while connecting
            sock.close()
            raise ConnectionClosedError("the stream was closed")
        self._sock = sock
        self._writer.attach(sock)

    def replay(self, fence: Fence) -> None:
        """Subscribe every name in the tables, each command with its own
        fence, then ``fence``: it resolves once all are confirmed. Shard
        channels go one SSUBSCRIBE per hash slot (a cluster node refuses
        channels of several slots in one command).

        Args:
            fence: resolved once every subscription is confirmed.
        """
        for kind, table in enumerate(self.tables):
            groups = shard_groups(table, self.settings.encoding) if kind == 2 else [list(table)]
            for names in groups:
                if not names:
                    continue
                command = Fence(Fence.SUB)
                command.rollback = (table, names)
                command.parent = fence
                self.send(self._packer.pack((SUBSCRIBE[kind], *names)) + PING, command)
        self.send(PING, fence)
        self._writer.flush()

    # -- writing -----------------------------------------------------------

    def pack(self, args: Sequence[Any]) -> bytes:
        """Pack one command with the stream's encoding.

        Args:
            args: the command and its arguments.

        Returns:
            The RESP bytes.

        Raises:
            redis.DataError: an argument of a type that cannot be sent.
        """
        return self._packer.pack(args)

    def send(self, data: bytes, fence: Fence) -> None:
        """Queue ``data`` (ending with its PING) and its fence.

        Args:
            data: packed commands, the last one a PING.
            fence: resolved when that PING is answered.
        """
        # No switch from here to the end: fence order is wire order.
        self.fences.append(fence)
        self._writer.out.append(data)
        if not self._writer.scheduled:
            self._writer.schedule()

    def _break(self, exc: BaseException) -> None:
        # A write failed: close the socket; the reader sees it and ends.
        if not self.closed:
            self._write_error = exc
            self._sock.close()

    # -- reading -------------------------------------------------------------

    def run(self) -> None:
        """Read until the stream ends, then raise why. With a health check
        interval, a silent interval sends a PING and a second one ends the
        stream.

        Raises:
            redis.ConnectionError: always, when the stream ends: why it
                ended (a failed write, the server closing it, a health check
                unanswered).
            geredis.ProtocolError: the server sent something that is not
                pub/sub.
        """
        receiver = Receiver(
            self._loop, self._reader, self._on_data, self._ended.set, self.settings.address
        )
        self._receiver = receiver
        receiver.start(self._sock)
        interval = self.health_check_interval or None
        seen = receiver.reads
        while not self._ended.wait(interval):
            if receiver.reads == seen:
                self._health_check()  # raises when the last PING went unanswered
            seen = receiver.reads
        exc = self._ended.get()
        if self._write_error is not None:
            raise self._write_error from exc
        raise exc

    def _on_data(self) -> bool:
        # The frame handler, called by the receiver after each read: pub/sub
        # frames become messages for the handlers or the inbox, the rest are
        # replies for the fences. True asks the receiver to let the consumers run.
        gets = self._reader.gets
        push_types = PUSH_TYPES
        resp2 = self.settings.wire_protocol == 2
        channels, patterns, shard_channels = self.tables
        delivery = self.delivery
        queue, inbox = delivery.queue, delivery.inbox
        to_handler, to_inbox = queue.append, inbox.append
        kinds = _KINDS
        while True:
            try:
                frame = gets()
            except UnicodeDecodeError as exc:
                logger.warning("pub/sub frame dropped: cannot decode it (%s)", exc)
                continue
            if frame is NEED_DATA:
                break
            if type(frame) in push_types or (resp2 and type(frame) is list):
                try:
                    kind = kinds.get(frame[0])
                except (IndexError, TypeError):  # empty, or an unhashable head
                    kind = None
                if kind is MESSAGE:
                    channel = frame[1]
                    message = {
                        "type": MESSAGE, "pattern": None, "channel": channel, "data": frame[2]
                    }
                    handler = channels.get(channel)
                elif kind is PMESSAGE:
                    pattern = frame[1]
                    message = {
                        "type": PMESSAGE, "pattern": pattern, "channel": frame[2],
                        "data": frame[3],
                    }  # fmt: skip
                    handler = patterns.get(pattern)
                elif kind is SMESSAGE:
                    channel = frame[1]
                    message = {
                        "type": SMESSAGE, "pattern": None, "channel": channel, "data": frame[2]
                    }
                    handler = shard_channels.get(channel)
                else:
                    self._control(kind, frame, resp2)
                    continue
                delivery.received += 1
                if handler is None:
                    to_inbox(message)
                else:
                    to_handler((handler, message))
            else:
                self._reply(frame)
        delivery.after_read()
        return bool(queue or inbox)

    def _control(self, kind: Optional[str], frame: List[Any], resp2: bool) -> None:
        # Confirmations and RESP2 pongs: the uncommon frames.
        if kind is PONG:
            self._reply(frame[1] if len(frame) > 1 else b"")
        elif kind in _CONFIRM or kind in _UNCONFIRM:
            index = _UNCONFIRM.get(kind)  # type: ignore[arg-type]
            if index is not None and frame[1] in self.pending[index]:
                self.pending[index].discard(frame[1])
                self.tables[index].pop(frame[1], None)
                if not any(self.tables):
                    self.delivery.wake()  # listen() ends
            elif index is not None and frame[1] in self.tables[index] and \
                    self.delivery.on_dropped is not None:  # fmt: skip
                self.delivery.on_dropped(index, frame[1])  # the server ended it
            if not self.delivery.ignore_subscribe_messages:
                self.delivery.inbox.append(
                    {"type": kind, "pattern": None, "channel": frame[1], "data": frame[2]}
                )
        elif resp2:
            raise ProtocolError(
                f"{self.settings.address} sent an unexpected reply: {frame!r:.80}"
            )
        else:
            logger.debug("pub/sub connection ignored a push: %r", frame)

    def _reply(self, reply: Any) -> None:
        fences = self.fences
        if not fences:
            raise ProtocolError(
                f"{self.settings.address} sent a reply nobody asked for: {reply!r:.80}"
            )
        if isinstance(reply, Exception):
            fences[0].errors.append(reply)
            return
        fence = fences.popleft()
        errors = fence.errors
        if fence.kind == Fence.USER_PING:
            data = reply if fence.ping is not None else reply[:0]  # b"" or ""
            pong = {"type": PONG, "pattern": None, "channel": None, "data": data}
            self.delivery.inbox.append(pong)
        elif fence.kind == Fence.HEALTH:
            self._health_sent = False
        if errors:
            if fence.rollback is not None:
                table, names = fence.rollback
                for name in names:
                    table.pop(name, None)
            if fence.parent is not None:
                fence.parent.errors.extend(errors)
        fence.finish(errors[0] if errors else None)
        if fence.info is not None:
            self.delivery.reconnected(fence.info)

    def _health_check(self) -> None:
        if self._health_sent:
            raise ConnectionClosedError(
                f"{self.settings.address} sent nothing for"
                f" {2 * self.health_check_interval:g}s, not even a pong"
            )
        self._health_sent = True
        self.send(PING, Fence(Fence.HEALTH))

    # -- closing -------------------------------------------------------------

    def close(self) -> List[Fence]:
        """Close the socket and stop the writer (never blocks).

        Returns:
            The fences still waiting, for the owner to settle.
        """
        self.closed = True
        self._writer.stop()
        if self._receiver is not None:
            self._receiver.stop()
        if self._sock is not None:
            self._sock.close()
        fences = list(self.fences)
        self.fences.clear()
        return fences
