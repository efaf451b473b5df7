"""Delivery: from the subscriber's reader to handlers and to ``get_message()``.

How this works: the reader greenlet (``subscriber.py``) only parses. Each
message it builds goes to one of two bounded deques owned by :class:`Delivery`:

* ``queue`` holds ``(handler, message)`` pairs for subscriptions that have a
  handler, and ``(on_reconnect, ReconnectInfo)`` notices. One dispatcher
  greenlet, started on first use, pops them in arrival order and calls them.
  A handler that raises is reported (``on_handler_error``) and the next
  message is delivered. A handler that blocks delays later handlers only,
  never the reader, so pongs, confirmations and reconnects keep flowing.
* ``inbox`` holds what ``get_message()``/``listen()`` return: messages
  without a handler, subscribe confirmations, pongs and reconnect notices.

What a handler raises that is not its own ordinary error goes to the main
greenlet instead (:func:`raise_in_main`, gevent's way for system errors),
because that is where it would have gone with redis-py's handler thread: a
``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
``SystemExit``...), and any exception raised by a Python *signal handler*
that happened to run while the handler did (Python runs signal handlers in
the main thread, so with threads they interrupt the main program; with
greenlets they interrupt whichever greenlet runs: RQ's shutdown command
sends its process SIGINT from a pub/sub handler, and its SIGINT handler's
``StopRequested`` must stop the worker's main loop). The dispatcher then goes
on with the next message.

Overflow policy, the same for both deques: **drop the oldest**. After each
read the reader trims a deque longer than ``max_queued`` from its head, adds
the count to ``dropped`` and logs one warning per overflow episode (an
episode ends when that deque is next emptied). Reconnect notices are never
dropped. Within one read a deque may exceed ``max_queued`` by that read's
messages (at most 64 KiB of them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from time import monotonic
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.greenlet import Greenlet

from ..connection import BackgroundGreenlet

__all__ = [
    "Delivery", "HandlerErrorHook", "ReconnectInfo", "belongs_to_main", "raise_in_main",
    "report_handler_error",
]

logger = logging.getLogger("geredis.pubsub")

#: A redis-py message dict: ``type``, ``pattern``, ``channel``, ``data``.
Message = Dict[str, Any]
#: ``on_handler_error(exc, message)``: called in the dispatcher greenlet.
HandlerErrorHook = Callable[[BaseException, Message], None]

#: Confirmations that ``ignore_subscribe_messages`` hides (as redis-py does).
SUBSCRIBE_TYPES = frozenset(
    ("subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe")
)


@dataclasses.dataclass(frozen=True)
class ReconnectInfo:
    """Told to the application once a dropped subscriber is resubscribed.

    Messages published between the drop and now were lost: a gap may exist.
    """

    #: What ended the previous connection.
    error: BaseException
    #: Seconds from the drop until every subscription was confirmed again.
    down_for: float
    #: Connection attempts it took.
    attempts: int
    #: Reconnects of this PubSub so far, this one included.
    reconnects: int


def reconnect_message(info: ReconnectInfo) -> Message:
    """The ``get_message()`` form of a reconnect notice.

    Args:
        info: what the notice reports.

    Returns:
        ``{"type": "reconnect", "pattern": None, "channel": None, "data": info}``.
    """
    return {"type": "reconnect", "pattern": None, "channel": None, "data": info}


def report_handler_error(exc: BaseException, message: Message) -> None:
    """The default ``on_handler_error``: log it, then report it to gevent's
    hub (which prints it, as for a greenlet that died). Delivery goes on.

    Args:
        exc: what the handler raised.
        message: the message it was handling.
    """
    where = f"pub/sub handler for {message.get('type')} on {message.get('channel')!r}"
    logger.error("%s raised %r", where, exc, exc_info=exc)
    gevent.get_hub().handle_error(where, type(exc), exc, exc.__traceback__)


def raised_by_signal_handler(exc: BaseException) -> bool:
    """True if ``exc`` came out of a Python signal handler: in its traceback,
    a frame whose last two positional arguments are an int and the frame
    just before it (Python calls ``handler(signum, frame)`` with the frame it
    interrupted).

    Args:
        exc: an exception that was raised (it has its traceback).

    Returns:
        True if a signal handler raised it.
    """
    tb = exc.__traceback__
    previous = None
    while tb is not None:
        frame = tb.tb_frame
        if previous is not None:
            code = frame.f_code
            n = code.co_argcount
            if n >= 2:
                signum_name, frame_name = code.co_varnames[n - 2:n]
                local = frame.f_locals
                if local.get(frame_name) is previous and isinstance(local.get(signum_name), int):
                    return True
        previous = frame
        tb = tb.tb_next
    return False


def belongs_to_main(exc: BaseException) -> bool:
    """Whether a handler's exception goes to the main greenlet rather than to
    ``on_handler_error`` (see the module comment).

    Args:
        exc: what the handler raised.

    Returns:
        True for a ``BaseException`` that is not an ``Exception`` (but not
        ``GreenletExit``), or one a signal handler raised.
    """
    if isinstance(exc, gevent.GreenletExit):
        return False
    return not isinstance(exc, Exception) or raised_by_signal_handler(exc)


def raise_in_main(exc: BaseException) -> None:
    """Raise ``exc`` in the main greenlet now (as gevent does for
    ``SystemExit`` and ``KeyboardInterrupt`` in any greenlet); this greenlet
    resumes when the main greenlet next waits.

    Args:
        exc: the exception to raise there.
    """
    logger.debug("raising %r in the main greenlet", exc)
    gevent.get_hub().handle_system_error(type(exc), exc, exc.__traceback__)


class Delivery:
    """The two bounded deques and the dispatcher greenlet. See the module
    comment for the overflow policy.

    Args:
        max_queued: the bound of each deque (handler queue, inbox).
        on_handler_error: ``f(exc, message)`` when a handler raises (None:
            :func:`report_handler_error`).
        on_reconnect: ``f(ReconnectInfo)`` after each reconnect, in the
            dispatcher greenlet.
        reconnect_messages: put reconnect notices in the inbox too.
        ignore_subscribe_messages: leave confirmations out of the inbox's
            readers (settable later).

    Raises:
        ValueError: ``max_queued`` is below 1.
    """

    def __init__(
        self,
        *,
        max_queued: int,
        on_handler_error: Optional[HandlerErrorHook],
        on_reconnect: Optional[Callable[[ReconnectInfo], Any]],
        reconnect_messages: bool,
        ignore_subscribe_messages: bool,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.max_queued = max_queued
        self.on_handler_error: HandlerErrorHook = on_handler_error or report_handler_error
        self.on_reconnect = on_reconnect
        self.reconnect_messages = reconnect_messages
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.queue: Deque[Tuple[Callable[[Any], Any], Any]] = deque()
        self.inbox: Deque[Message] = deque()
        #: Messages dropped by the overflow policy, both deques together.
        self.dropped = 0
        #: Messages received (counted by the reader), for ``r.stats()``.
        self.received = 0
        self._overflowing = {"handler queue": False, "get_message queue": False}
        self._work = Event()
        self._inbox_ready = Event()
        self._dispatcher: Optional[Greenlet] = None
        #: ``f(kind, name)``, called in the reader greenlet when the server
        #: ends a subscription nobody asked to end (Redis 7 sends
        #: ``sunsubscribe`` when a shard channel's slot leaves the node); the
        #: name stays wanted. The cluster pub/sub moves it to the new owner.
        self.on_dropped: Optional[Callable[[int, Any], None]] = None

    @property
    def queued(self) -> int:
        """Messages waiting in both deques."""
        return len(self.queue) + len(self.inbox)

    # -- the reader's side ---------------------------------------------------

    def after_read(self) -> None:
        """Called by the reader after each read: trim, then wake consumers."""
        if self.queue:
            if len(self.queue) > self.max_queued:
                self._trim(self.queue, "handler queue")
            if self._dispatcher is None:
                self._dispatcher = BackgroundGreenlet.spawn(self._dispatch)
            else:
                self._work.set()
        if self.inbox:
            if len(self.inbox) > self.max_queued:
                self._trim(self.inbox, "get_message queue")
            self._inbox_ready.set()

    def reconnected(self, info: ReconnectInfo) -> None:
        """Queue the reconnect notice (message and hook), behind every message
        received before the drop.

        Args:
            info: what the notice reports.
        """
        if self.reconnect_messages:
            self.inbox.append(reconnect_message(info))
        if self.on_reconnect is not None:
            self.queue.append((self.on_reconnect, info))
        logger.info(
            "pub/sub resubscribed after %.3fs (%d attempt(s)): messages published"
            " meanwhile were lost", info.down_for, info.attempts,
        )

    def wake(self) -> None:
        """Wake ``get_message``/``listen`` waiters (subscriptions ended, close)."""
        self._inbox_ready.set()

    def _trim(self, items: Deque[Any], name: str) -> None:
        over = len(items) - self.max_queued
        notices = []
        while over > 0 and items:
            item = items.popleft()
            if _is_notice(item):
                notices.append(item)
                continue
            over -= 1
            self.dropped += 1
        items.extendleft(reversed(notices))
        if not self._overflowing[name]:
            self._overflowing[name] = True
            logger.warning(
                "pub/sub %s is full (max_queued=%d): dropping the oldest messages"
                " (%d dropped so far)", name, self.max_queued, self.dropped,
            )

    # -- the dispatcher greenlet -------------------------------------------

    def _dispatch(self) -> None:
        me = getcurrent()
        queue = self.queue
        popleft = queue.popleft
        while self._dispatcher is me:
            if not queue:
                self._overflowing["handler queue"] = False
                self._work.clear()
                self._work.wait()
                continue
            handler, arg = popleft()
            try:
                handler(arg)
            except gevent.GreenletExit:
                raise
            except BaseException as exc:  # noqa: B902 - a handler's error is reported, not fatal
                if belongs_to_main(exc):
                    raise_in_main(exc)
                    continue
                message = arg if type(arg) is dict else reconnect_message(arg)
                try:
                    self.on_handler_error(exc, message)
                except Exception:
                    logger.exception("on_handler_error raised while reporting %r", exc)

    # -- get_message's side ----------------------------------------------------

    def get(
        self,
        timeout: Optional[float],
        ignore_subscribe_messages: bool,
        until: Optional[Callable[[], bool]] = None,
    ) -> Optional[Message]:
        """The next inbox message, waiting at most ``timeout`` seconds (forever
        when None); None when none came, or as soon as ``until()`` is true
        while the inbox is empty.

        Args:
            timeout: seconds to wait (0: none; None: forever).
            ignore_subscribe_messages: skip (un)subscribe confirmations.
            until: checked whenever the inbox is empty; True ends the wait.

        Returns:
            The message, or None.
        """
        inbox = self.inbox
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            while inbox:
                message = inbox.popleft()
                if ignore_subscribe_messages and message["type"] in SUBSCRIBE_TYPES:
                    continue
                return message
            self._overflowing["get_message queue"] = False
            if until is not None and until():
                return None
            remaining = None
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return None
            self._inbox_ready.clear()
            self._inbox_ready.wait(remaining)

    def wait_inbox(self, timeout: Optional[float]) -> None:
        """Return when the inbox has a message, ``wake()`` was called or
        ``timeout`` passed.

        Args:
            timeout: the longest to wait, in seconds (None: no bound).
        """
        if not self.inbox:
            self._inbox_ready.clear()
            self._inbox_ready.wait(timeout)

    # -- closing -------------------------------------------------------------

    def close(self, block: bool = True) -> None:
        """Drop everything queued and stop the dispatcher.

        A handler running in the dispatcher is interrupted with GreenletExit,
        unless ``close()`` is called from that handler: then the dispatcher
        ends when the handler returns.

        Args:
            block: wait for the dispatcher to end (False from ``__del__``).
        """
        dispatcher, self._dispatcher = self._dispatcher, None
        self.queue.clear()
        self.inbox.clear()
        self._work.set()
        self._inbox_ready.set()
        if dispatcher is not None and dispatcher is not getcurrent():
            dispatcher.kill(block=block)


def _is_notice(item: Any) -> bool:
    if type(item) is tuple:
        return type(item[1]) is ReconnectInfo
    return bool(item["type"] == "reconnect")
